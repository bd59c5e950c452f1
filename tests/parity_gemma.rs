//! Gemma 3 270M (Q4_K_M) through Strata and through llama.cpp (feature
//! `llama-cpp`): identical tokenization, identical greedy tokens on twenty
//! prompts, logits bit-identical to llama.cpp's reference path.
//!
//! llama.cpp has, besides its reference dot products, two K-quant kernels
//! that sum in another order: with AVX2 it repacks Q4_K matrices into
//! interleaved rows (`use_extra_bufts`), and it multiplies batches of eight
//! or more tokens by K-quant matrices with a tiled GEMM
//! (`GGML_CPU_TILED_MM`). Strata follows the reference dot products (which
//! are what llama.cpp runs on a single token without repacking), so the
//! bit-level comparisons here run llama.cpp with both off: repacking
//! through [`RefOptions::repack_weights`], the tiled GEMM through its
//! environment switch, set once for this test process before llama.cpp
//! runs; flash attention is off (`RefOptions::default`), as llama.cpp's
//! flash-attention kernel rounds inside attention to f16. The logits must
//! then be bit-identical. One test compares against llama.cpp's default
//! (repacked) kernels within a looser, stated bound.
#![cfg(feature = "llama-cpp")]

mod common;

use std::sync::Arc;

use strata::reference::{RefOptions, Reference};
use strata::{GenerateParams, Model, Numerics, Session, SessionOptions};

/// Against llama.cpp's default kernels (repacked Q4_K), whose summation
/// order differs: observed about 1.2 on this text.
const DEFAULT_KERNELS_TOLERANCE: f32 = 3.0;

/// llama.cpp with its reference K-quant kernels (see the module docs).
fn reference(path: &std::path::Path, repack_weights: bool) -> Reference {
    // Every test calls this before llama.cpp computes anything, and the
    // variable is read by ggml once, at its first K-quant batch product.
    common::llama_cpp_reference_path();
    Reference::load(
        path,
        RefOptions {
            repack_weights,
            ..RefOptions::default()
        },
    )
    .unwrap()
}

fn load(path: &std::path::Path) -> Arc<Model> {
    common::load(path, Numerics::LlamaCpp)
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
fn gemma_greedy_tokens_match_llama_cpp_on_twenty_prompts() {
    let path = common::gemma3();
    let model = load(&path);
    let reference = reference(&path, false);
    let prompts = common::gemma_prompts();
    assert!(prompts.len() >= 20);
    let mut failures = Vec::new();
    let mut identical = 0;
    for prompt in &prompts {
        let ids = model.tokenizer().encode(prompt, true, true).unwrap();
        assert_eq!(
            ids,
            reference.tokenize(prompt, true, true),
            "tokenization of {prompt:?}"
        );
        let ours = greedy(&model, &ids, 64);
        let (theirs, logits, _) = reference.greedy(&ids, 64).unwrap();
        if ours == theirs {
            identical += 1;
        } else {
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
            "{prompt:?}: {} tokens, identical: {} ({:?})",
            ours.len(),
            ours == theirs,
            model.tokenizer().decode(&ours, false)
        );
    }
    eprintln!(
        "Gemma 3 greedy: {identical}/{} prompts identical",
        prompts.len()
    );
    assert!(
        failures.is_empty(),
        "greedy divergence:\n{}",
        failures.join("\n")
    );
}

/// Logits at every position of a 100-token text (one batch, so the batched
/// paths run) and of single-token decode steps after it.
#[test]
fn gemma_logits_bit_identical_to_llama_cpp() {
    let path = common::gemma3();
    let model = load(&path);
    let reference = reference(&path, false);
    let text = "<start_of_turn>user\nStrata runs quantized language models on every node of a network. \
                Each node loads a contiguous range of layers and passes hidden states \
                to the next one, so that a model too large for one machine can still be served.<end_of_turn>\n\
                <start_of_turn>model\ndef add(a, b):\n    return a + b\n";
    let ids = model.tokenizer().encode(text, true, true).unwrap();
    let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(512) }).unwrap();
    let ours = s.feed_all(&ids).unwrap();
    let theirs = reference.logits_all(&ids).unwrap();
    let nv = model.config().n_vocab;
    let mut worst = 0f32;
    let mut differing = 0;
    for (i, t) in theirs.iter().enumerate() {
        let o = &ours[i * nv..(i + 1) * nv];
        worst = worst.max(common::max_abs_diff(o, t));
        differing += common::bit_differences(o, t);
    }
    // Decode steps: greedy from the text, logits of each step.
    let (tokens, step_logits, _) = reference.greedy(&ids, 16).unwrap();
    let mut logits = ours[(ids.len() - 1) * nv..].to_vec();
    let mut worst_step = 0f32;
    let mut differing_steps = 0;
    for (&t, l) in tokens.iter().zip(&step_logits) {
        worst_step = worst_step.max(common::max_abs_diff(&logits, l));
        differing_steps += common::bit_differences(&logits, l);
        logits = s.feed(&[t]).unwrap();
    }
    eprintln!(
        "Gemma 3 270M Q4_K_M, {} positions: max |logit difference| = {worst:e} (batch), \
         {worst_step:e} ({} decode steps); logits differing in their bits: {differing} / {differing_steps}",
        ids.len(),
        tokens.len()
    );
    assert_eq!(
        (differing, differing_steps),
        (0, 0),
        "logits not bit-identical (max abs difference {worst} / {worst_step})"
    );
}

/// Against llama.cpp's default kernels (Q4_K repacked): the same argmax at
/// nearly every position and logits within a looser bound.
#[test]
fn gemma_logits_near_llama_cpp_default_kernels() {
    let path = common::gemma3();
    let model = load(&path);
    let reference = reference(&path, true);
    let text = "The quick brown fox jumps over the lazy dog. Photosynthesis is the process \
                by which green plants turn light into chemical energy; in 1969, Neil Armstrong \
                walked on the Moon.";
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
        "Gemma 3 vs llama.cpp default kernels, {} positions: max |logit difference| = {worst:.4}, argmax equal at {argmax_equal}",
        ids.len()
    );
    assert!(worst <= DEFAULT_KERNELS_TOLERANCE, "{worst}");
    assert!(
        argmax_equal * 10 >= ids.len() * 9,
        "{argmax_equal}/{}",
        ids.len()
    );
}

/// A prompt longer than the 512-position sliding window: the local layers
/// stop attending to the first positions while the global ones do not.
/// (llama.cpp evaluates it in two micro-batches of at most 512 tokens,
/// Strata in one; the per-token arithmetic is the same.)
#[test]
fn gemma_beyond_the_sliding_window_matches_llama_cpp() {
    let path = common::gemma3();
    let model = load(&path);
    let reference = reference(&path, false);
    let lines = common::tokenizer_corpus();
    let mut text = String::new();
    let mut ids = Vec::new();
    for line in lines.iter().filter(|l| l.is_ascii()) {
        text.push_str(line);
        text.push('\n');
        ids = model.tokenizer().encode(&text, true, false).unwrap();
        if ids.len() >= 600 {
            break;
        }
    }
    assert!(ids.len() >= 600 && ids.len() < 700, "{}", ids.len());
    let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(768) }).unwrap();
    let mut logits = s.feed(&ids).unwrap();
    let (tokens, step_logits, _) = reference.greedy(&ids, 8).unwrap();
    let mut worst = 0f32;
    let mut differing = 0;
    let mut ours = Vec::new();
    for (&t, l) in tokens.iter().zip(&step_logits) {
        worst = worst.max(common::max_abs_diff(&logits, l));
        differing += common::bit_differences(&logits, l);
        ours.push(strata::sampler::argmax(&logits));
        logits = s.feed(&[t]).unwrap();
    }
    eprintln!(
        "Gemma 3, {}-token prompt: max |logit difference| over {} steps = {worst:.6}",
        ids.len(),
        tokens.len()
    );
    assert_eq!(ours, tokens);
    assert_eq!(
        differing, 0,
        "logits not bit-identical (max abs difference {worst})"
    );
}
