//! Parity with llama.cpp (feature `llama-cpp`): the same GGUF file through
//! Strata and through llama.cpp must give the same greedy tokens and logits
//! within a stated tolerance.
//!
//! llama.cpp runs with its non-fused attention path, whose arithmetic
//! (f16 KV cache, f16-rounded query and probabilities) Strata follows.
#![cfg(feature = "llama-cpp")]

mod common;

use std::sync::Arc;

use strata::gguf::GgufFile;
use strata::quant::GgmlType;
use strata::reference::{RefOptions, Reference};
use strata::synth::{synth_model, SynthSpec};
use strata::{GenerateParams, LoadOptions, Model, Session, SessionOptions};

/// Largest |Strata − llama.cpp| accepted for any logit of SmolLM2-135M.
/// Differences come from float summation order inside dot products and
/// from ulp-level differences in exp/silu; observed values are printed.
const LOGIT_TOLERANCE: f32 = 0.05;

fn load(path: &std::path::Path) -> Arc<Model> {
    Arc::new(
        Model::load(
            path,
            &LoadOptions {
                n_threads: Some(2),
                layers: None,
            },
        )
        .unwrap(),
    )
}

fn greedy(model: &Arc<Model>, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut s = Session::new(Arc::clone(model), &SessionOptions { n_ctx: Some(512) }).unwrap();
    let params = GenerateParams {
        max_tokens: n,
        sampler: strata::sampler::SamplerParams::greedy(),
        ..Default::default()
    };
    let mut stream = s.generate_from_tokens(prompt, &params).unwrap();
    for ev in stream.by_ref() {
        ev.unwrap();
    }
    stream.finish().tokens
}

#[test]
fn greedy_tokens_match_llama_cpp_on_twenty_prompts() {
    let path = common::smollm2();
    let model = load(&path);
    let reference = Reference::load(&path, RefOptions::default()).unwrap();
    let mut failures = Vec::new();
    for prompt in common::PROMPTS {
        let ids = model.tokenizer().encode(prompt, true, true).unwrap();
        assert_eq!(
            ids,
            reference.tokenize(prompt, true, true),
            "tokenization of {prompt:?}"
        );
        let ours = greedy(&model, &ids, 64);
        let (theirs, logits, _) = reference.greedy(&ids, 64).unwrap();
        if ours != theirs {
            let i = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
            let l = &logits[i.min(logits.len() - 1)];
            let mut sorted = l.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            failures.push(format!(
                "{prompt:?}: first difference at generated token {i} (llama.cpp's top-2 logit gap there: {})",
                sorted[0] - sorted[1]
            ));
        }
        eprintln!(
            "{prompt:?}: {} tokens, identical: {}",
            ours.len(),
            ours == theirs
        );
    }
    assert!(
        failures.is_empty(),
        "greedy divergence:\n{}",
        failures.join("\n")
    );
}

#[test]
fn logits_match_llama_cpp_within_tolerance() {
    let path = common::smollm2();
    let model = load(&path);
    let reference = Reference::load(&path, RefOptions::default()).unwrap();
    let text = "Strata runs quantized language models on every node of a network. \
                Each node loads a contiguous range of layers and passes hidden states \
                to the next one, so that a model too large for one machine can still be served. \
                def add(a, b):\n    return a + b\n";
    let ids = model.tokenizer().encode(text, true, true).unwrap();
    let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(512) }).unwrap();
    let ours = s.feed_all(&ids).unwrap();
    let theirs = reference.logits_all(&ids).unwrap();
    let nv = model.config().n_vocab;
    let mut worst = 0f32;
    let mut argmax_equal = 0;
    for (i, t) in theirs.iter().enumerate() {
        let o = &ours[i * nv..(i + 1) * nv];
        worst = worst.max(common::max_abs_diff(o, t));
        argmax_equal += (strata::sampler::argmax(o) == strata::sampler::argmax(t)) as usize;
    }
    eprintln!(
        "SmolLM2-135M Q4_1, {} positions: max |logit difference| = {worst:.5}, argmax equal at {argmax_equal}",
        ids.len()
    );
    assert!(
        worst <= LOGIT_TOLERANCE,
        "max abs logit difference {worst} > {LOGIT_TOLERANCE}"
    );
    assert_eq!(argmax_equal, ids.len());
}

/// Synthetic llama models of several weight types (tokenizer copied from
/// SmolLM2) agree with llama.cpp too: this covers types the real model
/// does not use.
#[test]
fn synthetic_models_match_llama_cpp() {
    let src = GgufFile::open(common::smollm2()).unwrap();
    let dir = std::env::temp_dir().join(format!("strata-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let mut spec = SynthSpec::tiny(ty);
        spec.n_embd = 256;
        spec.n_ff = 512;
        spec.n_head = 4;
        spec.n_head_kv = 2;
        spec.n_layer = 3;
        spec.separate_output = true;
        let path = dir.join(format!("synth-{ty}.gguf"));
        synth_model(&spec, Some(&src))
            .unwrap()
            .write_file(&path)
            .unwrap();
        let model = load(&path);
        let reference = Reference::load(&path, RefOptions::default()).unwrap();
        let ids = model
            .tokenizer()
            .encode("Synthetic weights, real tokenizer: 1 2 3.", true, true)
            .unwrap();
        let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(128) }).unwrap();
        let ours = s.feed_all(&ids).unwrap();
        let theirs: Vec<f32> = reference.logits_all(&ids).unwrap().concat();
        let scale = theirs.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = common::max_abs_diff(&ours, &theirs);
        eprintln!("synthetic {ty}: max |diff| = {worst:.6} (largest logit {scale:.3})");
        assert!(worst <= 1e-2 * scale.max(1.0), "{ty}: {worst}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
