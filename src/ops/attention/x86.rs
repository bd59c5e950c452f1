//! [`super::attention_in_order`] for one task of (token, head) pairs
//! sharing a key/value head ([`UnitTask`]) with AVX2, FMA and F16C: for
//! each pair the same float operations in the same order as the reference
//! ([`super::head_reference`]), eight lanes at a time.
//!
//! * `q·k`: the reference's lanes are vector lanes: [`DotOrder::Gemm`]'s one
//!   8-lane accumulator is one register, [`DotOrder::VecDot`]'s 32 lanes are
//!   four; products of f16 values are exact, so `vfmadd` equals the
//!   reference's `acc + q·k`. The reductions pair lanes as the reference
//!   does.
//! * softmax: scores are kept at index `j - base`, `base` the aligned group
//!   start, so each register is one of the reference's groups of eight
//!   cache positions (positions outside the range hold 0); exp is
//!   [`v_expf`].
//! * `p·v`: lane `l` of the reference (positions `j ≡ l` modulo the lane
//!   count) is summed in registers over the value dimensions, position by
//!   position in increasing order, then the lanes are reduced per dimension
//!   with the reference's pairing, eight dimensions at a time.

use std::arch::x86_64::*;

use half::f16;

use super::{DotOrder, UnitTask};
use crate::ops::simd_x86::{hsum8, load_f16x8, round_f16, v_expf};

thread_local! {
    /// The worker thread's buffers, reused across tasks and calls (a task
    /// nested on the thread by work stealing finds them taken, and starts
    /// empty ones).
    pub(super) static SCRATCH: std::cell::Cell<Scratch> = const {
        std::cell::Cell::new(Scratch {
            q: Vec::new(),
            w: Vec::new(),
            acc: Vec::new(),
            spans: Vec::new(),
        })
    };
}

/// Buffers reused across the tasks one worker computes.
#[derive(Default)]
pub(super) struct Scratch {
    /// The task's queries rounded to f16, `[query][k_dim rounded up to 8]`.
    q: Vec<f32>,
    /// Scores, then probabilities, of each query at `spans[i].w + j - base`.
    w: Vec<f32>,
    /// Per-lane p·v sums, `[lane][query][v_dim]`.
    acc: Vec<f32>,
    spans: Vec<Span>,
}

/// The cache positions one query attends to and where its scores live.
#[derive(Clone, Copy)]
struct Span {
    first: usize,
    pos: usize,
    /// `first` rounded down to a multiple of 8 (the softmax groups).
    base: usize,
    /// Offset of the query's scores in [`Scratch::w`].
    w: usize,
}

/// One task of attention (see [`UnitTask`]): every query of the task,
/// each computed exactly as [`super::head_reference`] computes it, with
/// the loops over cache positions shared: each key and value row is
/// loaded from memory once per task and used for all its queries.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `out` points at the whole output of
/// the call (`[token][n_head][v_dim]`), of which this task writes only its
/// own (token, head) pairs.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn unit(task: &UnitTask<'_>, sc: &mut Scratch, out: *mut f32) {
    let s = task.kv.shape;
    let nq = task.len();
    if nq == 0 {
        return;
    }

    // The queries, rounded to f16, zero-padded to whole registers.
    let kd = s.k_dim;
    let kdp = kd.next_multiple_of(8);
    grow(&mut sc.q, nq * kdp);
    for i in 0..nq {
        let qi = &mut sc.q[i * kdp..(i + 1) * kdp];
        for (c, x) in qi.chunks_exact_mut(8).zip(task.query(i).chunks(8)) {
            if x.len() == 8 {
                _mm256_storeu_ps(c.as_mut_ptr(), round_f16(_mm256_loadu_ps(x.as_ptr())));
            } else {
                for (c, &x) in c.iter_mut().zip(x) {
                    *c = f16::from_f32(x).to_f32();
                }
            }
        }
    }

    // Where each query's scores go.
    sc.spans.clear();
    let mut len = 0;
    let (mut lo, mut hi) = (usize::MAX, 0);
    for i in 0..nq {
        let (first, pos) = task.span(i);
        let base = first & !7;
        sc.spans.push(Span {
            first,
            pos,
            base,
            w: len,
        });
        len += (pos + 1 - base).next_multiple_of(8);
        lo = lo.min(first);
        hi = hi.max(pos);
    }
    grow(&mut sc.w, len);

    // Scores: the keys four at a time, each four used by every query
    // that attends to them.
    let four = task.order == DotOrder::Gemm && kd % 8 == 0;
    let mut j = lo;
    while j <= hi {
        let jn = (j + 4).min(hi + 1);
        let keys = [
            task.kv.key(j),
            task.kv.key((j + 1).min(hi)),
            task.kv.key((j + 2).min(hi)),
            task.kv.key((j + 3).min(hi)),
        ];
        for (i, sp) in sc.spans.iter().enumerate() {
            let q = &sc.q[i * kdp..(i + 1) * kdp];
            let w = &mut sc.w[sp.w..];
            if four && jn - j == 4 && sp.first <= j && j + 3 <= sp.pos {
                let d = dot_gemm4(q, keys);
                w[j - sp.base..j - sp.base + 4].copy_from_slice(&d);
                continue;
            }
            for jj in j.max(sp.first)..jn.min(sp.pos + 1) {
                let k = keys[jj - j];
                w[jj - sp.base] = match task.order {
                    DotOrder::Gemm => dot_gemm(q, k),
                    DotOrder::VecDot => dot_vec(&q[..kd], k),
                };
            }
        }
        j = jn;
    }

    // Scale, cap and softmax, per query.
    for sp in &sc.spans {
        let w = &mut sc.w[sp.w..sp.w + (sp.pos + 1 - sp.base).next_multiple_of(8)];
        softmax(w, sp, s.scale, s.softcap);
    }

    // p·v: for each lane, every query's sum over the lane's positions
    // (the lane's value rows stay in the L1 cache across the queries).
    let lanes = task.order.lanes();
    let vd = s.v_dim;
    grow(&mut sc.acc, lanes * nq * vd);
    for l in 0..lanes {
        for (i, sp) in sc.spans.iter().enumerate() {
            let acc = &mut sc.acc[(l * nq + i) * vd..][..vd];
            let w = &sc.w[sp.w..];
            // The first position at or after `first` in lane `l`.
            let j0 = sp.first + (l + lanes - sp.first % lanes) % lanes;
            let mut d = 0;
            while d + 64 <= vd {
                lane_sum::<8>(task, w, sp, j0, lanes, d, &mut acc[d..d + 64]);
                d += 64;
            }
            while d + 8 <= vd {
                lane_sum::<1>(task, w, sp, j0, lanes, d, &mut acc[d..d + 8]);
                d += 8;
            }
            for d in d..vd {
                let mut a = 0f32;
                for j in (j0..=sp.pos).step_by(lanes) {
                    a += w[j - sp.base] * task.kv.value(j)[d].to_f32();
                }
                acc[d] = a;
            }
        }
    }

    // The lanes reduced per dimension, with the reference's pairing.
    for i in 0..nq {
        // SAFETY: the caller's promise: `out` holds this query's head.
        let o = std::slice::from_raw_parts_mut(out.add(task.out_offset(i)), vd);
        let row = |l: usize, d: usize| _mm256_loadu_ps(sc.acc[(l * nq + i) * vd + d..].as_ptr());
        let mut d = 0;
        while d + 8 <= vd {
            let r = match task.order {
                DotOrder::Gemm => {
                    let t: [__m256; 4] =
                        std::array::from_fn(|k| _mm256_add_ps(row(k + 4, d), row(k, d)));
                    _mm256_add_ps(_mm256_add_ps(t[0], t[2]), _mm256_add_ps(t[1], t[3]))
                }
                DotOrder::VecDot => {
                    let r: [__m256; 8] = std::array::from_fn(|l| {
                        _mm256_add_ps(
                            _mm256_add_ps(row(l, d), row(16 + l, d)),
                            _mm256_add_ps(row(8 + l, d), row(24 + l, d)),
                        )
                    });
                    let t: [__m256; 4] = std::array::from_fn(|k| _mm256_add_ps(r[k], r[k + 4]));
                    _mm256_add_ps(_mm256_add_ps(t[0], t[1]), _mm256_add_ps(t[2], t[3]))
                }
            };
            _mm256_storeu_ps(o[d..d + 8].as_mut_ptr(), r);
            d += 8;
        }
        for d in d..vd {
            let mut lane = [0f32; 32];
            for (l, x) in lane[..lanes].iter_mut().enumerate() {
                *x = sc.acc[(l * nq + i) * vd + d];
            }
            o[d] = task.order.reduce(&lane[..lanes]);
        }
    }
}

/// `v` cleared and zero-filled to `len` values, its memory grown in 16 KiB
/// steps, so that decode steps do not reallocate as the context grows,
/// whatever mix of tasks a worker is handed.
fn grow(v: &mut Vec<f32>, len: usize) {
    v.clear();
    v.reserve_exact(len.next_multiple_of(4096));
    v.resize(len, 0.0);
}

/// Scale (and cap) the scores of one query in `w` (at `j - base`), then
/// replace them by their probabilities rounded to f16, zero outside
/// `first..=pos`; the sum adds each aligned group of eight's `hsum8` in
/// f64, as the reference does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn softmax(w: &mut [f32], sp: &Span, scale: f32, softcap: Option<f32>) {
    let (a, b) = (sp.first - sp.base, sp.pos - sp.base);
    for x in &mut w[a..=b] {
        *x *= scale;
        if let Some(cap) = softcap {
            *x = cap * (*x * (1.0 / cap)).tanh();
        }
    }
    let max = w[a..=b].iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let vmax = _mm256_set1_ps(max);
    for c in w.chunks_exact_mut(8) {
        let e = v_expf(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), vmax));
        _mm256_storeu_ps(c.as_mut_ptr(), e);
    }
    w[..a].fill(0.0);
    w[b + 1..].fill(0.0);
    let mut sum = 0f64;
    for c in w.chunks_exact(8) {
        sum += hsum8(_mm256_loadu_ps(c.as_ptr())) as f64;
    }
    let inv = _mm256_set1_ps((1.0 / sum) as f32);
    for c in w.chunks_exact_mut(8) {
        let p = round_f16(_mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), inv));
        _mm256_storeu_ps(c.as_mut_ptr(), p);
    }
}

/// `acc[8r..8r + 8] = Σ p_j · v_j[d + 8r..]` over the positions
/// `j0, j0 + lanes, ..` up to the query's position, for `R` registers
/// (`p_j` at `w[j - base]`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lane_sum<const R: usize>(
    task: &UnitTask<'_>,
    w: &[f32],
    sp: &Span,
    j0: usize,
    lanes: usize,
    d: usize,
    acc: &mut [f32],
) {
    let mut a = [_mm256_setzero_ps(); R];
    let mut j = j0;
    while j <= sp.pos {
        let p = _mm256_set1_ps(w[j - sp.base]);
        let v = &task.kv.value(j)[d..d + 8 * R];
        for (r, a) in a.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(p, load_f16x8(v[8 * r..].as_ptr()), *a);
        }
        j += lanes;
    }
    for (r, a) in a.iter().enumerate() {
        _mm256_storeu_ps(acc[8 * r..8 * r + 8].as_mut_ptr(), *a);
    }
}

/// [`DotOrder::Gemm`]: one 8-lane accumulator, the last step zero-padded
/// (`q` is already padded), then `hsum8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_gemm(q: &[f32], k: &[f16]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let full = k.len() / 8;
    for i in 0..full {
        let kv = load_f16x8(k[8 * i..].as_ptr());
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q[8 * i..].as_ptr()), kv, acc);
    }
    if full * 8 < k.len() {
        let mut kt = [0f32; 8];
        for (t, x) in kt.iter_mut().zip(&k[full * 8..]) {
            *t = x.to_f32();
        }
        let kv = _mm256_loadu_ps(kt.as_ptr());
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q[8 * full..].as_ptr()), kv, acc);
    }
    hsum8(acc)
}

/// [`dot_gemm`] of one query with four keys (whole registers only).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_gemm4(q: &[f32], k: [&[f16]; 4]) -> [f32; 4] {
    let mut acc = [_mm256_setzero_ps(); 4];
    for i in (0..k[0].len()).step_by(8) {
        let qv = _mm256_loadu_ps(q[i..].as_ptr());
        for (a, k) in acc.iter_mut().zip(&k) {
            *a = _mm256_fmadd_ps(qv, load_f16x8(k[i..i + 8].as_ptr()), *a);
        }
    }
    let mut out = [0f32; 4];
    for (o, a) in out.iter_mut().zip(acc) {
        *o = hsum8(a);
    }
    out
}

/// [`DotOrder::VecDot`]: four 8-lane accumulators over the whole multiples
/// of 32, reduced as `reduce32`; the rest added one by one in f64.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_vec(q: &[f32], k: &[f16]) -> f32 {
    let body = k.len() - k.len() % 32;
    let mut a = [_mm256_setzero_ps(); 4];
    for i in (0..body).step_by(32) {
        for (c, a) in a.iter_mut().enumerate() {
            let kv = load_f16x8(k[i + 8 * c..].as_ptr());
            *a = _mm256_fmadd_ps(_mm256_loadu_ps(q[i + 8 * c..].as_ptr()), kv, *a);
        }
    }
    let r = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
    let t = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps::<1>(r));
    let u = _mm_hadd_ps(t, t);
    let sum = _mm_cvtss_f32(_mm_hadd_ps(u, u));
    if body == k.len() {
        return sum;
    }
    let mut sum = sum as f64;
    for (x, y) in q[body..].iter().zip(&k[body..]) {
        sum += (x * y.to_f32()) as f64;
    }
    sum as f32
}
