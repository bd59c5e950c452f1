//! Time one forward pass of k tokens of one sequence after a 64-token
//! prompt, with logits for the last token only and for every token: the
//! cost of a speculative decoding step that checks k − 1 drafted tokens,
//! against k single-token steps (batch-invariant numerics, 2 threads).
//!
//! `cargo run --release --example verify_step -- MODEL.gguf [K,K,..] [REPS]`

use std::sync::Arc;
use std::time::Instant;

use strata::{Input, LoadOptions, Logits, Model, Numerics};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: verify_step MODEL.gguf [K,K,..] [REPS]")?;
    let ks: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "1,2,3,4,5,8,9,16".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let reps: usize = args.next().map_or(Ok(10), |s| s.parse())?;
    let opts = LoadOptions {
        n_threads: Some(2),
        numerics: Numerics::BatchInvariant,
        ..Default::default()
    };
    let model = Arc::new(Model::load(&path, &opts)?);
    let prompt: Vec<u32> = (0..64).map(|i| 100 + i * 7).collect();
    let mut cache = model.new_cache(64 + 64);
    model.forward(&mut cache, Input::Tokens(&prompt), 0, Logits::Last)?;
    let one = time(reps, || {
        model
            .forward(&mut cache, Input::Tokens(&[300]), 64, Logits::Last)
            .map(drop)
    })?;
    println!("single token: {:.2} ms", one * 1e3);
    for k in ks {
        let toks: Vec<u32> = (0..k as u32).map(|i| 300 + i).collect();
        let mut row = Vec::new();
        for which in [Logits::Last, Logits::All] {
            let t = time(reps, || {
                model
                    .forward(&mut cache, Input::Tokens(&toks), 64, which)
                    .map(drop)
            })?;
            row.push(t);
        }
        println!(
            "k={k:2}: last {:.2} ms, all {:.2} ms ({:.2}x one token; {} single steps {:.2} ms)",
            row[0] * 1e3,
            row[1] * 1e3,
            row[1] / one,
            k,
            one * k as f64 * 1e3
        );
    }
    Ok(())
}

/// Median seconds of `reps` runs of `f`.
fn time(
    reps: usize,
    mut f: impl FnMut() -> strata::Result<()>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut ts = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        f()?;
        ts.push(t0.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    Ok(ts[ts.len() / 2])
}
