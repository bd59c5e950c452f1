//! Scratch: greedy decode, per-step logit diff Strata vs llama.cpp.
//! Usage: `cargo run --release --features llama-cpp --example NAME -- MODEL.gguf`
//! (`P=prompt`, `REPACK=1` for llama.cpp's repacked weights).
#[cfg(feature = "llama-cpp")]
fn main() {
    use std::sync::Arc;
    use strata::reference::{RefOptions, Reference};
    use strata::*;
    let path = std::env::args().nth(1).unwrap();
    let repack = std::env::var("REPACK").is_ok();
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
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
    let p = std::env::var("P").unwrap_or("The capital of France is".into());
    let ids = model.tokenizer().encode(&p, true, true).unwrap();
    let (toks, logits, _) = r.greedy(&ids, n).unwrap();
    let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(512) }).unwrap();
    let mut l = s.feed(&ids).unwrap();
    for (i, (&t, rl)) in toks.iter().zip(&logits).enumerate() {
        let d = l
            .iter()
            .zip(rl)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let ours = strata::sampler::argmax(&l);
        println!("step {i}: maxdiff {d:.6} ours {ours} theirs {t}");
        l = s.feed(&[t]).unwrap();
    }
}

#[cfg(not(feature = "llama-cpp"))]
fn main() {
    eprintln!("this tool compares with llama.cpp: run it with --features llama-cpp");
}
