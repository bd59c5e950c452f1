//! Llama (and the models that reuse its block unchanged: SmolLM, Mistral 7B
//! and others converted as `llama`): pre-norm, RoPE on adjacent pairs,
//! SwiGLU.

use super::{no_extra_hparams, ArchSpec, BlockSpec};
use crate::ops::rope::RopeLayout;

pub const LLAMA: ArchSpec = ArchSpec {
    name: "llama",
    rope_layout: RopeLayout::Normal,
    default_rope_base: 10_000.0,
    block: BlockSpec::LLAMA,
    hparams: no_extra_hparams,
};
