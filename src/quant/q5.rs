//! 5-bit formats with 32 values per block: Q5_0 (value = (q − 16)·d) and
//! Q5_1 (value = q·d + m). The low 4 bits are packed like Q4 (element j low
//! nibble, element j+16 high nibble); bit j of the little-endian u32 `qh` is
//! the fifth bit of element j.

use super::block::{f16_le, lanes_32, to_f16_le, BlockFormat, Lanes8, PlainBytes};
use super::q4::nibbles;
use super::q8::{BlockQ8_0, BlockQ8_1};
use super::GgmlType;
use crate::Result;

pub const QK5: usize = 32;

/// ggml `block_q5_0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5_0 {
    /// scale, f16
    pub d: [u8; 2],
    /// fifth bits, u32 little-endian
    pub qh: [u8; 4],
    /// low nibbles: element j low, element j+16 high
    pub qs: [u8; QK5 / 2],
}

/// ggml `block_q5_1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5_1 {
    /// scale, f16
    pub d: [u8; 2],
    /// minimum, f16
    pub m: [u8; 2],
    /// fifth bits, u32 little-endian
    pub qh: [u8; 4],
    /// low nibbles: element j low, element j+16 high
    pub qs: [u8; QK5 / 2],
}

// SAFETY: only u8 arrays: align 1, no padding, any bit pattern valid.
unsafe impl PlainBytes for BlockQ5_0 {}
// SAFETY: as above.
unsafe impl PlainBytes for BlockQ5_1 {}

/// The 32 unsigned 5-bit quants, in element order.
#[inline]
fn quants5(qh: [u8; 4], qs: &[u8; 16]) -> [i32; 32] {
    let h = u32::from_le_bytes(qh);
    let lo = nibbles(qs);
    std::array::from_fn(|i| lo[i] | ((((h >> i) & 1) as i32) << 4))
}

/// Pack 32 quants (each < 32) into (qh, qs).
#[inline]
fn pack5(q: &[u8; 32]) -> ([u8; 4], [u8; 16]) {
    let mut h = 0u32;
    for (i, &v) in q.iter().enumerate() {
        h |= (((v >> 4) & 1) as u32) << i;
    }
    let qs = std::array::from_fn(|j| (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
    (h.to_le_bytes(), qs)
}

impl BlockFormat for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const BLOCK_SIZE: usize = QK5;
    type Dot = BlockQ8_0;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK5)) {
            let d = f16_le(b.d);
            for (o, q) in o.iter_mut().zip(quants5(b.qh, &b.qs)) {
                *o = (q - 16) as f32 * d;
            }
        }
    }

    /// `quantize_row_q5_0_ref`: `d = max / −16`, `q = min(31, trunc(x/d + 16.5))`.
    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK5)) {
            let mut amax = 0f32;
            let mut max = 0f32;
            for &v in x {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            let d = max / -16.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q: [u8; 32] = std::array::from_fn(|j| ((x[j] * id + 16.5) as i8).min(31) as u8);
            let (qh, qs) = pack5(&q);
            *b = BlockQ5_0 {
                d: to_f16_le(d),
                qh,
                qs,
            };
        }
        Ok(())
    }

    /// `ggml_vec_dot_q5_0_q8_0` (AVX2).
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        let mut acc = Lanes8::default();
        for (x, y) in w.iter().zip(a) {
            let d = f16_le(x.d) * f16_le(y.d);
            let q = quants5(x.qh, &x.qs).map(|q| q - 16);
            acc.fma(d, &lanes_32(&q, &y.qs));
        }
        acc.sum()
    }
}

impl BlockFormat for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const BLOCK_SIZE: usize = QK5;
    type Dot = BlockQ8_1;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK5)) {
            let d = f16_le(b.d);
            let m = f16_le(b.m);
            for (o, q) in o.iter_mut().zip(quants5(b.qh, &b.qs)) {
                *o = q as f32 * d + m;
            }
        }
    }

    /// `quantize_row_q5_1_ref`: `d = (max − min) / 31`, `q = trunc((x − min)/d + 0.5)`.
    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK5)) {
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
            let d = (max - min) / 31.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q: [u8; 32] = std::array::from_fn(|j| ((x[j] - min) * id + 0.5) as u8);
            let (qh, qs) = pack5(&q);
            *b = BlockQ5_1 {
                d: to_f16_le(d),
                m: to_f16_le(min),
                qh,
                qs,
            };
        }
        Ok(())
    }

    /// `ggml_vec_dot_q5_1_q8_1` (AVX2), same float shape as Q4_1.
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8_1]) -> f32 {
        let mut acc = Lanes8::default();
        let mut summs = 0f32;
        for (x, y) in w.iter().zip(a) {
            summs = f16_le(x.m).mul_add(f16_le(y.s), summs);
            let d = f16_le(x.d) * f16_le(y.d);
            acc.fma(d, &lanes_32(&quants5(x.qh, &x.qs), &y.qs));
        }
        acc.sum() + summs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q5_0_known_block() {
        let x: [f32; 32] = std::array::from_fn(|i| i as f32 - 16.0);
        let mut b = [BlockQ5_0 {
            d: [0; 2],
            qh: [0; 4],
            qs: [0; 16],
        }];
        BlockQ5_0::quantize(&x, &mut b).unwrap();
        // max magnitude is -16 -> d = 1, q = x + 16 = i.
        assert_eq!(f16_le(b[0].d), 1.0);
        assert_eq!(u32::from_le_bytes(b[0].qh), 0xffff_0000);
        let mut y = [0f32; 32];
        BlockQ5_0::dequantize(&b, &mut y);
        assert_eq!(y, x);
    }

    #[test]
    fn q5_1_known_block() {
        let x: [f32; 32] = std::array::from_fn(|i| i as f32 * 0.25 + 1.0);
        let mut b = [BlockQ5_1 {
            d: [0; 2],
            m: [0; 2],
            qh: [0; 4],
            qs: [0; 16],
        }];
        BlockQ5_1::quantize(&x, &mut b).unwrap();
        let mut y = [0f32; 32];
        BlockQ5_1::dequantize(&b, &mut y);
        assert_eq!(y, x);
    }
}
