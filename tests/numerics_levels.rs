//! What the README promises about numerics, at model level on the real
//! models: thread count never changes a bit, in either numerics mode, and
//! every kernel level this machine has gives the same bits as the scalar
//! reference.
//!
//! The kernel level is read once per process (`STRATA_FORCE_SCALAR`,
//! `STRATA_ISA`), so [`every_kernel_level_gives_the_same_bits`] runs this
//! test binary again, once per level, and compares what each run prints.

mod common;

use std::path::Path;
use std::sync::Arc;

use strata::kernels::{row_dot, Isa};
use strata::quant::GgmlType;
use strata::{LoadOptions, Model, Numerics, Session, SessionOptions};

/// Set in a child run: print the run's fingerprint instead of comparing.
const CHILD: &str = "STRATA_TEST_LEVEL_CHILD";

const PROMPT: &str = "The three primary colors are red, yellow and blue; mixing two of them";

fn load(path: &Path, threads: usize, numerics: Numerics) -> Arc<Model> {
    Arc::new(
        Model::load(
            path,
            &LoadOptions {
                n_threads: Some(threads),
                layers: None,
                numerics,
            },
        )
        .unwrap(),
    )
}

/// The logits of the prompt in one batch (tile kernels, batched attention),
/// then of `steps` greedy single-token steps (row kernels), and the tokens.
fn run(model: &Arc<Model>, steps: usize) -> (Vec<f32>, Vec<u32>) {
    let ids = model.tokenizer().encode(PROMPT, true, false).unwrap();
    let mut s = Session::new(Arc::clone(model), &SessionOptions { n_ctx: Some(256) }).unwrap();
    let mut all = s.feed_all(&ids).unwrap();
    let nv = model.config().n_vocab;
    let mut logits = all[all.len() - nv..].to_vec();
    let mut tokens = Vec::new();
    for _ in 0..steps {
        let t = strata::sampler::argmax(&logits);
        tokens.push(t);
        logits = s.feed(&[t]).unwrap();
        all.extend_from_slice(&logits);
    }
    (all, tokens)
}

fn models() -> [(&'static str, std::path::PathBuf); 2] {
    [
        ("SmolLM2", common::smollm2()),
        ("Gemma 3", common::gemma3()),
    ]
}

fn modes() -> [Numerics; 2] {
    [Numerics::LlamaCpp, Numerics::BatchInvariant]
}

#[test]
fn kernel_levels_of_this_machine() {
    let levels: Vec<&str> = Isa::ALL
        .iter()
        .filter(|i| i.is_available())
        .map(|i| i.name())
        .collect();
    eprintln!("kernel levels on this machine: {}", levels.join(", "));
    assert!(Isa::Scalar.is_available());
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512bw") {
        assert!(Isa::Avx512Vnni.is_available());
    }
}

#[test]
fn thread_count_does_not_change_bits_in_either_mode() {
    for (name, path) in models() {
        for numerics in modes() {
            let (want, want_tokens) = run(&load(&path, 1, numerics), 8);
            for threads in [2, 3] {
                let (got, tokens) = run(&load(&path, threads, numerics), 8);
                assert_eq!(tokens, want_tokens, "{name} {numerics:?} {threads} threads");
                assert_eq!(
                    common::bit_differences(&got, &want),
                    0,
                    "{name} {numerics:?}: {threads} threads differ from 1"
                );
            }
            eprintln!("{name} {numerics:?}: 1, 2 and 3 threads bit-identical");
        }
    }
}

/// One line per (model, mode): the greedy tokens and a digest of every
/// logit's bits.
fn fingerprint() -> String {
    let mut out = String::new();
    for (name, path) in models() {
        for numerics in modes() {
            let (logits, tokens) = run(&load(&path, 2, numerics), 8);
            let bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
            out.push_str(&format!(
                "{name} {numerics:?}: tokens {tokens:?} logits {}\n",
                blake3::hash(&bytes).to_hex()
            ));
        }
    }
    out
}

#[test]
fn every_kernel_level_gives_the_same_bits() {
    if std::env::var_os(CHILD).is_some() {
        let top = row_dot(GgmlType::Q4_K).unwrap().isa;
        // A new line first: the test harness prints the test's name
        // without one.
        println!("\nLEVEL {}", top.name());
        for line in fingerprint().lines() {
            println!("FINGERPRINT {line}");
        }
        return;
    }
    let child = |vars: &[(&str, &str)]| -> (String, String) {
        let stdout = common::rerun_test("every_kernel_level_gives_the_same_bits", CHILD, vars);
        let level = stdout
            .lines()
            .find_map(|l| l.strip_prefix("LEVEL "))
            .unwrap_or_else(|| panic!("{vars:?}: no LEVEL line in {stdout}"))
            .to_string();
        let prints: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("FINGERPRINT "))
            .collect();
        assert_eq!(prints.len(), 4, "{vars:?}: {stdout}");
        (level, prints.join("\n"))
    };
    let (_, scalar) = child(&[("STRATA_FORCE_SCALAR", "1")]);
    eprintln!("scalar reference:\n{scalar}");
    let mut checked = vec!["STRATA_FORCE_SCALAR=1".to_string()];
    for isa in Isa::ALL.iter().filter(|i| i.is_available()) {
        let (level, got) = child(&[("STRATA_ISA", isa.name())]);
        assert_eq!(level, isa.name(), "STRATA_ISA={} ran {level}", isa.name());
        assert_eq!(
            got,
            scalar,
            "STRATA_ISA={} differs from the scalar reference",
            isa.name()
        );
        checked.push(format!("STRATA_ISA={}", isa.name()));
    }
    let (_, default) = child(&[]);
    assert_eq!(
        default, scalar,
        "the default level differs from the scalar reference"
    );
    eprintln!(
        "identical tokens and logits under: {}, default",
        checked.join(", ")
    );
}
