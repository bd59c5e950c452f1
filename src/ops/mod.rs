//! CPU operators of a transformer forward pass. Each works on plain slices in
//! row-major order (`[n_tokens][width]`), and follows ggml's arithmetic where
//! the order of float operations matters for parity with llama.cpp.
//!
//! The weight-reading operator (`matmul`, and `matmul_group` for weights
//! that share an input) is where faster kernels slot in: it runs row
//! kernels for one token and tile kernels for several, chosen per CPU by
//! [`crate::kernels`], each output computed by exactly one kernel call.

pub mod act;
pub mod attention;
pub mod matmul;
pub mod moe;
pub mod norm;
pub mod rope;
#[cfg(target_arch = "x86_64")]
pub mod simd_x86;

pub use matmul::{matmul, matmul_group, matmul_with, Weight};

/// An output buffer that the tasks of one parallel operator write at once,
/// each its own disjoint part (the operators' SAFETY comments say which),
/// while nothing else touches it.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);

impl OutPtr {
    /// The pointer (a method, so that closures capture the whole `OutPtr`).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: tasks write disjoint parts through it and nothing else touches
// the buffer until they all finish (see each use).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}
