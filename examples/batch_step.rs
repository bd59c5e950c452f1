//! Time one batched decode step of N sequences through
//! `Model::forward_batch`, with no scheduler or sampling: N caches after a
//! 64-token prompt each, then STEPS steps of one token per cache per call
//! (batch-invariant numerics, 2 threads). Isolates the forward pass's
//! scaling with the batch from the scheduler's.
//!
//! `cargo run --release --example batch_step -- MODEL.gguf [N,N,..] [STEPS]`

use std::sync::Arc;
use std::time::Instant;

use strata::{BatchItem, Input, LoadOptions, Logits, Model, Numerics};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: batch_step MODEL.gguf [N,N,..] [STEPS]")?;
    let ns: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "1,2,4,8,16".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let steps: usize = args.next().map_or(Ok(32), |s| s.parse())?;
    let opts = LoadOptions {
        n_threads: Some(2),
        numerics: Numerics::BatchInvariant,
        ..Default::default()
    };
    let model = Arc::new(Model::load(&path, &opts)?);
    let prompt: Vec<u32> = (0..64).map(|i| 100 + i * 7).collect();
    for n in ns {
        let mut caches: Vec<_> = (0..n).map(|_| model.new_cache(64 + steps + 1)).collect();
        for c in caches.iter_mut() {
            model.forward(c, Input::Tokens(&prompt), 0, Logits::Last)?;
        }
        let t0 = Instant::now();
        for step in 0..steps {
            let tokens: Vec<[u32; 1]> = (0..n).map(|i| [(200 + i + step) as u32]).collect();
            let mut items: Vec<BatchItem> = caches
                .iter_mut()
                .zip(&tokens)
                .map(|(cache, t)| {
                    let pos = cache.len();
                    BatchItem {
                        cache,
                        input: Input::Tokens(t),
                        pos,
                        logits: Logits::Last,
                    }
                })
                .collect();
            model.forward_batch(&mut items)?;
        }
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "N={n:2}: {:.2} ms a step, {:.1} tokens/s in all",
            dt * 1e3 / steps as f64,
            (n * steps) as f64 / dt
        );
    }
    Ok(())
}
