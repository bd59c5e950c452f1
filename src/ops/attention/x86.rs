//! [`super::attention_in_order`] for one (token, head) with AVX2, FMA and
//! F16C: the same float operations in the same order as the reference
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

use super::{DotOrder, HeadTask};
use crate::ops::simd_x86::{hsum8, load_f16x8, round_f16, v_expf};

/// Buffers reused across the heads one worker computes.
#[derive(Default)]
pub(super) struct Scratch {
    q: Vec<f32>,
    w: Vec<f32>,
    acc: Vec<f32>,
}

/// One head of attention (see [`HeadTask`]).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn head(task: &HeadTask<'_>, sc: &mut Scratch, out: &mut [f32]) {
    let s = task.shape;
    let (first, pos) = (task.first, task.pos);

    // The query, rounded to f16, zero-padded to whole registers.
    let kd = s.k_dim;
    sc.q.clear();
    sc.q.resize(kd.next_multiple_of(8), 0.0);
    for (c, x) in sc.q.chunks_exact_mut(8).zip(task.q.chunks(8)) {
        if x.len() == 8 {
            _mm256_storeu_ps(c.as_mut_ptr(), round_f16(_mm256_loadu_ps(x.as_ptr())));
        } else {
            for (c, &x) in c.iter_mut().zip(x) {
                *c = f16::from_f32(x).to_f32();
            }
        }
    }

    // Scores at `w[j - base]`.
    let base = first & !7;
    sc.w.clear();
    sc.w.resize((pos + 1 - base).next_multiple_of(8), 0.0);
    let mut j = first;
    if task.order == DotOrder::Gemm && kd % 8 == 0 {
        // Four positions at a time: four independent FMA chains.
        while j + 3 <= pos {
            let k = [
                task.key(j),
                task.key(j + 1),
                task.key(j + 2),
                task.key(j + 3),
            ];
            let d = dot_gemm4(&sc.q, k);
            sc.w[j - base..j - base + 4].copy_from_slice(&d);
            j += 4;
        }
    }
    for j in j..=pos {
        let k = task.key(j);
        sc.w[j - base] = match task.order {
            DotOrder::Gemm => dot_gemm(&sc.q, k),
            DotOrder::VecDot => dot_vec(&sc.q[..kd], k),
        };
    }
    for x in &mut sc.w[first - base..=pos - base] {
        *x *= s.scale;
        if let Some(cap) = s.softcap {
            *x = cap * (*x * (1.0 / cap)).tanh();
        }
    }

    // Softmax.
    let max = sc.w[first - base..=pos - base]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let vmax = _mm256_set1_ps(max);
    let mut sum = 0f64;
    for c in sc.w.chunks_exact_mut(8) {
        let e = v_expf(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), vmax));
        _mm256_storeu_ps(c.as_mut_ptr(), e);
    }
    sc.w[..first - base].fill(0.0);
    sc.w[pos + 1 - base..].fill(0.0);
    for c in sc.w.chunks_exact(8) {
        sum += hsum8(_mm256_loadu_ps(c.as_ptr())) as f64;
    }
    let inv = _mm256_set1_ps((1.0 / sum) as f32);
    for c in sc.w.chunks_exact_mut(8) {
        let p = round_f16(_mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), inv));
        _mm256_storeu_ps(c.as_mut_ptr(), p);
    }

    // p·v per lane, then the lanes reduced per dimension.
    let lanes = task.order.lanes();
    let vd = s.v_dim;
    sc.acc.clear();
    sc.acc.resize(lanes * vd, 0.0);
    for l in 0..lanes {
        let acc = &mut sc.acc[l * vd..][..vd];
        // The first position at or after `first` in lane `l`.
        let j0 = first + (l + lanes - first % lanes) % lanes;
        let mut d = 0;
        while d + 64 <= vd {
            lane_sum::<8>(task, &sc.w, base, j0, lanes, d, &mut acc[d..d + 64]);
            d += 64;
        }
        while d + 8 <= vd {
            lane_sum::<1>(task, &sc.w, base, j0, lanes, d, &mut acc[d..d + 8]);
            d += 8;
        }
        for d in d..vd {
            let mut a = 0f32;
            for j in (j0..=pos).step_by(lanes) {
                a += sc.w[j - base] * task.value(j)[d].to_f32();
            }
            acc[d] = a;
        }
    }
    let mut d = 0;
    while d + 8 <= vd {
        let row = |l: usize| _mm256_loadu_ps(sc.acc[l * vd + d..].as_ptr());
        let r = match task.order {
            DotOrder::Gemm => {
                let t: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(row(i + 4), row(i)));
                _mm256_add_ps(_mm256_add_ps(t[0], t[2]), _mm256_add_ps(t[1], t[3]))
            }
            DotOrder::VecDot => {
                let r: [__m256; 8] = std::array::from_fn(|l| {
                    _mm256_add_ps(
                        _mm256_add_ps(row(l), row(16 + l)),
                        _mm256_add_ps(row(8 + l), row(24 + l)),
                    )
                });
                let t: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(r[i], r[i + 4]));
                _mm256_add_ps(_mm256_add_ps(t[0], t[1]), _mm256_add_ps(t[2], t[3]))
            }
        };
        _mm256_storeu_ps(out[d..d + 8].as_mut_ptr(), r);
        d += 8;
    }
    for d in d..vd {
        let lane: Vec<f32> = (0..lanes).map(|l| sc.acc[l * vd + d]).collect();
        out[d] = task.order.reduce(&lane);
    }
}

/// `acc[8r..8r + 8] = Σ p_j · v_j[d + 8r..]` over the positions
/// `j0, j0 + lanes, ..` up to the task's position, for `R` registers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lane_sum<const R: usize>(
    task: &HeadTask<'_>,
    w: &[f32],
    base: usize,
    j0: usize,
    lanes: usize,
    d: usize,
    acc: &mut [f32],
) {
    let mut a = [_mm256_setzero_ps(); R];
    let mut j = j0;
    while j <= task.pos {
        let p = _mm256_set1_ps(w[j - base]);
        let v = &task.value(j)[d..d + 8 * R];
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
