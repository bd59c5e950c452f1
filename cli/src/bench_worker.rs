//! The worker side of `strata bench`: one engine (Strata or llama.cpp) in
//! a process of its own, so that neither engine's threads, allocator or
//! caches share a process with the other's.
//!
//! `strata bench` starts `strata bench-worker --engine E -m MODEL -t T -c
//! CTX` and talks to it over its stdin and stdout, one line at a time:
//!
//! | direction | line |
//! |---|---|
//! | worker → parent | `ready` once the model is loaded, or `err MESSAGE` |
//! | parent → worker | `run N ID ID …`: the prompt ids, then `N` greedy steps |
//! | worker → parent | `ok PP_SECONDS TG_SECONDS TOKEN TOKEN …` or `err MESSAGE` |
//! | parent → worker | `memory` |
//! | worker → parent | `memory PEAK_RSS_KIB RSS_KIB` (from `/proc/self/status`; 0 where unknown) |
//!
//! | parent → worker | `par N IDS \| IDS \| …`: several prompts served at once, `N` tokens each |
//! | parent → worker | `gen N IDS`: one prompt through `Session::generate_from_tokens` (Strata only) |
//! | worker → parent | `ok {"wall":S,"streams":[{"first":S,"last":S,"tokens":[…]},…]}` or `err MESSAGE` |
//!
//! `run`: the prompt is evaluated as one batch (timed), then `N` decode
//! steps of one token each (timed), each feeding back the argmax of the
//! logits; the reply carries the `N` generated tokens so that the parent
//! can say whether both engines computed the same thing.
//!
//! `par`: every prompt is submitted at once and `N` greedy tokens are
//! generated for each, end-of-generation tokens ignored. Strata serves them
//! through its [`Scheduler`] with one slot per prompt (a fresh scheduler per
//! run, so that no prompt is found in a slot's cache); llama.cpp decodes
//! them in one context with a sequence per prompt, all prompts in one
//! batch, then one batch of one token per sequence each step. The reply
//! gives, per stream, the seconds from submission until its first and its
//! last token were known, and the whole run's seconds until the last
//! request ended. `gen` is the same measurement for one prompt through the
//! path `strata generate` takes.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::args::Args;
use strata::generate::GenerateParams;
use strata::sampler::SamplerParams;
use strata::scheduler::{Event, FinishReason, Request, Scheduler, SchedulerOptions};
use strata::{Model, Numerics, Session, SessionOptions};

/// One timed run: prompt seconds, generation seconds, generated tokens.
pub struct Timed {
    pub pp_seconds: f64,
    pub tg_seconds: f64,
    pub tokens: Vec<u32>,
}

/// One stream of a parallel run: seconds from submission until its first
/// and its last generated token were known, and the tokens.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    pub first: f64,
    pub last: f64,
    pub tokens: Vec<u32>,
}

/// A parallel run: its streams and the seconds until the last one ended.
#[derive(Debug, Clone, Default)]
pub struct ParTimed {
    pub wall: f64,
    pub streams: Vec<Stream>,
}

impl ParTimed {
    /// The reply's JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let streams: Vec<_> = self
            .streams
            .iter()
            .map(|s| serde_json::json!({"first": s.first, "last": s.last, "tokens": s.tokens}))
            .collect();
        serde_json::json!({"wall": self.wall, "streams": streams})
    }

    /// Parse a reply's JSON.
    pub fn from_json(j: &serde_json::Value) -> Option<ParTimed> {
        let f = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64());
        let mut streams = Vec::new();
        for s in j.get("streams")?.as_array()? {
            let tokens = s
                .get("tokens")?
                .as_array()?
                .iter()
                .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
                .collect::<Option<Vec<u32>>>()?;
            streams.push(Stream {
                first: f(s, "first")?,
                last: f(s, "last")?,
                tokens,
            });
        }
        Some(ParTimed {
            wall: f(j, "wall")?,
            streams,
        })
    }
}

/// An engine that can run timed prompt + greedy generation passes.
trait Engine {
    fn run(&self, prompt: &[u32], n: usize) -> Result<Timed, String>;
    /// Serve every prompt at once, `n` greedy tokens each.
    fn parallel(&self, prompts: &[Vec<u32>], n: usize) -> Result<ParTimed, String>;
    /// One prompt through the single-session generation path.
    fn generate(&self, _prompt: &[u32], _n: usize) -> Result<ParTimed, String> {
        Err("gen: only the strata engine has this path".into())
    }
}

struct StrataEngine {
    model: Arc<Model>,
}

impl Engine for StrataEngine {
    fn run(&self, prompt: &[u32], n: usize) -> Result<Timed, String> {
        let mut s = Session::new(
            Arc::clone(&self.model),
            &SessionOptions {
                n_ctx: Some(prompt.len() + n + 1),
            },
        )
        .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let mut logits = s.feed(prompt).map_err(|e| e.to_string())?;
        let pp_seconds = t0.elapsed().as_secs_f64();
        let mut tokens = Vec::with_capacity(n);
        let t1 = Instant::now();
        for _ in 0..n {
            let tok = strata::sampler::argmax(&logits);
            tokens.push(tok);
            logits = s.feed(&[tok]).map_err(|e| e.to_string())?;
        }
        Ok(Timed {
            pp_seconds,
            tg_seconds: t1.elapsed().as_secs_f64(),
            tokens,
        })
    }

    fn parallel(&self, prompts: &[Vec<u32>], n: usize) -> Result<ParTimed, String> {
        let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut opts = SchedulerOptions::for_model(&self.model);
        opts.slots = prompts.len().max(1);
        opts.n_ctx = longest + n + 1;
        opts.max_batch_tokens = opts.max_batch_tokens.max(opts.slots);
        let sched = Scheduler::new(Arc::clone(&self.model), opts).map_err(|e| e.to_string())?;
        let requests: Vec<Request> = prompts
            .iter()
            .map(|p| {
                let mut r = Request::new(p.clone());
                r.max_tokens = n;
                r.ignore_eos = true;
                r
            })
            .collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let t0 = Instant::now();
        for (i, req) in requests.into_iter().enumerate() {
            let tx = tx.clone();
            let mut stream = Stream::default();
            let mut seen = false;
            // Runs on the scheduler's thread: the times are when each token
            // was handed out.
            let sink = Box::new(move |ev: Event| {
                let now = t0.elapsed().as_secs_f64();
                match ev {
                    Event::Token(t) => {
                        if !seen {
                            stream.first = now;
                            seen = true;
                        }
                        stream.last = now;
                        stream.tokens.push(t.id);
                    }
                    Event::Done(f) => {
                        let _ = tx.send((i, now, std::mem::take(&mut stream), f));
                    }
                }
                true
            });
            sched.submit_with(req, sink).map_err(|e| e.to_string())?;
        }
        drop(tx);
        let mut out = ParTimed {
            wall: 0.0,
            streams: vec![Stream::default(); prompts.len()],
        };
        for (i, done, stream, f) in rx.iter() {
            if f.reason != FinishReason::MaxTokens || f.cached_tokens != 0 {
                return Err(format!(
                    "stream {i} ended with {:?} after {} tokens ({} prompt tokens cached)",
                    f.reason, f.completion_tokens, f.cached_tokens
                ));
            }
            out.wall = out.wall.max(done);
            out.streams[i] = stream;
        }
        sched.shutdown();
        if let Some(i) = out.streams.iter().position(|s| s.tokens.len() != n) {
            return Err(format!("stream {i} did not finish"));
        }
        Ok(out)
    }

    fn generate(&self, prompt: &[u32], n: usize) -> Result<ParTimed, String> {
        let mut s = Session::new(
            Arc::clone(&self.model),
            &SessionOptions {
                n_ctx: Some(prompt.len() + n + 1),
            },
        )
        .map_err(|e| e.to_string())?;
        let params = GenerateParams {
            max_tokens: n,
            sampler: SamplerParams::greedy(),
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut it = s
            .generate_from_tokens(prompt, &params)
            .map_err(|e| e.to_string())?;
        // The prompt is evaluated: the first token is the argmax of its
        // logits, taken by the first `next`, which then evaluates that token
        // for the second.
        let mut stream = Stream {
            first: t0.elapsed().as_secs_f64(),
            ..Default::default()
        };
        for ev in it.by_ref() {
            stream.tokens.push(ev.map_err(|e| e.to_string())?.id);
            stream.last = t0.elapsed().as_secs_f64();
        }
        let wall = t0.elapsed().as_secs_f64();
        // `generate` has no way to ignore end-of-generation tokens: a
        // stream that hit one is shorter, and the parent says so.
        let _ = it.finish();
        Ok(ParTimed {
            wall,
            streams: vec![stream],
        })
    }
}

fn load_strata(path: &Path, threads: usize, numerics: Numerics) -> Result<Box<dyn Engine>, String> {
    let model = Model::load(
        path,
        &strata::LoadOptions {
            n_threads: Some(threads),
            layers: None,
            numerics,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(Box::new(StrataEngine {
        model: Arc::new(model),
    }))
}

#[cfg(feature = "llama-cpp")]
struct LlamaEngine(strata::reference::Reference);

#[cfg(feature = "llama-cpp")]
impl Engine for LlamaEngine {
    fn run(&self, prompt: &[u32], n: usize) -> Result<Timed, String> {
        let t = self.0.timed_run(prompt, n).map_err(|e| e.to_string())?;
        Ok(Timed {
            pp_seconds: t.prompt_seconds,
            tg_seconds: t.generation_seconds,
            tokens: t.tokens,
        })
    }

    fn parallel(&self, prompts: &[Vec<u32>], n: usize) -> Result<ParTimed, String> {
        let streams = self
            .0
            .timed_parallel(prompts, n)
            .map_err(|e| e.to_string())?;
        let wall = streams
            .iter()
            .map(|s| s.last_token_seconds)
            .fold(0.0, f64::max);
        Ok(ParTimed {
            wall,
            streams: streams
                .into_iter()
                .map(|s| Stream {
                    first: s.first_token_seconds,
                    last: s.last_token_seconds,
                    tokens: s.tokens,
                })
                .collect(),
        })
    }
}

/// llama.cpp with its own defaults for CPU inference: flash attention on,
/// weights repacked into its interleaved layouts where it has them.
#[cfg(feature = "llama-cpp")]
fn load_llama(path: &Path, threads: usize, n_ctx: usize) -> Result<Box<dyn Engine>, String> {
    let opts = strata::reference::RefOptions {
        n_threads: threads,
        n_ctx: n_ctx as u32,
        flash_attention: true,
        repack_weights: true,
    };
    strata::reference::Reference::load(path, opts)
        .map(|r| Box::new(LlamaEngine(r)) as Box<dyn Engine>)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "llama-cpp"))]
fn load_llama(_: &Path, _: usize, _: usize) -> Result<Box<dyn Engine>, String> {
    Err(crate::bench::NO_LLAMA.into())
}

/// `strata bench-worker`: load one engine, then serve `run` lines until
/// stdin closes.
pub fn run(raw: &[String]) -> Result<(), String> {
    let aliases = [("-m", "--model"), ("-t", "--threads"), ("-c", "--ctx-size")];
    let a = Args::parse(raw, &[], &aliases)?;
    a.check_known(&["engine", "model", "threads", "ctx-size", "numerics"])?;
    let numerics = match a.str("numerics") {
        None | Some("llama.cpp") => Numerics::LlamaCpp,
        Some("batch-invariant") => Numerics::BatchInvariant,
        Some(other) => {
            return Err(format!(
                "bench-worker: --numerics {other}: use llama.cpp or batch-invariant"
            ))
        }
    };
    let path = std::path::PathBuf::from(a.str("model").ok_or("bench-worker needs -m MODEL")?);
    let threads: usize = a.get("threads")?.ok_or("bench-worker needs -t THREADS")?;
    let n_ctx: usize = a.get("ctx-size")?.ok_or("bench-worker needs -c CTX")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let reply = |out: &mut std::io::StdoutLock, line: String| -> Result<(), String> {
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .map_err(|e| format!("bench-worker: writing to the parent: {e}"))
    };
    let engine = match a.str("engine") {
        Some("strata") => load_strata(&path, threads, numerics),
        Some("llama.cpp") => load_llama(&path, threads, n_ctx),
        other => Err(format!("bench-worker: unknown engine {other:?}")),
    };
    let engine = match engine {
        Ok(e) => e,
        Err(e) => return reply(&mut out, format!("err {}", one_line(&e))),
    };
    reply(&mut out, "ready".into())?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("bench-worker: reading from the parent: {e}"))?;
        if line.trim() == "memory" {
            let (peak, now) = memory_kib();
            reply(&mut out, format!("memory {peak} {now}"))?;
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("par ")
            .or_else(|| line.strip_prefix("gen "))
        {
            let answer = match parse_par(rest) {
                Err(e) => format!("err {}", one_line(&e)),
                Ok((n, prompts)) => {
                    let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
                    let r = if longest + n + 1 > n_ctx {
                        Err(format!(
                            "the run needs {} positions per sequence, the context has {n_ctx}",
                            longest + n + 1
                        ))
                    } else if line.starts_with("gen ") {
                        match prompts.as_slice() {
                            [one] => engine.generate(one, n),
                            _ => Err("gen takes one prompt".into()),
                        }
                    } else {
                        engine.parallel(&prompts, n)
                    };
                    match r {
                        Ok(t) => format!("ok {}", t.to_json()),
                        Err(e) => format!("err {}", one_line(&e)),
                    }
                }
            };
            reply(&mut out, answer)?;
            continue;
        }
        let answer = match parse_run(&line) {
            Err(e) => format!("err {}", one_line(&e)),
            Ok((n, prompt)) if prompt.len() + n + 1 > n_ctx => {
                format!(
                    "err the run needs {} positions, the context has {n_ctx}",
                    prompt.len() + n + 1
                )
            }
            Ok((n, prompt)) => match engine.run(&prompt, n) {
                Ok(t) => format!("ok {} {} {}", t.pp_seconds, t.tg_seconds, ids(&t.tokens)),
                Err(e) => format!("err {}", one_line(&e)),
            },
        };
        reply(&mut out, answer)?;
    }
    Ok(())
}

/// This process's peak and current resident memory in KiB (`VmHWM`,
/// `VmRSS`), 0 where `/proc` does not say.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// `run N ID ID …` → (N, prompt ids).
fn parse_run(line: &str) -> Result<(usize, Vec<u32>), String> {
    let mut words = line.split_ascii_whitespace();
    if words.next() != Some("run") {
        return Err(format!("unknown request {line:?}"));
    }
    let n = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or("run: the step count is missing")?;
    let prompt = words
        .map(|w| w.parse().map_err(|_| format!("run: bad token id {w:?}")))
        .collect::<Result<Vec<u32>, _>>()?;
    if prompt.is_empty() {
        return Err("run: empty prompt".into());
    }
    Ok((n, prompt))
}

/// `N IDS | IDS | …` (after `par ` or `gen `) → (N, prompts).
fn parse_par(rest: &str) -> Result<(usize, Vec<Vec<u32>>), String> {
    let rest = rest.trim_start();
    let (n, prompts) = rest.split_once(' ').ok_or("par: no prompt")?;
    let n: usize = n
        .parse()
        .map_err(|_| format!("par: bad step count {n:?}"))?;
    if n == 0 {
        return Err("par: generate at least one token".into());
    }
    let prompts = prompts
        .split('|')
        .map(|p| {
            let ids = p
                .split_ascii_whitespace()
                .map(|w| w.parse().map_err(|_| format!("par: bad token id {w:?}")))
                .collect::<Result<Vec<u32>, _>>()?;
            if ids.is_empty() {
                return Err("par: empty prompt".to_string());
            }
            Ok(ids)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((n, prompts))
}

/// Token ids as the protocol writes them: decimal, space-separated.
pub fn ids(tokens: &[u32]) -> String {
    tokens
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
