//! The architecture registry: `general.architecture` → the family's
//! [`ArchSpec`], which says how it differs from the shared transformer
//! block of `layers.rs`: its RoPE layout and defaults, which optional
//! tensors each layer has (and so which steps of the block run), its MLP
//! activation, and a function reading its own hyperparameters.
//!
//! Each family is one small file under `arch/`. Adding one is that file and
//! one line in [`REGISTRY`]:
//!
//! ```ignore
//! // src/model/arch/qwen3.rs
//! pub const QWEN3: ArchSpec = ArchSpec {
//!     name: "qwen3",
//!     rope_layout: RopeLayout::Neox,
//!     default_rope_base: 10_000.0,
//!     block: BlockSpec { qk_norm: true, ..BlockSpec::LLAMA },
//!     hparams: no_extra_hparams,
//! };
//! ```

mod gemma2;
mod gemma3;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;
mod qwen3moe;
mod swa;

use super::config::{Config, Hparams};
use crate::ops::rope::RopeLayout;
use crate::{Error, Result};

pub use gemma2::GEMMA2;
pub use gemma3::GEMMA3;
pub use llama::LLAMA;
pub use phi3::PHI3;
pub use qwen2::QWEN2;
pub use qwen3::QWEN3;
pub use qwen3moe::QWEN3MOE;

/// Every supported architecture.
pub const REGISTRY: &[&ArchSpec] = &[&LLAMA, &QWEN2, &QWEN3, &GEMMA3, &GEMMA2, &PHI3, &QWEN3MOE];

/// What a model family changes in the shared transformer block.
#[derive(Debug, Clone, Copy)]
pub struct ArchSpec {
    /// The `general.architecture` name (also the prefix of its keys).
    pub name: &'static str,
    pub rope_layout: RopeLayout,
    /// RoPE base when `{arch}.rope.freq_base` is absent.
    pub default_rope_base: f32,
    /// The layer's tensors and steps.
    pub block: BlockSpec,
    /// Reads the family's own hyperparameters after the common ones
    /// (sliding windows, embedding scale, softcaps, attention scale).
    pub hparams: fn(&Hparams, &mut Config) -> Result<()>,
}

/// The steps of a transformer block that vary between families. Every
/// block is: RMSNorm → Q/K/V projections (+ biases where the file has
/// them) → [per-head Q/K RMSNorm] → RoPE → attention → output projection →
/// [RMSNorm] → residual add → RMSNorm → gated MLP → [RMSNorm] → residual
/// add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    /// Per-head RMSNorm of queries and keys before RoPE
    /// (`blk.N.attn_q_norm`, `blk.N.attn_k_norm`, `[head_dim_k]`).
    pub qk_norm: bool,
    /// RMSNorm of the attention and MLP outputs before their residual adds
    /// (`blk.N.post_attention_norm`, `blk.N.post_ffw_norm`, `[n_embd]`).
    pub post_norms: bool,
    /// The gate activation of the MLP.
    pub mlp: Mlp,
}

impl BlockSpec {
    /// The Llama block: pre-norms only, SwiGLU.
    pub const LLAMA: BlockSpec = BlockSpec {
        qk_norm: false,
        post_norms: false,
        mlp: Mlp::SwiGlu,
    };
}

/// Gated MLP variants: `down(act(gate(x)) * up(x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mlp {
    /// `act = silu`.
    SwiGlu,
    /// `act = gelu` (tanh approximation, as ggml's table).
    GeGlu,
}

/// For families with nothing beyond the common keys.
pub fn no_extra_hparams(_: &Hparams, _: &mut Config) -> Result<()> {
    Ok(())
}

/// The spec for a `general.architecture` name.
pub fn lookup(name: &str) -> Result<&'static ArchSpec> {
    REGISTRY
        .iter()
        .find(|s| s.name == name)
        .copied()
        .ok_or_else(|| Error::UnknownArchitecture {
            name: name.to_string(),
            supported: REGISTRY
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_unknown_names_list_them() {
        for (i, a) in REGISTRY.iter().enumerate() {
            assert!(
                REGISTRY[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
        match lookup("mamba9") {
            Err(Error::UnknownArchitecture { name, supported }) => {
                assert_eq!(name, "mamba9");
                assert_eq!(
                    supported,
                    "llama, qwen2, qwen3, gemma3, gemma2, phi3, qwen3moe"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lookup("gemma3").unwrap().name, "gemma3");
    }
}
