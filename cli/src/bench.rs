//! `strata bench`: prompt-processing and generation speed, in the style of
//! llama-bench, optionally side by side with llama.cpp on the same file,
//! threads and prompt, with the engines' repetitions interleaved.
//!
//! pp: one forward over `-p` prompt tokens. tg: after that prompt, `-n`
//! decode steps of one token each (argmax fed back). Reported: the median
//! tokens/s over `-r` repetitions, and every sample with `--json`.

use std::sync::Arc;
use std::time::Instant;

use crate::args::Args;
use strata::{Model, Session, SessionOptions};

struct Sample {
    pp: f64,
    tg: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
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

/// A deterministic prompt of exactly `p` tokens: ordinary text, repeated.
fn prompt_tokens(model: &Model, p: usize) -> Result<Vec<u32>, String> {
    let text = "Strata runs quantized language models on every node of a decentralized network; \
                each node loads a range of layers and passes hidden states to the next. ";
    let one = model
        .tokenizer()
        .encode(text, false, false)
        .map_err(|e| e.to_string())?;
    if one.is_empty() {
        return Err("the benchmark text tokenizes to nothing".into());
    }
    let mut ids: Vec<u32> = model.tokenizer().bos().into_iter().collect();
    while ids.len() < p {
        ids.extend_from_slice(&one);
    }
    ids.truncate(p);
    Ok(ids)
}

fn strata_run(model: &Arc<Model>, prompt: &[u32], n: usize) -> Result<Sample, String> {
    let mut s = Session::new(
        Arc::clone(model),
        &SessionOptions {
            n_ctx: Some(prompt.len() + n + 1),
        },
    )
    .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut logits = s.feed(prompt).map_err(|e| e.to_string())?;
    let pp = prompt.len() as f64 / t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for _ in 0..n {
        let tok = strata::sampler::argmax(&logits);
        logits = s.feed(&[tok]).map_err(|e| e.to_string())?;
    }
    let tg = n as f64 / t1.elapsed().as_secs_f64();
    Ok(Sample { pp, tg })
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
    ])?;
    let p: usize = a.get("n-prompt")?.unwrap_or(512);
    let n: usize = a.get("n-predict")?.unwrap_or(128);
    let reps: usize = a.get("repetitions")?.unwrap_or(5).max(1);
    let threads: usize = a
        .get("threads")?
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if p == 0 {
        return Err("-p must be at least 1".into());
    }
    let path = crate::model_path(&a)?;
    let model = Arc::new(
        Model::load(
            &path,
            &strata::LoadOptions {
                n_threads: Some(threads),
                layers: None,
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?,
    );
    let prompt = prompt_tokens(&model, p)?;
    let vs = match a.str("vs") {
        None => None,
        Some("llama.cpp") => Some(reference(&path, threads, p + n + 1)?),
        Some(other) => return Err(format!("--vs {other}: only llama.cpp is supported")),
    };
    // One warm-up run each (page in the weights), then interleaved samples.
    strata_run(&model, &prompt, n.min(8))?;
    if let Some(r) = &vs {
        r.run(&prompt, n.min(8))?;
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..reps {
        ours.push(strata_run(&model, &prompt, n)?);
        if let Some(r) = &vs {
            theirs.push(r.run(&prompt, n)?);
        }
        eprintln!("repetition {}/{reps} done", i + 1);
    }
    let med = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let (opp, otg) = (med(&ours, |s| s.pp), med(&ours, |s| s.tg));
    let model_name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    if a.flag("json") {
        let samples = |v: &[Sample]| serde_json::json!({"pp": v.iter().map(|s| s.pp).collect::<Vec<_>>(), "tg": v.iter().map(|s| s.tg).collect::<Vec<_>>()});
        let mut j = serde_json::json!({
            "model": model_name, "threads": threads, "n_prompt": p, "n_gen": n, "repetitions": reps,
            "strata": {"pp_tokens_per_second": opp, "tg_tokens_per_second": otg, "samples": samples(&ours)},
        });
        if !theirs.is_empty() {
            j["llama.cpp"] = serde_json::json!({"pp_tokens_per_second": med(&theirs, |s| s.pp), "tg_tokens_per_second": med(&theirs, |s| s.tg), "samples": samples(&theirs)});
        }
        println!("{j}");
        return Ok(());
    }
    println!("model: {model_name}, threads: {threads}, median of {reps} interleaved repetitions");
    println!("| engine    | pp{p} tok/s | tg{n} tok/s (after pp{p}) |");
    println!("|-----------|-----------:|--------------------------:|");
    println!("| strata    | {opp:10.1} | {otg:25.1} |");
    if !theirs.is_empty() {
        let (tpp, ttg) = (med(&theirs, |s| s.pp), med(&theirs, |s| s.tg));
        println!("| llama.cpp | {tpp:10.1} | {ttg:25.1} |");
        println!("| ratio     | {:9.2}x | {:24.2}x |", opp / tpp, otg / ttg);
    }
    Ok(())
}

#[cfg(feature = "llama-cpp")]
struct Ref(strata::reference::Reference);

#[cfg(feature = "llama-cpp")]
fn reference(path: &std::path::Path, threads: usize, n_ctx: usize) -> Result<Ref, String> {
    let opts = strata::reference::RefOptions {
        n_threads: threads,
        n_ctx: n_ctx as u32,
        flash_attention: true,
        ..Default::default()
    };
    strata::reference::Reference::load(path, opts)
        .map(Ref)
        .map_err(|e| e.to_string())
}

#[cfg(feature = "llama-cpp")]
impl Ref {
    fn run(&self, prompt: &[u32], n: usize) -> Result<Sample, String> {
        let t = self.0.timed_run(prompt, n).map_err(|e| e.to_string())?;
        Ok(Sample {
            pp: t.prompt_tokens as f64 / t.prompt_seconds,
            tg: t.generated as f64 / t.generation_seconds,
        })
    }
}

#[cfg(not(feature = "llama-cpp"))]
struct Ref;

#[cfg(not(feature = "llama-cpp"))]
fn reference(_: &std::path::Path, _: usize, _: usize) -> Result<Ref, String> {
    Err("--vs llama.cpp needs a build with the llama-cpp feature: cargo build --release -p strata-cli --features llama-cpp".into())
}

#[cfg(not(feature = "llama-cpp"))]
impl Ref {
    fn run(&self, _: &[u32], _: usize) -> Result<Sample, String> {
        unreachable!("no reference without the llama-cpp feature")
    }
}
