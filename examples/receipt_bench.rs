//! Receipts' costs: generation with and without a receipt, and the
//! verification of that receipt, interleaved repetitions, batch-invariant
//! mode. `BENCHMARKS.md` records the results.
//!
//! cargo run --release --example receipt_bench -- MODEL.gguf THREADS N_GEN REPS

use std::sync::Arc;
use std::time::Instant;

use strata::receipt::{verify, VerifyOptions};
use strata::sampler::SamplerParams;
use strata::{GenerateParams, LoadOptions, Model, Numerics, Session, SessionOptions};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [path, threads, n_gen, reps] = &a[..] else {
        return Err("usage: receipt_bench MODEL THREADS N_GEN REPS".into());
    };
    let (threads, n_gen, reps): (usize, usize, usize) =
        (threads.parse()?, n_gen.parse()?, reps.parse()?);
    let model = Arc::new(Model::load(
        path,
        &LoadOptions {
            n_threads: Some(threads),
            layers: None,
            numerics: Numerics::BatchInvariant,
        },
    )?);
    let _ = model.digest();
    // A 64-token prompt of ordinary text ids; end of generation is avoided
    // by continuing with seeds until a run reaches N_GEN tokens.
    let text = "Once upon a time, in a small village by the sea, there lived an old fisherman who told long stories every evening. The children gathered around him to hear about storms, strange fish, distant islands and the lights that danced over the water on summer nights. One evening a girl asked him why he never sailed beyond the lighthouse, and he smiled, looked at the horizon, and began the longest story of all";
    let mut prompt = model.tokenizer().encode(text, true, false)?;
    prompt.truncate(64);
    assert_eq!(prompt.len(), 64, "the prompt text is too short");
    let mut seed = 1;
    let params = loop {
        let p = GenerateParams {
            max_tokens: n_gen,
            sampler: SamplerParams {
                seed,
                ..SamplerParams::default()
            },
            ..GenerateParams::default()
        };
        let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(1024) })?;
        let c = s
            .generate_from_tokens(&prompt, &p)?
            .collect::<Result<Vec<_>, _>>()?;
        if c.len() == n_gen {
            break p;
        }
        seed += 1;
    };
    let (mut plain, mut with, mut check) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(1024) })?;
        let t = Instant::now();
        let n = s.generate_from_tokens(&prompt, &params)?.count();
        plain.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(n, n_gen);

        let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(1024) })?;
        let t = Instant::now();
        let (_, r) = s.generate_tokens_with_receipt(&prompt, &params, |_| true)?;
        with.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.tokens.len(), n_gen);

        let t = Instant::now();
        let v = verify(&model, &r, &VerifyOptions::default())?;
        check.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(v.holds(), "{v:?}");
    }
    let (p, w, c) = (median(&mut plain), median(&mut with), median(&mut check));
    // What a receipt adds per token, apart from the noise of whole runs:
    // one digest of a row of logits.
    let row = vec![0.5f32; model.config().n_vocab];
    let t = Instant::now();
    for _ in 0..200 {
        std::hint::black_box(strata::receipt::logits_digest(std::hint::black_box(&row)));
    }
    let digest_ms = t.elapsed().as_secs_f64() * 1e3 / 200.0;
    let added = digest_ms * n_gen as f64;
    println!(
        "{path} threads {threads} prompt 64 gen {n_gen} seed {seed}: generate {p:.0} ms, with receipt {w:.0} ms ({:+.1}%), verify {c:.0} ms ({:.1}x faster than generating); ranges {:.0}-{:.0} / {:.0}-{:.0} / {:.0}-{:.0}",
        (w / p - 1.0) * 100.0,
        w / c,
        plain[0],
        plain[plain.len() - 1],
        with[0],
        with[with.len() - 1],
        check[0],
        check[check.len() - 1],
    );
    println!(
        "  one logits digest {digest_ms:.3} ms: {added:.1} ms for {n_gen} tokens, {:.2}% of the generation's median",
        added / p * 100.0
    );
    Ok(())
}
