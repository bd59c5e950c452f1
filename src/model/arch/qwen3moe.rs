//! Qwen3-MoE (Qwen3-30B-A3B, 235B-A22B): the Qwen 3 block (NeoX RoPE,
//! per-head Q/K RMSNorm) with a mixture-of-experts MLP in every layer
//! (see [`crate::model::moe`]): softmax router, top-`expert_used_count`
//! experts, their weights normalized to sum 1. Keys: `qwen3moe.expert_count`
//! and `qwen3moe.expert_used_count` (both required, > 0),
//! `qwen3moe.expert_feed_forward_length` (default
//! `feed_forward_length / expert_used_count`, as llama.cpp).

use super::{ArchSpec, BlockSpec};
use crate::model::config::{Config, Hparams};
use crate::ops::rope::RopeLayout;
use crate::{Error, Result};

pub const QWEN3MOE: ArchSpec = ArchSpec {
    name: "qwen3moe",
    rope_layout: RopeLayout::Neox,
    default_rope_base: 10_000.0,
    block: BlockSpec {
        qk_norm: true,
        ..BlockSpec::LLAMA
    },
    hparams,
};

fn hparams(h: &Hparams, cfg: &mut Config) -> Result<()> {
    let Some(m) = &mut cfg.moe else {
        return Err(Error::Malformed {
            offset: 0,
            reason: format!(
                "qwen3moe needs {} > 0 and {} > 0",
                h.key("expert_count"),
                h.key("expert_used_count")
            ),
        });
    };
    if h.opt_usize("expert_feed_forward_length")?.is_none() {
        m.n_ff_exp = cfg.n_ff / m.n_expert_used;
        if m.n_ff_exp == 0 {
            return Err(Error::Malformed {
                offset: 0,
                reason: "the experts' feed-forward length is 0".into(),
            });
        }
    }
    Ok(())
}
