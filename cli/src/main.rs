//! `strata`: generate, chat, inspect models, write synthetic models.

mod args;
mod bench;
mod bench_worker;
mod chat;
mod fetch;
mod generate;
mod info;
mod shard;
mod synth;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
strata — an embeddable LLM inference runtime

USAGE:
  strata generate [-m MODEL] -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P]
                  [--min-p P] [--repeat-penalty R] [--seed S] [-t THREADS] [-c CTX]
                  [--stop TEXT]... [--json]
  strata chat     [-m MODEL] [--system TEXT] [-n N] [--temp T] [--seed S] [-t THREADS]
  strata info     MODEL [--json]
  strata bench    [-m MODEL] [-p 512] [-n 128] [-t THREADS] [-r 5] [--vs llama.cpp] [--json]
  strata split    [-m MODEL] (--shards N | --layers 0..10,10..20) [-o DIR]
  strata plan     [-m MODEL] --node NAME:MEMORY:SPEED... [-c CTX] [--json]
  strata shard serve [-m MODEL] [--layers A..B] [--listen 127.0.0.1:7070] [-t THREADS]
                  [--max-sessions N] [-c CTX] [--dtype f32|f16|bf16]
  strata generate [-m MODEL] --route HOST:PORT,HOST:PORT,... -p PROMPT [-n N] [--json]
  strata synth    -o OUT.gguf [--layers N] [--embd N] [--ff N] [--heads N] [--kv-heads N]
                  [--vocab N] [--type Q4_0] [--embd-type Q8_0] [--tokenizer-from MODEL] [--seed S]

Without -m, the default model (SmolLM2-135M-Instruct Q4_1) is fetched on first use
and cached in $STRATA_MODELS_DIR or ~/.cache/strata/models.
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "generate" => generate::run(rest),
        "chat" => chat::run(rest),
        "info" => info::run(rest),
        "synth" => synth::run(rest),
        "bench" => bench::run(rest),
        // Internal: one engine of `strata bench`, driven over stdin/stdout.
        "bench-worker" => bench_worker::run(rest),
        "split" => shard::split(rest),
        "plan" => shard::plan(rest),
        "shard" => match rest.split_first() {
            Some((sub, r)) if sub == "serve" => shard::serve_cmd(r),
            _ => Err("usage: strata shard serve -m MODEL [--layers A..B] [--listen ADDR]".into()),
        },
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        "-V" | "--version" => {
            println!("strata {} ({})", strata::VERSION, strata::BUILD_TARGET);
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The model path from `-m`, or the default model.
pub fn model_path(a: &args::Args) -> Result<PathBuf, String> {
    match a.str("model") {
        Some(m) => Ok(PathBuf::from(m)),
        None => fetch::default_model(),
    }
}

/// Sampling options shared by generate and chat.
pub fn sampler_params(a: &args::Args) -> Result<strata::sampler::SamplerParams, String> {
    let mut p = strata::sampler::SamplerParams::default();
    if let Some(v) = a.get("temp")? {
        p.temperature = v;
    }
    if let Some(v) = a.get("top-k")? {
        p.top_k = v;
    }
    if let Some(v) = a.get("top-p")? {
        p.top_p = v;
    }
    if let Some(v) = a.get("min-p")? {
        p.min_p = v;
    }
    if let Some(v) = a.get("repeat-penalty")? {
        p.repeat_penalty = v;
    }
    if let Some(v) = a.get("seed")? {
        p.seed = v;
    }
    p.validate().map_err(|e| e.to_string())?;
    Ok(p)
}

/// Load options shared by the model-running commands.
pub fn load_options(a: &args::Args) -> Result<strata::LoadOptions, String> {
    Ok(strata::LoadOptions {
        n_threads: a.get("threads")?,
        layers: None,
        ..Default::default()
    })
}

pub const COMMON_ALIASES: &[(&str, &str)] = &[
    ("-m", "--model"),
    ("-p", "--prompt"),
    ("-n", "--n-predict"),
    ("-t", "--threads"),
    ("-c", "--ctx-size"),
    ("-s", "--seed"),
    ("-o", "--output"),
    ("-r", "--repetitions"),
];
