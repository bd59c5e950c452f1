//! 8-bit formats: Q8_0 and Q8_1 (32 values per block; weights and the
//! activation side of the 32-value formats) and Q8_K (256 values; the
//! activation side of the K-quants).
//!
//! The activation quantizers follow ggml's x86 CPU backend
//! (`quantize_row_q8_0`/`_q8_1` in `ggml-cpu/arch/x86/quants.c`):
//! `d = amax / 127`, inverse scale `127 / amax`, round half to even. The
//! reference quantizers used for model files (`quantize_row_q8_0_ref`) use
//! `1 / d` and round half away from zero instead; both are provided.

use super::block::{
    f16_le, lanes_32, nearest_int, round_even_i8, to_f16_le, BlockFormat, Lanes8, PlainBytes,
};
use super::GgmlType;
use crate::Result;

pub const QK8_0: usize = 32;
pub const QK_K: usize = 256;

/// ggml `block_q8_0`: value = `qs[i] · d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ8_0 {
    /// scale, f16
    pub d: [u8; 2],
    /// quants
    pub qs: [i8; QK8_0],
}

/// ggml `block_q8_1`: value = `qs[i] · d`; `s = d · Σ qs` (both f16), which
/// lets the Q4_1/Q5_1 dot products add the weight minimum in one multiply.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ8_1 {
    /// scale, f16
    pub d: [u8; 2],
    /// d · sum(qs), f16
    pub s: [u8; 2],
    /// quants
    pub qs: [i8; QK8_0],
}

/// ggml `block_q8_K`: value = `qs[i] · d` with an f32 scale, plus the sums of
/// each group of 16 quants (used by the K-quant dot products for their
/// minimums/offsets).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ8K {
    /// scale, f32
    pub d: [u8; 4],
    /// quants
    pub qs: [i8; QK_K],
    /// sum of qs[16·j .. 16·j+16], i16 each
    pub bsums: [[u8; 2]; QK_K / 16],
}

// SAFETY: only u8/i8 arrays: align 1, no padding, any bit pattern valid.
unsafe impl PlainBytes for BlockQ8_0 {}
// SAFETY: as above.
unsafe impl PlainBytes for BlockQ8_1 {}
// SAFETY: as above.
unsafe impl PlainBytes for BlockQ8K {}

impl BlockQ8K {
    #[inline]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    #[inline]
    pub fn bsum(&self, j: usize) -> i32 {
        i16::from_le_bytes(self.bsums[j]) as i32
    }

    /// All 16 group sums.
    #[inline]
    pub fn bsums(&self) -> [i32; QK_K / 16] {
        std::array::from_fn(|j| self.bsum(j))
    }
}

/// Largest |x| of a block, as `max_ps` over `andnot(sign)` computes it.
#[inline]
fn abs_max(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// x86 activation quantization of one 32-value block: (f32 d, quants).
#[inline]
fn q8_x86(x: &[f32]) -> (f32, [i8; QK8_0]) {
    let amax = abs_max(x);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; QK8_0];
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = round_even_i8(v * id);
    }
    (d, qs)
}

/// Reference quantization of one 32-value block: (f32 d, quants).
#[inline]
fn q8_ref(x: &[f32]) -> (f32, [i8; QK8_0]) {
    let amax = x
        .iter()
        .fold(0f32, |m, v| if m > v.abs() { m } else { v.abs() });
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK8_0];
    for (q, &v) in qs.iter_mut().zip(x) {
        // C's float -> int8_t conversion of an already rounded value.
        *q = (v * id).round() as i8;
    }
    (d, qs)
}

#[inline]
fn widen(qs: &[i8; QK8_0]) -> [i32; QK8_0] {
    std::array::from_fn(|i| qs[i] as i32)
}

impl BlockFormat for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const BLOCK_SIZE: usize = QK8_0;
    type Dot = BlockQ8_0;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK8_0)) {
            let d = f16_le(b.d);
            for (o, &q) in o.iter_mut().zip(&b.qs) {
                *o = q as f32 * d;
            }
        }
    }

    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        #[cfg(target_arch = "x86_64")]
        if super::q8_x86::enabled() {
            // SAFETY: `enabled()` checked AVX2, FMA and F16C.
            unsafe { super::q8_x86::quantize_q8_0(src, blocks) };
            return Ok(());
        }
        quantize_q8_0_scalar(src, blocks);
        Ok(())
    }

    fn quantize_reference(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK8_0)) {
            let (d, qs) = q8_ref(x);
            *b = BlockQ8_0 {
                d: to_f16_le(d),
                qs,
            };
        }
        Ok(())
    }

    /// `ggml_vec_dot_q8_0_q8_0` (AVX2): per block, lanes of 4 products,
    /// `acc = fma(dx·dy, lane, acc)`.
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        let mut acc = Lanes8::default();
        for (x, y) in w.iter().zip(a) {
            let d = f16_le(x.d) * f16_le(y.d);
            acc.fma(d, &lanes_32(&widen(&x.qs), &y.qs));
        }
        acc.sum()
    }
}

impl BlockFormat for BlockQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
    const BLOCK_SIZE: usize = QK8_0;
    type Dot = BlockQ8_1;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK8_0)) {
            let d = f16_le(b.d);
            for (o, &q) in o.iter_mut().zip(&b.qs) {
                *o = q as f32 * d;
            }
        }
    }

    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        #[cfg(target_arch = "x86_64")]
        if super::q8_x86::enabled() {
            // SAFETY: `enabled()` checked AVX2, FMA and F16C.
            unsafe { super::q8_x86::quantize_q8_1(src, blocks) };
            return Ok(());
        }
        quantize_q8_1_scalar(src, blocks);
        Ok(())
    }

    fn quantize_reference(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK8_0)) {
            let (d, qs) = q8_ref(x);
            let sum: i32 = qs.iter().map(|&q| q as i32).sum();
            *b = BlockQ8_1 {
                d: to_f16_le(d),
                s: to_f16_le(sum as f32 * d),
                qs,
            };
        }
        Ok(())
    }

    /// Not a ggml kernel (Q8_1 is never a weight type there); same shape as
    /// Q8_0 x Q8_0.
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8_1]) -> f32 {
        let mut acc = Lanes8::default();
        for (x, y) in w.iter().zip(a) {
            let d = f16_le(x.d) * f16_le(y.d);
            acc.fma(d, &lanes_32(&widen(&x.qs), &y.qs));
        }
        acc.sum()
    }
}

impl BlockFormat for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8_K;
    const BLOCK_SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = b.d();
            for (o, &q) in o.iter_mut().zip(&b.qs) {
                *o = d * q as f32;
            }
        }
    }

    /// `quantize_row_q8_K_ref` (the x86 backend uses the reference): see
    /// [`quantize_q8_k_scalar`].
    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        #[cfg(target_arch = "x86_64")]
        if super::q8_x86::enabled() {
            // SAFETY: `enabled()` checked AVX2, FMA and F16C.
            unsafe { super::q8_x86::quantize_q8_k(src, blocks) };
            return Ok(());
        }
        quantize_q8_k_scalar(src, blocks);
        Ok(())
    }

    /// Not a ggml kernel (Q8_K is activation-only there): integer sum per
    /// block, then `sum += d_w · d_a · isum` in block order.
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8K]) -> f32 {
        let mut sum = 0f32;
        for (x, y) in w.iter().zip(a) {
            let isum: i32 =
                x.qs.iter()
                    .zip(&y.qs)
                    .map(|(&p, &q)| p as i32 * q as i32)
                    .sum();
            sum += x.d() * y.d() * isum as f32;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testutil::Rng;

    #[test]
    fn q8_0_activation_rounds_half_to_even() {
        // amax 127 makes id exactly 1, so the inputs are the scaled values.
        let mut x = [0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 3.5;
        x[4] = 0.5;
        let mut b = [BlockQ8_0 {
            d: [0; 2],
            qs: [0; 32],
        }];
        BlockQ8_0::quantize(&x, &mut b).unwrap();
        assert_eq!(&b[0].qs[..5], &[127, 2, -2, 4, 0]);
        assert_eq!(f16_le(b[0].d), 1.0);
        BlockQ8_0::quantize_reference(&x, &mut b).unwrap();
        assert_eq!(&b[0].qs[..5], &[127, 3, -3, 4, 1]);
    }

    #[test]
    fn q8_1_stores_scaled_sum() {
        let mut rng = Rng::new(7);
        let x: Vec<f32> = (0..64).map(|_| rng.normal()).collect();
        let mut b = [BlockQ8_1 {
            d: [0; 2],
            s: [0; 2],
            qs: [0; 32],
        }; 2];
        BlockQ8_1::quantize(&x, &mut b).unwrap();
        for (blk, xs) in b.iter().zip(x.chunks(32)) {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let sum: i32 = blk.qs.iter().map(|&q| q as i32).sum();
            assert_eq!(blk.s, to_f16_le(d * sum as f32));
        }
    }

    #[test]
    fn q8_k_scale_sign_follows_largest_value() {
        let mut x = [0f32; QK_K];
        x[5] = -4.0;
        x[6] = 2.0;
        let mut b = [BlockQ8K {
            d: [0; 4],
            qs: [0; QK_K],
            bsums: [[0; 2]; 16],
        }];
        BlockQ8K::quantize(&x, &mut b).unwrap();
        // iscale = -127 / -4 > 0, so the quants keep their signs.
        assert_eq!(b[0].qs[5], -127);
        assert_eq!(b[0].qs[6], 64); // 63.5 rounds to even
        assert_eq!(b[0].bsum(0), -63);
        assert_eq!(b[0].d(), 1.0 / (-127.0f32 / -4.0));
    }
}

/// Q8_0's x86 activation quantizer, one value at a time (the twin of the
/// vector form in `q8_x86`).
pub(crate) fn quantize_q8_0_scalar(src: &[f32], blocks: &mut [BlockQ8_0]) {
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK8_0)) {
        let (d, qs) = q8_x86(x);
        *b = BlockQ8_0 {
            d: to_f16_le(d),
            qs,
        };
    }
}

/// Q8_1's x86 activation quantizer, one value at a time.
pub(crate) fn quantize_q8_1_scalar(src: &[f32], blocks: &mut [BlockQ8_1]) {
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK8_0)) {
        let (d, qs) = q8_x86(x);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        *b = BlockQ8_1 {
            d: to_f16_le(d),
            s: to_f16_le(d * sum as f32),
            qs,
        };
    }
}

/// Q8_K's quantizer, `quantize_row_q8_K_ref` (the x86 backend uses the reference): scale
/// from the signed value of largest magnitude, `iscale = -127 / max`,
/// `nearest_int` rounding, `d = 1 / iscale`.
pub(crate) fn quantize_q8_k_scalar(src: &[f32], blocks: &mut [BlockQ8K]) {
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK_K)) {
        let mut max = 0f32;
        let mut amax = 0f32;
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            // ggml leaves bsums untouched here; zero is the only sane value.
            *b = BlockQ8K {
                d: [0; 4],
                qs: [0; QK_K],
                bsums: [[0; 2]; QK_K / 16],
            };
            continue;
        }
        let iscale = -127.0 / max;
        let mut qs = [0i8; QK_K];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        let bsums = std::array::from_fn(|j| {
            let s: i32 = qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            (s as i16).to_le_bytes()
        });
        *b = BlockQ8K {
            d: (1.0 / iscale).to_le_bytes(),
            qs,
            bsums,
        };
    }
}
