//! `strata info`: metadata and the tensor table of a GGUF file.

use crate::args::Args;
use strata::gguf::{GgufFile, Value};

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
        println!(
            "{}",
            serde_json::json!({"version": f.version(), "metadata": meta, "tensors": tensors})
        );
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
    Ok(())
}
