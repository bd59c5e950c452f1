//! Gemma 2: the Gemma block without per-head Q/K norms. Embeddings scaled
//! by `sqrt(n_embd)`, RMSNorm after attention and after the MLP (before the
//! residual adds), GeGLU, NeoX RoPE, queries scaled after RoPE, attention
//! scores soft-capped (`cap * tanh(s / cap)`) before the softmax, the final
//! logits soft-capped too, and sliding-window layers alternating with
//! global ones (even layers slide, by default).
//!
//! Keys and defaults, as llama.cpp reads them:
//! `gemma2.attention.sliding_window` (default 4096),
//! `gemma2.attention.sliding_window_pattern` (default period 2),
//! `gemma2.rope.freq_base_swa` (default: the global base; the sliding
//! layers also keep the global linear scaling),
//! `gemma2.attn_logit_softcapping` (default 50),
//! `gemma2.final_logit_softcapping` (default 30). The query scale is
//! `1/sqrt(head_dim_k)`, or `1/sqrt(n_embd / n_head)` for the 27B model
//! (46 layers).

use super::swa::sliding_layers;
use super::{ArchSpec, BlockSpec, Mlp};
use crate::model::config::{Config, Hparams, SlidingWindow};
use crate::ops::rope::{Rope, RopeLayout};
use crate::{Error, Result};

pub const GEMMA2: ArchSpec = ArchSpec {
    name: "gemma2",
    rope_layout: RopeLayout::Neox,
    default_rope_base: 10_000.0,
    block: BlockSpec {
        qk_norm: false,
        post_norms: true,
        mlp: Mlp::GeGlu,
    },
    hparams,
};

/// A soft-capping value: default `default`, and positive.
fn softcap(h: &Hparams, key: &str, default: f32) -> Result<f32> {
    let cap = h.opt_f32(key)?.unwrap_or(default);
    if cap.is_finite() && cap > 0.0 {
        Ok(cap)
    } else {
        Err(Error::Malformed {
            offset: 0,
            reason: format!("{} is {cap}, not a positive number", h.key(key)),
        })
    }
}

fn hparams(h: &Hparams, cfg: &mut Config) -> Result<()> {
    // Gemma 2 27B has 46 layers.
    super::gemma3::gemma_scales(cfg, 46);
    cfg.attn_softcap = Some(softcap(h, "attn_logit_softcapping", 50.0)?);
    cfg.final_logit_softcap = Some(softcap(h, "final_logit_softcapping", 30.0)?);
    let window = h.opt_usize("attention.sliding_window")?.unwrap_or(4096);
    if window == 0 {
        return Err(Error::Malformed {
            offset: 0,
            reason: format!("{} is 0", h.key("attention.sliding_window")),
        });
    }
    let layers = sliding_layers(h, cfg.n_layer, 2)?;
    cfg.swa = Some(SlidingWindow {
        window,
        layers,
        rope: Rope {
            freq_base: h
                .opt_f32("rope.freq_base_swa")?
                .unwrap_or(cfg.rope.freq_base),
            ..cfg.rope.clone()
        },
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::gguf::{GgufFile, Value};
    use crate::model::{LoadOptions, Model};
    use crate::quant::GgmlType;
    use crate::synth::{synth_model, SynthSpec};
    use crate::Error;
    use std::sync::Arc;

    fn load(edit: impl FnOnce(&mut crate::gguf::GgufWriter)) -> crate::Result<Model> {
        let mut w = synth_model(&SynthSpec::tiny_arch("gemma2", GgmlType::Q8_0), None)?;
        edit(&mut w);
        let file = GgufFile::from_bytes(w.to_bytes())?;
        Model::from_file(Arc::new(file), &LoadOptions::default())
    }

    #[test]
    fn defaults_caps_and_alternating_windows() {
        let m = load(|w| w.remove("gemma2.attention.sliding_window")).unwrap();
        let c = m.config();
        assert_eq!(c.attn_softcap, Some(50.0));
        assert_eq!(c.final_logit_softcap, Some(30.0));
        let swa = c.swa.as_ref().unwrap();
        assert_eq!(swa.window, 4096);
        assert_eq!(swa.layers, vec![true, false]);
        assert_eq!(swa.rope, c.rope);
        let m = load(|w| w.set("gemma2.attn_logit_softcapping", Value::F32(7.5))).unwrap();
        assert_eq!(m.config().attn_softcap, Some(7.5));
        assert_eq!(m.config().swa.as_ref().unwrap().window, 8);
    }

    #[test]
    fn a_cap_of_zero_is_an_error() {
        for key in [
            "gemma2.attn_logit_softcapping",
            "gemma2.final_logit_softcapping",
        ] {
            match load(|w| w.set(key, Value::F32(0.0))) {
                Err(Error::Malformed { reason, .. }) => assert!(reason.contains(key), "{reason}"),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
