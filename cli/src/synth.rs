//! `strata synth`: write a random-weight model of any supported family,
//! shape and type (mixture-of-experts ones included).

use crate::args::Args;
use strata::gguf::{GgufFile, Value};
use strata::quant::GgmlType;
use strata::synth::{synth_model, SynthMoe, SynthSpec};

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
        "experts",
        "experts-used",
        "expert-ff",
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
    if let Some(n) = a.get::<usize>("experts")? {
        let used = a.get("experts-used")?.unwrap_or(2.min(n));
        let ff = match a.get("expert-ff")? {
            Some(f) => f,
            None if arch == "llama" => s.n_ff,
            None => s.moe.map_or(s.n_ff / used.max(1), |m| m.n_ff_exp),
        };
        s.moe = (n > 0).then_some(SynthMoe {
            n_expert: n,
            n_expert_used: used,
            n_ff_exp: ff,
        });
    } else if let Some(m) = &mut s.moe {
        m.n_expert_used = a.get("experts-used")?.unwrap_or(m.n_expert_used);
        m.n_ff_exp = a.get("expert-ff")?.unwrap_or(m.n_ff_exp);
    }
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
