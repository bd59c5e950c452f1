//! `strata generate`: stream a continuation of a prompt.

use std::io::Write;
use std::sync::Arc;

use crate::args::Args;
use strata::{GenerateParams, Model, Numerics, Session, SessionOptions};

const KNOWN: &[&str] = &[
    "model",
    "prompt",
    "n-predict",
    "temp",
    "top-k",
    "top-p",
    "min-p",
    "repeat-penalty",
    "seed",
    "threads",
    "ctx-size",
    "stop",
    "route",
    "json",
    "receipt",
    "lookup",
    "draft",
    "draft-max",
    "file",
];

pub fn run(raw: &[String]) -> Result<(), String> {
    let a = Args::parse(raw, &["json"], crate::COMMON_ALIASES)?;
    a.check_known(KNOWN)?;
    let prompt = match (a.str("prompt"), a.str("file")) {
        (Some(p), None) => p.to_string(),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?,
        (Some(_), Some(_)) => return Err("give the prompt with -p or -f, not both".into()),
        (None, None) => return Err("generate needs -p PROMPT or -f FILE".into()),
    };
    let json = a.flag("json");
    let receipt = a.str("receipt").map(std::path::PathBuf::from);
    let lookup: Option<usize> = a.get("lookup")?;
    if let Some(route) = a.str("route") {
        if receipt.is_some() {
            return Err("--receipt needs a local model (not --route)".into());
        }
        if lookup.is_some() || a.str("draft").is_some() {
            return Err("--lookup and --draft need a local model (not --route)".into());
        }
        return crate::shard::generate_routed(&a, route, &prompt, json);
    }
    let mut params = GenerateParams {
        max_tokens: a
            .get("n-predict")?
            .unwrap_or(crate::usage::GENERATE_N_PREDICT),
        sampler: crate::sampler_params(&a)?,
        stop: a.all("stop"),
        ..Default::default()
    };
    let path = crate::model_path(&a)?;
    let mut load = crate::load_options(&a)?;
    let draft_max: Option<usize> = a.get("draft-max")?;
    params.draft = match (lookup, a.str("draft")) {
        (None, None) if draft_max.is_some() => return Err("--draft-max needs --draft MODEL".into()),
        (None, None) => strata::Draft::None,
        (Some(n), None) => strata::Draft::lookup(n),
        (None, Some(file)) => {
            let draft = Model::load(file, &load).map_err(|e| format!("--draft {file}: {e}"))?;
            strata::Draft::Model(strata::draft::DraftModel {
                model: Arc::new(draft),
                max_draft: draft_max.unwrap_or(strata::draft::DEFAULT_MAX_DRAFT),
            })
        }
        (Some(_), Some(_)) => return Err("give --lookup or --draft, not both".into()),
    };
    if receipt.is_some() || !matches!(params.draft, strata::Draft::None) {
        // Only this mode lets one batched pass reproduce the decode's bits.
        load.numerics = Numerics::BatchInvariant;
    }
    let model = Arc::new(Model::load(&path, &load).map_err(|e| e.to_string())?);
    let mut session = Session::new(
        model,
        &SessionOptions {
            n_ctx: a.get("ctx-size")?,
        },
    )
    .map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    if !json {
        let _ = write!(out, "{prompt}");
        let _ = out.flush();
    }
    let on_token = |ev: &strata::TokenEvent| {
        if !json {
            let _ = write!(out, "{}", ev.text);
            let _ = out.flush();
        }
        true
    };
    let completion = match &receipt {
        None => session.generate(&prompt, &params, on_token),
        Some(file) => session
            .generate_with_receipt(&prompt, &params, on_token)
            .and_then(|(c, r)| {
                crate::verify::write_receipt(file, &r)?;
                Ok(c)
            }),
    }
    .map_err(|e| e.to_string())?;
    let t = &completion.timings;
    if json {
        let v = serde_json::json!({
            "prompt_tokens": completion.prompt_tokens,
            "tokens": completion.tokens,
            "text": completion.text,
            "stop_reason": format!("{:?}", completion.stop_reason),
            "timings": {
                "prompt_ms": t.prompt_ms,
                "prompt_tokens_per_second": t.prompt_tokens_per_second(),
                "generation_ms": t.generation_ms,
                "generation_tokens_per_second": t.generation_tokens_per_second(),
                "drafted_tokens": t.draft.drafted,
                "accepted_tokens": t.draft.accepted,
                "draft_passes": t.draft.passes,
            }
        });
        let _ = writeln!(out, "{v}");
    } else {
        let _ = writeln!(out);
        eprintln!(
            "\nprompt: {} tokens, {:.1} ms ({:.1} tok/s); generated: {} tokens, {:.1} ms ({:.1} tok/s); stop: {:?}",
            t.prompt_tokens,
            t.prompt_ms,
            t.prompt_tokens_per_second(),
            t.generated_tokens,
            t.generation_ms,
            t.generation_tokens_per_second(),
            completion.stop_reason
        );
        if t.draft.drafted > 0 {
            eprintln!(
                "lookup: {} drafted in {} passes, {} accepted ({:.0}%)",
                t.draft.drafted,
                t.draft.passes,
                t.draft.accepted,
                100.0 * t.draft.acceptance()
            );
        }
    }
    Ok(())
}
