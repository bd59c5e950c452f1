//! `strata info`: metadata and the tensor table of a GGUF file.

use crate::args::Args;
use strata::gguf::{GgufFile, Value};
use strata::shard::ModelCost;

pub fn run(raw: &[String]) -> Result<(), String> {
    let a = Args::parse(raw, &["json"], crate::COMMON_ALIASES)?;
    a.check_known(&["json", "model"])?;
    let path = a
        .positional
        .first()
        .map(String::as_str)
        .or(a.str("model"))
        .ok_or("info needs a MODEL path")?;
    let f = GgufFile::open(path).map_err(|e| e.to_string())?;
    if a.flag("json") {
        let meta: serde_json::Map<String, serde_json::Value> = f
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_string())))
            .collect();
        let tensors: Vec<_> = f
            .tensors()
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "type": t.ty.name(), "shape": t.dims, "bytes": t.size}))
            .collect();
        let mut v =
            serde_json::json!({"version": f.version(), "metadata": meta, "tensors": tensors});
        if let Some(c) = ModelCost::from_gguf(&f).ok().filter(|c| c.n_expert > 0) {
            let all = c.estimate(&(0..c.n_layer));
            v["experts"] = serde_json::json!({
                "count": c.n_expert,
                "used": c.n_expert_used,
                "expert_bytes": c.expert_layer_bytes.iter().sum::<u64>(),
                "weight_bytes": all.weight_bytes,
                "active_bytes_per_token": all.active_bytes,
            });
        }
        println!("{v}");
        return Ok(());
    }
    println!(
        "{path}: GGUF v{}, {} metadata keys, {} tensors, data at offset {}",
        f.version(),
        f.metadata().len(),
        f.tensors().len(),
        f.data_offset()
    );
    println!("\nmetadata:");
    for (k, v) in f.metadata() {
        let shown = match v {
            Value::String(s) if s.len() > 80 => format!(
                "{:?}… ({} bytes)",
                s.chars().take(60).collect::<String>(),
                s.len()
            ),
            _ => v.to_string(),
        };
        println!("  {k:<45} {shown}");
    }
    println!(
        "\n  {:<32} {:<6} {:>22} {:>12}",
        "tensor", "type", "shape", "bytes"
    );
    let mut total = 0u64;
    for t in f.tensors() {
        total += t.size;
        println!(
            "  {:<32} {:<6} {:>22} {:>12}",
            t.name,
            t.ty.name(),
            format!("{:?}", t.dims),
            t.size
        );
    }
    println!(
        "\n  {} tensors, {:.1} MiB of weights",
        f.tensors().len(),
        total as f64 / (1 << 20) as f64
    );
    if let Some(line) = ModelCost::from_gguf(&f)
        .ok()
        .as_ref()
        .and_then(experts_line)
    {
        println!("  {line}");
    }
    Ok(())
}

/// For a mixture-of-experts model: its experts, their bytes and the bytes
/// one token reads (`None` for a dense model).
pub fn experts_line(c: &ModelCost) -> Option<String> {
    if c.n_expert == 0 {
        return None;
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let all = c.estimate(&(0..c.n_layer));
    let experts: u64 = c.expert_layer_bytes.iter().sum();
    Some(format!(
        "mixture of experts: {} experts, {} used per token; expert weights {:.1} MiB of {:.1} MiB; \
         a token reads {:.1} MiB ({:.1}% of the weights)",
        c.n_expert,
        c.n_expert_used,
        mib(experts),
        mib(all.weight_bytes),
        mib(all.active_bytes),
        100.0 * all.active_bytes as f64 / all.weight_bytes.max(1) as f64
    ))
}
