//! Tokenizer parity with llama.cpp (feature `llama-cpp`): SmolLM2's
//! tokenizer read by Strata and by llama.cpp must give identical ids for
//! every line of `tests/data/tokenizer_corpus.txt`, with and without special
//! parsing and added BOS/EOS, identical bytes for every token, and the same
//! special ids and end-of-generation set.
//!
//! The corpus (made by `scripts/gen-tokenizer-corpus.py`) escapes `\n`, `\t`,
//! `\r`, `\\` and `\u{XXXX}`; the test undoes that.
#![cfg(feature = "llama-cpp")]

mod common;

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::LogOptions;
use strata::gguf::{GgufFile, GgufWriter, Value};
use strata::tokenizer::Tokenizer;

struct Fixture {
    ours: Tokenizer,
    theirs: LlamaModel,
    lines: Vec<String>,
}

/// llama.cpp's backend may be initialised once per process.
fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(LogOptions::default().with_logs_enabled(false));
        LlamaBackend::init().expect("llama.cpp backend init")
    })
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let path = common::smollm2();
        let params = LlamaModelParams::default().with_vocab_only(true);
        let theirs = LlamaModel::load_from_file(backend(), &path, &params)
            .expect("llama.cpp loads SmolLM2's vocabulary");
        let file = GgufFile::open(&path).expect("open SmolLM2");
        let ours = Tokenizer::from_gguf(&file).expect("Strata builds SmolLM2's tokenizer");
        let lines = common::tokenizer_corpus();
        assert!(lines.len() >= 1000, "corpus has only {} lines", lines.len());
        Fixture {
            ours,
            theirs,
            lines,
        }
    })
}

fn llama_tokenize(
    model: &LlamaModel,
    text: &str,
    add_special: bool,
    parse_special: bool,
) -> Vec<u32> {
    model
        .vocab()
        .tokenize(text.as_bytes(), add_special, parse_special)
        .into_iter()
        .map(|t| t.0 as u32)
        .collect()
}

fn show(tok: &Tokenizer, ids: &[u32]) -> String {
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| {
            format!(
                "{id}:{:?}",
                String::from_utf8_lossy(tok.token_bytes(id, true))
            )
        })
        .collect();
    pieces.join(" ")
}

#[test]
fn corpus_ids_match_llama_cpp_in_every_mode() {
    let f = fixture();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (n, line) in f.lines.iter().enumerate() {
        for (add_special, parse_special) in
            [(false, false), (false, true), (true, false), (true, true)]
        {
            let ours = f
                .ours
                .encode(line, add_special, parse_special)
                .expect("encode");
            let theirs = llama_tokenize(&f.theirs, line, add_special, parse_special);
            checked += 1;
            if ours != theirs {
                failures.push(format!(
                    "line {} {:?} (add_special={add_special}, parse_special={parse_special})\n  strata:    {}\n  llama.cpp: {}",
                    n + 1,
                    line,
                    show(&f.ours, &ours),
                    show(&f.ours, &theirs)
                ));
            }
        }
    }
    eprintln!(
        "{} of {checked} (line, mode) encodings match llama.cpp ({} lines x 4 modes)",
        checked - failures.len(),
        f.lines.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn whole_corpus_as_one_text_matches_llama_cpp() {
    let f = fixture();
    let text = f.lines.join("\n");
    for parse_special in [false, true] {
        let ours = f.ours.encode(&text, true, parse_special).expect("encode");
        let theirs = llama_tokenize(&f.theirs, &text, true, parse_special);
        assert_eq!(ours.len(), theirs.len(), "parse_special={parse_special}");
        assert!(ours == theirs, "parse_special={parse_special}: ids differ");
    }
}

#[test]
fn every_token_piece_matches_token_to_piece() {
    let f = fixture();
    let vocab = f.theirs.vocab();
    assert_eq!(f.ours.n_vocab(), vocab.n_tokens() as usize);
    let mut failures = Vec::new();
    for id in 0..f.ours.n_vocab() as u32 {
        for special in [false, true] {
            let theirs = vocab.token_to_piece(LlamaToken::new(id as i32), special, None);
            let ours = f.ours.token_bytes(id, special);
            if ours != theirs.as_slice() {
                failures.push(format!(
                    "token {id} special={special}: {ours:?} vs {theirs:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
}

#[test]
fn decode_round_trips_the_corpus() {
    let f = fixture();
    for line in &f.lines {
        // Special text read as plain text comes back as itself.
        let plain = f.ours.encode(line, false, false).expect("encode");
        assert_eq!(&f.ours.decode(&plain, false), line);
        // Parsed special tokens come back when rendered.
        let parsed = f.ours.encode(line, false, true).expect("encode");
        assert_eq!(&f.ours.decode(&parsed, true), line);
        // Token by token, the stream decoder gives the same text.
        let mut stream = f.ours.stream_decoder();
        let mut text = String::new();
        for &id in &plain {
            text.push_str(&stream.push(id));
        }
        text.push_str(&stream.finish());
        assert_eq!(&text, line);
    }
}

#[test]
fn special_ids_and_end_of_generation_match() {
    let f = fixture();
    let vocab = f.theirs.vocab();
    let id = |t: LlamaToken| u32::try_from(t.0).ok();
    assert_eq!(f.ours.bos(), id(vocab.bos()));
    assert_eq!(f.ours.eos(), id(vocab.eos()));
    assert_eq!(f.ours.eot(), id(vocab.eot()));
    assert_eq!(f.ours.add_bos(), vocab.should_add_bos());
    assert_eq!(f.ours.add_eos(), vocab.should_add_eos());
    let theirs: Vec<u32> = (0..f.ours.n_vocab() as u32)
        .filter(|&i| vocab.is_eog(LlamaToken::new(i as i32)))
        .collect();
    assert_eq!(f.ours.eog_ids(), theirs);
    assert_eq!(f.ours.model_name(), "gpt2");
    assert_eq!(f.ours.pre_name(), "smollm");
    for i in 0..f.ours.n_vocab() as u32 {
        let attr = vocab.attr(LlamaToken::new(i as i32));
        assert_eq!(
            u32::from(f.ours.token_attr(i).bits()),
            attr.bits(),
            "attributes of token {i}"
        );
    }
}

/// Inputs the corpus file cannot hold: the empty string, very long runs,
/// control characters, and code points sampled from every plane (so the
/// character classes agree with llama.cpp's tables).
fn edge_inputs() -> Vec<String> {
    let mut inputs: Vec<String> = vec![
        String::new(),
        "a".repeat(5000),
        " ".repeat(3000) + "x",
        "\n".repeat(1000),
        "1".repeat(1000),
        "\t \n".repeat(500),
        "<|im_start|>".repeat(200),
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
            // Vary the neighbours: a space, a letter, a digit.
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

/// The edge inputs under SmolLM2's own tokenizer.
#[test]
fn edge_inputs_match_llama_cpp() {
    let f = fixture();
    let inputs = edge_inputs();
    let mut failures = Vec::new();
    for text in &inputs {
        for parse_special in [false, true] {
            let ours = f.ours.encode(text, true, parse_special).expect("encode");
            let theirs = llama_tokenize(&f.theirs, text, true, parse_special);
            if ours != theirs {
                failures.push(format!(
                    "{:?}...",
                    text.chars().take(40).collect::<String>()
                ));
            }
        }
    }
    eprintln!("{} edge inputs x 2 modes checked", inputs.len());
    assert!(
        failures.is_empty(),
        "{} mismatches: {}",
        failures.len(),
        failures.join(", ")
    );
}

/// The other pre-tokenizers, checked on SmolLM2's vocabulary: a copy of its
/// metadata (no tensors) with `tokenizer.ggml.pre` changed and
/// `add_bos_token` removed, so each name's own defaults apply, loaded by
/// both sides and run on the corpus and the edge inputs.
#[test]
fn other_pre_tokenizers_match_llama_cpp() {
    let f = fixture();
    let source = GgufFile::open(common::smollm2()).expect("open SmolLM2");
    let dir = std::env::temp_dir().join(format!("strata-tokenizer-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let names = [
        "gpt-2",
        "llama-bpe",
        "dbrx",
        "qwen2",
        "qwen35",
        "default",
        "falcon",
        "bloom",
        "viking",
        "starcoder",
        "laguna",
        "chatglm-bpe",
    ];
    let edges = edge_inputs();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for name in names {
        let mut w = GgufWriter::new();
        for (k, v) in source.metadata() {
            w.set(k.clone(), v.clone());
        }
        w.set("tokenizer.ggml.pre", Value::String(name.to_string()));
        w.remove("tokenizer.ggml.add_bos_token");
        let path = dir.join(format!("{name}.gguf"));
        w.write_file(&path).expect("write vocab-only GGUF");
        let params = LlamaModelParams::default().with_vocab_only(true);
        let theirs = LlamaModel::load_from_file(backend(), &path, &params)
            .expect("llama.cpp loads the copy");
        let ours = Tokenizer::from_gguf(&GgufFile::open(&path).expect("open copy"))
            .expect("Strata loads the copy");
        assert_eq!(ours.pre_name(), name);
        assert_eq!(
            ours.add_bos(),
            theirs.vocab().should_add_bos(),
            "{name}: add_bos"
        );
        let mut matched = 0;
        for line in f.lines.iter().chain(&edges) {
            for parse_special in [false, true] {
                let a = ours.encode(line, true, parse_special).expect("encode");
                let b = llama_tokenize(&theirs, line, true, parse_special);
                if a == b {
                    matched += 1;
                } else if failures.len() < 15 {
                    failures.push(format!(
                        "{name}: {line:?} (parse_special={parse_special})\n  strata:    {}\n  llama.cpp: {}",
                        show(&ours, &a),
                        show(&ours, &b)
                    ));
                }
            }
        }
        report.push(format!(
            "{name}: {matched}/{}",
            2 * (f.lines.len() + edges.len())
        ));
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(&dir);
    eprintln!("pre-tokenizers vs llama.cpp: {}", report.join(", "));
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

#[test]
fn unescape_handles_the_corpus_escapes() {
    assert_eq!(
        common::unescape_corpus_line(r"a\nb\tc\rd\\e"),
        "a\nb\tc\rd\\e"
    );
    assert_eq!(
        common::unescape_corpus_line(r"x\u{00A0}y\u{1F600}"),
        "x\u{A0}y😀"
    );
    assert_eq!(
        common::unescape_corpus_line(r"\.rs \u{zz} \q"),
        r"\.rs \u{zz} \q"
    );
}
