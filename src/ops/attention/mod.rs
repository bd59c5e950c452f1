//! Causal multi-head attention with grouped-query heads over an f16 KV cache.
//!
//! The arithmetic is, operation for operation, the one of llama.cpp's
//! non-fused CPU attention (`mul_mat(K, Q)` → `soft_max_ext` →
//! `mul_mat(Vᵀ, KQ)`) as ggml runs it on x86-64 with AVX2, FMA and F16C, so
//! the results are bit-identical to llama.cpp's:
//!
//! * `q·k`: the query is rounded to f16 (ggml converts the right-hand side of
//!   an f16 `mul_mat` to f16). The dot product is summed lane-wise, in the
//!   order of the kernel ggml picks: for a batch of two or more tokens
//!   tinyBLAS (llamafile's sgemm, 8 lanes), for a single token
//!   `ggml_vec_dot_f16` (4 × 8 lanes); see [`DotOrder`].
//! * the score is `dot * scale` (then `cap * tanh(x * (1/cap))` if a softcap
//!   is set), and masked positions get no weight.
//! * softmax: `e = exp(x - max)` with ggml's polynomial exp
//!   ([`ggml_v_expf`]); the sum adds the f32 horizontal sums of aligned
//!   groups of 8 cache positions into an f64; each `e` is multiplied by the f32
//!   `1/sum` and rounded to f16 (the right-hand side of the second `mul_mat`).
//! * `p·v`: an f16 dot product over cache positions, lane-wise as above. In
//!   llama.cpp it runs over the whole (zero-weighted beyond the causal
//!   limit) padded cache, whose length is a multiple of 256, so the lane of
//!   a position is its cache index modulo the lane count.
//!
//! Products of two f16 values are exact in f32, so ggml's fused multiply-adds
//! equal the plain `acc + a * b` used here; the exp polynomial is the only
//! place where fusing changes the result, and it uses `mul_add`.

use std::ops::Range;

use half::f16;
use rayon::prelude::*;

use super::act::ggml_v_expf;
#[cfg(target_arch = "x86_64")]
use super::OutPtr;

#[cfg(target_arch = "x86_64")]
mod x86;

/// Shape and options of one attention layer.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    /// Length of a query/key head.
    pub k_dim: usize,
    /// Length of a value head.
    pub v_dim: usize,
    /// Factor on `q·k` before the softmax (usually 1/sqrt(k_dim)).
    pub scale: f32,
    /// Attend only to the last `window` positions (sliding-window layers).
    pub window: Option<usize>,
    /// `cap * tanh(s * (1/cap))` on the scaled scores `s`, if set (ggml's
    /// order when `scale` is 1, as for the models that scale the query
    /// beforehand).
    pub softcap: Option<f32>,
}

impl AttentionShape {
    /// The first cache position a query at `pos` attends to.
    fn first_position(&self, pos: usize) -> usize {
        match self.window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        }
    }
}

/// `out[t][h*v_dim..]` = attention of query `q[t][h*k_dim..]` over cache
/// positions `0..=positions[t]` (restricted to the window, if any).
/// `keys`/`values` are `[position][n_kv_head * dim]`.
///
/// Sums in llama.cpp's order, which depends on whether one token or several
/// are evaluated ([`DotOrder::llama_cpp`]), so a token's result depends on
/// how the input was split into calls; [`attention_in_order`] with
/// [`DotOrder::VecDot`] does not. The thread count never matters.
pub fn attention(
    shape: &AttentionShape,
    q: &[f32],
    keys: &[f16],
    values: &[f16],
    positions: &[usize],
    out: &mut [f32],
) {
    let order = DotOrder::llama_cpp(positions.len());
    attention_in_order(shape, order, q, keys, values, positions, out);
}

/// [`attention`] with the dot products summed in `order` for every token.
///
/// Runs the AVX2 + FMA + F16C form ([`x86`]) where the CPU has it (and the
/// hand-written kernels are not switched off, see [`crate::kernels`]),
/// else the scalar reference; both give the same bits.
pub fn attention_in_order(
    shape: &AttentionShape,
    order: DotOrder,
    q: &[f32],
    keys: &[f16],
    values: &[f16],
    positions: &[usize],
    out: &mut [f32],
) {
    let all = [0..positions.len()];
    attention_segments(shape, order, q, positions, &all, |_| (keys, values), out)
}

/// Attention of several sequences in one parallel region: the queries of
/// rows `rows[s]` (`q`, `positions` and `out` hold every row of the batch)
/// attend over sequence `s`'s own cache layer, `cache(s)` = (keys,
/// values), each `[position][n_kv_head * dim]`. Each (token, head) output
/// is computed exactly as [`attention_in_order`] computes it for that
/// sequence alone, so batching never changes a bit. Allocates nothing.
pub fn attention_segments<'a>(
    shape: &AttentionShape,
    order: DotOrder,
    q: &[f32],
    positions: &[usize],
    rows: &[Range<usize>],
    cache: impl Fn(usize) -> (&'a [f16], &'a [f16]) + Sync,
    out: &mut [f32],
) {
    let (qw, ow) = (shape.n_head * shape.k_dim, shape.n_head * shape.v_dim);
    assert!(
        rows.iter().all(|r| r.end <= positions.len()),
        "attention: a segment past the batch"
    );
    assert!(q.len() >= positions.len() * qw && out.len() >= positions.len() * ow);
    #[cfg(target_arch = "x86_64")]
    if crate::ops::simd_x86::enabled() {
        let threads = rayon::current_num_threads();
        let units = |k: usize| Units::new(shape, rows[k].len(), threads);
        let total: usize = (0..rows.len()).map(|k| units(k).count()).sum();
        let dst = OutPtr(out.as_mut_ptr());
        (0..total).into_par_iter().for_each(|mut i| {
            // The segment of task `i` (a short walk: a batch holds a few
            // dozen sequences at most).
            let mut k = 0;
            let mut u = units(0);
            while i >= u.count() {
                i -= u.count();
                k += 1;
                u = units(k);
            }
            let r = rows[k].clone();
            let (keys, values) = cache(k);
            let task = u.task(
                i,
                shape,
                order,
                &q[r.start * qw..r.end * qw],
                keys,
                values,
                &positions[r.clone()],
            );
            let mut sc = x86::SCRATCH.take();
            // SAFETY: `enabled()` checked AVX2, FMA and F16C; `out` holds
            // every row's outputs (asserted above), the segment's rows
            // start at row `r.start`, and units own disjoint sets of
            // (token, head) pairs of disjoint segments.
            unsafe { x86::unit(&task, &mut sc, dst.get().add(r.start * ow)) };
            x86::SCRATCH.set(sc);
        });
        return;
    }
    for (k, r) in rows.iter().enumerate() {
        let (keys, values) = cache(k);
        attention_reference(
            shape,
            order,
            &q[r.start * qw..r.end * qw],
            keys,
            values,
            &positions[r.clone()],
            &mut out[r.start * ow..r.end * ow],
        )
    }
}

/// [`attention_in_order`] by the scalar reference on every CPU: the twin
/// the vector forms are tested against.
pub fn attention_reference(
    shape: &AttentionShape,
    order: DotOrder,
    q: &[f32],
    keys: &[f16],
    values: &[f16],
    positions: &[usize],
    out: &mut [f32],
) {
    // One task per (token, head), on the current rayon pool.
    let s = shape;
    let group = s.n_head / s.n_kv_head;
    out.par_chunks_mut(s.v_dim).enumerate().for_each(|(i, o)| {
        let (t, h) = (i / s.n_head, i % s.n_head);
        let task = HeadTask {
            order,
            q: &q[(t * s.n_head + h) * s.k_dim..][..s.k_dim],
            kv: KvHead {
                shape,
                keys,
                values,
                kvh: h / group,
            },
            first: s.first_position(positions[t]),
            pos: positions[t],
        };
        head_reference(&task, o)
    });
}

/// One (token, head) of attention: the query head `q`, the cache, and the
/// range of cache positions `first..=pos` it attends to.
pub(crate) struct HeadTask<'a> {
    order: DotOrder,
    q: &'a [f32],
    kv: KvHead<'a>,
    first: usize,
    pos: usize,
}

/// One key/value head of a layer's cache (`keys`/`values` are
/// `[position][n_kv_head * dim]`).
#[derive(Clone, Copy)]
pub(crate) struct KvHead<'a> {
    shape: &'a AttentionShape,
    keys: &'a [f16],
    values: &'a [f16],
    kvh: usize,
}

impl<'a> KvHead<'a> {
    /// Cache position `j`'s key.
    fn key(&self, j: usize) -> &'a [f16] {
        let s = self.shape;
        &self.keys[(j * s.n_kv_head + self.kvh) * s.k_dim..][..s.k_dim]
    }

    /// Cache position `j`'s value.
    fn value(&self, j: usize) -> &'a [f16] {
        let s = self.shape;
        &self.values[(j * s.n_kv_head + self.kvh) * s.v_dim..][..s.v_dim]
    }
}

/// The (token, head) pairs one task of the vector form computes: tokens
/// `t0..t1` and query heads `h0..h1`, all sharing key/value head `kvh`, so
/// that each cache row the task reads serves every one of them while it
/// is in the L1 cache.
#[cfg(target_arch = "x86_64")]
pub(crate) struct UnitTask<'a> {
    order: DotOrder,
    /// All queries, `[token][n_head][k_dim]`.
    q: &'a [f32],
    /// The key/value head every query of the task reads.
    kv: KvHead<'a>,
    positions: &'a [usize],
    t0: usize,
    t1: usize,
    h0: usize,
    h1: usize,
}

#[cfg(target_arch = "x86_64")]
impl UnitTask<'_> {
    /// Queries in the task.
    fn len(&self) -> usize {
        (self.t1 - self.t0) * (self.h1 - self.h0)
    }

    /// The (token, head) of query `i` (heads vary fastest).
    fn pair(&self, i: usize) -> (usize, usize) {
        let nh = self.h1 - self.h0;
        (self.t0 + i / nh, self.h0 + i % nh)
    }

    /// Query `i`'s head vector.
    fn query(&self, i: usize) -> &[f32] {
        let (t, h) = self.pair(i);
        let s = self.kv.shape;
        &self.q[(t * s.n_head + h) * s.k_dim..][..s.k_dim]
    }

    /// The cache positions `first..=pos` query `i` attends to.
    fn span(&self, i: usize) -> (usize, usize) {
        let pos = self.positions[self.pair(i).0];
        (self.kv.shape.first_position(pos), pos)
    }

    /// Where query `i`'s output head starts in the whole output.
    fn out_offset(&self, i: usize) -> usize {
        let (t, h) = self.pair(i);
        (t * self.kv.shape.n_head + h) * self.kv.shape.v_dim
    }
}

/// Tokens per task of a batch.
#[cfg(target_arch = "x86_64")]
const UNIT_TOKENS: usize = 4;

/// How a call's (token, head) pairs are cut into tasks: blocks of
/// [`UNIT_TOKENS`] tokens × the query heads of one key/value head, the
/// heads split further into `parts` when that gives too few tasks for the
/// threads (a single decoded token). Which task computes a pair never
/// changes its bits.
#[derive(Debug, Clone, Copy)]
#[cfg(target_arch = "x86_64")]
struct Units {
    n_tokens: usize,
    token_blocks: usize,
    n_kv: usize,
    group: usize,
    parts: usize,
}

#[cfg(target_arch = "x86_64")]
impl Units {
    fn new(shape: &AttentionShape, n_tokens: usize, threads: usize) -> Units {
        let n_kv = shape.n_kv_head.max(1);
        let group = (shape.n_head / n_kv).max(1);
        let token_blocks = n_tokens.div_ceil(UNIT_TOKENS);
        // Enough tasks for every thread, in a count the threads share
        // evenly where the heads allow it (one decoded token: 3 KV heads
        // of 3 queries on 2 threads make 6 tasks; 1 KV head of 4 queries
        // makes 2 tasks of 2 queries, each reading the cache once).
        let threads = threads.max(1);
        let whole = (token_blocks * n_kv).max(1);
        let parts = if whole >= 2 * threads {
            1
        } else {
            (1..=group)
                .find(|p| whole * p >= threads && (whole * p).is_multiple_of(threads))
                .unwrap_or(group)
        };
        Units {
            n_tokens,
            token_blocks,
            n_kv,
            group,
            parts,
        }
    }

    fn count(&self) -> usize {
        self.token_blocks * self.n_kv * self.parts
    }

    #[allow(clippy::too_many_arguments)]
    fn task<'a>(
        &self,
        i: usize,
        shape: &'a AttentionShape,
        order: DotOrder,
        q: &'a [f32],
        keys: &'a [f16],
        values: &'a [f16],
        positions: &'a [usize],
    ) -> UnitTask<'a> {
        let part = i % self.parts;
        let kvh = (i / self.parts) % self.n_kv;
        let tb = i / (self.parts * self.n_kv);
        let g0 = kvh * self.group;
        UnitTask {
            order,
            q,
            kv: KvHead {
                shape,
                keys,
                values,
                kvh,
            },
            positions,
            t0: tb * UNIT_TOKENS,
            t1: ((tb + 1) * UNIT_TOKENS).min(self.n_tokens),
            h0: g0 + part * self.group / self.parts,
            h1: g0 + (part + 1) * self.group / self.parts,
        }
    }
}

/// The scalar reference for one head: the arithmetic the module docs
/// describe, written out one value at a time.
fn head_reference(task: &HeadTask<'_>, o: &mut [f32]) {
    let s = task.kv.shape;
    let order = task.order;
    let (first, pos) = (task.first, task.pos);
    let qh: Vec<f32> = task.q.iter().map(|&x| f16::from_f32(x).to_f32()).collect();

    // Scores (KQ, scaled and capped).
    let mut w: Vec<f32> = (first..=pos)
        .map(|j| {
            let mut x = order.dot(&qh, task.kv.key(j)) * s.scale;
            if let Some(cap) = s.softcap {
                x = cap * (x * (1.0 / cap)).tanh();
            }
            x
        })
        .collect();

    // Softmax: exp by aligned groups of 8 cache positions, each group's
    // f32 sum added into an f64.
    let max = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for g in first / 8..=pos / 8 {
        let mut lanes = [0f32; 8];
        for j in (g * 8).max(first)..=(g * 8 + 7).min(pos) {
            let e = ggml_v_expf(w[j - first] - max);
            w[j - first] = e;
            lanes[j % 8] = e;
        }
        sum += hsum8(&lanes) as f64;
    }
    let inv = (1.0 / sum) as f32;

    // KQV: lane-wise over cache positions, for all value dimensions at
    // once (`acc[lane][d]`).
    let lanes = order.lanes();
    let mut acc = vec![0f32; lanes * s.v_dim];
    for (j, e) in (first..=pos).zip(&w) {
        let p = f16::from_f32(e * inv).to_f32();
        let a = &mut acc[(j % lanes) * s.v_dim..][..s.v_dim];
        for (a, x) in a.iter_mut().zip(task.kv.value(j)) {
            *a += p * x.to_f32();
        }
    }
    let mut lane = vec![0f32; lanes];
    for (d, o) in o.iter_mut().enumerate() {
        for (l, x) in lane.iter_mut().enumerate() {
            *x = acc[l * s.v_dim + d];
        }
        *o = order.reduce(&lane);
    }
}

/// The summation order of an f16 dot product in ggml's `mul_mat`, which
/// depends on the kernel it takes (x86-64, AVX2 + FMA + F16C build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotOrder {
    /// tinyBLAS (`llamafile_sgemm`), taken when the right-hand side has two
    /// or more columns (a batch of tokens): one 8-lane accumulator, element
    /// `i` in lane `i % 8` (a partial last step is zero-padded), then
    /// `hsum8`.
    Gemm,
    /// `ggml_vec_dot_f16`, taken for a single token: four 8-lane
    /// accumulators, element `i` in lane `i % 32` for `i` below the last
    /// multiple of 32, reduced by `reduce32`; the rest is added one by
    /// one in f64.
    VecDot,
}

impl DotOrder {
    /// The order llama.cpp uses for a call evaluating `n_tokens` tokens.
    pub fn llama_cpp(n_tokens: usize) -> DotOrder {
        if n_tokens == 1 {
            DotOrder::VecDot
        } else {
            DotOrder::Gemm
        }
    }

    /// Number of partial sums (lanes) a dot product is spread over.
    fn lanes(self) -> usize {
        match self {
            DotOrder::Gemm => 8,
            DotOrder::VecDot => 32,
        }
    }

    /// Sum of the lanes.
    fn reduce(self, lanes: &[f32]) -> f32 {
        match self {
            DotOrder::Gemm => hsum8(lanes),
            DotOrder::VecDot => reduce32(lanes),
        }
    }

    /// `a · b` summed in this order.
    fn dot(self, a: &[f32], b: &[f16]) -> f32 {
        let lanes = self.lanes();
        let body = match self {
            DotOrder::Gemm => a.len(),
            DotOrder::VecDot => a.len() - a.len() % 32,
        };
        let mut acc = [0f32; 32];
        for (i, (x, y)) in a[..body].iter().zip(b).enumerate() {
            acc[i % lanes] += x * y.to_f32();
        }
        let sum = self.reduce(&acc[..lanes]);
        if body == a.len() {
            return sum;
        }
        let mut sum = sum as f64;
        for (x, y) in a[body..].iter().zip(&b[body..]) {
            sum += (x * y.to_f32()) as f64;
        }
        sum as f32
    }
}

/// Horizontal sum of 8 lanes the way ggml's AVX code does it (tinyBLAS's
/// `hsum`, the softmax sum): high half + low half, then
/// `(t0 + t2) + (t1 + t3)`.
fn hsum8(x: &[f32]) -> f32 {
    let t: [f32; 4] = std::array::from_fn(|i| x[i + 4] + x[i]);
    (t[0] + t[2]) + (t[1] + t[3])
}

/// `GGML_F32x8_REDUCE` over four 8-lane accumulators `x[8c..8c + 8]`:
/// `(x0 + x2) + (x1 + x3)` lane-wise, then low half + high half and two
/// horizontal adds: `(t0 + t1) + (t2 + t3)`.
fn reduce32(x: &[f32]) -> f32 {
    let r: [f32; 8] = std::array::from_fn(|l| (x[l] + x[16 + l]) + (x[8 + l] + x[24 + l]));
    let t: [f32; 4] = std::array::from_fn(|i| r[i] + r[i + 4]);
    (t[0] + t[1]) + (t[2] + t[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[f32]) -> Vec<f16> {
        v.iter().map(|&x| f16::from_f32(x)).collect()
    }

    #[test]
    fn reductions_follow_ggml_pairing() {
        // Values whose sum depends on the order: 1 + 2^-24 + 2^-24 ...
        let tiny = f32::EPSILON / 2.0;
        let mut x = [0f32; 8];
        x[0] = 1.0;
        x[4] = tiny;
        x[2] = tiny;
        // (1 + tiny) rounds to 1, then + (tiny + 0) rounds to 1 again.
        assert_eq!(hsum8(&x), 1.0);
        let mut y = [0f32; 32];
        y[0] = 1.0;
        y[1] = tiny;
        y[9] = tiny;
        // lane 1: (tiny + 0) + (tiny + 0) = 2 tiny, added to lane 0's 1.
        assert_eq!(reduce32(&y), 1.0 + f32::EPSILON);
    }

    #[test]
    fn single_position_returns_its_value_and_gqa_shares_heads() {
        let shape = AttentionShape {
            n_head: 2,
            n_kv_head: 1,
            k_dim: 2,
            v_dim: 2,
            scale: 1.0,
            window: None,
            softcap: None,
        };
        let mut out = vec![0.0; 4];
        attention(
            &shape,
            &[1.0, 0.0, 0.0, 1.0],
            &h(&[1.0, 1.0]),
            &h(&[3.0, -1.0]),
            &[0],
            &mut out,
        );
        assert_eq!(out, vec![3.0, -1.0, 3.0, -1.0]);
    }

    #[test]
    fn causal_mask_and_window() {
        let shape = AttentionShape {
            n_head: 1,
            n_kv_head: 1,
            k_dim: 1,
            v_dim: 1,
            scale: 1.0,
            window: None,
            softcap: None,
        };
        let keys = h(&[0.0, 0.0, 0.0]);
        let values = h(&[1.0, 2.0, 6.0]);
        let mut out = vec![0.0; 3];
        attention(
            &shape,
            &[1.0, 1.0, 1.0],
            &keys,
            &values,
            &[0, 1, 2],
            &mut out,
        );
        // Position 2 weighs each value by f16(1/3) = 0.333251953125, as
        // llama.cpp does.
        let third = f16::from_f32(1.0 / 3.0).to_f32();
        assert_eq!(out, vec![1.0, 1.5, third * 9.0]);
        let windowed = AttentionShape {
            window: Some(2),
            ..shape
        };
        attention(
            &windowed,
            &[1.0, 1.0, 1.0],
            &keys,
            &values,
            &[0, 1, 2],
            &mut out,
        );
        assert_eq!(out, vec![1.0, 1.5, 4.0]);
    }

    /// Pseudo-random values in `[-2, 2)`, some exactly zero, some large.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 40) as f32 / (1u64 << 24) as f32;
                match x % 50 {
                    0 => 0.0,
                    1 => (u - 0.5) * 60.0,
                    _ => (u - 0.5) * 4.0,
                }
            })
            .collect()
    }

    #[test]
    fn vector_form_equals_the_reference_bit_for_bit() {
        // Head sizes with and without whole registers and whole 32-lane
        // steps; windows; softcaps; batches that start past position 0.
        let cases = [
            (9, 3, 64, 64, None, None),
            (4, 1, 256, 256, Some(37), None),
            (4, 2, 36, 20, None, Some(30.0)),
            (2, 2, 8, 8, Some(8), None),
            (3, 1, 5, 3, None, None),
            (2, 1, 128, 72, Some(100), Some(50.0)),
        ];
        for (c, &(n_head, n_kv_head, k_dim, v_dim, window, softcap)) in cases.iter().enumerate() {
            let shape = AttentionShape {
                n_head,
                n_kv_head,
                k_dim,
                v_dim,
                scale: 1.0 / (k_dim as f32).sqrt(),
                window,
                softcap,
            };
            let n_pos = 150;
            let seed = c as u64 * 10;
            let keys: Vec<f16> = values(n_pos * n_kv_head * k_dim, seed + 1)
                .into_iter()
                .map(f16::from_f32)
                .collect();
            let vals: Vec<f16> = values(n_pos * n_kv_head * v_dim, seed + 2)
                .into_iter()
                .map(f16::from_f32)
                .collect();
            for (start, n) in [(0, 1), (0, 40), (57, 1), (100, 50), (149, 1), (3, 9)] {
                let q = values(n * n_head * k_dim, seed + 3 + start as u64);
                let positions: Vec<usize> = (start..start + n).collect();
                for (order, threads) in [
                    (DotOrder::Gemm, 2),
                    (DotOrder::VecDot, 2),
                    (DotOrder::Gemm, 3),
                    (DotOrder::VecDot, 5),
                ] {
                    let mut want = vec![0.0; n * n_head * v_dim];
                    let mut got = vec![1.0; n * n_head * v_dim];
                    attention_reference(&shape, order, &q, &keys, &vals, &positions, &mut want);
                    // The thread count changes how the work is cut into
                    // tasks, never the bits.
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    pool.install(|| {
                        attention_in_order(&shape, order, &q, &keys, &vals, &positions, &mut got)
                    });
                    for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "case {c} start {start} n {n} {order:?} value {i}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn one_token_matches_the_batch_up_to_order_and_exactly_in_one_order() {
        let shape = AttentionShape {
            n_head: 4,
            n_kv_head: 2,
            k_dim: 64,
            v_dim: 64,
            scale: 0.125,
            window: None,
            softcap: None,
        };
        let n = 40;
        let r = |i: usize| ((i as f32 * 0.618_034).fract() - 0.5) * 4.0;
        let q: Vec<f32> = (0..n * 4 * 64).map(r).collect();
        let keys: Vec<f16> = (0..n * 2 * 64).map(|i| f16::from_f32(r(i + 7))).collect();
        let values: Vec<f16> = (0..n * 2 * 64).map(|i| f16::from_f32(r(i + 3))).collect();
        let positions: Vec<usize> = (0..n).collect();
        let mut batch = vec![0.0; n * 4 * 64];
        attention(&shape, &q, &keys, &values, &positions, &mut batch);
        let mut invariant = vec![0.0; n * 4 * 64];
        let order = DotOrder::VecDot;
        attention_in_order(
            &shape,
            order,
            &q,
            &keys,
            &values,
            &positions,
            &mut invariant,
        );
        assert_ne!(batch, invariant, "the two orders differ somewhere");
        for t in 0..n {
            let mut one = vec![0.0; 4 * 64];
            attention(&shape, &q[t * 256..][..256], &keys, &values, &[t], &mut one);
            assert_eq!(one, invariant[t * 256..][..256], "{t}");
            // Close, not equal: a score an ulp apart can round its
            // probability to a neighbouring f16.
            for (a, b) in one.iter().zip(&batch[t * 256..][..256]) {
                assert!((a - b).abs() < 1e-3, "{t}: {a} vs {b}");
            }
        }
    }
}
