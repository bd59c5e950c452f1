//! `strata synth`: write a random-weight model of any supported family,
//! shape and type.

use crate::args::Args;
use strata::gguf::{GgufFile, Value};
use strata::quant::GgmlType;
use strata::synth::{synth_model, SynthSpec};

fn ty(name: &str) -> Result<GgmlType, String> {
    GgmlType::all()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("unknown tensor type '{name}'"))
}

pub fn run(raw: &[String]) -> Result<(), String> {
    let a = Args::parse(raw, &["separate-output"], crate::COMMON_ALIASES)?;
    a.check_known(&[
        "output",
        "layers",
        "embd",
        "ff",
        "heads",
        "kv-heads",
        "vocab",
        "ctx-size",
        "type",
        "embd-type",
        "tokenizer-from",
        "seed",
        "separate-output",
        "arch",
        "yarn",
        "yarn-orig-ctx",
    ])?;
    let out = a.str("output").ok_or("synth needs -o OUT.gguf")?;
    let arch = a.str("arch").unwrap_or("llama");
    let mut s = SynthSpec::tiny_arch(arch, GgmlType::Q4_0);
    s.n_layer = a.get("layers")?.unwrap_or(s.n_layer);
    s.n_embd = a.get("embd")?.unwrap_or(s.n_embd);
    s.n_ff = a.get("ff")?.unwrap_or(s.n_embd * 4);
    s.n_head = a.get("heads")?.unwrap_or(s.n_head);
    s.n_head_kv = a.get("kv-heads")?.unwrap_or(s.n_head);
    s.n_vocab = a.get("vocab")?.unwrap_or(s.n_vocab);
    s.n_ctx = a.get("ctx-size")?.unwrap_or(4096);
    s.seed = a.get("seed")?.unwrap_or(1);
    s.separate_output = a.flag("separate-output");
    if let Some(t) = a.str("type") {
        s.weight_type = ty(t)?;
    }
    if let Some(t) = a.str("embd-type") {
        s.embedding_type = ty(t)?;
    }
    let src = match a.str("tokenizer-from") {
        Some(p) => Some(GgufFile::open(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut w = synth_model(&s, src.as_ref()).map_err(|e| e.to_string())?;
    // YaRN RoPE scaling, as long-context files record it.
    if let Some(factor) = a.get::<f32>("yarn")? {
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(format!("--yarn {factor}: the factor must be at least 1"));
        }
        let orig: usize = a.get("yarn-orig-ctx")?.unwrap_or(s.n_ctx);
        w.set(
            format!("{arch}.rope.scaling.type"),
            Value::String("yarn".into()),
        );
        w.set(format!("{arch}.rope.scaling.factor"), Value::F32(factor));
        w.set(
            format!("{arch}.rope.scaling.original_context_length"),
            Value::U32(orig as u32),
        );
    } else if a.str("yarn-orig-ctx").is_some() {
        return Err("--yarn-orig-ctx needs --yarn FACTOR".into());
    }
    w.write_file(out).map_err(|e| e.to_string())?;
    eprintln!("wrote {out}: {s:?}");
    Ok(())
}
