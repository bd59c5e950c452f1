//! Shard commands: `strata split`, `strata plan`, `strata shard serve`, and
//! the pipeline client behind `strata generate --route`.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::args::Args;
use strata::gguf::GgufFile;
use strata::shard::transport::{serve_with, Pipeline, ServeLimits};
use strata::shard::{self, DType, Digest, ModelCost, NodeLimits, NodeSpec, ShardInfo, ShardNode};
use strata::{LoadOptions, Model, StopReason};

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

/// `strata split -m MODEL (--shards N | --layers 0..10,10..20) [-o DIR]`
pub fn split(raw: &[String]) -> Result<(), String> {
    let a = Args::parse(raw, &[], crate::COMMON_ALIASES)?;
    a.check_known(&["model", "shards", "layers", "output"])?;
    let path = crate::model_path(&a)?;
    let file = GgufFile::open(&path).map_err(e)?;
    let arch = file.get_str("general.architecture").map_err(e)?;
    let n_layer = file.get_u64(&format!("{arch}.block_count")).map_err(e)? as usize;
    let ranges = match (a.get::<usize>("shards")?, a.str("layers")) {
        (Some(n), None) => shard::even_ranges(n_layer, n).map_err(e)?,
        (None, Some(l)) => shard::parse_ranges(l).map_err(e)?,
        _ => return Err("split needs exactly one of --shards N or --layers 0..10,10..20".into()),
    };
    let out = a
        .str("output")
        .map(Path::new)
        .unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")));
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    std::fs::create_dir_all(out)
        .map_err(|x| format!("cannot create the output directory {}: {x}", out.display()))?;
    let t = Instant::now();
    let files = shard::split(&file, &ranges, out, &stem).map_err(e)?;
    let cost = ModelCost::from_gguf(&file).map_err(e)?;
    for (f, r) in files.iter().zip(&ranges) {
        let m = cost.estimate(r);
        println!(
            "{}  layers {}..{}  {:.1} MiB weights, {} KiB KV cache per token",
            f.display(),
            r.start,
            r.end,
            m.weight_bytes as f64 / (1 << 20) as f64,
            m.kv_bytes_per_token as f64 / 1024.0
        );
    }
    eprintln!(
        "wrote {} shard files in {:.1} s",
        files.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (
            &s[..i],
            match &s[i..].to_ascii_uppercase()[..] {
                "K" | "KB" | "KIB" => 1u64 << 10,
                "M" | "MB" | "MIB" => 1 << 20,
                "G" | "GB" | "GIB" => 1 << 30,
                "T" | "TB" | "TIB" => 1 << 40,
                other => return Err(format!("unknown size unit '{other}'")),
            },
        ),
        None => (s, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size"))?;
    if !(v >= 0.0) {
        return Err(format!("'{s}' is not a size"));
    }
    Ok((v * mult as f64) as u64)
}

/// `strata plan -m MODEL --node NAME:MEM:SPEED ... [-c CTX]`
pub fn plan(raw: &[String]) -> Result<(), String> {
    let a = Args::parse(raw, &["json"], crate::COMMON_ALIASES)?;
    a.check_known(&["model", "node", "ctx-size", "json"])?;
    let path = crate::model_path(&a)?;
    let file = GgufFile::open(&path).map_err(e)?;
    let cost = ModelCost::from_gguf(&file).map_err(e)?;
    let n_ctx: usize = a.get("ctx-size")?.unwrap_or(crate::usage::PLAN_CTX);
    let nodes: Vec<NodeSpec> = a
        .all("node")
        .iter()
        .map(|s| {
            let parts: Vec<&str> = s.split(':').collect();
            if parts.len() != 3 {
                return Err(format!(
                    "--node {s}: expected NAME:MEMORY:SPEED, e.g. a:4G:1.0 (MEMORY in bytes \
                     with K/M/G/T; SPEED the node's weight-read speed relative to the \
                     others, e.g. its memory bandwidth in GB/s; see strata plan --help)"
                ));
            }
            Ok(NodeSpec {
                name: parts[0].to_string(),
                free_bytes: parse_bytes(parts[1])?,
                speed: parts[2].parse().map_err(|_| {
                    format!(
                        "--node {s}: SPEED '{}' is not a number (the node's weight-read \
                             speed relative to the others, e.g. its memory bandwidth in GB/s)",
                        parts[2]
                    )
                })?,
            })
        })
        .collect::<Result<_, String>>()?;
    if nodes.is_empty() {
        return Err("plan needs at least one --node NAME:MEMORY:SPEED".into());
    }
    let p = shard::plan(&cost, &nodes, n_ctx).map_err(e)?;
    if a.flag("json") {
        let v: Vec<_> = p
            .iter()
            .map(|x| serde_json::json!({"node": x.node, "layers": [x.layers.start, x.layers.end], "weight_bytes": x.memory.weight_bytes, "active_bytes": x.memory.active_bytes, "kv_bytes": x.memory.kv_bytes_per_token * n_ctx as u64, "stage_time": x.stage_time}))
            .collect();
        println!("{}", serde_json::json!(v));
        return Ok(());
    }
    let slowest = p.iter().map(|x| x.stage_time).fold(0.0, f64::max);
    println!(
        "{} layers over {} nodes, context {n_ctx}:",
        cost.n_layer,
        nodes.len()
    );
    if let Some(line) = crate::info::experts_line(&cost) {
        println!("  {line}");
    }
    for x in &p {
        println!(
            "  {:<12} layers {:>3}..{:<3}  weights {:>8.1} MiB  read per token {:>8.1} MiB  KV {:>8.1} MiB  relative stage time {:.2}",
            x.node,
            x.layers.start,
            x.layers.end,
            x.memory.weight_bytes as f64 / (1 << 20) as f64,
            x.memory.active_bytes as f64 / (1 << 20) as f64,
            (x.memory.kv_bytes_per_token * n_ctx as u64) as f64 / (1 << 20) as f64,
            x.stage_time / slowest
        );
    }
    for n in nodes.iter().filter(|n| !p.iter().any(|x| x.node == n.name)) {
        println!("  {:<12} (no layers: not needed)", n.name);
    }
    Ok(())
}

/// `strata shard serve -m MODEL [--layers a..b] --listen ADDR`
pub fn serve_cmd(raw: &[String]) -> Result<(), String> {
    let a = Args::parse(raw, &[], crate::COMMON_ALIASES)?;
    a.check_known(&[
        "model",
        "layers",
        "listen",
        "threads",
        "max-sessions",
        "ctx-size",
        "dtype",
        "max-connections",
        "timeout",
    ])?;
    let path = crate::model_path(&a)?;
    let layers = match a.str("layers") {
        Some(l) => {
            let r = shard::parse_ranges(l).map_err(e)?;
            if r.len() != 1 {
                return Err("--layers takes one range for serve".into());
            }
            Some(r[0].clone())
        }
        None => None,
    };
    // Shards serve batch-invariant results: the same bits however a client
    // splits its prompt, so replays and redundant nodes agree.
    let opts = LoadOptions {
        n_threads: a.get("threads")?,
        layers,
        numerics: strata::Numerics::BatchInvariant,
    };
    let model = Model::load(&path, &opts).map_err(e)?;
    let limits = NodeLimits {
        max_sessions: a
            .get("max-sessions")?
            .unwrap_or(crate::usage::SERVE_MAX_SESSIONS),
        n_ctx: a.get("ctx-size")?.unwrap_or(crate::usage::SERVE_CTX),
    };
    let dtype = match a.str("dtype").unwrap_or("f32") {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => return Err(format!("--dtype {other}: f32, f16 or bf16")),
    };
    let node = ShardNode::new(Arc::new(model), limits)
        .map_err(e)?
        .with_output_dtype(dtype)
        .map_err(e)?;
    let defaults = ServeLimits::default();
    let max_connections: usize = a
        .get("max-connections")?
        .unwrap_or(defaults.max_connections);
    if max_connections == 0 {
        return Err("--max-connections must be at least 1".into());
    }
    let timeout = match a.get::<f64>("timeout")? {
        None => defaults.read_timeout,
        Some(t) if t.is_finite() && t > 0.0 && t <= 86_400.0 => {
            std::time::Duration::from_secs_f64(t)
        }
        Some(t) => {
            return Err(format!(
                "--timeout {t}: seconds, more than 0 and at most 86400"
            ))
        }
    };
    let serve_limits = ServeLimits {
        max_connections,
        read_timeout: timeout,
        write_timeout: timeout,
    };
    let addr = a.str("listen").unwrap_or(crate::usage::SERVE_LISTEN);
    let listener = TcpListener::bind(addr).map_err(|x| format!("cannot listen on {addr}: {x}"))?;
    let l = node.model().layers();
    // One line on stdout when ready, so scripts and tests can wait for it.
    println!(
        "serving layers {}..{} of {} on {} (model {})",
        l.start,
        l.end,
        path.display(),
        listener.local_addr().map_err(e)?,
        node.digest()
    );
    let _ = std::io::stdout().flush();
    serve_with(Arc::new(node), listener, serve_limits).map_err(e)
}

/// The digest of the model a local file holds: a shard file records its
/// parent's; a whole model is hashed (every tensor is read).
fn local_digest(file: &GgufFile) -> Result<Digest, String> {
    Ok(match ShardInfo::from_gguf(file).map_err(e)? {
        Some(info) => info.parent,
        None => shard::digest::model_digest(file),
    })
}

/// `strata generate --route A,B,C`: generation through remote shards. The
/// nodes run the model; this process tokenizes, samples and applies the
/// token budget (-n), the context cap (-c) and the stop strings (--stop)
/// by the same rules as a local session.
pub fn generate_routed(a: &Args, route: &str, prompt: &str, json: bool) -> Result<(), String> {
    if a.str("threads").is_some() {
        return Err(
            "-t/--threads does nothing with --route: the nodes run the model, \
                    with the threads their `strata shard serve -t` gave them"
                .into(),
        );
    }
    let n_ctx: Option<usize> = a.get("ctx-size")?;
    if n_ctx == Some(0) {
        return Err("-c must be at least 1".into());
    }
    let n: usize = a
        .get("n-predict")?
        .unwrap_or(crate::usage::GENERATE_N_PREDICT);
    let mut sampler = strata::sampler::Sampler::new(crate::sampler_params(a)?).map_err(e)?;
    let path = crate::model_path(a)?;
    // The client only tokenizes: it reads the tokenizer from the model file.
    let file = GgufFile::open(&path).map_err(e)?;
    let tok = strata::tokenizer::Tokenizer::from_gguf(&file).map_err(e)?;
    let ids = tok.encode(prompt, true, true).map_err(e)?;
    if ids.is_empty() {
        return Err("the prompt is empty".into());
    }
    if let Some(c) = n_ctx.filter(|&c| ids.len() > c) {
        return Err(format!(
            "the prompt is {} tokens, more than the context of {c} (-c)",
            ids.len()
        ));
    }
    let addrs: Vec<String> = route.split(',').map(|s| s.trim().to_string()).collect();
    let session: u64 = std::process::id() as u64 ^ 0x5354_5241_5441_0000;
    let mut p = Pipeline::connect(&addrs, session).map_err(e)?;
    // The nodes check that frames carry their model's digest, but frames
    // carry the digest the nodes announced: only this check ties the local
    // tokenizer to the model they run.
    let local = local_digest(&file)?;
    if local != p.digest() {
        return Err(format!(
            "{} is not the model the nodes serve: its digest is {local}, the nodes' is {}; \
             pass -m with the file the nodes' shards were split from",
            path.display(),
            p.digest()
        ));
    }
    let t0 = Instant::now();
    let mut logits = p.forward_tokens(0, &ids).map_err(e)?;
    let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut dec = strata::tokenizer::StreamDecoder::new(&tok);
    let mut stops = strata::stop::StopText::new(&a.all("stop"));
    let (mut out, mut text) = (Vec::new(), String::new());
    let mut stdout = std::io::stdout().lock();
    if !json {
        let _ = write!(stdout, "{prompt}");
    }
    let show = |stdout: &mut std::io::StdoutLock, text: &mut String, piece: &str| {
        if !json {
            let _ = write!(stdout, "{piece}");
            let _ = stdout.flush();
        }
        text.push_str(piece);
    };
    let t1 = Instant::now();
    let mut reason = StopReason::MaxTokens;
    while out.len() < n {
        let t = sampler.sample(&logits);
        sampler.accept(t);
        out.push(t);
        if tok.is_eog(t) {
            reason = StopReason::EndOfGeneration;
            break;
        }
        let (piece, stopped) = stops.push(&dec.push(t));
        show(&mut stdout, &mut text, &piece);
        if stopped {
            reason = StopReason::StopString;
            break;
        }
        if out.len() == n {
            break;
        }
        // Positions filled so far: the prompt and every generated token but
        // `t`, which goes in next.
        let pos = ids.len() + out.len() - 1;
        if n_ctx.is_some_and(|c| pos >= c) {
            reason = StopReason::ContextFull;
            break;
        }
        logits = p.forward_tokens(pos as u64, &[t]).map_err(e)?;
    }
    if reason != StopReason::StopString {
        // What was held back, and any incomplete character at the end.
        let rest = stops.finish() + &dec.finish();
        show(&mut stdout, &mut text, &rest);
    }
    let gen_ms = t1.elapsed().as_secs_f64() * 1e3;
    p.close();
    if json {
        let v = serde_json::json!({
            "prompt_tokens": ids, "tokens": out, "text": text, "replays": p.replays,
            "stop_reason": format!("{reason:?}"),
            "timings": {"prompt_ms": prompt_ms, "prompt_tokens_per_second": ids.len() as f64 * 1e3 / prompt_ms,
                        "generation_ms": gen_ms, "generation_tokens_per_second": out.len() as f64 * 1e3 / gen_ms}
        });
        let _ = writeln!(stdout, "{v}");
    } else {
        let _ = writeln!(stdout);
        eprintln!(
            "\n{} hops, {} tokens, {:.1} tok/s, {} replays; stop: {reason:?}",
            addrs.len(),
            out.len(),
            out.len() as f64 * 1e3 / gen_ms,
            p.replays
        );
    }
    Ok(())
}
