//! Plain float element types: F32, F16 and BF16, one value per "block".
//!
//! Values are stored little-endian as byte arrays so a tensor can be viewed
//! in place at any address of a memory-mapped file. The dot products
//! reproduce ggml's AVX2 `ggml_vec_dot_f32/_f16/_bf16` (FMA into four 8-lane
//! accumulators, the same reduction, the same tail), bit for bit.

use super::block::{f16_le, to_f16_le, BlockFormat, PlainBytes};
use super::GgmlType;
use crate::Result;

/// One f32, little-endian.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F32(pub [u8; 4]);

/// One IEEE half, little-endian.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F16(pub [u8; 2]);

/// One bfloat16 (the upper half of an f32), little-endian.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BF16(pub [u8; 2]);

// SAFETY: single byte arrays: align 1, no padding, any bit pattern.
unsafe impl PlainBytes for F32 {}
// SAFETY: as above.
unsafe impl PlainBytes for F16 {}
// SAFETY: as above.
unsafe impl PlainBytes for BF16 {}

impl F32 {
    #[inline]
    pub fn get(self) -> f32 {
        f32::from_le_bytes(self.0)
    }
}

impl F16 {
    #[inline]
    pub fn get(self) -> f32 {
        f16_le(self.0)
    }
}

impl BF16 {
    #[inline]
    pub fn get(self) -> f32 {
        f32::from_bits((u16::from_le_bytes(self.0) as u32) << 16)
    }

    /// ggml's `GGML_FP32_TO_BF16`: round to nearest even; NaN keeps its upper
    /// bits and is forced quiet.
    #[inline]
    pub fn from_f32(x: f32) -> BF16 {
        let u = x.to_bits();
        let h = if (u & 0x7fff_ffff) > 0x7f80_0000 {
            ((u >> 16) | 64) as u16
        } else {
            (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
        };
        BF16(h.to_le_bytes())
    }
}

/// How the lanes of the AVX2 float dot products are reduced and how the
/// tail (n mod 32 values) is added.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FloatDot {
    /// `ggml_vec_dot_f32`: `hadd` reduction, f32 tail with FMA.
    F32,
    /// `ggml_vec_dot_f16`: `hadd` reduction, f64 tail.
    F16,
    /// `ggml_vec_dot_bf16`: `movehl`/`movehdup` reduction, f64 tail.
    BF16,
}

/// ggml's AVX2 float dot product: four 8-lane accumulators fed by FMA over
/// steps of 32 values, reduced pairwise, then the tail.
#[inline(always)]
fn dot_avx2<B: Copy>(w: &[B], a: &[B], get: impl Fn(B) -> f32, kind: FloatDot) -> f32 {
    let n = w.len().min(a.len());
    let np = n & !31;
    let mut sum = [[0f32; 8]; 4];
    for (xs, ys) in w[..np].chunks_exact(32).zip(a[..np].chunks_exact(32)) {
        for (j, acc) in sum.iter_mut().enumerate() {
            for (l, s) in acc.iter_mut().enumerate() {
                *s = get(xs[8 * j + l]).mul_add(get(ys[8 * j + l]), *s);
            }
        }
    }
    let v: [f32; 8] = std::array::from_fn(|l| (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]));
    let t: [f32; 4] = std::array::from_fn(|k| v[k] + v[4 + k]);
    let reduced = match kind {
        FloatDot::F32 | FloatDot::F16 => (t[0] + t[1]) + (t[2] + t[3]),
        FloatDot::BF16 => (t[0] + t[2]) + (t[1] + t[3]),
    };
    let tail = w[np..n]
        .iter()
        .zip(&a[np..n])
        .map(|(&x, &y)| (get(x), get(y)));
    match kind {
        FloatDot::F32 => tail.fold(reduced, |s, (x, y)| x.mul_add(y, s)),
        FloatDot::F16 | FloatDot::BF16 => {
            tail.fold(reduced as f64, |s, (x, y)| s + (x * y) as f64) as f32
        }
    }
}

impl BlockFormat for F32 {
    const TYPE: GgmlType = GgmlType::F32;
    const BLOCK_SIZE: usize = 1;
    type Dot = F32;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(blocks) {
            *o = b.get();
        }
    }

    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        for (b, &x) in blocks.iter_mut().zip(src) {
            *b = F32(x.to_le_bytes());
        }
        Ok(())
    }

    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[F32]) -> f32 {
        dot_avx2(w, a, F32::get, FloatDot::F32)
    }
}

impl BlockFormat for F16 {
    const TYPE: GgmlType = GgmlType::F16;
    const BLOCK_SIZE: usize = 1;
    type Dot = F16;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(blocks) {
            *o = b.get();
        }
    }

    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        for (b, &x) in blocks.iter_mut().zip(src) {
            *b = F16(to_f16_le(x));
        }
        Ok(())
    }

    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[F16]) -> f32 {
        dot_avx2(w, a, F16::get, FloatDot::F16)
    }
}

impl BlockFormat for BF16 {
    const TYPE: GgmlType = GgmlType::BF16;
    const BLOCK_SIZE: usize = 1;
    type Dot = BF16;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(blocks) {
            *o = b.get();
        }
    }

    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        for (b, &x) in blocks.iter_mut().zip(src) {
            *b = BF16::from_f32(x);
        }
        Ok(())
    }

    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BF16]) -> f32 {
        dot_avx2(w, a, BF16::get, FloatDot::BF16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan_quiet() {
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (1.0).
        assert_eq!(BF16::from_f32(1.0 + 1.0 / 256.0).get(), 1.0);
        // 1 + 3·2^-8 is halfway as well: ties to even rounds up this time.
        assert_eq!(BF16::from_f32(1.0 + 3.0 / 256.0).get(), 1.0 + 4.0 / 256.0);
        assert!(BF16::from_f32(f32::NAN).get().is_nan());
        assert_eq!(BF16::from_f32(-2.5).get(), -2.5);
        assert_eq!(BF16::from_f32(f32::INFINITY).get(), f32::INFINITY);
    }

    #[test]
    fn f16_round_trip_of_representable_values_is_exact() {
        for &x in &[0.0f32, -0.0, 1.0, -1.5, 65504.0, 6.1035156e-5, 5.9604645e-8] {
            let mut b = [F16::default()];
            F16::quantize(&[x], &mut b).unwrap();
            assert_eq!(b[0].get().to_bits(), x.to_bits());
        }
    }
}
