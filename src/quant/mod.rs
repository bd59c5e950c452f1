//! Tensor element formats: the GGML type ids found in GGUF files, their block
//! layouts, reference (scalar) dequantization and quantization, and the
//! scalar dot products of weight rows against 8-bit quantized activations.
//!
//! Every format is a `#[repr(C)]` struct of byte arrays (alignment 1) that
//! mirrors ggml's `block_*` struct, so tensor bytes from a memory-mapped file
//! are viewed in place at any offset ([`cast_blocks`]). Each implements
//! [`BlockFormat`]; [`dequantize`], [`quantize`], [`vec_dot_type`] and
//! [`vec_dot`] dispatch on a [`GgmlType`] at run time.
//!
//! Numerics follow llama.cpp's CPU backend as built for x86-64 with AVX2:
//! dequantization is bit-identical to `ggml_get_type_traits(t)->to_float`,
//! activation quantization to `ggml_get_type_traits_cpu(t)->from_float`, and
//! the dot products reproduce the AVX2 `ggml_vec_dot_*` kernels' lane layout
//! and float order (checked in `tests/quant_vs_ggml.rs`).

mod block;
pub(crate) mod dispatch;
mod float;
mod k_quants;
mod q4;
mod q5;
mod q8;
#[cfg(target_arch = "x86_64")]
mod q8_x86;
#[cfg(test)]
pub(crate) mod testutil;
mod types;

pub use block::{blocks_as_bytes, cast_blocks, cast_blocks_mut, BlockFormat, PlainBytes};
pub use dispatch::{
    dequantize, is_supported, quantize, quantize_reference, try_vec_dot, vec_dot, vec_dot_type,
};
pub use float::{BF16, F16, F32};
pub use k_quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
pub use q4::{BlockQ4_0, BlockQ4_1};
pub use q5::{BlockQ5_0, BlockQ5_1};
pub use q8::{BlockQ8K, BlockQ8_0, BlockQ8_1};
pub use types::GgmlType;

#[cfg(test)]
mod tests;
