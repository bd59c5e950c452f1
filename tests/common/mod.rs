//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use strata::gguf::GgufFile;
use strata::quant::GgmlType;
use strata::synth::{synth_model, SynthSpec};
use strata::{LoadOptions, Model, Numerics};

/// Where the fetch script caches models (the library's one rule).
pub fn models_dir() -> PathBuf {
    strata::model_cache::dir()
}

/// A real model fetched by `scripts/fetch-models.sh`. Fails (never skips)
/// when it is missing, so a CI run without models cannot pass silently.
pub fn real_model(file: &str) -> PathBuf {
    let p = models_dir().join(file);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh (CI does) or set STRATA_MODELS_DIR",
        p.display()
    );
    p
}

pub fn smollm2() -> PathBuf {
    real_model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Largest absolute difference between two equal-length slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// How many elements of two equal-length slices differ in their bits: 0
/// is what "bit-identical" means (a NaN equals only the same NaN, and 0.0
/// differs from -0.0).
pub fn bit_differences(a: &[f32], b: &[f32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

/// Turn off llama.cpp's tiled K-quant GEMM (`GGML_CPU_TILED_MM=0`, read
/// when its CPU backend starts): with it off, llama.cpp multiplies K-quant
/// batches with the reference dot products that Strata's kernels equal.
/// Call before the first [`strata::reference::Reference`] is loaded.
pub fn llama_cpp_reference_path() {
    static TILED_OFF: std::sync::Once = std::sync::Once::new();
    TILED_OFF.call_once(|| std::env::set_var("GGML_CPU_TILED_MM", "0"));
}

/// Twenty varied prompts for parity runs.
pub const PROMPTS: &[&str] = &[
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three primary colors are",
    "Water boils at 100 degrees Celsius because",
    "<|im_start|>user\nWhat is the tallest mountain in the world?<|im_end|>\n<|im_start|>assistant\n",
    "To make a cup of tea, first",
    "In 1969, Neil Armstrong",
    "The quick brown fox",
    "Photosynthesis is the process by which",
    "1, 2, 3, 5, 8, 13,",
    "SELECT name, age FROM users WHERE",
    "My favourite programming language is Rust because",
    "Les fleurs du jardin sont",
    "The mitochondria is",
    "Q: What is 12 times 12?\nA:",
    "Dear hiring manager,\n\nI am writing to",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite a haiku about rain.<|im_end|>\n<|im_start|>assistant\n",
    "The most important invention of the 20th century was",
    "   Leading spaces and\ttabs, then numbers 3.14159 and emoji 🚀 are",
];

/// Gemma 3 270M (Q4_K_M), fetched by `scripts/fetch-models.sh`.
pub fn gemma3() -> PathBuf {
    real_model("gemma-3-270m-q4_k_m.gguf")
}

/// The chat-style prompts of [`PROMPTS`] in Gemma's turn markup; the plain
/// ones as they are.
pub fn gemma_prompts() -> Vec<String> {
    PROMPTS
        .iter()
        .map(|p| match p {
            p if p.contains("tallest mountain") => {
                "<start_of_turn>user\nWhat is the tallest mountain in the world?<end_of_turn>\n<start_of_turn>model\n".to_string()
            }
            p if p.contains("haiku about rain") => {
                "<start_of_turn>user\nYou are a helpful assistant.\n\nWrite a haiku about rain.<end_of_turn>\n<start_of_turn>model\n".to_string()
            }
            p => p.to_string(),
        })
        .collect()
}

/// The lines of `tests/data/tokenizer_corpus.txt`, unescaped (`\n`, `\t`,
/// `\r`, `\\`, `\u{XXXX}`; any other backslash stays as it is).
pub fn tokenizer_corpus() -> Vec<String> {
    let corpus = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tokenizer_corpus.txt"
    );
    let text = std::fs::read_to_string(corpus).expect("read the tokenizer corpus");
    text.lines().map(unescape_corpus_line).collect()
}

/// Undo the corpus escapes: `\n`, `\t`, `\r`, `\\`, `\u{XXXX}`; any other
/// backslash stays as it is.
pub fn unescape_corpus_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let (replacement, used) = match tail.chars().next() {
            Some('n') => (Some('\n'), 1),
            Some('t') => (Some('\t'), 1),
            Some('r') => (Some('\r'), 1),
            Some('\\') => (Some('\\'), 1),
            Some('u') if tail.starts_with("u{") => match tail.find('}') {
                Some(end) => match u32::from_str_radix(&tail[2..end], 16)
                    .ok()
                    .and_then(char::from_u32)
                {
                    Some(c) => (Some(c), end + 1),
                    None => (None, 0),
                },
                None => (None, 0),
            },
            _ => (None, 0),
        };
        match replacement {
            Some(c) => out.push(c),
            None => out.push('\\'),
        }
        rest = &tail[used..];
    }
    out.push_str(rest);
    out
}

/// Tokenizer inputs the corpus file cannot hold: the empty string, long
/// runs, control characters, and code points sampled from every plane.
pub fn tokenizer_edge_inputs() -> Vec<String> {
    let mut inputs: Vec<String> = vec![
        String::new(),
        "a".repeat(5000),
        " ".repeat(3000) + "x",
        "\n".repeat(1000),
        "1".repeat(1000),
        "\t \n".repeat(500),
        "<start_of_turn>".repeat(200),
        (0u8..0x80).map(char::from).collect(),
    ];
    let cps: Vec<char> = (0x80u32..0x3000)
        .chain((0x3000u32..0x11_0000).step_by(37))
        .filter_map(char::from_u32)
        .collect();
    for chunk in cps.chunks(48) {
        let mut s = String::new();
        for (i, &c) in chunk.iter().enumerate() {
            s.push(c);
            match i % 4 {
                0 => s.push(' '),
                1 => s.push('a'),
                2 => s.push('7'),
                _ => {}
            }
        }
        inputs.push(s);
    }
    inputs
}

/// A model file loaded whole on 2 threads in `numerics`.
pub fn load(path: &std::path::Path, numerics: Numerics) -> Arc<Model> {
    let opts = LoadOptions {
        n_threads: Some(2),
        layers: None,
        numerics,
    };
    Arc::new(Model::load(path, &opts).unwrap())
}

/// A tiny random-weight llama model with weights of type `ty` (256 wide
/// for the K-quants, whose rows are whole 256-value blocks).
pub fn tiny_model(ty: GgmlType, threads: usize, numerics: Numerics) -> Arc<Model> {
    let mut spec = SynthSpec::tiny(ty);
    if ty.block_size() > spec.n_embd {
        spec.n_embd = 256;
        spec.n_ff = 512;
    }
    let w = synth_model(&spec, None).unwrap();
    let file = Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap());
    let opts = LoadOptions {
        n_threads: Some(threads),
        layers: None,
        numerics,
    };
    Arc::new(Model::from_file(file, &opts).unwrap())
}

/// Run test `test` of this test binary again, in a child process with
/// `child_var` set (the test's signal to do the child's part), the kernel
/// switches `STRATA_ISA` and `STRATA_FORCE_SCALAR` cleared and then `vars`
/// set (the level is read once per process, so each level needs a process
/// of its own). Returns the child's stdout; fails if the child failed.
#[allow(dead_code)]
pub fn rerun_test(test: &str, child_var: &str, vars: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(&exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(child_var, "1")
        .env_remove("STRATA_ISA")
        .env_remove("STRATA_FORCE_SCALAR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{vars:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
