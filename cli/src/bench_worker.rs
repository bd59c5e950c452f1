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
//! The prompt is evaluated as one batch (timed), then `N` decode steps of
//! one token each (timed), each feeding back the argmax of the logits; the
//! reply carries the `N` generated tokens so that the parent can say
//! whether both engines computed the same thing.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::args::Args;
use strata::{Model, Session, SessionOptions};

/// One timed run: prompt seconds, generation seconds, generated tokens.
pub struct Timed {
    pub pp_seconds: f64,
    pub tg_seconds: f64,
    pub tokens: Vec<u32>,
}

/// An engine that can run timed prompt + greedy generation passes.
trait Engine {
    fn run(&self, prompt: &[u32], n: usize) -> Result<Timed, String>;
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
}

fn load_strata(path: &Path, threads: usize) -> Result<Box<dyn Engine>, String> {
    let model = Model::load(
        path,
        &strata::LoadOptions {
            n_threads: Some(threads),
            layers: None,
            ..Default::default()
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
    a.check_known(&["engine", "model", "threads", "ctx-size"])?;
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
        Some("strata") => load_strata(&path, threads),
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
