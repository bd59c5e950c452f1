//! `strata serve`: the OpenAI-compatible HTTP server (crate
//! `strata-server`) over one model and a scheduler.

use std::sync::Arc;

use crate::args::Args;
use strata::scheduler::{Scheduler, SchedulerOptions};
use strata::{LoadOptions, Model, Numerics};
use strata_server::ServeOptions;

const KNOWN: &[&str] = &[
    "model",
    "host",
    "port",
    "threads",
    "ctx-size",
    "parallel",
    "max-queue",
    "api-key",
    "alias",
];

/// The environment variable read for the API key when `--api-key` is not
/// given (a key on the command line is visible to every user of `ps`).
pub const API_KEY_ENV: &str = "STRATA_API_KEY";

pub fn run(raw: &[String]) -> Result<(), String> {
    let a = Args::parse(raw, &[], crate::COMMON_ALIASES)?;
    a.check_known(KNOWN)?;
    let path = crate::model_path(&a)?;
    let host = a.str("host").unwrap_or(crate::usage::HTTP_HOST).to_string();
    let port: u16 = a.get("port")?.unwrap_or(crate::usage::HTTP_PORT);
    let parallel: Option<usize> = a.get("parallel")?;
    if parallel == Some(0) {
        return Err("--parallel must be at least 1".into());
    }
    let api_key = match a.str("api-key") {
        Some(k) => Some(k.to_string()),
        None => std::env::var(API_KEY_ENV).ok(),
    }
    .filter(|k| !k.is_empty());
    // Batch-invariant sums: a request's tokens are the same bits whether it
    // ran alone or among others.
    let opts = LoadOptions {
        n_threads: a.get("threads")?,
        layers: None,
        numerics: Numerics::BatchInvariant,
    };
    let model = Arc::new(Model::load(&path, &opts).map_err(|e| e.to_string())?);
    let mut sched = SchedulerOptions::for_model(&model);
    if let Some(c) = a.get("ctx-size")? {
        sched.n_ctx = c;
    }
    if let Some(p) = parallel {
        sched.slots = p;
        sched.max_batch_tokens = sched.max_batch_tokens.max(p);
    }
    if let Some(q) = a.get("max-queue")? {
        sched.max_queue = q;
    }
    let model_id = match a.str("alias") {
        Some(name) if !name.is_empty() => name.to_string(),
        Some(_) => return Err("--alias must not be empty".into()),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
    };
    let scheduler = Scheduler::new(model, sched).map_err(|e| e.to_string())?;
    let mut serve = ServeOptions::new(model_id);
    serve.host = host;
    serve.port = port;
    serve.api_key = api_key;
    strata_server::run(Arc::new(scheduler), serve)
}
