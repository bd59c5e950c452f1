//! aarch64 kernels (Advanced SIMD, part of every aarch64 CPU) for the
//! 32-value formats: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
//!
//! The reference's eight lanes live in two `float32x4_t` (lanes 0..4 and
//! 4..8). A lane's integer sum — four adjacent products — is formed exactly:
//! `vmull_s8` multiplies eight i8 pairs into i16 (|product| ≤ 2^14),
//! `vpaddlq_s16` adds neighbouring products into i32, and `vpaddq_s32` adds
//! neighbouring pairs, leaving the lanes in element order. Quants are
//! centred (`q − 8`, `q − 16`) before the multiply, which is exact in i8. The
//! float part is the reference's: `d = dx·dy`, `vfmaq_f32` (fused) per block
//! per lane, then `Lanes8::sum`'s reduction. The dot-product extension
//! (`sdot`) would be faster but its intrinsics are not stable Rust yet.

use std::arch::aarch64::*;

use super::{rows, Kernel, RowsFn};
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, GgmlType};

/// # Safety
/// The CPU has Advanced SIMD (every aarch64 CPU does).
#[target_feature(enable = "neon")]
unsafe fn rows_neon<K: Kernel>(w: &[u8], a: &[u8], out: &mut [f32]) {
    rows::<K>(w, a, out)
}

/// The NEON kernel for `ty`, if there is one.
pub(super) fn neon(ty: GgmlType) -> Option<RowsFn> {
    Some(match ty {
        GgmlType::Q4_0 => rows_neon::<Q32<BlockQ4_0>> as RowsFn,
        GgmlType::Q4_1 => rows_neon::<Q32<BlockQ4_1>>,
        GgmlType::Q5_0 => rows_neon::<Q32<BlockQ5_0>>,
        GgmlType::Q5_1 => rows_neon::<Q32<BlockQ5_1>>,
        GgmlType::Q8_0 => rows_neon::<Q32<BlockQ8_0>>,
        _ => return None,
    })
}

#[inline(always)]
fn f16(h: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(h).to_f32()
}

/// Four lanes of `Σ x[4l..4l+4]·y[4l..4l+4]` over 16 i8 pairs, exact.
#[inline(always)]
unsafe fn lanes16(x: int8x16_t, y: int8x16_t) -> int32x4_t {
    let lo = vpaddlq_s16(vmull_s8(vget_low_s8(x), vget_low_s8(y)));
    let hi = vpaddlq_s16(vmull_high_s8(x, y));
    vpaddq_s32(lo, hi)
}

/// `Lanes8::sum` of the lanes `lo` (0..4) and `hi` (4..8).
#[inline(always)]
unsafe fn hsum8(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let r = vaddq_f32(hi, lo); // a[4+i] + a[i]
    let s = vadd_f32(vget_low_f32(r), vget_high_f32(r)); // r0 + r2, r1 + r3
    vpadds_f32(s)
}

/// `q + 16` (as i8) in the bytes whose bit is set in the 16 bits `bits`.
#[inline(always)]
unsafe fn add_fifth_bit(q: int8x16_t, bits: u32) -> int8x16_t {
    let [b0, b1, ..] = bits.to_le_bytes();
    let bytes = vcombine_u8(vdup_n_u8(b0), vdup_n_u8(b1));
    const BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let set = vtstq_u8(bytes, vld1q_u8(BIT.as_ptr()));
    vaddq_s8(q, vreinterpretq_s8_u8(vandq_u8(set, vdupq_n_u8(16))))
}

/// An activation block of the 32-value formats.
trait Act32 {
    fn qs(&self) -> &[i8; 32];
    fn d(&self) -> f32;
    /// Q8_1's `s = d·Σq` (unused for Q8_0).
    fn s(&self) -> f32;
}

impl Act32 for BlockQ8_0 {
    #[inline(always)]
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
    #[inline(always)]
    fn d(&self) -> f32 {
        f16(self.d)
    }
    #[inline(always)]
    fn s(&self) -> f32 {
        0.0
    }
}

impl Act32 for BlockQ8_1 {
    #[inline(always)]
    fn qs(&self) -> &[i8; 32] {
        &self.qs
    }
    #[inline(always)]
    fn d(&self) -> f32 {
        f16(self.d)
    }
    #[inline(always)]
    fn s(&self) -> f32 {
        f16(self.s)
    }
}

/// A weight block of 32 quants, as signed values `[0..16]` and `[16..32]`.
trait Quant32: crate::quant::BlockFormat<Dot: Act32> {
    /// The minimum `m`, for the formats that have one.
    const HAS_MIN: bool;
    fn d(&self) -> f32;
    fn m(&self) -> f32;
    unsafe fn quants(&self) -> (int8x16_t, int8x16_t);
}

/// Low and high nibbles of 16 bytes, minus `offset`.
#[inline(always)]
unsafe fn nibbles(qs: &[u8; 16], offset: i8) -> (int8x16_t, int8x16_t) {
    let v = vld1q_u8(qs.as_ptr());
    let lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
    let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
    let k = vdupq_n_s8(offset);
    (vsubq_s8(lo, k), vsubq_s8(hi, k))
}

/// Q5 quants: nibbles plus the fifth bits, minus `offset`.
#[inline(always)]
unsafe fn quants5(qh: [u8; 4], qs: &[u8; 16], offset: i8) -> (int8x16_t, int8x16_t) {
    let (lo, hi) = nibbles(qs, 0);
    let h = u32::from_le_bytes(qh);
    let k = vdupq_n_s8(offset);
    (
        vsubq_s8(add_fifth_bit(lo, h & 0xffff), k),
        vsubq_s8(add_fifth_bit(hi, h >> 16), k),
    )
}

impl Quant32 for BlockQ4_0 {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn d(&self) -> f32 {
        f16(self.d)
    }
    #[inline(always)]
    fn m(&self) -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn quants(&self) -> (int8x16_t, int8x16_t) {
        nibbles(&self.qs, 8)
    }
}

impl Quant32 for BlockQ4_1 {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn d(&self) -> f32 {
        f16(self.d)
    }
    #[inline(always)]
    fn m(&self) -> f32 {
        f16(self.m)
    }
    #[inline(always)]
    unsafe fn quants(&self) -> (int8x16_t, int8x16_t) {
        nibbles(&self.qs, 0)
    }
}

impl Quant32 for BlockQ5_0 {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn d(&self) -> f32 {
        f16(self.d)
    }
    #[inline(always)]
    fn m(&self) -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn quants(&self) -> (int8x16_t, int8x16_t) {
        quants5(self.qh, &self.qs, 16)
    }
}

impl Quant32 for BlockQ5_1 {
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn d(&self) -> f32 {
        f16(self.d)
    }
    #[inline(always)]
    fn m(&self) -> f32 {
        f16(self.m)
    }
    #[inline(always)]
    unsafe fn quants(&self) -> (int8x16_t, int8x16_t) {
        quants5(self.qh, &self.qs, 0)
    }
}

impl Quant32 for BlockQ8_0 {
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn d(&self) -> f32 {
        f16(self.d)
    }
    #[inline(always)]
    fn m(&self) -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn quants(&self) -> (int8x16_t, int8x16_t) {
        (vld1q_s8(self.qs.as_ptr()), vld1q_s8(self.qs[16..].as_ptr()))
    }
}

/// The kernel of a [`Quant32`] format (the reference's float order; see the
/// module docs).
struct Q32<B>(std::marker::PhantomData<B>);

impl<B: Quant32> Q32<B> {
    /// Per block: `acc += d·lanes` (fused) and `summs = fma(m, s, summs)`.
    #[inline(always)]
    unsafe fn step(x: &B, y: &B::Dot, acc: &mut [float32x4_t; 2], summs: &mut f32) {
        if B::HAS_MIN {
            *summs = x.m().mul_add(y.s(), *summs);
        }
        let d = vdupq_n_f32(x.d() * y.d());
        let (xlo, xhi) = x.quants();
        let ylo = vld1q_s8(y.qs().as_ptr());
        let yhi = vld1q_s8(y.qs()[16..].as_ptr());
        acc[0] = vfmaq_f32(acc[0], vcvtq_f32_s32(lanes16(xlo, ylo)), d);
        acc[1] = vfmaq_f32(acc[1], vcvtq_f32_s32(lanes16(xhi, yhi)), d);
    }

    #[inline(always)]
    fn finish(acc: [float32x4_t; 2], summs: f32) -> f32 {
        // SAFETY: NEON is part of every aarch64 CPU.
        let sum = unsafe { hsum8(acc[0], acc[1]) };
        if B::HAS_MIN {
            sum + summs
        } else {
            sum
        }
    }
}

impl<B: Quant32> Kernel for Q32<B> {
    type W = B;

    #[inline(always)]
    unsafe fn one(w: &[B], a: &[B::Dot]) -> f32 {
        let mut acc = [vdupq_n_f32(0.0); 2];
        let mut summs = 0f32;
        for (x, y) in w.iter().zip(a) {
            Self::step(x, y, &mut acc, &mut summs);
        }
        Self::finish(acc, summs)
    }

    /// Four rows block by block, so their dependency chains overlap.
    #[inline(always)]
    unsafe fn four(w: [&[B]; 4], a: &[B::Dot]) -> [f32; 4] {
        assert!(w.iter().all(|r| r.len() == a.len()));
        let mut acc = [[vdupq_n_f32(0.0); 2]; 4];
        let mut summs = [0f32; 4];
        for (b, y) in a.iter().enumerate() {
            for r in 0..4 {
                Self::step(&w[r][b], y, &mut acc[r], &mut summs[r]);
            }
        }
        let mut out = [0f32; 4];
        for r in 0..4 {
            out[r] = Self::finish(acc[r], summs[r]);
        }
        out
    }
}
