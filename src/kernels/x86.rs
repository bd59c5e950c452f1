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
//! The four-row forms ([`Kernel::four`]) of the 32-value formats walk four
//! weight rows through the blocks together: the activation block is loaded
//! and its corrections computed once, the four rows' scales are converted
//! and multiplied by single instructions, the four FMA chains (one FMA per
//! block per row, latency-bound in a single row) overlap, and for the
//! 4-bit and 5-bit formats two rows share each 256-bit register (see
//! [`Q32`]). All kernels prefetch the weight memory ahead ([`Prefetch`]).
//!
//! Measured on AMD Zen 4 (one core, rows in L2, `benches/kernels.rs`):
//! Q4_1 ~18 GiB/s and Q8_0 ~27 GiB/s at the AVX-512 level against
//! 1.5 and 2.6 GiB/s for the reference built for AVX2, and against ggml's
//! own kernels' 11 and 20 GiB/s on the same rows.

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
pub(super) unsafe fn load32<T>(p: &[T; 32]) -> __m256i {
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
pub(super) unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
    let q = _mm_loadu_si128(qs.as_ptr().cast());
    let both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// `−k · Σ` of four adjacent activation bytes per lane: the correction that
/// turns `Σ q·y` into `Σ (q − k)·y` for unsigned quants `q`.
#[inline(always)]
unsafe fn offset_lanes<const V512: bool>(k: i8, y: __m256i) -> __m256i {
    if k == 0 {
        return _mm256_setzero_si256();
    }
    let s = udot::<V512>(_mm256_setzero_si256(), _mm256_set1_epi8(k), y);
    _mm256_sub_epi32(_mm256_setzero_si256(), s)
}

/// `acc[r] = fma(d, lanes, acc[r])` with `d` broadcast from lane 0.
#[inline(always)]
unsafe fn fma_lanes(d: __m128, lanes: __m256i, acc: __m256) -> __m256 {
    _mm256_fmadd_ps(_mm256_broadcastss_ps(d), _mm256_cvtepi32_ps(lanes), acc)
}

/// Software prefetch of the weight memory after the rows of a call.
///
/// A call's N rows are contiguous and the next call's rows follow them.
/// The kernels walk their rows block by block, N interleaved streams that
/// the hardware prefetchers follow poorly (on Zen 4 the Q8_0 output head
/// streamed at ~5 GB/s per core without this, ~18 GB/s with it), so each
/// block step prefetches the matching N blocks' worth of the memory after
/// the rows, linearly, [`PREFETCH_AHEAD`] bytes further on. Prefetches never
/// fault, so running past the end of the tensor is harmless.
struct Prefetch {
    next: *const u8,
    step: usize,
}

/// Extra prefetch distance beyond one call's rows, in bytes.
const PREFETCH_AHEAD: usize = 1024;

impl Prefetch {
    #[inline(always)]
    fn after<W, const N: usize>(w: &[&[W]; N]) -> Prefetch {
        let end = w[N - 1].as_ptr_range().end.cast::<u8>();
        Prefetch {
            next: end.wrapping_add(PREFETCH_AHEAD),
            step: N * std::mem::size_of::<W>(),
        }
    }

    /// Prefetch the slice that belongs to block step `b`.
    #[inline(always)]
    unsafe fn block(&self, b: usize) {
        let mut o = b * self.step;
        let end = o + self.step;
        while o < end {
            _mm_prefetch::<_MM_HINT_T0>(self.next.wrapping_add(o).cast());
            o += 64;
        }
    }
}

/// Panics unless every row has as many blocks as `a` (hoists the bounds
/// checks out of the block loops).
#[inline(always)]
fn check_rows<W, A>(w: &[&[W]; 4], a: &[A]) {
    assert!(w.iter().all(|r| r.len() == a.len()));
}

// ---------------------------------------------------------------------------
// 32-value formats against Q8_0 / Q8_1.

/// An activation block of the 32-value formats.
pub(super) trait Act32 {
    fn qs(&self) -> &[i8; 32];
    /// The scale in every even lane and, for Q8_1, `s = d·Σq` in every odd
    /// lane (Q8_0: the scale everywhere).
    unsafe fn scales(&self) -> __m256;
}

impl Act32 for BlockQ8_0 {
    #[inline(always)]
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }

    #[inline(always)]
    unsafe fn scales(&self) -> __m256 {
        _mm256_broadcastss_ps(f16x1(self.d))
    }
}

impl Act32 for BlockQ8_1 {
    #[inline(always)]
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }

    #[inline(always)]
    unsafe fn scales(&self) -> __m256 {
        let ds = _mm_castps_pd(f16x2(self.d.as_ptr()));
        _mm256_castpd_ps(_mm256_broadcastsd_pd(ds))
    }
}

/// A weight block with 32 unsigned quants below 32 (Q4_0, Q4_1, Q5_0,
/// Q5_1): `Σ (q − OFFSET)·y` per lane is `udot(q, y) − OFFSET·Σy`, exact.
trait Quant32: BlockFormat<Dot: Act32> {
    /// Subtracted from every quant (8 for Q4_0, 16 for Q5_0, 0 with a minimum).
    const OFFSET: i8;
    /// Whether the block has a minimum `m`, added as `m·s` per block.
    const HAS_MIN: bool;

    /// The block's first four bytes: f16 `d`, then f16 `m` (or, without a
    /// minimum, two bytes that are never used).
    #[inline(always)]
    fn head(&self) -> i32 {
        const { assert!(std::mem::size_of::<Self>() >= 4) };
        // SAFETY: the block has at least four bytes (checked at compile
        // time), all plain data, read unaligned.
        unsafe { std::ptr::read_unaligned((self as *const Self).cast::<i32>()) }
    }

    /// The 32 quants in element order.
    unsafe fn quants<const V512: bool>(&self) -> __m256i;

    /// The quants of two blocks by halves:
    /// `([a 0..16 | b 0..16], [a 16..32 | b 16..32])`.
    unsafe fn quants2<const V512: bool>(a: &Self, b: &Self) -> (__m256i, __m256i);
}

/// Low and high nibbles of two 16-byte arrays, paired by halves.
#[inline(always)]
unsafe fn nibbles2(a: &[u8; 16], b: &[u8; 16]) -> (__m256i, __m256i) {
    let v = _mm256_loadu2_m128i(b.as_ptr().cast(), a.as_ptr().cast());
    let m4 = _mm256_set1_epi8(0x0f);
    (
        _mm256_and_si256(v, m4),
        _mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
    )
}

/// `q + 16` in the bytes whose bit is set in `bits` (the fifth bit of Q5).
#[inline(always)]
pub(super) unsafe fn add_fifth_bit<const V512: bool>(q: __m256i, bits: u32) -> __m256i {
    let sixteen = _mm256_set1_epi8(16);
    if V512 {
        _mm256_mask_add_epi8(q, bits, q, sixteen)
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
        _mm256_or_si256(q, _mm256_and_si256(set, sixteen))
    }
}

/// The fifth bits of two Q5 blocks, paired by halves like [`nibbles2`].
#[inline(always)]
fn fifth_bits2(a: [u8; 4], b: [u8; 4]) -> (u32, u32) {
    let (a, b) = (u32::from_le_bytes(a), u32::from_le_bytes(b));
    ((a & 0xffff) | (b << 16), (a >> 16) | (b & 0xffff_0000))
}

impl Quant32 for BlockQ4_0 {
    const OFFSET: i8 = 8;
    const HAS_MIN: bool = false;

    #[inline(always)]
    unsafe fn quants<const V512: bool>(&self) -> __m256i {
        nibbles(&self.qs)
    }

    #[inline(always)]
    unsafe fn quants2<const V512: bool>(a: &Self, b: &Self) -> (__m256i, __m256i) {
        nibbles2(&a.qs, &b.qs)
    }
}

impl Quant32 for BlockQ4_1 {
    const OFFSET: i8 = 0;
    const HAS_MIN: bool = true;

    #[inline(always)]
    unsafe fn quants<const V512: bool>(&self) -> __m256i {
        nibbles(&self.qs)
    }

    #[inline(always)]
    unsafe fn quants2<const V512: bool>(a: &Self, b: &Self) -> (__m256i, __m256i) {
        nibbles2(&a.qs, &b.qs)
    }
}

impl Quant32 for BlockQ5_0 {
    const OFFSET: i8 = 16;
    const HAS_MIN: bool = false;

    #[inline(always)]
    unsafe fn quants<const V512: bool>(&self) -> __m256i {
        add_fifth_bit::<V512>(nibbles(&self.qs), u32::from_le_bytes(self.qh))
    }

    #[inline(always)]
    unsafe fn quants2<const V512: bool>(a: &Self, b: &Self) -> (__m256i, __m256i) {
        let (lo, hi) = nibbles2(&a.qs, &b.qs);
        let (blo, bhi) = fifth_bits2(a.qh, b.qh);
        (
            add_fifth_bit::<V512>(lo, blo),
            add_fifth_bit::<V512>(hi, bhi),
        )
    }
}

impl Quant32 for BlockQ5_1 {
    const OFFSET: i8 = 0;
    const HAS_MIN: bool = true;

    #[inline(always)]
    unsafe fn quants<const V512: bool>(&self) -> __m256i {
        add_fifth_bit::<V512>(nibbles(&self.qs), u32::from_le_bytes(self.qh))
    }

    #[inline(always)]
    unsafe fn quants2<const V512: bool>(a: &Self, b: &Self) -> (__m256i, __m256i) {
        let (lo, hi) = nibbles2(&a.qs, &b.qs);
        let (blo, bhi) = fifth_bits2(a.qh, b.qh);
        (
            add_fifth_bit::<V512>(lo, blo),
            add_fifth_bit::<V512>(hi, bhi),
        )
    }
}

/// The kernel of a [`Quant32`] format. Per block: `d = dx·dy` (one
/// rounding), `acc[l] = fma(d, lane[l], acc[l])`, and with a minimum
/// `summs = fma(m, s, summs)`; the result is `hsum8(acc) (+ summs)`, as in
/// `ggml_vec_dot_q4_0_q8_0`/`_q4_1_q8_1`/`_q5_0_q8_0`/`_q5_1_q8_1`.
pub(super) struct Q32<B, const V512: bool>(std::marker::PhantomData<B>);

impl<B: Quant32, const V512: bool> Kernel for Q32<B, V512> {
    type W = B;

    #[inline(always)]
    unsafe fn one(w: &[B], a: &[B::Dot]) -> f32 {
        assert_eq!(w.len(), a.len());
        let mut acc = _mm256_setzero_ps();
        let mut summs = _mm_setzero_ps(); // lane 1
        let pf = Prefetch::after(&[w]);
        for (b, (x, y)) in w.iter().zip(a).enumerate() {
            pf.block(b);
            let yq = load32(y.qs());
            let ys = _mm256_castps256_ps128(y.scales()); // [dy, sy or dy, ..]
            let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(x.head())); // [dx, mx, ..]
            if B::HAS_MIN {
                summs = _mm_fmadd_ps(dm, ys, summs);
            }
            let off = offset_lanes::<V512>(B::OFFSET, yq);
            let lanes = udot::<V512>(off, x.quants::<V512>(), yq);
            acc = fma_lanes(_mm_mul_ps(dm, ys), lanes, acc);
        }
        let sum = hsum8(acc);
        if B::HAS_MIN {
            sum + _mm_cvtss_f32(_mm_movehdup_ps(summs))
        } else {
            sum
        }
    }

    /// Four rows, two per register: for rows `a` and `b` of a pair, the
    /// low-half quants of both (`[a 0..16 | b 0..16]`) are dotted with the
    /// activations' low half in both lanes, giving `[a lanes 0..4 | b lanes
    /// 0..4]`, and likewise for the high halves; the pair's accumulators keep
    /// that layout (each lane still gets its own row's FMA per block) and are
    /// rearranged into rows at the end. The four rows' scales are converted
    /// and multiplied with one instruction each.
    #[inline(always)]
    unsafe fn four(w: [&[B]; 4], a: &[B::Dot]) -> [f32; 4] {
        check_rows(&w, a);
        let mut lo = [_mm256_setzero_ps(); 2];
        let mut hi = [_mm256_setzero_ps(); 2];
        let mut summs = _mm256_setzero_ps(); // row r in lane 2r + 1
        let pair_scale = [
            _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2),
            _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6),
        ];
        let pf = Prefetch::after(&w);
        for (b, y) in a.iter().enumerate() {
            pf.block(b);
            let ylo = _mm256_broadcastsi128_si256(_mm_loadu_si128(y.qs().as_ptr().cast()));
            let yhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(y.qs()[16..].as_ptr().cast()));
            let off_lo = offset_lanes::<V512>(B::OFFSET, ylo);
            let off_hi = offset_lanes::<V512>(B::OFFSET, yhi);
            let x = [&w[0][b], &w[1][b], &w[2][b], &w[3][b]];
            let heads = _mm_setr_epi32(x[0].head(), x[1].head(), x[2].head(), x[3].head());
            let dm = _mm256_cvtph_ps(heads); // [d0, m0, d1, m1, ..]
            let ys = y.scales();
            if B::HAS_MIN {
                summs = _mm256_fmadd_ps(dm, ys, summs);
            }
            let d = _mm256_mul_ps(dm, ys);
            for p in 0..2 {
                let dp = _mm256_permutevar8x32_ps(d, pair_scale[p]);
                let (qlo, qhi) = B::quants2::<V512>(x[2 * p], x[2 * p + 1]);
                let l = _mm256_cvtepi32_ps(udot::<V512>(off_lo, qlo, ylo));
                let h = _mm256_cvtepi32_ps(udot::<V512>(off_hi, qhi, yhi));
                lo[p] = _mm256_fmadd_ps(dp, l, lo[p]);
                hi[p] = _mm256_fmadd_ps(dp, h, hi[p]);
            }
        }
        let mut sm = [0f32; 8];
        _mm256_storeu_ps(sm.as_mut_ptr(), summs);
        let mut out = [0f32; 4];
        for p in 0..2 {
            let rows = [
                _mm256_permute2f128_ps(lo[p], hi[p], 0x20),
                _mm256_permute2f128_ps(lo[p], hi[p], 0x31),
            ];
            for (i, acc) in rows.into_iter().enumerate() {
                let r = 2 * p + i;
                out[r] = hsum8(acc);
                if B::HAS_MIN {
                    out[r] += sm[2 * r + 1];
                }
            }
        }
        out
    }
}

pub(super) type Q4_0<const V512: bool> = Q32<BlockQ4_0, V512>;
pub(super) type Q4_1<const V512: bool> = Q32<BlockQ4_1, V512>;
pub(super) type Q5_0<const V512: bool> = Q32<BlockQ5_0, V512>;
pub(super) type Q5_1<const V512: bool> = Q32<BlockQ5_1, V512>;

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

/// Lane order of the AVX2 Q8_0 kernel's accumulators (its own inverse).
const Q8_0_AVX2_ORDER: [i32; 8] = [0, 1, 4, 5, 2, 3, 6, 7];

impl<const V512: bool> Q8_0<V512> {
    /// Per activation block: what [`Q8_0::lanes`] needs of it.
    #[inline(always)]
    unsafe fn prepare(y: &BlockQ8_0) -> (__m256i, __m256i) {
        if V512 {
            let yq = load32(&y.qs);
            (yq, offset_lanes::<V512>(-128, yq))
        } else {
            let ylo = _mm256_cvtepi8_epi16(_mm_loadu_si128(y.qs.as_ptr().cast()));
            let yhi = _mm256_cvtepi8_epi16(_mm_loadu_si128(y.qs[16..].as_ptr().cast()));
            (ylo, yhi)
        }
    }

    /// The eight integer lanes of `x · y` (in `Q8_0_AVX2_ORDER` for AVX2).
    #[inline(always)]
    unsafe fn lanes(x: &BlockQ8_0, (y0, y1): (__m256i, __m256i)) -> __m256i {
        if V512 {
            let xu = _mm256_xor_si256(load32(&x.qs), _mm256_set1_epi8(-128));
            udot::<V512>(y1, xu, y0)
        } else {
            let xlo = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.qs.as_ptr().cast()));
            let xhi = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.qs[16..].as_ptr().cast()));
            _mm256_hadd_epi32(_mm256_madd_epi16(xlo, y0), _mm256_madd_epi16(xhi, y1))
        }
    }

    /// `hsum8` of an accumulator in this level's lane order.
    #[inline(always)]
    unsafe fn finish(acc: __m256) -> f32 {
        if V512 {
            hsum8(acc)
        } else {
            let order = _mm256_loadu_si256(Q8_0_AVX2_ORDER.as_ptr().cast());
            hsum8(_mm256_permutevar8x32_ps(acc, order))
        }
    }
}

impl<const V512: bool> Kernel for Q8_0<V512> {
    type W = BlockQ8_0;

    #[inline(always)]
    unsafe fn one(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
        assert_eq!(w.len(), a.len());
        let mut acc = _mm256_setzero_ps();
        let pf = Prefetch::after(&[w]);
        for (b, (x, y)) in w.iter().zip(a).enumerate() {
            pf.block(b);
            let d = _mm_mul_ps(f16x1(x.d), f16x1(y.d));
            acc = fma_lanes(d, Self::lanes(x, Self::prepare(y)), acc);
        }
        Self::finish(acc)
    }

    /// Four rows: activation block prepared once, the four scales converted
    /// and multiplied with one instruction each.
    #[inline(always)]
    unsafe fn four(w: [&[BlockQ8_0]; 4], a: &[BlockQ8_0]) -> [f32; 4] {
        check_rows(&w, a);
        let mut acc = [_mm256_setzero_ps(); 4];
        let pf = Prefetch::after(&w);
        for (b, y) in a.iter().enumerate() {
            pf.block(b);
            let x = [&w[0][b], &w[1][b], &w[2][b], &w[3][b]];
            let yp = Self::prepare(y);
            // The u16 scale of each row in the low half of a u32 lane.
            let heads = _mm_setr_epi32(
                u16::from_le_bytes(x[0].d) as i32,
                u16::from_le_bytes(x[1].d) as i32,
                u16::from_le_bytes(x[2].d) as i32,
                u16::from_le_bytes(x[3].d) as i32,
            );
            let d = _mm256_mul_ps(_mm256_cvtph_ps(heads), y.scales()); // row r in lane 2r
            for r in 0..4 {
                let dr = _mm256_permutevar8x32_ps(d, _mm256_set1_epi32(2 * r as i32));
                let lanes = _mm256_cvtepi32_ps(Self::lanes(x[r], yp));
                acc[r] = _mm256_fmadd_ps(dr, lanes, acc[r]);
            }
        }
        let mut out = [0f32; 4];
        for r in 0..4 {
            out[r] = Self::finish(acc[r]);
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

impl<const V512: bool> Kernel for Q4K<V512> {
    type W = BlockQ4K;

    #[inline(always)]
    unsafe fn one(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut acc_m = _mm_setzero_ps();
        let m4 = _mm256_set1_epi8(0x0f);
        let pf = Prefetch::after(&[w]);
        for (b, (x, y)) in w.iter().zip(a).enumerate() {
            pf.block(b);
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

/// Q6_K × Q8_K (`ggml_vec_dot_q6_K_q8_K`): unsigned 6-bit quants times the
/// activations (`vpmaddubsw`, q < 64), times the signed 16-value scales
/// (`vpmaddwd`); the −32 offset subtracted per lane through `bsums`.
pub(super) struct Q6K<const V512: bool>;

impl<const V512: bool> Kernel for Q6K<V512> {
    type W = BlockQ6K;

    #[inline(always)]
    unsafe fn one(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let m4 = _mm256_set1_epi8(0x0f);
        let m2 = _mm256_set1_epi8(3);
        let pf = Prefetch::after(&[w]);
        for (b, (x, y)) in w.iter().zip(a).enumerate() {
            pf.block(b);
            let yd = f32::from_le_bytes(y.d);
            let d = _mm_mul_ps(_mm_set_ss(yd), f16x1(x.d));
            let scales = _mm_loadu_si128(x.scales.as_ptr().cast());
            let bsums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
            let offset =
                _mm256_slli_epi32(_mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(scales)), 5);
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

impl<T: Load8 + BlockFormat<Dot = T>> Kernel for Float<T> {
    type W = T;

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
        let v = _mm256_add_ps(_mm256_add_ps(sum[0], sum[2]), _mm256_add_ps(sum[1], sum[3]));
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
