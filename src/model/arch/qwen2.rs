//! Qwen 2 / 2.5: the Llama block with NeoX RoPE and biases on the Q/K/V
//! projections (`blk.N.attn_{q,k,v}.bias`, bound wherever a file has them).

use super::{no_extra_hparams, ArchSpec, BlockSpec};
use crate::ops::rope::RopeLayout;

pub const QWEN2: ArchSpec = ArchSpec {
    name: "qwen2",
    rope_layout: RopeLayout::Neox,
    default_rope_base: 10_000.0,
    block: BlockSpec::LLAMA,
    hparams: no_extra_hparams,
};
