//! Gemma 3 270M in Strata alone (no llama.cpp needed): the hyperparameters
//! read from its metadata, and shard execution: two shards (ranges of the
//! full file, then shard files written by `split`, cut inside a group of
//! sliding-window layers) give the same greedy tokens and bit-identical
//! logits as the whole model.

mod common;

use std::ops::Range;
use std::sync::Arc;

use strata::model::config::AttnScale;
use strata::model::{Input, Logits, Output};
use strata::ops::rope::RopeLayout;
use strata::{LoadOptions, Model, Session, SessionOptions};

fn load(path: &std::path::Path, layers: Option<Range<usize>>) -> Model {
    Model::load(
        path,
        &LoadOptions {
            n_threads: Some(2),
            layers,
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn gemma_hyperparameters_follow_llama_cpp() {
    let m = load(&common::gemma3(), Some(0..1));
    let c = m.config();
    assert_eq!(c.arch, "gemma3");
    assert_eq!((c.n_layer, c.n_embd, c.n_ff), (18, 640, 2048));
    assert_eq!(
        (c.n_head, c.n_head_kv, c.head_dim_k, c.head_dim_v),
        (4, 1, 256, 256)
    );
    assert_eq!(c.n_vocab, 262_144);
    assert_eq!(c.rms_eps, 1e-6);
    assert_eq!(c.rope.layout, RopeLayout::Neox);
    assert_eq!(c.rope.freq_base, 1_000_000.0);
    assert_eq!(c.embd_scale, Some(640f32.sqrt()));
    assert_eq!(c.attn_scale, AttnScale::Queries(1.0 / 16.0));
    assert_eq!(c.final_logit_softcap, None);
    let swa = c.swa.as_ref().expect("sliding-window layers");
    assert_eq!(swa.window, 512);
    assert_eq!(swa.rope.freq_base, 10_000.0);
    let global: Vec<usize> = (0..18).filter(|&i| !swa.layers[i]).collect();
    assert_eq!(global, vec![5, 11, 17]);
    assert_eq!(c.layer_attention(4).window, Some(512));
    assert_eq!(c.layer_attention(5).window, None);
    assert_eq!(c.layer_attention(5).rope.freq_base, 1_000_000.0);
    assert!(c.block.qk_norm && c.block.post_norms);
}

fn whole_greedy(model: &Arc<Model>, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let mut s = Session::new(Arc::clone(model), &SessionOptions { n_ctx: Some(256) }).unwrap();
    let mut logits = s.feed(prompt).unwrap();
    let mut tokens = Vec::new();
    loop {
        let t = strata::sampler::argmax(&logits);
        tokens.push(t);
        if tokens.len() == n {
            return (tokens, logits);
        }
        logits = s.feed(&[t]).unwrap();
    }
}

/// Greedy generation through a chain of shards passing hidden states.
fn chain_greedy(shards: &[Model], prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let mut caches: Vec<_> = shards.iter().map(|m| m.new_cache(256)).collect();
    let mut input: Vec<u32> = prompt.to_vec();
    let mut pos = 0;
    let mut tokens = Vec::new();
    loop {
        let mut hidden = Vec::new();
        let mut logits = Vec::new();
        for (i, (m, cache)) in shards.iter().zip(&mut caches).enumerate() {
            let x = if i == 0 {
                Input::Tokens(&input)
            } else {
                Input::Hidden(&hidden)
            };
            match m.forward(cache, x, pos, Logits::Last).unwrap() {
                Output::Hidden(h) => hidden = h,
                Output::Logits(l) => logits = l,
            }
        }
        pos += input.len();
        let t = strata::sampler::argmax(&logits);
        tokens.push(t);
        if tokens.len() == n {
            return (tokens, logits);
        }
        input = vec![t];
    }
}

#[test]
fn gemma_two_shards_match_the_whole_model() {
    let path = common::gemma3();
    let whole = Arc::new(load(&path, None));
    let prompt = whole
        .tokenizer()
        .encode("The history of the printing press begins", true, true)
        .unwrap();
    let (want_tokens, want_logits) = whole_greedy(&whole, &prompt, 24);
    let bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<_>>();

    // Cut after layer 7: layer 5 (global) in the first shard, a group of
    // sliding layers split across both.
    let k = 7;
    let shards = [load(&path, Some(0..k)), load(&path, Some(k..18))];
    assert!(shards[0].takes_tokens() && !shards[0].gives_logits());
    assert!(!shards[1].takes_tokens() && shards[1].gives_logits());
    let (tokens, logits) = chain_greedy(&shards, &prompt, 24);
    assert_eq!(tokens, want_tokens);
    assert_eq!(bits(&logits), bits(&want_logits), "final logits differ");

    let dir = std::env::temp_dir().join(format!("strata-gemma-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = strata::gguf::GgufFile::open(&path).unwrap();
    let files = strata::shard::split(&file, &[0..k, k..18], &dir, "gemma3").unwrap();
    let from_files: Vec<Model> = files.iter().map(|f| load(f, None)).collect();
    let (tokens, logits) = chain_greedy(&from_files, &prompt, 24);
    assert_eq!(tokens, want_tokens);
    assert_eq!(
        bits(&logits),
        bits(&want_logits),
        "final logits differ (shard files)"
    );
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "Gemma 3, shards 0..{k} + {k}..18: {} greedy tokens identical to the whole model",
        tokens.len()
    );
}
