//! `strata perplexity`: a model's perplexity over a text file, computed as
//! llama.cpp's `llama-perplexity` does (see `strata::perplexity`), with a
//! running estimate, and KL-divergence against saved base log-probabilities.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::args::Args;
use strata::perplexity::{perplexity, ChunkDone, KlBase, KlBaseWriter, KlMode, PerplexityOptions};
use strata::Model;

const ALIASES: &[(&str, &str)] = &[
    ("-m", "--model"),
    ("-f", "--file"),
    ("-c", "--ctx-size"),
    ("-b", "--batch-size"),
    ("-t", "--threads"),
];

pub fn run(raw: &[String]) -> Result<(), String> {
    let a = Args::parse(raw, &["kl-divergence"], ALIASES)?;
    a.check_known(&[
        "model",
        "file",
        "ctx-size",
        "batch-size",
        "threads",
        "chunks",
        "kl-divergence-base",
        "kl-divergence",
    ])?;
    let file = a.str("file").ok_or("perplexity needs -f TEXT_FILE")?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let n_ctx: usize = a.get("ctx-size")?.unwrap_or(512);
    let opts = PerplexityOptions {
        n_ctx,
        n_batch: a.get::<usize>("batch-size")?.unwrap_or(n_ctx).min(n_ctx),
        max_chunks: a.get("chunks")?,
    };
    let base = a.str("kl-divergence-base");
    let compare = a.flag("kl-divergence");
    if compare && base.is_none() {
        return Err("--kl-divergence needs --kl-divergence-base FILE".into());
    }
    let path = crate::model_path(&a)?;
    let model = Arc::new(Model::load(&path, &crate::load_options(&a)?).map_err(|e| e.to_string())?);
    let (mut writer, mut reader) = (None, None);
    let kl = match (base, compare) {
        (Some(b), false) => KlMode::Save(
            writer.insert(KlBaseWriter::create(Path::new(b)).map_err(|e| e.to_string())?),
        ),
        (Some(b), true) => {
            KlMode::Compare(reader.insert(KlBase::open(Path::new(b)).map_err(|e| e.to_string())?))
        }
        _ => KlMode::None,
    };
    let t0 = std::time::Instant::now();
    let mut line = String::new();
    let progress = |c: &ChunkDone| {
        // The running estimates, llama-perplexity's "[i]ppl," list, on
        // stdout; a progress bar on stderr.
        let mut out = std::io::stdout();
        let _ = write!(out, "[{}]{:.4},", c.done, c.ppl);
        let _ = out.flush();
        line.clear();
        let width = 30;
        let filled = c.done * width / c.total;
        let secs = t0.elapsed().as_secs_f64();
        let eta = secs / c.done as f64 * (c.total - c.done) as f64;
        line.push_str(&format!(
            "\r[{}{}] {}/{} chunks, PPL {:.4}",
            "#".repeat(filled),
            " ".repeat(width - filled),
            c.done,
            c.total,
            c.ppl
        ));
        if let Some(k) = &c.kld {
            line.push_str(&format!(", KLD {:.6}", k.mean()));
        }
        line.push_str(&format!(", {secs:.0} s, ETA {eta:.0} s "));
        eprint!("{line}");
    };
    let r = perplexity(&model, &text, &opts, kl, progress).map_err(|e| e.to_string())?;
    println!();
    eprintln!();
    let err = r
        .sums
        .ppl_error()
        .map_or_else(|| "n/a".to_string(), |e| format!("{e:.5}"));
    println!(
        "Final estimate: PPL = {:.4} +/- {err} ({} chunks of {} tokens, {} scored; the text has {} tokens)",
        r.sums.ppl(),
        r.chunks,
        r.n_ctx,
        r.sums.count,
        r.text_tokens
    );
    if let Some(w) = base.filter(|_| !compare) {
        println!("KL-divergence base written to {w}");
    }
    if let Some(k) = r.kld {
        let e = k
            .mean_error()
            .map_or_else(|| "n/a".to_string(), |e| format!("{e:.6}"));
        println!(
            "Mean KLD: {:.6} +/- {e}; same top token: {:.3}%; base PPL {:.4}",
            k.mean(),
            100.0 * k.same_top_share(),
            k.base.ppl()
        );
    }
    Ok(())
}
