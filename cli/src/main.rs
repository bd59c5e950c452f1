//! `strata`: generate, chat, inspect models, write synthetic models.

mod args;
mod bench;
mod bench_worker;
mod chat;
mod fetch;
mod generate;
mod info;
mod perplexity;
mod serve;
mod shard;
mod synth;
mod usage;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprint!("{}", usage::top());
        return ExitCode::from(2);
    };
    // Each command answers `-h`/`--help` through `Args::parse` (which
    // returns `args::HELP`); `usage` is what to print then.
    let (usage, result): (fn() -> String, _) = match cmd.as_str() {
        "generate" => (usage::generate, generate::run(rest)),
        "chat" => (usage::chat, chat::run(rest)),
        "info" => (usage::info, info::run(rest)),
        "synth" => (usage::synth, synth::run(rest)),
        "serve" => (usage::serve, serve::run(rest)),
        "verify" => (usage::verify, verify::run(rest)),
        "perplexity" => (usage::perplexity, perplexity::run(rest)),
        "bench" => (usage::bench, bench::run(rest)),
        // Internal: one engine of `strata bench`, driven over stdin/stdout.
        "bench-worker" => (usage::bench_worker, bench_worker::run(rest)),
        "split" => (usage::split, shard::split(rest)),
        "plan" => (usage::plan, shard::plan(rest)),
        "shard" => match rest.split_first() {
            Some((sub, r)) if sub == "serve" => (usage::shard_serve, shard::serve_cmd(r)),
            Some((h, _)) if h == "-h" || h == "--help" => (usage::shard, Err(args::HELP.into())),
            Some((other, _)) => (
                usage::shard,
                Err(format!(
                    "unknown shard command '{other}'\n\n{}",
                    usage::shard()
                )),
            ),
            None => (
                usage::shard,
                Err(format!("shard needs a command\n\n{}", usage::shard())),
            ),
        },
        "-h" | "--help" => (usage::top, Err(args::HELP.into())),
        "help" => match usage::of(rest) {
            Some(text) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            None => (
                usage::top,
                Err(format!(
                    "no command '{}'\n\n{}",
                    rest.join(" "),
                    usage::top()
                )),
            ),
        },
        "-V" | "--version" => {
            println!("strata {} ({})", strata::VERSION, strata::BUILD_TARGET);
            return ExitCode::SUCCESS;
        }
        other => (
            usage::top,
            Err(format!("unknown command '{other}'\n\n{}", usage::top())),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e == args::HELP => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
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
    ("-f", "--file"),
];
