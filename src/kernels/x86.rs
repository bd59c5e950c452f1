//! x86-64 kernels written with `std::arch` intrinsics. Each format has one
//! body, generic over the level `V512`, compiled twice:
//!
//! - AVX2 + FMA + F16C: integer dots with `vpmaddubsw` + `vpmaddwd`, as in
//!   ggml's AVX2 code;
//! - AVX-512 F/BW/VL + VNNI: `vpdpbusd` (u8·i8 dot of four bytes into an
//!   i32), `vpdpwssd`, and mask registers for Q5's fifth bits. Vectors stay
//!   256 bits wide: the float part must run on the reference's eight lanes
//!   anyway, and on AMD Zen 4 a 512-bit integer op costs two 256-bit ones.
//!
//! # Why the results are the reference's bits
//! The reference ([`crate::quant`]) adds, per block, `d · lane[l]` into
//! eight f32 lanes with one fused multiply-add, where `lane[l]` is the exact
//! integer dot of bytes `4l..4l+4` of each 32-value chunk. Here `lane[l]` is
//! vector lane `l` of a `vpmaddubsw`+`vpmaddwd` or `vpdpbusd` over the same
//! 32 bytes (exact: no step can saturate, see each kernel), the scale `d` is
//! the same single-rounded product (F16C conversion is exact), and
//! `vfmadd` is the same fused operation. The lanes are reduced by
//! [`hsum8`], which is `Lanes8::sum`.
//!
//! Signed quants that may be −128 (Q8_0 on both sides) are never fed to
//! `vpsignb`-style tricks, which would overflow; and offsets (Q4_0's −8,
//! Q5_0's −16, Q8_0's bias of 128 under VNNI) are folded in as exact
//! per-lane integer corrections computed from the activations once per
//! block and shared by all rows.
//!
//! The multi-row form (`N` = 4) walks four weight rows through the blocks
//! together: the activation block is loaded and its scale and corrections
//! computed once, and the four rows' FMA chains (one FMA per block per row,
//! latency-bound in a single row) overlap.

use std::arch::x86_64::*;

use super::{rows, Kernel, Reference, RowsFn};
use crate::quant::{
    BlockFormat, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K,
    BlockQ8_0, BlockQ8_1, GgmlType, BF16, F16, F32,
};

/// The reference compiled with AVX2, FMA and F16C.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_reference<B: BlockFormat>(w: &[u8], a: &[u8], out: &mut [f32]) {
    rows::<Reference<B>>(w, a, out)
}

/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_avx2<K: Kernel>(w: &[u8], a: &[u8], out: &mut [f32]) {
    rows::<K>(w, a, out)
}

/// # Safety
/// The CPU has AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn rows_avx512vnni<K: Kernel>(w: &[u8], a: &[u8], out: &mut [f32]) {
    rows::<K>(w, a, out)
}

/// The kernel of `ty` at the level `V512`, as a type.
macro_rules! kernel_for {
    ($ty:expr, $V512:literal, $entry:ident) => {
        Some(match $ty {
            GgmlType::Q4_0 => $entry::<Q4_0<$V512>> as RowsFn,
            GgmlType::Q4_1 => $entry::<Q4_1<$V512>>,
            GgmlType::Q5_0 => $entry::<Q5_0<$V512>>,
            GgmlType::Q5_1 => $entry::<Q5_1<$V512>>,
            GgmlType::Q8_0 => $entry::<Q8_0<$V512>>,
            GgmlType::Q4_K => $entry::<Q4K<$V512>>,
            GgmlType::Q6_K => $entry::<Q6K<$V512>>,
            GgmlType::F16 => $entry::<Float<F16>>,
            GgmlType::BF16 => $entry::<Float<BF16>>,
            GgmlType::F32 => $entry::<Float<F32>>,
            _ => return None,
        })
    };
}

/// The hand-written AVX2 kernel for `ty`, if there is one.
pub(super) fn avx2(ty: GgmlType) -> Option<RowsFn> {
    kernel_for!(ty, false, rows_avx2)
}

/// The hand-written AVX-512 VNNI kernel for `ty`, if there is one.
pub(super) fn avx512vnni(ty: GgmlType) -> Option<RowsFn> {
    kernel_for!(ty, true, rows_avx512vnni)
}

// ---------------------------------------------------------------------------
// Helpers. All are `inline(always)` and use only features both levels have
// (or are guarded by `V512`), so they compile into either entry point.

/// 32 bytes at `p` (any alignment).
#[inline(always)]
unsafe fn load32<T>(p: &[T; 32]) -> __m256i {
    _mm256_loadu_si256(p.as_ptr().cast())
}

/// Two adjacent f16 values starting at `p` as `[p0, p1, 0, 0]`.
#[inline(always)]
unsafe fn f16x2(p: *const u8) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128(
        std::ptr::read_unaligned(p.cast::<u32>()) as i32
    ))
}

/// One f16 value as `[v, 0, 0, 0]`.
#[inline(always)]
unsafe fn f16x1(h: [u8; 2]) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes(h) as i32))
}

/// `Lanes8::sum`: upper half onto lower half (`a[4+i] + a[i]`), then
/// `(r0 + r2) + (r1 + r3)`.
#[inline(always)]
unsafe fn hsum8(a: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps(a, 1), _mm256_castps256_ps128(a));
    hsum4(r)
}

/// `sum4`: `_mm_movehl_ps` + `_mm_add_ps`, then `_mm_movehdup_ps` + `_mm_add_ss`.
#[inline(always)]
unsafe fn hsum4(r: __m128) -> f32 {
    let s = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// `acc + Σ` of four adjacent `u[i]·s[i]` per i32 lane (u unsigned, s
/// signed bytes). Exact as long as no pair sum `u0·s0 + u1·s1` exceeds the
/// i16 range, which holds for `u` < 64 (63·128·2 < 2^15); with VNNI always.
#[inline(always)]
unsafe fn udot<const V512: bool>(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    if V512 {
        _mm256_dpbusd_epi32(acc, u, s)
    } else {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

/// `acc + madd(a, b)` (i16 pairs into i32 lanes); `vpdpwssd` under VNNI.
#[inline(always)]
unsafe fn madd_add<const V512: bool>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    if V512 {
        _mm256_dpwssd_epi32(acc, a, b)
    } else {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }
}

/// The 32 quants of a Q4 block in element order: low nibbles (elements
/// 0..16) then high nibbles (16..32).
#[inline(always)]
unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
    let q = _mm_loadu_si128(qs.as_ptr().cast());
    let both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// Q5 quants (0..32): nibbles plus 16 where bit i of `qh` is set.
#[inline(always)]
unsafe fn quants5<const V512: bool>(qh: [u8; 4], qs: &[u8; 16]) -> __m256i {
    let lo = nibbles(qs);
    let bits = u32::from_le_bytes(qh);
    if V512 {
        _mm256_mask_add_epi8(lo, bits, lo, _mm256_set1_epi8(16))
    } else {
        // ggml's `bytes_from_bits_32`: byte i = 0xff iff bit i is set.
        let shuf = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
        let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
        let set = _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
        _mm256_or_si256(lo, _mm256_and_si256(set, _mm256_set1_epi8(16)))
    }
}

/// `−k · Σ` of four adjacent activation bytes per lane: the correction that
/// turns `Σ q·y` into `Σ (q − k)·y` for unsigned quants `q`.
#[inline(always)]
unsafe fn offset_lanes<const V512: bool>(k: i8, y: __m256i) -> __m256i {
    let s = udot::<V512>(_mm256_setzero_si256(), _mm256_set1_epi8(k), y);
    _mm256_sub_epi32(_mm256_setzero_si256(), s)
}

/// `acc[r] = fma(d, lanes, acc[r])` with `d` broadcast from lane 0.
#[inline(always)]
unsafe fn fma_lanes(d: __m128, lanes: __m256i, acc: __m256) -> __m256 {
    _mm256_fmadd_ps(_mm256_broadcastss_ps(d), _mm256_cvtepi32_ps(lanes), acc)
}

/// Panics unless every row has as many blocks as `a` (hoists the bounds
/// checks out of the block loops).
#[inline(always)]
fn check_rows<W, A, const N: usize>(w: &[&[W]; N], a: &[A]) {
    assert!(w.iter().all(|r| r.len() == a.len()));
}

// ---------------------------------------------------------------------------
// 32-value formats against Q8_0 / Q8_1.

/// Q4_0 × Q8_0: `Σ (q − 8)·y = udot(q, y) − 8·Σy` (q in 0..16, exact).
pub(super) struct Q4_0<const V512: bool>;

impl<const V512: bool> Kernel for Q4_0<V512> {
    type W = BlockQ4_0;

    #[inline(always)]
    unsafe fn dot<const N: usize>(w: [&[BlockQ4_0]; N], a: &[BlockQ8_0]) -> [f32; N] {
        check_rows(&w, a);
        let mut acc = [_mm256_setzero_ps(); N];
        for (b, y) in a.iter().enumerate() {
            let yq = load32(&y.qs);
            let dy = f16x1(y.d);
            let off = offset_lanes::<V512>(8, yq);
            for r in 0..N {
                let x = &w[r][b];
                let d = _mm_mul_ps(f16x1(x.d), dy);
                let lanes = udot::<V512>(off, nibbles(&x.qs), yq);
                acc[r] = fma_lanes(d, lanes, acc[r]);
            }
        }
        let mut out = [0f32; N];
        for r in 0..N {
            out[r] = hsum8(acc[r]);
        }
        out
    }
}

/// Q4_1 × Q8_1: `udot(q, y)` (q in 0..16); the minimum terms `m·s` run in
/// lane 1 of a second accumulator, fused like the reference's `summs`.
pub(super) struct Q4_1<const V512: bool>;

impl<const V512: bool> Kernel for Q4_1<V512> {
    type W = BlockQ4_1;

    #[inline(always)]
    unsafe fn dot<const N: usize>(w: [&[BlockQ4_1]; N], a: &[BlockQ8_1]) -> [f32; N] {
        check_rows(&w, a);
        let mut acc = [_mm256_setzero_ps(); N];
        let mut summs = [_mm_setzero_ps(); N];
        for (b, y) in a.iter().enumerate() {
            let yq = load32(&y.qs);
            let ds = f16x2(y.d.as_ptr()); // [dy, sy, 0, 0]
            for r in 0..N {
                let x = &w[r][b];
                let dm = f16x2(x.d.as_ptr()); // [dx, mx, 0, 0]
                summs[r] = _mm_fmadd_ps(dm, ds, summs[r]); // lane 1: fma(mx, sy, summs)
                let d = _mm_mul_ps(dm, ds); // lane 0: dx·dy
                let lanes = udot::<V512>(_mm256_setzero_si256(), nibbles(&x.qs), yq);
                acc[r] = fma_lanes(d, lanes, acc[r]);
            }
        }
        let mut out = [0f32; N];
        for r in 0..N {
            out[r] = hsum8(acc[r]) + _mm_cvtss_f32(_mm_movehdup_ps(summs[r]));
        }
        out
    }
}

/// Q5_0 × Q8_0: `Σ (q − 16)·y = udot(q, y) − 16·Σy` (q in 0..32, exact).
pub(super) struct Q5_0<const V512: bool>;

impl<const V512: bool> Kernel for Q5_0<V512> {
    type W = BlockQ5_0;

    #[inline(always)]
    unsafe fn dot<const N: usize>(w: [&[BlockQ5_0]; N], a: &[BlockQ8_0]) -> [f32; N] {
        check_rows(&w, a);
        let mut acc = [_mm256_setzero_ps(); N];
        for (b, y) in a.iter().enumerate() {
            let yq = load32(&y.qs);
            let dy = f16x1(y.d);
            let off = offset_lanes::<V512>(16, yq);
            for r in 0..N {
                let x = &w[r][b];
                let d = _mm_mul_ps(f16x1(x.d), dy);
                let lanes = udot::<V512>(off, quants5::<V512>(x.qh, &x.qs), yq);
                acc[r] = fma_lanes(d, lanes, acc[r]);
            }
        }
        let mut out = [0f32; N];
        for r in 0..N {
            out[r] = hsum8(acc[r]);
        }
        out
    }
}

/// Q5_1 × Q8_1: Q5 quants, Q4_1's float shape.
pub(super) struct Q5_1<const V512: bool>;

impl<const V512: bool> Kernel for Q5_1<V512> {
    type W = BlockQ5_1;

    #[inline(always)]
    unsafe fn dot<const N: usize>(w: [&[BlockQ5_1]; N], a: &[BlockQ8_1]) -> [f32; N] {
        check_rows(&w, a);
        let mut acc = [_mm256_setzero_ps(); N];
        let mut summs = [_mm_setzero_ps(); N];
        for (b, y) in a.iter().enumerate() {
            let yq = load32(&y.qs);
            let ds = f16x2(y.d.as_ptr());
            for r in 0..N {
                let x = &w[r][b];
                let dm = f16x2(x.d.as_ptr());
                summs[r] = _mm_fmadd_ps(dm, ds, summs[r]);
                let d = _mm_mul_ps(dm, ds);
                let q = quants5::<V512>(x.qh, &x.qs);
                let lanes = udot::<V512>(_mm256_setzero_si256(), q, yq);
                acc[r] = fma_lanes(d, lanes, acc[r]);
            }
        }
        let mut out = [0f32; N];
        for r in 0..N {
            out[r] = hsum8(acc[r]) + _mm_cvtss_f32(_mm_movehdup_ps(summs[r]));
        }
        out
    }
}

/// Q8_0 × Q8_0, both sides signed (−128 included).
///
/// VNNI: `Σ x·y = udot(x + 128, y) − 128·Σy`, where `x + 128` is `x ^ 0x80`
/// read unsigned; `vpdpbusd` does not saturate, so this is exact.
///
/// AVX2: `vpmaddubsw` needs an unsigned side below 64 to be exact, so both
/// sides are widened to i16 and multiplied with `vpmaddwd`; `vphaddd` then
/// sums the pairs into lanes in the order `[0, 1, 4, 5, 2, 3, 6, 7]`, which
/// the accumulators keep until one permutation at the end.
pub(super) struct Q8_0<const V512: bool>;

impl<const V512: bool> Kernel for Q8_0<V512> {
    type W = BlockQ8_0;

    #[inline(always)]
    unsafe fn dot<const N: usize>(w: [&[BlockQ8_0]; N], a: &[BlockQ8_0]) -> [f32; N] {
        check_rows(&w, a);
        let mut acc = [_mm256_setzero_ps(); N];
        let bias = _mm256_set1_epi8(-128);
        for (b, y) in a.iter().enumerate() {
            let dy = f16x1(y.d);
            if V512 {
                let yq = load32(&y.qs);
                let off = offset_lanes::<V512>(-128, yq);
                for r in 0..N {
                    let x = &w[r][b];
                    let d = _mm_mul_ps(f16x1(x.d), dy);
                    let xu = _mm256_xor_si256(load32(&x.qs), bias);
                    let lanes = udot::<V512>(off, xu, yq);
                    acc[r] = fma_lanes(d, lanes, acc[r]);
                }
            } else {
                let ylo = _mm256_cvtepi8_epi16(_mm_loadu_si128(y.qs.as_ptr().cast()));
                let yhi = _mm256_cvtepi8_epi16(_mm_loadu_si128(y.qs[16..].as_ptr().cast()));
                for r in 0..N {
                    let x = &w[r][b];
                    let d = _mm_mul_ps(f16x1(x.d), dy);
                    let xlo = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.qs.as_ptr().cast()));
                    let xhi = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.qs[16..].as_ptr().cast()));
                    let lanes = _mm256_hadd_epi32(
                        _mm256_madd_epi16(xlo, ylo),
                        _mm256_madd_epi16(xhi, yhi),
                    );
                    acc[r] = fma_lanes(d, lanes, acc[r]);
                }
            }
        }
        if !V512 {
            let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
            for a in &mut acc {
                *a = _mm256_permutevar8x32_ps(*a, order);
            }
        }
        let mut out = [0f32; N];
        for r in 0..N {
            out[r] = hsum8(acc[r]);
        }
        out
    }
}

// ---------------------------------------------------------------------------
// K-quants against Q8_K: one row at a time (one FMA per 256 values leaves
// nothing to overlap), ggml's AVX2 structure.

/// Q4_K × Q8_K (`ggml_vec_dot_q4_K_q8_K`): per 64 values, low and high
/// nibbles times the activations (`vpmaddubsw`, q < 16), times the i16
/// sub-block scale (`vpmaddwd`); the mins through Q8_K's `bsums` into a
/// four-lane accumulator.
pub(super) struct Q4K<const V512: bool>;

impl<const V512: bool> Q4K<V512> {
    #[inline(always)]
    unsafe fn one(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut acc_m = _mm_setzero_ps();
        let m4 = _mm256_set1_epi8(0x0f);
        for (x, y) in w.iter().zip(a) {
            let yd = f32::from_le_bytes(y.d);
            let d = _mm_mul_ps(_mm_set_ss(yd), f16x1(x.d));
            let dmin = _mm_mul_ps(_mm_set_ss(-yd), f16x1(x.dmin));

            // Scales and mins to bytes 0..8 and 8..16 (ggml's utmp shuffle).
            let sc = &x.scales;
            let u = [
                u32::from_le_bytes([sc[0], sc[1], sc[2], sc[3]]),
                u32::from_le_bytes([sc[4], sc[5], sc[6], sc[7]]),
                u32::from_le_bytes([sc[8], sc[9], sc[10], sc[11]]),
            ];
            const KMASK1: u32 = 0x3f3f_3f3f;
            const KMASK2: u32 = 0x0f0f_0f0f;
            const KMASK3: u32 = 0x0303_0303;
            let sc_lo = u[0] & KMASK1;
            let sc_hi = (u[2] & KMASK2) | (((u[0] >> 6) & KMASK3) << 4);
            let mn_lo = u[1] & KMASK1;
            let mn_hi = ((u[2] >> 4) & KMASK2) | (((u[1] >> 6) & KMASK3) << 4);
            let packed = _mm_set_epi32(mn_hi as i32, mn_lo as i32, sc_hi as i32, sc_lo as i32);
            let mins_scales = _mm256_cvtepu8_epi16(packed); // i16: sc0..8, m0..8

            let bsums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
            let q8s = _mm_hadd_epi16(
                _mm256_castsi256_si128(bsums),
                _mm256_extracti128_si256(bsums, 1),
            );
            let prod = _mm_madd_epi16(_mm256_extracti128_si256(mins_scales, 1), q8s);
            acc_m = _mm_fmadd_ps(_mm_broadcastss_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);

            let sc128 = _mm256_castsi256_si128(mins_scales);
            let scales = _mm256_set_m128i(sc128, sc128);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let shuf = |i: i16| _mm256_set1_epi16(((2 * i + 1) << 8) | (2 * i));
                let scale_l = _mm256_shuffle_epi8(scales, shuf(2 * j as i16));
                let scale_h = _mm256_shuffle_epi8(scales, shuf(2 * j as i16 + 1));
                let bits = _mm256_loadu_si256(x.qs[32 * j..].as_ptr().cast());
                let q4l = _mm256_and_si256(bits, m4);
                let q4h = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                let q8l = _mm256_loadu_si256(y.qs[64 * j..].as_ptr().cast());
                let q8h = _mm256_loadu_si256(y.qs[64 * j + 32..].as_ptr().cast());
                sumi = madd_add::<V512>(sumi, scale_l, _mm256_maddubs_epi16(q4l, q8l));
                sumi = madd_add::<V512>(sumi, scale_h, _mm256_maddubs_epi16(q4h, q8h));
            }
            acc = fma_lanes(d, sumi, acc);
        }
        hsum8(acc) + hsum4(acc_m)
    }
}

impl<const V512: bool> Kernel for Q4K<V512> {
    type W = BlockQ4K;

    #[inline(always)]
    unsafe fn dot<const N: usize>(w: [&[BlockQ4K]; N], a: &[BlockQ8K]) -> [f32; N] {
        let mut out = [0f32; N];
        for r in 0..N {
            out[r] = Self::one(w[r], a);
        }
        out
    }
}

/// Q6_K × Q8_K (`ggml_vec_dot_q6_K_q8_K`): unsigned 6-bit quants times the
/// activations (`vpmaddubsw`, q < 64), times the signed 16-value scales
/// (`vpmaddwd`); the −32 offset subtracted per lane through `bsums`.
pub(super) struct Q6K<const V512: bool>;

impl<const V512: bool> Q6K<V512> {
    #[inline(always)]
    unsafe fn one(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let m4 = _mm256_set1_epi8(0x0f);
        let m2 = _mm256_set1_epi8(3);
        for (x, y) in w.iter().zip(a) {
            let yd = f32::from_le_bytes(y.d);
            let d = _mm_mul_ps(_mm_set_ss(yd), f16x1(x.d));
            let scales = _mm_loadu_si128(x.scales.as_ptr().cast());
            let bsums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
            let offset = _mm256_slli_epi32(
                _mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(scales)),
                5,
            );
            let mut sumi = _mm256_setzero_si256();
            for half in 0..2 {
                let ql1 = _mm256_loadu_si256(x.ql[64 * half..].as_ptr().cast());
                let ql2 = _mm256_loadu_si256(x.ql[64 * half + 32..].as_ptr().cast());
                let qh = _mm256_loadu_si256(x.qh[32 * half..].as_ptr().cast());
                let high = |k: i32| {
                    let h = match k {
                        0 => qh,
                        1 => _mm256_srli_epi16(qh, 2),
                        2 => _mm256_srli_epi16(qh, 4),
                        _ => _mm256_srli_epi16(qh, 6),
                    };
                    _mm256_slli_epi16(_mm256_and_si256(h, m2), 4)
                };
                let q = [
                    _mm256_or_si256(_mm256_and_si256(ql1, m4), high(0)),
                    _mm256_or_si256(_mm256_and_si256(ql2, m4), high(1)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), high(2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql2, 4), m4), high(3)),
                ];
                for (k, &q) in q.iter().enumerate() {
                    let s = (8 * half + 2 * k) as i8;
                    // Scale s for bytes 0..16 of the chunk, s + 1 for 16..32.
                    let shuf = _mm_set_epi64x(
                        i64::from_le_bytes([s as u8 + 1; 8]),
                        i64::from_le_bytes([s as u8; 8]),
                    );
                    let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuf));
                    let y8 = _mm256_loadu_si256(y.qs[128 * half + 32 * k..].as_ptr().cast());
                    sumi = madd_add::<V512>(sumi, sc, _mm256_maddubs_epi16(q, y8));
                }
            }
            acc = fma_lanes(d, _mm256_sub_epi32(sumi, offset), acc);
        }
        hsum8(acc)
    }
}

impl<const V512: bool> Kernel for Q6K<V512> {
    type W = BlockQ6K;

    #[inline(always)]
    unsafe fn dot<const N: usize>(w: [&[BlockQ6K]; N], a: &[BlockQ8K]) -> [f32; N] {
        let mut out = [0f32; N];
        for r in 0..N {
            out[r] = Self::one(w[r], a);
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Float rows (`ggml_vec_dot_f32/_f16/_bf16`, AVX2): four 8-lane FMA
// accumulators over steps of 32 values, the reference's reduction and tail.

/// Eight values of a float format as f32.
pub(super) trait Load8: BlockFormat {
    unsafe fn load8(p: &[Self]) -> __m256;
    fn get(self) -> f32;
    /// `ggml_vec_dot_bf16` reduces its last four lanes as `(0+2)+(1+3)`,
    /// the others as `(0+1)+(2+3)`.
    const PAIRS_02_13: bool;
    /// The f16/bf16 tails accumulate in f64; the f32 tail with FMA.
    const F64_TAIL: bool;
}

impl Load8 for F32 {
    #[inline(always)]
    unsafe fn load8(p: &[Self]) -> __m256 {
        _mm256_loadu_ps(p[..8].as_ptr().cast())
    }
    fn get(self) -> f32 {
        F32::get(self)
    }
    const PAIRS_02_13: bool = false;
    const F64_TAIL: bool = false;
}

impl Load8 for F16 {
    #[inline(always)]
    unsafe fn load8(p: &[Self]) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p[..8].as_ptr().cast()))
    }
    fn get(self) -> f32 {
        F16::get(self)
    }
    const PAIRS_02_13: bool = false;
    const F64_TAIL: bool = true;
}

impl Load8 for BF16 {
    #[inline(always)]
    unsafe fn load8(p: &[Self]) -> __m256 {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p[..8].as_ptr().cast()));
        _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
    }
    fn get(self) -> f32 {
        BF16::get(self)
    }
    const PAIRS_02_13: bool = true;
    const F64_TAIL: bool = true;
}

pub(super) struct Float<T>(std::marker::PhantomData<T>);

impl<T: Load8 + BlockFormat<Dot = T>> Float<T> {
    #[inline(always)]
    unsafe fn one(w: &[T], a: &[T]) -> f32 {
        let n = w.len().min(a.len());
        let np = n & !31;
        let mut sum = [_mm256_setzero_ps(); 4];
        for (xs, ys) in w[..np].chunks_exact(32).zip(a[..np].chunks_exact(32)) {
            for (j, s) in sum.iter_mut().enumerate() {
                let x = T::load8(&xs[8 * j..]);
                let y = T::load8(&ys[8 * j..]);
                *s = _mm256_fmadd_ps(x, y, *s);
            }
        }
        let v = _mm256_add_ps(
            _mm256_add_ps(sum[0], sum[2]),
            _mm256_add_ps(sum[1], sum[3]),
        );
        let t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let mut t4 = [0f32; 4];
        _mm_storeu_ps(t4.as_mut_ptr(), t);
        let reduced = if T::PAIRS_02_13 {
            (t4[0] + t4[2]) + (t4[1] + t4[3])
        } else {
            (t4[0] + t4[1]) + (t4[2] + t4[3])
        };
        let tail = w[np..n].iter().zip(&a[np..n]);
        if T::F64_TAIL {
            tail.fold(reduced as f64, |s, (&x, &y)| s + (x.get() * y.get()) as f64) as f32
        } else {
            tail.fold(reduced, |s, (&x, &y)| x.get().mul_add(y.get(), s))
        }
    }
}

impl<T: Load8 + BlockFormat<Dot = T>> Kernel for Float<T> {
    type W = T;

    #[inline(always)]
    unsafe fn dot<const N: usize>(w: [&[T]; N], a: &[T]) -> [f32; N] {
        let mut out = [0f32; N];
        for r in 0..N {
            out[r] = Self::one(w[r], a);
        }
        out
    }
}
