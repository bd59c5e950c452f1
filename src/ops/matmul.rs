//! Matrix multiplication of quantized weights by f32 activations.
//!
//! The activations are quantized once per call to the 8-bit block format the
//! weight type pairs with; every output is then one integer-sum dot product
//! of a weight row and an activation row. Each output is computed by exactly
//! one task in a fixed order, so results do not depend on the thread count.

use std::ops::Range;
use std::sync::Arc;

use rayon::prelude::*;

use super::OutPtr;
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

    /// Rows `rows` of this matrix as a matrix of their own, over the same
    /// bytes (the parts of a fused tensor, such as Phi-3's `attn_qkv`).
    /// `None` if the range is not inside the matrix.
    pub fn rows_view(&self, name: &str, rows: Range<usize>) -> Option<Weight> {
        if rows.start > rows.end || rows.end > self.rows {
            return None;
        }
        let rb = self.row_bytes();
        let start = self.range.start + rows.start * rb;
        Some(Weight {
            name: name.to_string(),
            ty: self.ty,
            rows: rows.len(),
            cols: self.cols,
            file: Arc::clone(&self.file),
            range: start..start + rows.len() * rb,
        })
    }

    /// One row dequantized to f32 (used for embedding lookups).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> crate::Result<()> {
        let rb = self.row_bytes();
        quant::dequantize(self.ty, &self.data()[r * rb..(r + 1) * rb], out)
    }
}

/// Rows of W handled by one task.
const ROWS_PER_TASK: usize = 16;

/// Up to this many tokens a matmul runs the row kernel once per token
/// rather than the tile kernel: a tile call unpacks its weight rows into
/// scratch before it uses them, which for one to three tokens costs more
/// than the row kernel's work (measured on both real models: two streams
/// decoding together took 2.6× one stream's step with tiles, 1.6–1.8×
/// with rows; at four tokens the two are even, from six on tiles win).
/// The second and third tokens find the task's weight rows in the L1
/// cache. Either kernel gives the reference's bits.
const ROW_KERNEL_MAX_TOKENS: usize = 3;

/// Rows of W handled by one task of a many-token matmul.
const TILE_ROWS: usize = 32;

/// Tokens handled by one task of a many-token matmul.
const TOKENS_PER_TASK: usize = 256;

/// Tokens per [`kernels::TileDot::dot_tile`] call within a task.
const CALL_TOKENS: usize = 64;

/// `out[t][r] = W[r] · x[t]` for `n_tokens` rows of `x` (`[n_tokens][cols]`);
/// `out` is `[n_tokens][rows]` (longer `x` or `out` are used only that
/// far). Runs on the current rayon pool.
///
/// Up to `ROW_KERNEL_MAX_TOKENS` tokens: tasks of `ROWS_PER_TASK` rows
/// through the row kernel, once per token. More tokens: tasks of `TILE_ROWS` rows × up to `TOKENS_PER_TASK` tokens
/// through the tile kernel ([`kernels::TileDot`]: the task's weight rows,
/// unpacked once per call, stay in cache while it walks its tokens), each
/// task writing its outputs in place. Either way each output is computed by
/// exactly one kernel call, with the bits of the scalar reference.
///
/// Allocates the quantized activations for the call; [`matmul_with`] takes
/// a buffer that a caller keeps (as the forward pass does).
pub fn matmul(w: &Weight, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    matmul_with(w, x, n_tokens, out, &mut Vec::new());
}

/// [`matmul`] with the caller's buffer for the quantized activations
/// (resized as needed, so that a caller that keeps it allocates nothing).
pub fn matmul_with(w: &Weight, x: &[f32], n_tokens: usize, out: &mut [f32], act: &mut Vec<u8>) {
    matmul_group([w], x, n_tokens, [out], act)
}

/// `outs[k] = ws[k] · x` for `K` weights that read the same input (a
/// layer's Q, K and V projections; its gate and up projections): the input
/// is quantized once per activation format, and all the weights' tasks run
/// in one parallel region, so the threads meet once rather than `K` times.
/// Each output has the same bits as [`matmul`] gives it. `act` is the
/// caller's buffer for the quantized activations.
pub fn matmul_group<const K: usize>(
    ws: [&Weight; K],
    x: &[f32],
    n_tokens: usize,
    outs: [&mut [f32]; K],
    act: &mut Vec<u8>,
) {
    let cols = ws.first().map_or(0, |w| w.cols);
    assert!(
        ws.iter().all(|w| w.cols == cols),
        "matmul_group: weights of different widths"
    );
    assert!(
        x.len() >= n_tokens * cols,
        "matmul: x shorter than [n_tokens][cols]"
    );
    // Each output as far as it is used.
    let mut k = 0;
    let outs = outs.map(|o| {
        let len = n_tokens * ws[k].rows;
        k += 1;
        assert!(o.len() >= len, "matmul: out shorter than [n_tokens][rows]");
        &mut o[..len]
    });
    // The activation formats, each quantized once into its own part of
    // `act`: weight k's activations are those of weight `owner[k]` (the
    // first with the same format), starting at `act_at[k]`, rows of
    // `act_row[k]` bytes.
    let act_ty: [GgmlType; K] = std::array::from_fn(|k| quant::vec_dot_type(ws[k].ty));
    let act_row: [usize; K] =
        std::array::from_fn(|k| act_ty[k].row_bytes(cols as u64).unwrap_or(0) as usize);
    let owner: [usize; K] =
        std::array::from_fn(|k| (0..k).find(|&j| act_ty[j] == act_ty[k]).unwrap_or(k));
    let mut act_at = [0usize; K];
    let mut len = 0;
    for k in 0..K {
        if owner[k] == k {
            act_at[k] = len;
            len += act_row[k] * n_tokens;
        } else {
            act_at[k] = act_at[owner[k]];
        }
    }
    // Every byte is written below; old contents need no clearing.
    act.resize(len, 0);
    for k in (0..K).filter(|&k| owner[k] == k) {
        let (ty, row) = (act_ty[k], act_row[k]);
        act[act_at[k]..act_at[k] + row * n_tokens]
            .par_chunks_mut(row.max(1))
            .zip(x.par_chunks(cols.max(1)))
            .for_each(|(a, xr)| {
                // Sizes are consistent by construction.
                let _ = quant::quantize(ty, xr, a);
            });
    }
    let act = &act[..];
    if n_tokens <= ROW_KERNEL_MAX_TOKENS {
        let kernels: [Option<kernels::RowDot>; K] =
            std::array::from_fn(|k| kernels::row_dot(ws[k].ty));
        let tasks: [usize; K] = std::array::from_fn(|k| ws[k].rows.div_ceil(ROWS_PER_TASK));
        let dst = out_ptrs(outs, |k| kernels[k].is_none());
        let total: usize = tasks.iter().sum();
        (0..total).into_par_iter().for_each(|i| {
            let (k, c) = locate(&tasks, i);
            let Some(kernel) = kernels[k] else { return };
            let w = ws[k];
            let wrow = w.row_bytes();
            let r0 = c * ROWS_PER_TASK;
            let nr = ROWS_PER_TASK.min(w.rows - r0);
            let rows = &w.data()[r0 * wrow..(r0 + nr) * wrow];
            for t in 0..n_tokens {
                let a0 = act_at[k] + t * act_row[k];
                let a = &act[a0..a0 + act_row[k]];
                // SAFETY: `outs[k]` holds `n_tokens * rows` values (cut to
                // that above) and tasks write disjoint rows `r0..r0 + nr`
                // of each token's output; nothing else touches the outputs
                // until they all finish.
                let o = unsafe {
                    std::slice::from_raw_parts_mut(dst[k].get().add(t * w.rows + r0), nr)
                };
                kernel.dot_rows(rows, a, o)
            }
        });
        return;
    }
    let kernels: [Option<kernels::TileDot>; K] =
        std::array::from_fn(|k| kernels::tile_dot(ws[k].ty));
    let token_blocks = n_tokens.div_ceil(TOKENS_PER_TASK);
    let tasks: [usize; K] = std::array::from_fn(|k| ws[k].rows.div_ceil(TILE_ROWS) * token_blocks);
    let dst = out_ptrs(outs, |k| kernels[k].is_none());
    let total: usize = tasks.iter().sum();
    (0..total).into_par_iter().for_each(|i| {
        let (k, i) = locate(&tasks, i);
        let Some(kernel) = kernels[k] else { return };
        let w = ws[k];
        let (data, wrow, rows) = (w.data(), w.row_bytes(), w.rows);
        let (ar, a0) = (act_row[k], act_at[k]);
        let (rb, tb) = (i / token_blocks, i % token_blocks);
        let r0 = rb * TILE_ROWS;
        let nr = TILE_ROWS.min(rows - r0);
        let t0 = tb * TOKENS_PER_TASK;
        let nt = TOKENS_PER_TASK.min(n_tokens - t0);
        // The task's tokens in calls of CALL_TOKENS, each into `buf`
        // (`[t][r]`), then copied to the task's part of the output.
        let mut buf = [0f32; TILE_ROWS * CALL_TOKENS];
        for c0 in (t0..t0 + nt).step_by(CALL_TOKENS) {
            let cn = CALL_TOKENS.min(t0 + nt - c0);
            let buf = &mut buf[..nr * cn];
            kernel.dot_tile(
                &data[r0 * wrow..(r0 + nr) * wrow],
                &act[a0 + c0 * ar..a0 + (c0 + cn) * ar],
                cn,
                buf,
            );
            for (t, v) in buf.chunks_exact(nr).enumerate() {
                // SAFETY: `outs[k]` holds `n_tokens * rows` values (cut to
                // that above) and `(c0 + t) * rows + r0 + nr <= n_tokens * rows`.
                // Tasks write disjoint ranges (each its own rows `r0..r0 +
                // nr` of its own tokens `t0..t0 + nt` of its own output),
                // nothing else touches the outputs until they all finish,
                // and `v` is a local buffer.
                unsafe {
                    let d = dst[k].get().add((c0 + t) * rows + r0);
                    if let Ok(v) = <&[f32; TILE_ROWS]>::try_from(v) {
                        // A fixed size: vector moves, not a call.
                        d.cast::<[f32; TILE_ROWS]>().write_unaligned(*v);
                    } else {
                        std::ptr::copy_nonoverlapping(v.as_ptr(), d, nr);
                    }
                }
            }
        }
    });
}

/// Pointers to the outputs for the tasks to write through; outputs whose
/// weight has no kernel (`missing(k)`) are filled with NaN instead (weight
/// types are checked when a model is loaded, so this does not happen in a
/// model).
fn out_ptrs<const K: usize>(
    mut outs: [&mut [f32]; K],
    missing: impl Fn(usize) -> bool,
) -> [OutPtr; K] {
    let mut dst = [OutPtr(std::ptr::null_mut()); K];
    for (k, (d, o)) in dst.iter_mut().zip(outs.iter_mut()).enumerate() {
        if missing(k) {
            o.fill(f32::NAN);
        }
        *d = OutPtr(o.as_mut_ptr());
    }
    dst
}

/// Task `i` of a group whose weight `k` has `tasks[k]` tasks, as (weight,
/// task of that weight).
fn locate<const K: usize>(tasks: &[usize; K], mut i: usize) -> (usize, usize) {
    for (k, &n) in tasks.iter().enumerate() {
        if i < n {
            return (k, i);
        }
        i -= n;
    }
    (K - 1, i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgufWriter, TensorData};
    use crate::quant::testutil::{random_blocks, Rng};

    /// Model-like values (roughly normal, some outliers and zeros).
    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        Rng::new(seed).values(n, scale)
    }

    /// A `rows × cols` weight of type `ty` in an in-memory GGUF file:
    /// model-like values quantized, or random valid blocks for the types
    /// Strata does not quantize to (the K-quants).
    fn weight(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Weight {
        let mut data = vec![0u8; ty.row_bytes((rows * cols) as u64).unwrap() as usize];
        if quant::quantize_reference(ty, &values(rows * cols, seed, 0.05), &mut data).is_err() {
            let nb = rows * cols / ty.block_size();
            data = random_blocks(&mut Rng::new(seed), ty, nb);
        }
        let mut g = GgufWriter::new();
        g.add_tensor(
            "w",
            ty,
            &[cols as u64, rows as u64],
            TensorData::Owned(data),
        )
        .unwrap();
        let file = Arc::new(GgufFile::from_bytes(g.to_bytes()).unwrap());
        let info = file.tensor("w").unwrap();
        let bytes = file.tensor_data(info);
        let start = bytes.as_ptr() as usize - file.bytes().as_ptr() as usize;
        let range = start..start + bytes.len();
        Weight::new("w", ty, rows, cols, Arc::clone(&file), range)
    }

    /// `matmul` on a pool of `threads` against the scalar reference, bit for
    /// bit, for every token and row.
    fn check(w: &Weight, n_tokens: usize, threads: usize) -> Vec<f32> {
        let x = values(n_tokens * w.cols, 7 + n_tokens as u64, 1.0);
        let mut out = vec![0f32; n_tokens * w.rows];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| matmul(w, &x, n_tokens, &mut out));
        let at = quant::vec_dot_type(w.ty);
        let mut a = vec![0u8; at.row_bytes(w.cols as u64).unwrap() as usize];
        let rb = w.row_bytes();
        for t in 0..n_tokens {
            quant::quantize(at, &x[t * w.cols..(t + 1) * w.cols], &mut a).unwrap();
            for r in 0..w.rows {
                let want = quant::vec_dot(w.ty, w.cols, &w.data()[r * rb..(r + 1) * rb], &a);
                let got = out[t * w.rows + r];
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{} {}x{}: token {t} of {n_tokens}, row {r}: {got} vs reference {want}",
                    w.ty,
                    w.rows,
                    w.cols
                );
            }
        }
        out
    }

    #[test]
    fn matmul_matches_the_reference_bit_for_bit() {
        for ty in [
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::F16,
        ] {
            for (rows, cols) in [(1, 64), (5, 96), (16, 576), (37, 256)] {
                let w = weight(ty, rows, cols, rows as u64);
                for n_tokens in [1, 2, 3, 4, 5, 9, 17, TOKENS_PER_TASK + 3] {
                    check(&w, n_tokens, 2);
                }
            }
        }
    }

    #[test]
    fn a_group_equals_its_matmuls_bit_for_bit() {
        // Mixed activation formats (Q8_K for the K-quants, Q8_0 for Q5_0
        // and Q8_0, Q8_1 for Q4_1), different row counts, one and many
        // tokens.
        let cols = 256;
        let ws = [
            weight(GgmlType::Q4_K, 40, cols, 1),
            weight(GgmlType::Q5_0, 17, cols, 2),
            weight(GgmlType::Q6_K, 33, cols, 3),
        ];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for n_tokens in [1, 3, 9, TOKENS_PER_TASK + 5] {
            let x = values(n_tokens * cols, 11 + n_tokens as u64, 1.0);
            let mut got: Vec<Vec<f32>> = ws.iter().map(|w| vec![0.0; n_tokens * w.rows]).collect();
            let mut act = Vec::new();
            let [a, b, c] = &mut got[..] else {
                unreachable!()
            };
            pool.install(|| {
                matmul_group(
                    [&ws[0], &ws[1], &ws[2]],
                    &x,
                    n_tokens,
                    [&mut a[..], &mut b[..], &mut c[..]],
                    &mut act,
                )
            });
            for (w, g) in ws.iter().zip(&got) {
                let mut want = vec![0.0; n_tokens * w.rows];
                pool.install(|| matmul(w, &x, n_tokens, &mut want));
                let same = g.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{} with {n_tokens} tokens", w.ty);
            }
            let mut pair = [vec![0.0; n_tokens * 40], vec![0.0; n_tokens * 40]];
            let [p, q] = &mut pair;
            pool.install(|| {
                matmul_group(
                    [&ws[0], &ws[0]],
                    &x,
                    n_tokens,
                    [&mut p[..], &mut q[..]],
                    &mut act,
                )
            });
            assert_eq!(pair[0], got[0]);
            assert_eq!(pair[1], got[0]);
        }
    }

    #[test]
    fn matmul_does_not_depend_on_the_thread_count() {
        let w = weight(GgmlType::Q4_1, 45, 128, 3);
        let one = check(&w, 21, 1);
        for threads in [2, 3, 8] {
            let many = check(&w, 21, threads);
            assert!(one
                .iter()
                .zip(&many)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
