//! Tensor element formats: the GGML type ids found in GGUF files, their block
//! layouts, reference (scalar) dequantization and quantization, and the
//! scalar dot products of weight rows against 8-bit quantized activations.

mod types;

pub use types::GgmlType;
