//! Scratch: per-position max |logit diff| Strata vs llama.cpp (no repack).
//! Usage: `cargo run --release --features llama-cpp --example NAME -- MODEL.gguf`
//! (`P=prompt`, `REPACK=1` for llama.cpp's repacked weights).
#[cfg(feature = "llama-cpp")]
fn main() {
    use std::sync::Arc;
    use strata::reference::{RefOptions, Reference};
    use strata::*;
    let path = std::env::args().nth(1).unwrap();
    let repack = std::env::var("REPACK").is_ok();
    let model = Arc::new(
        Model::load(
            &path,
            &LoadOptions {
                n_threads: Some(2),
                layers: None,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let r = Reference::load(
        &path,
        RefOptions {
            repack_weights: repack,
            ..Default::default()
        },
    )
    .unwrap();
    let p = std::env::var("P").unwrap_or(
        "Strata runs quantized language models on every node of a network. Each node loads".into(),
    );
    let ids = model.tokenizer().encode(&p, true, true).unwrap();
    assert_eq!(ids, r.tokenize(&p, true, true));
    let nv = model.config().n_vocab;
    let theirs = r.logits_all(&ids).unwrap();
    let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(512) }).unwrap();
    let ours = s.feed_all(&ids).unwrap();
    let mut worst = 0f32;
    for (i, t) in theirs.iter().enumerate() {
        let o = &ours[i * nv..(i + 1) * nv];
        let d = o
            .iter()
            .zip(t)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        worst = worst.max(d);
        println!(
            "pos {i}: maxdiff {d:.6} argmax {} {}",
            strata::sampler::argmax(o),
            strata::sampler::argmax(t)
        );
    }
    println!("{} tokens: batch max {worst:.6}", ids.len());
}

#[cfg(not(feature = "llama-cpp"))]
fn main() {
    eprintln!("this tool compares with llama.cpp: run it with --features llama-cpp");
}
