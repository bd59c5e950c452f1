//! Qwen 3: the Llama block with NeoX RoPE and per-head RMSNorm of queries
//! and keys before RoPE.

use super::{no_extra_hparams, ArchSpec, BlockSpec};
use crate::ops::rope::RopeLayout;

pub const QWEN3: ArchSpec = ArchSpec {
    name: "qwen3",
    rope_layout: RopeLayout::Neox,
    default_rope_base: 10_000.0,
    block: BlockSpec {
        qk_norm: true,
        ..BlockSpec::LLAMA
    },
    hparams: no_extra_hparams,
};
