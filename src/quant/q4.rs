//! 4-bit formats with 32 values per block: Q4_0 (symmetric, value =
//! (q − 8)·d) and Q4_1 (affine, value = q·d + m). Byte `j` of `qs` holds
//! element `j` in its low nibble and element `j + 16` in its high nibble.

use super::block::{f16_le, lanes_32, to_f16_le, BlockFormat, Lanes8, PlainBytes};
use super::q8::{BlockQ8_0, BlockQ8_1};
use super::GgmlType;
use crate::Result;

pub const QK4: usize = 32;

/// ggml `block_q4_0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4_0 {
    /// scale, f16
    pub d: [u8; 2],
    /// nibbles: element j low, element j+16 high
    pub qs: [u8; QK4 / 2],
}

/// ggml `block_q4_1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4_1 {
    /// scale, f16
    pub d: [u8; 2],
    /// minimum, f16
    pub m: [u8; 2],
    /// nibbles: element j low, element j+16 high
    pub qs: [u8; QK4 / 2],
}

// SAFETY: only u8 arrays: align 1, no padding, any bit pattern valid.
unsafe impl PlainBytes for BlockQ4_0 {}
// SAFETY: as above.
unsafe impl PlainBytes for BlockQ4_1 {}

/// The 32 unsigned 4-bit quants of a block, in element order.
#[inline]
pub(crate) fn nibbles(qs: &[u8; 16]) -> [i32; 32] {
    std::array::from_fn(|i| {
        if i < 16 {
            (qs[i] & 0x0f) as i32
        } else {
            (qs[i - 16] >> 4) as i32
        }
    })
}

/// Pack 32 quants (each < 16) into nibbles.
#[inline]
fn pack(q: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| q[j] | (q[j + 16] << 4))
}

impl BlockFormat for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const BLOCK_SIZE: usize = QK4;
    type Dot = BlockQ8_0;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK4)) {
            let d = f16_le(b.d);
            for (o, q) in o.iter_mut().zip(nibbles(&b.qs)) {
                *o = (q - 8) as f32 * d;
            }
        }
    }

    /// `quantize_row_q4_0_ref`: `d = max / −8` where `max` is the value of
    /// largest magnitude (sign kept), `q = min(15, trunc(x/d + 8.5))`.
    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK4)) {
            let mut amax = 0f32;
            let mut max = 0f32;
            for &v in x {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q: [u8; 32] = std::array::from_fn(|j| ((x[j] * id + 8.5) as i8).min(15) as u8);
            *b = BlockQ4_0 {
                d: to_f16_le(d),
                qs: pack(&q),
            };
        }
        Ok(())
    }

    /// `ggml_vec_dot_q4_0_q8_0` (AVX2).
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        let mut acc = Lanes8::default();
        for (x, y) in w.iter().zip(a) {
            let d = f16_le(x.d) * f16_le(y.d);
            let q = nibbles(&x.qs).map(|q| q - 8);
            acc.fma(d, &lanes_32(&q, &y.qs));
        }
        acc.sum()
    }
}

impl BlockFormat for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const BLOCK_SIZE: usize = QK4;
    type Dot = BlockQ8_1;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK4)) {
            let d = f16_le(b.d);
            let m = f16_le(b.m);
            for (o, q) in o.iter_mut().zip(nibbles(&b.qs)) {
                *o = q as f32 * d + m;
            }
        }
    }

    /// `quantize_row_q4_1_ref`: `d = (max − min) / 15`, `m = min`,
    /// `q = min(15, trunc((x − min)/d + 0.5))`.
    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK4)) {
            let mut min = f32::MAX;
            let mut max = -f32::MAX;
            for &v in x {
                if v < min {
                    min = v;
                }
                if v > max {
                    max = v;
                }
            }
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q: [u8; 32] =
                std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as i8).min(15) as u8);
            *b = BlockQ4_1 {
                d: to_f16_le(d),
                m: to_f16_le(min),
                qs: pack(&q),
            };
        }
        Ok(())
    }

    /// `ggml_vec_dot_q4_1_q8_1` (AVX2): lanes get `fma(dx·dy, lane, acc)`;
    /// the minimum terms `m·s` are summed separately (fused multiply-add, as
    /// GCC contracts `summs += m * s`) and added after the lane reduction.
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8_1]) -> f32 {
        let mut acc = Lanes8::default();
        let mut summs = 0f32;
        for (x, y) in w.iter().zip(a) {
            summs = f16_le(x.m).mul_add(f16_le(y.s), summs);
            let d = f16_le(x.d) * f16_le(y.d);
            acc.fma(d, &lanes_32(&nibbles(&x.qs), &y.qs));
        }
        acc.sum() + summs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_known_block() {
        // max magnitude -8 -> d = 1, so values map to q = x + 8.
        let mut x = [0f32; 32];
        x[0] = -8.0;
        x[1] = 7.0;
        x[16] = 3.0;
        x[17] = -1.0;
        let mut b = [BlockQ4_0 {
            d: [0; 2],
            qs: [0; 16],
        }];
        BlockQ4_0::quantize(&x, &mut b).unwrap();
        assert_eq!(f16_le(b[0].d), 1.0);
        assert_eq!(b[0].qs[0], 11 << 4); // element 0 -> 0, element 16 -> 11
        assert_eq!(b[0].qs[1], 15 | (7 << 4));
        let mut y = [0f32; 32];
        BlockQ4_0::dequantize(&b, &mut y);
        assert_eq!(y, x);
    }

    #[test]
    fn q4_1_known_block() {
        let x: [f32; 32] = std::array::from_fn(|i| (i % 16) as f32 * 0.5 - 1.0);
        let mut b = [BlockQ4_1 {
            d: [0; 2],
            m: [0; 2],
            qs: [0; 16],
        }];
        BlockQ4_1::quantize(&x, &mut b).unwrap();
        assert_eq!(f16_le(b[0].d), 0.5);
        assert_eq!(f16_le(b[0].m), -1.0);
        let mut y = [0f32; 32];
        BlockQ4_1::dequantize(&b, &mut y);
        assert_eq!(y, x);
    }
}
