//! CPU operators of a transformer forward pass. Each works on plain slices in
//! row-major order (`[n_tokens][width]`), and follows ggml's arithmetic where
//! the order of float operations matters for parity with llama.cpp.
//!
//! The weight-reading operator (`matmul`) is where faster kernels slot in:
//! it calls one row kernel per weight row, chosen per CPU by
//! [`crate::kernels`].

pub mod act;
pub mod attention;
pub mod matmul;
pub mod norm;
pub mod rope;
#[cfg(target_arch = "x86_64")]
pub mod simd_x86;

pub use matmul::{matmul, matmul_group, matmul_with, Weight};
