//! Mixture-of-experts models on tiny synthetic files (no download): batch
//! invariance of the expert grouping, and typed errors for inconsistent
//! expert metadata and tensors.

use std::sync::Arc;

use strata::gguf::{GgufFile, GgufWriter, Value};
use strata::quant::GgmlType;
use strata::synth::{synth_model, SynthSpec};
use strata::{Error, LoadOptions, Model, Numerics, Session, SessionOptions};

fn load(w: &GgufWriter<'_>, numerics: Numerics) -> strata::Result<Arc<Model>> {
    let file = Arc::new(GgufFile::from_bytes(w.to_bytes())?);
    Model::from_file(
        file,
        &LoadOptions {
            n_threads: Some(2),
            numerics,
            ..Default::default()
        },
    )
    .map(Arc::new)
}

fn specs(ty: GgmlType) -> [SynthSpec; 2] {
    [
        SynthSpec::tiny_arch("qwen3moe", ty),
        SynthSpec::tiny_mixtral(ty),
    ]
}

const PROMPT: &[u32] = &[
    256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33,
];

/// A prompt run as one batch (experts grouped over its tokens, tile
/// matmuls) and token by token (row matmuls) gives the same bits.
#[test]
fn batched_and_alone_give_identical_bits() {
    for ty in [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q5_0] {
        for spec in specs(ty) {
            let m = load(&synth_model(&spec, None).unwrap(), Numerics::BatchInvariant).unwrap();
            assert!(m.config().moe.is_some());
            let opts = SessionOptions { n_ctx: Some(64) };
            let all = Session::new(Arc::clone(&m), &opts)
                .unwrap()
                .feed_all(PROMPT)
                .unwrap();
            let mut s = Session::new(Arc::clone(&m), &opts).unwrap();
            let nv = m.config().n_vocab;
            for (i, &t) in PROMPT.iter().enumerate() {
                let l = s.feed(&[t]).unwrap();
                assert_eq!(
                    l,
                    all[i * nv..(i + 1) * nv],
                    "{} {ty}: position {i}",
                    spec.arch
                );
            }
            assert!(all.iter().all(|x| x.is_finite()));
        }
    }
}

fn with(spec: &SynthSpec, keys: &[(&str, u32)]) -> GgufWriter<'static> {
    let mut w = synth_model(spec, None).unwrap();
    for (k, v) in keys {
        w.set(format!("{}.{k}", spec.arch), Value::U32(*v));
    }
    w
}

fn malformed(r: strata::Result<Arc<Model>>, what: &str) -> String {
    match r {
        Err(Error::Malformed { reason, .. }) => reason,
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn inconsistent_expert_metadata_is_a_typed_error() {
    let [q, mix] = specs(GgmlType::Q8_0);
    let bi = Numerics::BatchInvariant;
    // More experts used than there are.
    let r = malformed(
        load(&with(&q, &[("expert_used_count", 21)]), bi),
        "used > count",
    );
    assert!(r.contains("expert_used_count"), "{r}");
    let r = malformed(load(&with(&mix, &[("expert_used_count", 0)]), bi), "used 0");
    assert!(r.contains("expert_used_count"), "{r}");
    // Experts used but none declared.
    let r = malformed(
        load(&with(&mix, &[("expert_count", 0)]), bi),
        "count 0, used 2",
    );
    assert!(r.contains("no experts"), "{r}");
    // qwen3moe without experts.
    let w = with(&q, &[("expert_count", 0), ("expert_used_count", 0)]);
    let r = malformed(load(&w, bi), "qwen3moe without experts");
    assert!(r.contains("qwen3moe needs"), "{r}");
    // A llama file declaring no experts but holding expert tensors.
    let w = with(&mix, &[("expert_count", 0), ("expert_used_count", 0)]);
    match load(&w, bi) {
        Err(Error::BadTensor { name, reason }) => {
            assert_eq!(name, "blk.0.ffn_gate_inp.weight");
            assert!(reason.contains("expert_count"), "{reason}");
        }
        other => panic!("expert tensors without experts: {other:?}"),
    }
    // Experts declared in a dense file: the router is missing.
    let dense = SynthSpec::tiny(GgmlType::Q8_0);
    let w = with(&dense, &[("expert_count", 4), ("expert_used_count", 2)]);
    match load(&w, bi) {
        Err(Error::MissingTensor(name)) => assert_eq!(name, "blk.0.ffn_gate_inp.weight"),
        other => panic!("missing router: {other:?}"),
    }
    // Stacked tensors of another shape than the metadata says.
    for (key, v, tensor) in [
        (
            "expert_feed_forward_length",
            32,
            "blk.0.ffn_gate_exps.weight",
        ),
        ("expert_count", 16, "blk.0.ffn_gate_inp.weight"),
    ] {
        match load(&with(&q, &[(key, v)]), bi) {
            Err(Error::BadTensor { name, .. }) => assert_eq!(name, tensor, "{key}"),
            other => panic!("{key} = {v}: {other:?}"),
        }
    }
}
