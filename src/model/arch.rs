//! The architecture registry: what differs between model families that share
//! the transformer block in `layers.rs`. Adding a family is one `ArchSpec`
//! here (or a file of its own if its forward differs) and one registry line.

use crate::ops::rope::RopeLayout;
use crate::{Error, Result};

/// What a model family changes in the shared transformer block.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchSpec {
    /// The `general.architecture` name.
    pub name: &'static str,
    pub rope_layout: RopeLayout,
    /// RoPE base when `{arch}.rope.freq_base` is absent.
    pub default_rope_base: f32,
}

/// Llama and the models that reuse its block unchanged.
pub const LLAMA: ArchSpec = ArchSpec {
    name: "llama",
    rope_layout: RopeLayout::Normal,
    default_rope_base: 10_000.0,
};

/// Every supported architecture.
pub const REGISTRY: &[&ArchSpec] = &[&LLAMA];

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
