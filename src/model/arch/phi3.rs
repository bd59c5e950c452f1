//! Phi-3: the Llama block with NeoX RoPE, one fused Q/K/V projection
//! (`blk.N.attn_qkv`, Q's rows then K's then V's) and one fused gate/up
//! projection (`blk.N.ffn_up` of `2 * n_ff` rows, the gate's first; no
//! `ffn_gate`), both split into row views when the weights are bound (see
//! `weights.rs`). Queries are scaled by `1/sqrt(head_dim)` after RoPE and
//! the scores are not scaled again (llama.cpp's `ggml_scale(Q)` and
//! `kq_scale = 1`).
//!
//! Like llama.cpp, `phi3.attention.sliding_window` is read and ignored
//! (llama.cpp disables Phi-3's sliding window: every layer is global).
//! Not supported, refused with an error: LongRoPE files (the 128k-context
//! models: `rope_factors_long`/`rope_factors_short` tensors or
//! `rope.scaling.type = longrope`, whose factors llama.cpp picks by the
//! context size), and an output bias (`output.bias`).

use super::{ArchSpec, BlockSpec};
use crate::model::config::{AttnScale, Config, Hparams};
use crate::ops::rope::RopeLayout;
use crate::{Error, Result};

pub const PHI3: ArchSpec = ArchSpec {
    name: "phi3",
    rope_layout: RopeLayout::Neox,
    default_rope_base: 10_000.0,
    block: BlockSpec::LLAMA,
    hparams,
};

fn hparams(h: &Hparams, cfg: &mut Config) -> Result<()> {
    for t in [
        "rope_factors_long.weight",
        "rope_factors_short.weight",
        "output.bias",
    ] {
        if h.file.tensor(t).is_some() {
            return Err(Error::BadTensor {
                name: t.into(),
                reason: "phi3: LongRoPE factors and output biases are not supported".into(),
            });
        }
    }
    if h.opt_str("rope.scaling.type") == Some("longrope") {
        return Err(Error::Malformed {
            offset: 0,
            reason: format!("{}: longrope is not supported", h.key("rope.scaling.type")),
        });
    }
    if cfg.head_dim_k != cfg.head_dim_v {
        return Err(Error::Malformed {
            offset: 0,
            reason: format!(
                "phi3 needs equal key and value head lengths, not {} and {}",
                cfg.head_dim_k, cfg.head_dim_v
            ),
        });
    }
    cfg.attn_scale = AttnScale::Queries(1.0 / (cfg.head_dim_k as f32).sqrt());
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::gguf::{GgufFile, GgufWriter, TensorData, Value};
    use crate::model::{LoadOptions, Model};
    use crate::quant::GgmlType;
    use crate::synth::{synth_model, SynthSpec};
    use crate::Error;
    use std::sync::Arc;

    fn load(edit: impl FnOnce(&mut GgufWriter)) -> crate::Result<Model> {
        let mut w = synth_model(&SynthSpec::tiny_arch("phi3", GgmlType::Q8_0), None)?;
        edit(&mut w);
        let file = GgufFile::from_bytes(w.to_bytes())?;
        Model::from_file(Arc::new(file), &LoadOptions::default())
    }

    #[test]
    fn fused_tensors_are_split_into_rows() {
        let m = load(|_| {}).unwrap();
        let f = m.file();
        assert!(f.tensor("blk.0.attn_qkv.weight").is_some());
        assert!(f.tensor("blk.0.attn_q.weight").is_none());
        assert!(f.tensor("blk.0.ffn_gate.weight").is_none());
        let mut cache = m.new_cache(16);
        let out = m
            .forward(
                &mut cache,
                crate::model::Input::Tokens(&[1, 2, 3]),
                0,
                crate::model::Logits::Last,
            )
            .unwrap();
        match out {
            crate::model::Output::Logits(l) => assert!(l.iter().all(|x| x.is_finite())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn longrope_and_short_fused_tensors_are_errors() {
        let factors = |w: &mut GgufWriter| {
            let v: Vec<u8> = (0..8).flat_map(|_| 1f32.to_le_bytes()).collect();
            w.add_tensor(
                "rope_factors_long.weight",
                GgmlType::F32,
                &[8],
                TensorData::Owned(v),
            )
            .unwrap();
        };
        assert!(
            matches!(load(factors), Err(Error::BadTensor { name, .. }) if name == "rope_factors_long.weight")
        );
        let longrope =
            |w: &mut GgufWriter| w.set("phi3.rope.scaling.type", Value::String("longrope".into()));
        assert!(matches!(load(longrope), Err(Error::Malformed { .. })));
        // A fused ffn_up of n_ff rows instead of 2 * n_ff.
        let short = |w: &mut GgufWriter| w.set("phi3.feed_forward_length", Value::U32(256));
        assert!(matches!(load(short), Err(Error::BadTensor { .. })));
    }
}
