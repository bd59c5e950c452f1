//! RoPE scaling metadata as llama.cpp reads it: the linear factor for every
//! type but `none`, YaRN's parameters and attention factor, and typed errors
//! for an unknown scaling type.

use std::sync::Arc;

use strata::gguf::{GgufFile, GgufWriter, Value};
use strata::quant::GgmlType;
use strata::synth::{synth_model, SynthSpec};
use strata::{Error, LoadOptions, Model};

fn load(arch: &str, keys: &[(&str, Value)]) -> strata::Result<Model> {
    let mut w: GgufWriter = synth_model(&SynthSpec::tiny_arch(arch, GgmlType::Q8_0), None)?;
    for (k, v) in keys {
        w.set(format!("{arch}.{k}"), v.clone());
    }
    Model::from_file(
        Arc::new(GgufFile::from_bytes(w.to_bytes())?),
        &LoadOptions::default(),
    )
}

fn yarn_type() -> (&'static str, Value) {
    ("rope.scaling.type", Value::String("yarn".into()))
}

#[test]
fn yarn_reads_factor_original_context_and_attention_factor() {
    let m = load(
        "qwen2",
        &[
            yarn_type(),
            ("rope.scaling.factor", Value::F32(4.0)),
            ("rope.scaling.original_context_length", Value::U32(32768)),
        ],
    )
    .unwrap();
    let r = &m.config().rope;
    assert_eq!(r.freq_scale, 0.25);
    let y = r.yarn.unwrap();
    assert_eq!(
        (y.ext_factor, y.beta_fast, y.beta_slow, y.n_ctx_orig),
        (1.0, 32.0, 1.0, 32768)
    );
    // llama.cpp's mscale divided by the one ggml's rope applies again.
    assert!((y.attn_factor - 1.0).abs() < 1e-6, "{}", y.attn_factor);

    // The extra attention factor multiplies; the original context defaults
    // to the training context.
    let m = load(
        "llama",
        &[
            yarn_type(),
            ("rope.scaling.factor", Value::F32(8.0)),
            ("rope.scaling.attn_factor", Value::F32(0.5)),
        ],
    )
    .unwrap();
    let y = m.config().rope.yarn.unwrap();
    assert_eq!(y.n_ctx_orig, m.config().n_ctx_train);
    assert!((y.attn_factor - 0.5).abs() < 1e-6, "{}", y.attn_factor);
}

#[test]
fn linear_and_none_scaling() {
    let m = load("llama", &[("rope.scaling.factor", Value::F32(2.0))]).unwrap();
    assert_eq!(m.config().rope.freq_scale, 0.5);
    assert_eq!(m.config().rope.yarn, None);
    let none = ("rope.scaling.type", Value::String("none".into()));
    let m = load("llama", &[none, ("rope.scaling.factor", Value::F32(2.0))]).unwrap();
    assert_eq!(m.config().rope.freq_scale, 1.0);
    // An attention factor alone scales cos and sin, without YaRN's ramp.
    let m = load("qwen3", &[("rope.scaling.attn_factor", Value::F32(1.5))]).unwrap();
    let y = m.config().rope.yarn.unwrap();
    assert_eq!((y.ext_factor, y.attn_factor), (0.0, 1.5));
}

#[test]
fn an_unknown_scaling_type_is_an_error() {
    let bad = ("rope.scaling.type", Value::String("ntk-by-parts".into()));
    match load("qwen2", &[bad]) {
        Err(Error::Malformed { reason, .. }) => {
            assert!(reason.contains("ntk-by-parts"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
