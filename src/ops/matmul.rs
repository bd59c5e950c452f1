//! Matrix multiplication of quantized weights by f32 activations.
//!
//! The activations are quantized once per call to the 8-bit block format the
//! weight type pairs with; every output is then one integer-sum dot product
//! of a weight row and an activation row. Each output is computed by exactly
//! one task in a fixed order, so results do not depend on the thread count.

use std::ops::Range;
use std::sync::Arc;

use rayon::prelude::*;

use crate::gguf::GgufFile;
use crate::kernels;
use crate::quant::{self, GgmlType};

/// A 2-D weight matrix viewed in place in a mapped GGUF file.
#[derive(Clone)]
pub struct Weight {
    pub name: String,
    pub ty: GgmlType,
    /// Output features (rows, the outer dimension).
    pub rows: usize,
    /// Input features (values per row).
    pub cols: usize,
    file: Arc<GgufFile>,
    range: Range<usize>,
}

impl std::fmt::Debug for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Weight({} {} [{}x{}])",
            self.name, self.ty, self.rows, self.cols
        )
    }
}

impl Weight {
    /// A view of tensor data `range` (already checked to lie in the file).
    pub(crate) fn new(
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        file: Arc<GgufFile>,
        range: Range<usize>,
    ) -> Weight {
        Weight {
            name: name.to_string(),
            ty,
            rows,
            cols,
            file,
            range,
        }
    }

    /// All rows' bytes.
    pub fn data(&self) -> &[u8] {
        &self.file.bytes()[self.range.clone()]
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.cols as u64).unwrap_or(0) as usize
    }

    /// One row dequantized to f32 (used for embedding lookups).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> crate::Result<()> {
        let rb = self.row_bytes();
        quant::dequantize(self.ty, &self.data()[r * rb..(r + 1) * rb], out)
    }
}

/// Rows of W handled by one task.
const ROWS_PER_TASK: usize = 16;

/// `out[t][r] = W[r] · x[t]` for `n_tokens` rows of `x` (`[n_tokens][cols]`);
/// `out` is `[n_tokens][rows]`. Runs on the current rayon pool.
pub fn matmul(w: &Weight, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    let act_ty = quant::vec_dot_type(w.ty);
    let act_row = act_ty.row_bytes(w.cols as u64).unwrap_or(0) as usize;
    let mut act = vec![0u8; act_row * n_tokens];
    act.par_chunks_mut(act_row)
        .zip(x.par_chunks(w.cols))
        .for_each(|(a, xr)| {
            // Sizes are consistent by construction.
            let _ = quant::quantize(act_ty, xr, a);
        });
    let data = w.data();
    let wrow = w.row_bytes();
    let Some(kernel) = kernels::row_dot(w.ty) else {
        // Weight types are checked when a model is loaded.
        out.fill(f32::NAN);
        return;
    };
    // `out[i] = W[r0 + i] · act[t]` for the rows of one task.
    let dot_rows = |r0: usize, t: usize, out: &mut [f32]| {
        kernel.dot_rows(
            &data[r0 * wrow..(r0 + out.len()) * wrow],
            &act[t * act_row..(t + 1) * act_row],
            out,
        )
    };
    if n_tokens == 1 {
        out.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(c, o)| dot_rows(c * ROWS_PER_TASK, 0, o));
        return;
    }
    // Many tokens: each task owns a block of rows for all tokens (so a weight
    // row is read from memory once per call), written transposed and then
    // put in place.
    let mut tmp = vec![0f32; w.rows * n_tokens];
    tmp.par_chunks_mut(ROWS_PER_TASK * n_tokens)
        .enumerate()
        .for_each(|(c, o)| {
            let rows = o.len() / n_tokens;
            let mut col = [0f32; ROWS_PER_TASK];
            for t in 0..n_tokens {
                dot_rows(c * ROWS_PER_TASK, t, &mut col[..rows]);
                for (i, &v) in col[..rows].iter().enumerate() {
                    o[i * n_tokens + t] = v;
                }
            }
        });
    for t in 0..n_tokens {
        for r in 0..w.rows {
            out[t * w.rows + r] = tmp[r * n_tokens + t];
        }
    }
}
