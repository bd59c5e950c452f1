//! `strata bench --parallel 1,2,4,8,16`: throughput and latency against the
//! number of streams served at once.
//!
//! For each N in the list, N requests are submitted together, each with a
//! distinct `-p`-token prompt (the benchmark text after `Note i: `), and
//! each generates `-n` greedy tokens with end-of-generation tokens ignored.
//! Strata serves them through its scheduler with N slots; llama.cpp
//! (`--vs llama.cpp`) decodes them in one context with N sequences, every
//! prompt in one batch, then one batch of N tokens a step. At N = 1 the
//! same prompt also runs through the path `strata generate` takes
//! (`Session::generate_from_tokens`), the single-stream baseline.
//!
//! Measured per run, from the moment the requests are submitted:
//! - aggregate decode tokens/s: the tokens each stream generated after its
//!   first, summed over the streams, divided by the time from the earliest
//!   first token to the last token of all;
//! - time to first token: the median over the streams;
//! - wall: until the last stream's last token.
//!
//! As in the single-stream bench, each engine is a worker process of its
//! own, the repetitions are interleaved (for every N the engine that goes
//! first rotates), and the table gives medians and ranges.

use std::collections::HashSet;

use super::{compare_with_llama, median, prefixed_prompt, range, Worker, SETTLE};
use crate::args::Args;
use crate::bench_worker::{ids, ParTimed};
use strata::Model;

/// Most streams one run may have (llama.cpp's `LLAMA_MAX_SEQ`).
const MAX_STREAMS: usize = 256;

/// What a row runs on its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every prompt at once (`par`).
    Parallel,
    /// One prompt through the generation path (`gen`).
    Generate,
}

/// One row of the table: an engine at one number of streams.
struct Row {
    worker: usize,
    label: String,
    mode: Mode,
    streams: usize,
    samples: Vec<ParTimed>,
}

/// The figures of one run.
struct Metrics {
    /// Aggregate decode tokens/s.
    tg: f64,
    /// Median time to first token, ms.
    ttft_ms: f64,
    /// Seconds until the last token.
    wall: f64,
}

fn metrics(t: &ParTimed) -> Metrics {
    let start = t
        .streams
        .iter()
        .map(|s| s.first)
        .fold(f64::INFINITY, f64::min);
    let end = t.streams.iter().map(|s| s.last).fold(0.0, f64::max);
    let after_first: usize = t
        .streams
        .iter()
        .map(|s| s.tokens.len().saturating_sub(1))
        .sum();
    let tg = if end > start {
        after_first as f64 / (end - start)
    } else {
        0.0
    };
    Metrics {
        tg,
        ttft_ms: median(t.streams.iter().map(|s| s.first * 1e3).collect()),
        wall: t.wall,
    }
}

impl Row {
    fn tg(&self) -> Vec<f64> {
        self.samples.iter().map(|s| metrics(s).tg).collect()
    }
    fn ttft(&self) -> Vec<f64> {
        self.samples.iter().map(|s| metrics(s).ttft_ms).collect()
    }
    fn wall(&self) -> Vec<f64> {
        self.samples.iter().map(|s| metrics(s).wall).collect()
    }
}

/// `1,2,4,8,16` → the stream counts, in order, without repeats.
fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for w in s.split(',') {
        let w = w.trim();
        let n: usize = w
            .parse()
            .map_err(|_| format!("--parallel {s}: {w:?} is not a number of streams"))?;
        if n == 0 || n > MAX_STREAMS {
            return Err(format!(
                "--parallel {s}: each count must be 1 to {MAX_STREAMS}"
            ));
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Distinct prompts of exactly `p` tokens, one per stream.
fn stream_prompts(model: &Model, p: usize, count: usize) -> Result<Vec<Vec<u32>>, String> {
    let prompts = (0..count)
        .map(|i| prefixed_prompt(model, &format!("Note {i}: "), p))
        .collect::<Result<Vec<_>, _>>()?;
    let distinct: HashSet<&Vec<u32>> = prompts.iter().collect();
    if distinct.len() != prompts.len() {
        return Err(format!(
            "-p {p} is too short for {count} distinct prompts (each starts `Note i: `)"
        ));
    }
    Ok(prompts)
}

fn request(mode: Mode, n: usize, prompts: &[Vec<u32>]) -> String {
    let body: Vec<String> = prompts.iter().map(|p| ids(p)).collect();
    let verb = match mode {
        Mode::Parallel => "par",
        Mode::Generate => "gen",
    };
    format!("{verb} {n} {}", body.join(" | "))
}

fn timed(w: &mut Worker, mode: Mode, n: usize, prompts: &[Vec<u32>]) -> Result<ParTimed, String> {
    let reply = w.request(&request(mode, n, prompts))?;
    serde_json::from_str(&reply)
        .ok()
        .and_then(|j| ParTimed::from_json(&j))
        .filter(|t| t.streams.len() == prompts.len())
        .ok_or_else(|| format!("the {} worker answered {reply:?}", w.name))
}

pub fn run(a: &Args) -> Result<(), String> {
    let list = parse_list(a.str("parallel").unwrap_or_default())?;
    let p: usize = a.get("n-prompt")?.unwrap_or(16);
    let n: usize = a.get("n-predict")?.unwrap_or(128);
    let reps: usize = a.get("repetitions")?.unwrap_or(5).max(1);
    let threads: usize = a
        .get("threads")?
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if p == 0 {
        return Err("-p must be at least 1".into());
    }
    if n < 2 {
        return Err("--parallel needs -n 2 or more (a decode phase after the first token)".into());
    }
    if threads == 0 {
        return Err("-t must be at least 1".into());
    }
    let vs = compare_with_llama(&a)?;
    let numerics: &[(&str, &str)] = match a.str("numerics") {
        None | Some("llama.cpp") => &[("strata", "llama.cpp")],
        Some("batch-invariant") => &[("strata (batch-invariant)", "batch-invariant")],
        Some("both") => &[
            ("strata", "llama.cpp"),
            ("strata (batch-invariant)", "batch-invariant"),
        ],
        Some(other) => {
            return Err(format!(
                "--numerics {other}: use llama.cpp, batch-invariant or both"
            ))
        }
    };
    let path = crate::model_path(a)?;
    let most = list.iter().copied().max().unwrap_or(1);
    // The parent only tokenizes: one thread, and the weights stay unread.
    let prompts = {
        let model = Model::load(
            &path,
            &strata::LoadOptions {
                n_threads: Some(1),
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
        stream_prompts(&model, p, most)?
    };
    let n_ctx = p + n + 1;
    let mut workers = Vec::new();
    for (label, mode) in numerics {
        workers.push(Worker::start(
            label,
            "strata",
            &["--numerics", mode],
            &path,
            threads,
            n_ctx,
        )?);
    }
    let strata_workers = workers.len();
    if vs {
        workers.push(Worker::start(
            "llama.cpp",
            "llama.cpp",
            &[],
            &path,
            threads,
            n_ctx,
        )?);
    }
    let mut rows = Vec::new();
    for &streams in &list {
        if streams == 1 {
            rows.push(Row {
                worker: 0,
                label: "strata generate".into(),
                mode: Mode::Generate,
                streams,
                samples: Vec::new(),
            });
        }
        for (k, w) in workers.iter().enumerate() {
            rows.push(Row {
                worker: k,
                label: w.name.clone(),
                mode: Mode::Parallel,
                streams,
                samples: Vec::new(),
            });
        }
    }
    // One unmeasured run each at the largest count (pages in the weights,
    // sizes the buffers), and one of the generation path.
    for w in &mut workers {
        timed(w, Mode::Parallel, n.min(8), &prompts)?;
    }
    timed(&mut workers[0], Mode::Generate, n.min(8), &prompts[..1])?;
    for i in 0..reps {
        for &streams in &list {
            let of_n: Vec<usize> = (0..rows.len())
                .filter(|&r| rows[r].streams == streams)
                .collect();
            for k in 0..of_n.len() {
                // Rotate which row goes first.
                let row = &mut rows[of_n[(k + i) % of_n.len()]];
                std::thread::sleep(SETTLE);
                let t = timed(
                    &mut workers[row.worker],
                    row.mode,
                    n,
                    &prompts[..row.streams],
                )?;
                row.samples.push(t);
            }
        }
        eprintln!("repetition {}/{reps} done", i + 1);
    }
    for w in &mut workers {
        w.memory = w.memory()?;
    }
    let checks = Checks::of(&rows, strata_workers, vs, n);
    let model_name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    if a.flag("json") {
        print_json(
            &model_name,
            threads,
            p,
            n,
            reps,
            &list,
            &rows,
            &workers,
            &checks,
        );
    } else {
        print_table(
            &model_name,
            threads,
            p,
            n,
            reps,
            &list,
            &rows,
            &workers,
            &checks,
        );
    }
    Ok(())
}

/// What the tokens say: agreement between engines and across batch sizes.
struct Checks {
    /// Per N: streams whose tokens equal llama.cpp's, and the earliest
    /// first difference among the others (first sample).
    vs_llama: Vec<(usize, usize, Option<usize>)>,
    /// Per Strata worker: whether every stream's tokens were the same at
    /// every N and in every repetition, else the first (N, stream) that
    /// differed from the stream's first run.
    across_n: Vec<(String, Option<(usize, usize)>)>,
    /// The generation path stopped at end-of-generation before `-n` tokens.
    generate_short: Option<usize>,
    /// The generation path's tokens equal the scheduler's single stream's.
    generate_same: Option<bool>,
}

impl Checks {
    fn of(rows: &[Row], strata_workers: usize, vs: bool, n: usize) -> Checks {
        let first = |r: &Row| r.samples.first().map(|s| s.streams.clone());
        let mut vs_llama = Vec::new();
        if vs {
            for r in rows
                .iter()
                .filter(|r| r.worker == 0 && r.mode == Mode::Parallel)
            {
                let l = rows
                    .iter()
                    .find(|l| l.worker == strata_workers && l.streams == r.streams);
                if let (Some(a), Some(b)) = (first(r), l.and_then(first)) {
                    let mut same = 0;
                    let mut earliest: Option<usize> = None;
                    for (x, y) in a.iter().zip(&b) {
                        match super::divergence(&x.tokens, &y.tokens) {
                            None => same += 1,
                            Some(d) => earliest = Some(earliest.map_or(d, |e| e.min(d))),
                        }
                    }
                    vs_llama.push((r.streams, same, earliest));
                }
            }
        }
        let mut across_n = Vec::new();
        for k in 0..strata_workers {
            let mut seen: Vec<Option<Vec<u32>>> = Vec::new();
            let mut bad = None;
            for r in rows
                .iter()
                .filter(|r| r.worker == k && r.mode == Mode::Parallel)
            {
                for s in &r.samples {
                    for (i, st) in s.streams.iter().enumerate() {
                        if seen.len() <= i {
                            seen.resize(i + 1, None);
                        }
                        match &seen[i] {
                            None => seen[i] = Some(st.tokens.clone()),
                            Some(t) if *t != st.tokens && bad.is_none() => {
                                bad = Some((r.streams, i))
                            }
                            _ => {}
                        }
                    }
                }
            }
            let label = rows
                .iter()
                .find(|r| r.worker == k && r.mode == Mode::Parallel)
                .map(|r| r.label.clone())
                .unwrap_or_default();
            across_n.push((label, bad));
        }
        let generate = rows.iter().find(|r| r.mode == Mode::Generate);
        let single = rows
            .iter()
            .find(|r| r.worker == 0 && r.mode == Mode::Parallel && r.streams == 1);
        let gen_tokens = generate.and_then(first).and_then(|s| s.into_iter().next());
        let generate_short = gen_tokens
            .as_ref()
            .map(|s| s.tokens.len())
            .filter(|&l| l < n);
        let generate_same = match (gen_tokens, single.and_then(first)) {
            (Some(g), Some(s)) => s.first().map(|s| s.tokens == g.tokens),
            _ => None,
        };
        Checks {
            vs_llama,
            across_n,
            generate_short,
            generate_same,
        }
    }
}

fn find(rows: &[Row], worker: usize, mode: Mode, streams: usize) -> Option<&Row> {
    rows.iter()
        .find(|r| r.worker == worker && r.mode == mode && r.streams == streams)
}

#[allow(clippy::too_many_arguments)]
fn print_table(
    model_name: &str,
    threads: usize,
    p: usize,
    n: usize,
    reps: usize,
    list: &[usize],
    rows: &[Row],
    workers: &[Worker],
    checks: &Checks,
) {
    println!(
        "model: {model_name}, threads: {threads}, N streams submitted at once, each a distinct \
         {p}-token prompt and {n} greedy tokens; median (and range) of {reps} interleaved \
         repetitions, one process per engine"
    );
    println!(
        "tg: tokens after each stream's first / (last token - earliest first token); \
         TTFT: median over the streams, from submission; wall: submission to the last token"
    );
    println!(
        "| streams | engine                   | {:>24} | {:>22} | {:>20} |",
        "tg tok/s (aggregate)", "TTFT ms (median)", "wall s"
    );
    println!(
        "|--------:|--------------------------|-{}:|-{}:|-{}:|",
        "-".repeat(23),
        "-".repeat(21),
        "-".repeat(19)
    );
    for r in rows {
        let (tg, ttft, wall) = (r.tg(), r.ttft(), r.wall());
        println!(
            "| {:>7} | {:<24} | {:>24} | {:>22} | {:>20} |",
            r.streams,
            r.label,
            format!("{:.1} ({})", median(tg.clone()), range(&tg)),
            format!("{:.1} ({})", median(ttft.clone()), range(&ttft)),
            format!(
                "{:.2} ({:.2}–{:.2})",
                median(wall.clone()),
                wall.iter().copied().fold(f64::INFINITY, f64::min),
                wall.iter().copied().fold(0.0, f64::max)
            ),
        );
    }
    // Ratios of medians.
    let med = |r: Option<&Row>| r.map(|r| median(r.tg()));
    let llama = workers.iter().position(|w| w.name == "llama.cpp");
    let bi = workers
        .iter()
        .position(|w| w.name == "strata (batch-invariant)")
        .filter(|&k| k > 0);
    let base = med(find(rows, 0, Mode::Parallel, 1));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    println!();
    println!(
        "| streams | {} / its 1 stream | {} / llama.cpp | llama.cpp / its 1 stream | batch-invariant / llama.cpp numerics |",
        workers[0].name, workers[0].name
    );
    println!("|--------:|---:|---:|---:|---:|");
    let llama_base = llama.and_then(|k| med(find(rows, k, Mode::Parallel, 1)));
    for &s in list {
        let st = med(find(rows, 0, Mode::Parallel, s));
        let l = llama.and_then(|k| med(find(rows, k, Mode::Parallel, s)));
        let b = bi.and_then(|k| med(find(rows, k, Mode::Parallel, s)));
        println!(
            "| {s:>7} | {} | {} | {} | {} |",
            ratio(st, base),
            ratio(st, l),
            ratio(l, llama_base),
            ratio(b, st)
        );
    }
    if let Some(g) = med(find(rows, 0, Mode::Generate, 1)) {
        println!(
            "single stream: scheduler / generate path = {}",
            ratio(base, Some(g))
        );
    }
    let mib = |k: u64| k as f64 / 1024.0;
    for w in workers {
        println!(
            "{}: peak resident memory {:.1} MiB (now {:.1} MiB)",
            w.name,
            mib(w.memory.0),
            mib(w.memory.1)
        );
    }
    for (s, same, earliest) in &checks.vs_llama {
        match earliest {
            None => println!("greedy tokens at {s} streams: all {s} identical to llama.cpp's"),
            Some(d) => println!(
                "greedy tokens at {s} streams: {same} of {s} identical to llama.cpp's, \
                 the others from token {d} on"
            ),
        }
    }
    for (label, bad) in &checks.across_n {
        match bad {
            None => println!("{label}: every stream's tokens identical at every N and repetition"),
            Some((s, i)) => {
                println!("{label}: stream {i}'s tokens at {s} streams differ from its first run")
            }
        }
    }
    match checks.generate_same {
        Some(true) => println!("generate path: the same tokens as the scheduler's single stream"),
        Some(false) => println!("generate path: tokens differ from the scheduler's single stream"),
        None => {}
    }
    if let Some(l) = checks.generate_short {
        println!("generate path: stopped at end-of-generation after {l} of {n} tokens");
    }
}

#[allow(clippy::too_many_arguments)]
fn print_json(
    model_name: &str,
    threads: usize,
    p: usize,
    n: usize,
    reps: usize,
    list: &[usize],
    rows: &[Row],
    workers: &[Worker],
    checks: &Checks,
) {
    let rows_j: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "engine": r.label,
                "streams": r.streams,
                "path": match r.mode { Mode::Parallel => "parallel", Mode::Generate => "generate" },
                "tg_tokens_per_second": median(r.tg()),
                "ttft_ms": median(r.ttft()),
                "wall_seconds": median(r.wall()),
                "samples": {"tg": r.tg(), "ttft_ms": r.ttft(), "wall_seconds": r.wall()},
                "stream0_tokens": r.samples.first().and_then(|s| s.streams.first()).map(|s| s.tokens.clone()),
            })
        })
        .collect();
    let mut mem = serde_json::Map::new();
    for w in workers {
        mem.insert(
            w.name.clone(),
            serde_json::json!({"peak_rss_kib": w.memory.0, "rss_kib": w.memory.1}),
        );
    }
    let j = serde_json::json!({
        "model": model_name, "threads": threads, "n_prompt": p, "n_gen": n,
        "repetitions": reps, "parallel": list, "separate_processes": true,
        "rows": rows_j,
        "memory": mem,
        "vs_llama_cpp": checks.vs_llama.iter().map(|(s, same, d)| serde_json::json!({
            "streams": s, "identical_streams": same, "first_difference": d,
        })).collect::<Vec<_>>(),
        "tokens_across_n": checks.across_n.iter().map(|(l, bad)| serde_json::json!({
            "engine": l, "identical": bad.is_none(),
            "first_mismatch": bad.map(|(s, i)| serde_json::json!({"streams": s, "stream": i})),
        })).collect::<Vec<_>>(),
        "generate_same_as_scheduler": checks.generate_same,
        "generate_stopped_after": checks.generate_short,
    });
    println!("{j}");
}

#[cfg(test)]
mod tests {
    use super::{metrics, parse_list};
    use crate::bench_worker::{ParTimed, Stream};

    #[test]
    fn stream_counts_parse_and_refuse() {
        assert_eq!(parse_list("1,2,4,8,16"), Ok(vec![1, 2, 4, 8, 16]));
        assert_eq!(parse_list("4, 4,1"), Ok(vec![4, 1]));
        assert!(parse_list("0").is_err());
        assert!(parse_list("1,,2").is_err());
        assert!(parse_list("257").is_err());
        assert!(parse_list("x").is_err());
    }

    #[test]
    fn aggregate_counts_tokens_after_each_first() {
        let s = |first: f64, last: f64, k: usize| Stream {
            first,
            last,
            tokens: vec![7; k],
        };
        // Two streams, first tokens at 0.1 s and 0.2 s, last at 1.1 s:
        // (10 - 1) + (5 - 1) tokens in 1.0 s.
        let t = ParTimed {
            wall: 1.2,
            streams: vec![s(0.1, 1.1, 10), s(0.2, 0.9, 5)],
        };
        let m = metrics(&t);
        assert!((m.tg - 13.0).abs() < 1e-9, "{}", m.tg);
        assert!((m.ttft_ms - 150.0).abs() < 1e-9, "{}", m.ttft_ms);
        assert_eq!(m.wall, 1.2);
    }
}
