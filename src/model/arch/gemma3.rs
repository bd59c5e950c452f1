//! Gemma 3: embeddings scaled by `sqrt(n_embd)`, per-head Q/K RMSNorm,
//! RMSNorm after attention and after the MLP (before the residual adds),
//! GeGLU, NeoX RoPE, queries scaled by `1/sqrt(head_dim_k)` after RoPE, and
//! sliding-window layers interleaved with global ones (five local, then one
//! global, by default), each kind with its own RoPE base.
//!
//! The GGUF converter already adds 1 to Gemma's RMSNorm weights, so they are
//! used as they are. Keys (as llama.cpp reads them):
//! `gemma3.attention.sliding_window` (0 or absent: every layer global),
//! `gemma3.attention.sliding_window_pattern` (period; default 6: layer `i`
//! is sliding unless `i % 6 == 5`), `gemma3.rope.freq_base_swa` (default
//! 10000), `gemma3.final_logit_softcapping` (default none).

use super::swa::sliding_layers;
use super::{ArchSpec, BlockSpec, Mlp};
use crate::model::config::{AttnScale, Config, Hparams, SlidingWindow};
use crate::ops::rope::{Rope, RopeLayout};
use crate::Result;

pub const GEMMA3: ArchSpec = ArchSpec {
    name: "gemma3",
    rope_layout: RopeLayout::Neox,
    default_rope_base: 10_000.0,
    block: BlockSpec {
        qk_norm: true,
        post_norms: true,
        mlp: Mlp::GeGlu,
    },
    hparams,
};

/// Gemma's scales: embeddings by `sqrt(n_embd)`, queries by
/// `1/sqrt(head_dim_k)` — or, in the 27B model (`n_layer_27b` layers), by
/// `1/sqrt(n_embd / n_head)`.
pub(super) fn gemma_scales(cfg: &mut Config, n_layer_27b: usize) {
    cfg.embd_scale = Some((cfg.n_embd as f32).sqrt());
    let d = if cfg.n_layer == n_layer_27b {
        (cfg.n_embd / cfg.n_head) as f32
    } else {
        cfg.head_dim_k as f32
    };
    cfg.attn_scale = AttnScale::Queries(1.0 / d.sqrt());
}

fn hparams(h: &Hparams, cfg: &mut Config) -> Result<()> {
    // Gemma 3 27B has 62 layers.
    gemma_scales(cfg, 62);
    cfg.final_logit_softcap = h.opt_f32("final_logit_softcapping")?.filter(|&c| c != 0.0);
    let window = h.opt_usize("attention.sliding_window")?.unwrap_or(0);
    if window > 0 {
        let layers = sliding_layers(h, cfg.n_layer, 6)?;
        cfg.swa = Some(SlidingWindow {
            window,
            layers,
            rope: Rope {
                freq_base: h.opt_f32("rope.freq_base_swa")?.unwrap_or(10_000.0),
                freq_scale: 1.0,
                freq_factors: None,
                ..cfg.rope.clone()
            },
        });
    }
    Ok(())
}
