//! Prompt-lookup speculative decoding against plain decoding, side by
//! side: the same prompt, sampler and token count, runs interleaved
//! (plain, lookup, plain, lookup, ...), batch-invariant numerics, medians
//! of the generation time (the prompt's evaluation excluded). Every lookup
//! run's tokens are checked against the plain run's.
//!
//! `cargo run --release --example lookup_bench -- MODEL.gguf PROMPT_FILE
//! [N_GEN] [REPS] [MAX_DRAFT] [THREADS]`

use std::sync::Arc;

use strata::sampler::SamplerParams;
use strata::{Draft, GenerateParams, LoadOptions, Model, Numerics, Session, SessionOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: lookup_bench MODEL.gguf PROMPT_FILE [N_GEN] [REPS] [MAX_DRAFT] [THREADS]";
    let (path, prompt_file) = match &args[..] {
        [m, p, ..] => (m, p),
        _ => return Err(usage.into()),
    };
    let arg = |i: usize, d: usize| args.get(i).map_or(Ok(d), |s| s.parse());
    let (n_gen, reps, max_draft, threads) = (arg(2, 128)?, arg(3, 5)?, arg(4, 8)?, arg(5, 2)?);
    let text = std::fs::read_to_string(prompt_file)?;
    let opts = LoadOptions {
        n_threads: Some(threads),
        numerics: Numerics::BatchInvariant,
        ..Default::default()
    };
    let model = Arc::new(Model::load(path, &opts)?);
    let prompt = model.tokenizer().encode(&text, true, true)?;
    let mut times = [Vec::new(), Vec::new()];
    let mut reference: Option<Vec<u32>> = None;
    let mut stats = Default::default();
    for _ in 0..reps {
        for (i, draft) in [Draft::None, Draft::lookup(max_draft)]
            .into_iter()
            .enumerate()
        {
            let params = GenerateParams {
                max_tokens: n_gen,
                sampler: SamplerParams::greedy(),
                draft,
                ..Default::default()
            };
            let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(4096) })?;
            let mut stream = s.generate_from_tokens(&prompt, &params)?;
            for ev in stream.by_ref() {
                ev?;
            }
            let c = stream.finish();
            match &reference {
                None => reference = Some(c.tokens.clone()),
                Some(r) if *r != c.tokens => return Err("lookup changed the tokens".into()),
                Some(_) => {}
            }
            if i == 1 {
                stats = c.timings.draft;
            }
            times[i].push((c.timings.generation_ms, c.tokens.len()));
        }
    }
    let median = |v: &mut Vec<(f64, usize)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let (plain, n) = median(&mut times[0]);
    let (lookup, _) = median(&mut times[1]);
    println!(
        "{} prompt tokens, {n} generated, {threads} threads, median of {reps}: plain {:.1} tok/s ({plain:.0} ms), \
         lookup {max_draft} {:.1} tok/s ({lookup:.0} ms): {:.2}x; {} drafted in {} passes, {} accepted ({:.0}%); \
         tokens identical",
        prompt.len(),
        n as f64 * 1e3 / plain,
        n as f64 * 1e3 / lookup,
        plain / lookup,
        stats.drafted,
        stats.passes,
        stats.accepted,
        100.0 * stats.acceptance()
    );
    Ok(())
}
