//! `strata bench`: prompt-processing and generation speed, in the style of
//! llama-bench, optionally side by side with llama.cpp on the same file,
//! threads and prompt.
//!
//! pp: one forward over `-p` prompt tokens. tg: after that prompt, `-n`
//! decode steps of one token each (argmax fed back). Reported: the median
//! tokens/s over `-r` repetitions with the range, and every sample with
//! `--json`.
//!
//! Each engine runs in a worker process of its own (`bench_worker.rs`), so
//! that one engine's thread pool, allocator and warm caches never sit in
//! the other's process; the parent tokenizes the prompt once, sends both
//! workers the same ids, and interleaves their repetitions (alternating
//! which engine goes first, with a short pause between runs so that no
//! engine's spinning threads overlap the other's run). Both engines load
//! the model before the first measurement and run once unmeasured.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::args::Args;
use crate::bench_worker::{ids, Timed};
use strata::Model;

/// `strata bench --parallel`: several streams at once.
#[path = "bench_parallel.rs"]
mod parallel;

pub const NO_LLAMA: &str = "--vs llama.cpp needs a build with the llama-cpp feature: \
                            cargo build --release -p strata-cli --features llama-cpp";

/// Whether `--vs llama.cpp` asks for the side-by-side run (refused in a
/// build without llama.cpp).
pub fn compare_with_llama(a: &Args) -> Result<bool, String> {
    match a.str("vs") {
        None => Ok(false),
        Some("llama.cpp") if cfg!(feature = "llama-cpp") => Ok(true),
        Some("llama.cpp") => Err(NO_LLAMA.into()),
        Some(other) => Err(format!("--vs {other}: only llama.cpp is supported")),
    }
}

/// Pause between two measured runs.
pub(crate) const SETTLE: Duration = Duration::from_millis(150);

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The benchmark's text, repeated to make prompts.
const TEXT: &str =
    "Strata runs quantized language models on every node of a decentralized network; \
                    each node loads a range of layers and passes hidden states to the next. ";

/// A deterministic prompt of exactly `p` tokens: ordinary text, repeated.
fn prompt_tokens(model: &Model, p: usize) -> Result<Vec<u32>, String> {
    prefixed_prompt(model, "", p)
}

/// A deterministic prompt of exactly `p` tokens: BOS where the model wants
/// one, `prefix`, then the benchmark text repeated.
pub(crate) fn prefixed_prompt(model: &Model, prefix: &str, p: usize) -> Result<Vec<u32>, String> {
    let tok = model.tokenizer();
    let one = tok.encode(TEXT, false, false).map_err(|e| e.to_string())?;
    if one.is_empty() {
        return Err("the benchmark text tokenizes to nothing".into());
    }
    let mut ids: Vec<u32> = tok.bos().into_iter().collect();
    ids.extend(
        tok.encode(prefix, false, false)
            .map_err(|e| e.to_string())?,
    );
    while ids.len() < p {
        ids.extend_from_slice(&one);
    }
    ids.truncate(p);
    Ok(ids)
}

/// One engine's worker process.
pub(crate) struct Worker {
    pub(crate) name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    samples: Vec<Timed>,
    /// Peak and current resident memory after the runs, KiB.
    pub(crate) memory: (u64, u64),
}

impl Worker {
    /// Start `strata bench-worker --engine ENGINE` (with `extra` options),
    /// named `name` in messages and reports.
    pub(crate) fn start(
        name: &str,
        engine: &str,
        extra: &[&str],
        model: &Path,
        threads: usize,
        n_ctx: usize,
    ) -> Result<Worker, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding the strata binary: {e}"))?;
        let mut child = Command::new(exe)
            .arg("bench-worker")
            .args(["--engine", engine, "-t", &threads.to_string()])
            .args(extra)
            .args(["-c", &n_ctx.to_string(), "-m"])
            .arg(model)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the {name} worker: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("the {name} worker has no pipes"));
        };
        let mut w = Worker {
            name: name.to_string(),
            child,
            stdin,
            stdout: BufReader::new(stdout),
            samples: Vec::new(),
            memory: (0, 0),
        };
        let first = w.read_line()?;
        if first != "ready" {
            return Err(format!(
                "the {name} worker failed to load the model: {}",
                first.strip_prefix("err ").unwrap_or(&first)
            ));
        }
        Ok(w)
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err(format!("the {} worker exited unexpectedly", self.name)),
            Ok(_) => Ok(line.trim_end().to_string()),
            Err(e) => Err(format!("reading from the {} worker: {e}", self.name)),
        }
    }

    /// Send one request line; the reply after its `ok `.
    pub(crate) fn request(&mut self, line: &str) -> Result<String, String> {
        writeln!(self.stdin, "{line}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("writing to the {} worker: {e}", self.name))?;
        let reply = self.read_line()?;
        if let Some(rest) = reply.strip_prefix("ok ") {
            return Ok(rest.to_string());
        }
        Err(format!(
            "the {} worker: {}",
            self.name,
            reply.strip_prefix("err ").unwrap_or(&reply)
        ))
    }

    /// One prompt + `n` greedy steps, timed by the worker.
    fn run(&mut self, prompt: &[u32], n: usize) -> Result<Timed, String> {
        writeln!(self.stdin, "run {n} {}", ids(prompt))
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("writing to the {} worker: {e}", self.name))?;
        let line = self.read_line()?;
        let mut words = line.split_ascii_whitespace();
        let bad = || format!("the {} worker answered {line:?}", self.name);
        match words.next() {
            Some("ok") => {}
            Some("err") => {
                return Err(format!(
                    "the {} worker: {}",
                    self.name,
                    line.strip_prefix("err ").unwrap_or("")
                ))
            }
            _ => return Err(bad()),
        }
        let mut num = || words.next().and_then(|w| w.parse::<f64>().ok());
        let (Some(pp_seconds), Some(tg_seconds)) = (num(), num()) else {
            return Err(bad());
        };
        let tokens = line
            .split_ascii_whitespace()
            .skip(3)
            .map(|w| w.parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad())?;
        Ok(Timed {
            pp_seconds,
            tg_seconds,
            tokens,
        })
    }

    /// Ask for the worker's peak and current resident memory.
    pub(crate) fn memory(&mut self) -> Result<(u64, u64), String> {
        writeln!(self.stdin, "memory")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("writing to the {} worker: {e}", self.name))?;
        let line = self.read_line()?;
        let v: Vec<u64> = line
            .split_ascii_whitespace()
            .skip(1)
            .filter_map(|w| w.parse().ok())
            .collect();
        match (line.starts_with("memory "), v.as_slice()) {
            (true, &[peak, now]) => Ok((peak, now)),
            _ => Err(format!("the {} worker answered {line:?}", self.name)),
        }
    }

    fn pp(&self, p: usize) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| p as f64 / s.pp_seconds)
            .collect()
    }

    fn tg(&self, n: usize) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| n as f64 / s.tg_seconds)
            .collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing stdin ends the worker's loop; kill it if it lingers.
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where two greedy token streams first differ (`None`: identical).
fn divergence(a: &[u32], b: &[u32]) -> Option<usize> {
    let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    (i < a.len().max(b.len())).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::divergence;

    #[test]
    fn divergence_finds_the_first_difference() {
        assert_eq!(divergence(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(divergence(&[1, 2, 3], &[1, 5, 3]), Some(1));
        assert_eq!(divergence(&[1, 2], &[1, 2, 3]), Some(2));
        assert_eq!(divergence(&[], &[]), None);
    }
}

pub(crate) fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.1}–{hi:.1}")
}

pub fn run(raw: &[String]) -> Result<(), String> {
    let aliases = [
        ("-m", "--model"),
        ("-p", "--n-prompt"),
        ("-n", "--n-predict"),
        ("-t", "--threads"),
        ("-r", "--repetitions"),
    ];
    let a = Args::parse(raw, &["json"], &aliases)?;
    a.check_known(&[
        "model",
        "n-prompt",
        "n-predict",
        "threads",
        "repetitions",
        "vs",
        "json",
        "parallel",
        "numerics",
    ])?;
    if a.str("parallel").is_some() {
        return parallel::run(&a);
    }
    if a.str("numerics").is_some() {
        return Err("--numerics applies to --parallel runs".into());
    }
    let p: usize = a.get("n-prompt")?.unwrap_or(512);
    let n: usize = a.get("n-predict")?.unwrap_or(128);
    let reps: usize = a.get("repetitions")?.unwrap_or(5).max(1);
    let threads: usize = a
        .get("threads")?
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if p == 0 {
        return Err("-p must be at least 1".into());
    }
    if threads == 0 {
        return Err("-t must be at least 1".into());
    }
    let vs = compare_with_llama(&a)?;
    let path = crate::model_path(&a)?;
    // The parent only tokenizes: one thread, and the weights stay unread.
    let prompt = {
        let model = Model::load(
            &path,
            &strata::LoadOptions {
                n_threads: Some(1),
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
        prompt_tokens(&model, p)?
    };
    let n_ctx = p + n + 1;
    let mut workers = vec![Worker::start(
        "strata",
        "strata",
        &[],
        &path,
        threads,
        n_ctx,
    )?];
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
    // One unmeasured run each (pages in the weights, warms the pools).
    for w in &mut workers {
        w.run(&prompt, n.min(8))?;
    }
    for i in 0..reps {
        let count = workers.len();
        for k in 0..count {
            // Alternate which engine goes first.
            let w = &mut workers[(k + i) % count];
            std::thread::sleep(SETTLE);
            let t = w.run(&prompt, n)?;
            w.samples.push(t);
        }
        eprintln!("repetition {}/{reps} done", i + 1);
    }
    for w in &mut workers {
        w.memory = w.memory()?;
    }
    report(&a, &path, threads, p, n, reps, &workers)
}

#[allow(clippy::too_many_arguments)]
fn report(
    a: &Args,
    path: &Path,
    threads: usize,
    p: usize,
    n: usize,
    reps: usize,
    workers: &[Worker],
) -> Result<(), String> {
    let model_name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let same = if workers.len() == 2 {
        let (x, y) = (&workers[0].samples[0].tokens, &workers[1].samples[0].tokens);
        Some(divergence(x, y))
    } else {
        None
    };
    if a.flag("json") {
        let mut j = serde_json::json!({
            "model": model_name, "threads": threads, "n_prompt": p, "n_gen": n,
            "repetitions": reps, "separate_processes": true,
        });
        for w in workers {
            j[w.name.as_str()] = serde_json::json!({
                "pp_tokens_per_second": median(w.pp(p)),
                "tg_tokens_per_second": median(w.tg(n)),
                "samples": {"pp": w.pp(p), "tg": w.tg(n)},
                "peak_rss_kib": w.memory.0, "rss_kib": w.memory.1,
                "greedy_tokens": w.samples[0].tokens,
            });
        }
        if let Some(d) = same {
            j["greedy_tokens_identical"] = serde_json::json!(d.is_none());
            j["first_difference"] = serde_json::json!(d);
        }
        println!("{j}");
        return Ok(());
    }
    println!(
        "model: {model_name}, threads: {threads}, median (and range) of {reps} interleaved \
         repetitions, one process per engine"
    );
    let pp_h = format!("pp{p} tok/s");
    let tg_h = format!("tg{n} tok/s (after pp{p})");
    println!("| engine    | {pp_h:>22} | {tg_h:>30} |");
    println!("|-----------|-{}:|-{}:|", "-".repeat(21), "-".repeat(29));
    for w in workers {
        let (pp, tg) = (w.pp(p), w.tg(n));
        let pp = format!("{:.1} ({})", median(pp.clone()), range(&pp));
        let tg = format!("{:.1} ({})", median(tg.clone()), range(&tg));
        println!("| {:<9} | {pp:>22} | {tg:>30} |", w.name);
    }
    if workers.len() == 2 {
        let (s, l) = (&workers[0], &workers[1]);
        let rp = median(s.pp(p)) / median(l.pp(p));
        let rt = median(s.tg(n)) / median(l.tg(n));
        println!("| ratio     | {:>21.2}x | {:>29.2}x |", rp, rt);
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
    match same {
        Some(None) => println!("greedy tokens: identical ({n} of {n})"),
        Some(Some(i)) => println!("greedy tokens: identical for the first {i} of {n}"),
        None => {}
    }
    Ok(())
}
