//! `strata::perplexity` against llama.cpp: on both real models, over a text
//! of at least 20,000 tokens made of the repository's own documentation
//! (its first 8 chunks of 512 tokens scored), Strata's perplexity equals the one computed by the same procedure from
//! llama.cpp's logits (through `llama-cpp-2`, one fresh context per chunk,
//! as llama-perplexity clears its cache) to 4 significant digits. Also: a
//! model's KL-divergence against its own saved base is ~0, and malformed
//! base files are typed errors.
#![cfg(feature = "llama-cpp")]

mod common;

use std::path::Path;
use std::sync::Arc;

use strata::perplexity::{
    chunks, perplexity, score_chunk, KlBase, KlBaseWriter, KlMode, NllSums, PerplexityOptions,
};
use strata::reference::{RefOptions, Reference};
use strata::{Error, Model, Numerics};

/// The repository's documentation, concatenated (README, benchmarks, the
/// format documents, the bindings' READMEs).
fn documentation() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for dir in [
        "docs",
        "bindings/c",
        "bindings/python",
        "bindings/go",
        "bindings/cpp",
    ] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            let mut md: Vec<_> = rd
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "md"))
                .collect();
            md.sort();
            files.extend(md);
        }
    }
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn load(path: &Path) -> Arc<Model> {
    common::load(path, Numerics::LlamaCpp)
}

/// llama-perplexity's figure from llama.cpp's own tokens and logits.
fn llama_cpp_ppl(
    path: &Path,
    text: &str,
    opts: &PerplexityOptions,
    bos: Option<u32>,
) -> (NllSums, Vec<u32>) {
    common::llama_cpp_reference_path();
    let r = Reference::load(
        path,
        RefOptions {
            n_threads: 2,
            n_ctx: opts.n_ctx as u32,
            flash_attention: false,
            repack_weights: false,
        },
    )
    .unwrap();
    let tokens = r.tokenize(text, true, false);
    let mut sums = NllSums::default();
    for chunk in chunks(&tokens, opts, bos).unwrap() {
        let logits = r.logits_all(&chunk).unwrap();
        score_chunk(&chunk, |j| &logits[j], &mut sums);
    }
    (sums, tokens)
}

#[test]
fn perplexity_equals_llama_cpp_on_both_models() {
    let text = documentation();
    // The first 8 chunks of 512 (2,040 scored tokens per model): the whole
    // text takes minutes per engine on a busy 2-core machine.
    let opts = PerplexityOptions {
        max_chunks: Some(8),
        ..PerplexityOptions::default()
    };
    for path in [common::smollm2(), common::gemma3()] {
        let model = load(&path);
        let mut running = Vec::new();
        let t = std::time::Instant::now();
        let ours = perplexity(&model, &text, &opts, KlMode::None, |c| running.push(c.ppl)).unwrap();
        let ours_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        // BOS replaces each chunk's first token where the model adds one
        // (Gemma 3 does, SmolLM2 does not), as in llama-perplexity.
        let tok = model.tokenizer();
        let bos = tok.add_bos().then(|| tok.bos().unwrap());
        let (theirs, tokens) = llama_cpp_ppl(&path, &text, &opts, bos);
        assert_eq!(
            tok.encode(&text, true, false).unwrap(),
            tokens,
            "tokenizations differ"
        );
        let theirs_s = t.elapsed().as_secs_f64();
        assert!(
            ours.text_tokens >= 20_000,
            "{}: only {} tokens",
            path.display(),
            ours.text_tokens
        );
        assert_eq!(ours.text_tokens, tokens.len());
        assert_eq!(ours.sums.count, theirs.count);
        assert_eq!(ours.chunks, 8);
        assert_eq!(running.len(), ours.chunks);
        assert_eq!(*running.last().unwrap(), ours.sums.ppl());
        let (a, b) = (ours.sums.ppl(), theirs.ppl());
        eprintln!(
            "{}: {} tokens, {} chunks, {} scored: Strata PPL {a:.6} +/- {:.5} ({ours_s:.0} s), llama.cpp {b:.6} +/- {:.5} ({theirs_s:.0} s)",
            path.display(),
            ours.text_tokens,
            ours.chunks,
            ours.sums.count,
            ours.sums.ppl_error().unwrap(),
            theirs.ppl_error().unwrap()
        );
        assert!(a.is_finite() && a > 1.0);
        assert!(
            ((a - b) / b).abs() < 1e-4,
            "{}: Strata {a} vs llama.cpp {b}: not equal to 4 significant digits",
            path.display()
        );
    }
}

#[test]
fn kl_divergence_against_a_saved_base() {
    let text = documentation();
    let path = common::smollm2();
    let model = load(&path);
    let opts = PerplexityOptions {
        max_chunks: Some(2),
        ..PerplexityOptions::default()
    };
    let dir = std::env::temp_dir().join(format!("strata-kl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("base.kl");
    let mut w = KlBaseWriter::create(&base).unwrap();
    let saved = perplexity(&model, &text, &opts, KlMode::Save(&mut w), |_| {}).unwrap();
    drop(w);
    let mut b = KlBase::open(&base).unwrap();
    assert_eq!((b.n_chunk(), b.n_ctx()), (2, 512));
    let r = perplexity(&model, &text, &opts, KlMode::Compare(&mut b), |_| {}).unwrap();
    let k = r.kld.unwrap();
    assert_eq!(k.count, 2 * 255);
    eprintln!(
        "self KLD {:.3e}, same top {:.3}, base PPL {:.4} vs {:.4}",
        k.mean(),
        k.same_top_share(),
        k.base.ppl(),
        saved.sums.ppl()
    );
    // Only the 16-bit quantization of the base separates the two.
    assert!(k.mean().abs() < 1e-4, "{}", k.mean());
    assert!(k.same_top_share() > 0.99);
    // The base's own figure is a little lower: a token more than 16 below
    // the top log-probability is kept at the bottom of the window (as in
    // llama.cpp's format), which caps its negative log-likelihood.
    let rel = (k.base.ppl() - saved.sums.ppl()) / saved.sums.ppl();
    assert!((-0.02..=1e-4).contains(&rel), "{rel}");

    // Another model's distributions are far from the base: here the same
    // text scored by Gemma's tokenizer is refused (another vocabulary).
    let gemma = load(&common::gemma3());
    let mut b = KlBase::open(&base).unwrap();
    let e = perplexity(&gemma, &text, &opts, KlMode::Compare(&mut b), |_| {}).unwrap_err();
    assert!(matches!(e, Error::KlBaseMalformed { .. }), "{e}");

    // Malformed files: typed errors, never panics.
    let bytes = std::fs::read(&base).unwrap();
    for (name, content) in [
        ("empty", Vec::new()),
        ("short", bytes[..10].to_vec()),
        ("truncated", bytes[..bytes.len() - 1].to_vec()),
        ("magic", [b"XXXXXXXX", &bytes[8..64]].concat()),
        ("long", [&bytes[..], &[0u8][..]].concat()),
    ] {
        let f = dir.join(name);
        std::fs::write(&f, content).unwrap();
        match KlBase::open(&f) {
            Err(Error::KlBaseMalformed { .. }) => {}
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name}: accepted"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
