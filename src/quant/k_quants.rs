//! K-quants: 256-value super-blocks split into sub-blocks of 16 or 32 values
//! with their own quantized scales (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K). All are
//! dotted against Q8_K activations.
//!
//! Dequantization follows `dequantize_row_q*_K` (ggml-quants.c). The dot
//! products reproduce ggml's AVX2 kernels: the integer work is split into the
//! same eight i32 lanes (lane `l` = bytes `4l..4l+4` of each 32-byte chunk),
//! including the places where the kernels fold a constant offset or the
//! minimums in through Q8_K's `bsums`, and the float part is combined in the
//! kernels' order. Quantizing to K-quants (ggml's iterative search) is not
//! implemented: Strata only reads K-quant weights.

use super::block::{f16_le, sum4, BlockFormat, Lanes8, PlainBytes};
use super::q8::{BlockQ8K, QK_K};
use super::GgmlType;

/// ggml `block_q2_K`: value = d·(sc & 15)·q − dmin·(sc >> 4), q in 0..4.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ2K {
    /// per 16 values: scale (low nibble) and min (high nibble)
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants: byte t of half j holds elements 128j + 32k + t at bits 2k
    pub qs: [u8; QK_K / 4],
    /// super-block scale for the scales, f16
    pub d: [u8; 2],
    /// super-block scale for the mins, f16
    pub dmin: [u8; 2],
}

/// ggml `block_q3_K`: value = d·(s − 32)·(q − 4·!h), q in 0..4.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ3K {
    /// high bit of element 32c + t is bit c of hmask[t]
    pub hmask: [u8; QK_K / 8],
    /// low 2 bits, packed as in Q2_K
    pub qs: [u8; QK_K / 4],
    /// sixteen 6-bit scales, packed
    pub scales: [u8; 12],
    /// super-block scale, f16
    pub d: [u8; 2],
}

/// ggml `block_q4_K`: value = d·sc·q − dmin·m per 32-value sub-block.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ4K {
    /// super-block scale for the scales, f16
    pub d: [u8; 2],
    /// super-block scale for the mins, f16
    pub dmin: [u8; 2],
    /// eight 6-bit scales and eight 6-bit mins, packed
    pub scales: [u8; 12],
    /// 4-bit quants: byte t of chunk j holds element 64j + t (low) and 64j + 32 + t (high)
    pub qs: [u8; QK_K / 2],
}

/// ggml `block_q5_K`: as Q4_K with a fifth bit per value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ5K {
    /// super-block scale for the scales, f16
    pub d: [u8; 2],
    /// super-block scale for the mins, f16
    pub dmin: [u8; 2],
    /// eight 6-bit scales and eight 6-bit mins, packed
    pub scales: [u8; 12],
    /// fifth bit of element 32c + t is bit c of qh[t]
    pub qh: [u8; QK_K / 8],
    /// low 4 bits, packed as in Q4_K
    pub qs: [u8; QK_K / 2],
}

/// ggml `block_q6_K`: value = d·sc·(q − 32), q in 0..64.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ6K {
    /// low 4 bits
    pub ql: [u8; QK_K / 2],
    /// high 2 bits
    pub qh: [u8; QK_K / 4],
    /// per 16 values, signed 8-bit
    pub scales: [i8; QK_K / 16],
    /// super-block scale, f16
    pub d: [u8; 2],
}

// SAFETY: only u8/i8 arrays: align 1, no padding, any bit pattern valid.
unsafe impl PlainBytes for BlockQ2K {}
// SAFETY: as above.
unsafe impl PlainBytes for BlockQ3K {}
// SAFETY: as above.
unsafe impl PlainBytes for BlockQ4K {}
// SAFETY: as above.
unsafe impl PlainBytes for BlockQ5K {}
// SAFETY: as above.
unsafe impl PlainBytes for BlockQ6K {}

/// Scale and min of sub-block `j` (0..8) from the 12-byte packing of Q4_K/Q5_K.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The sixteen signed scales (already minus 32) of a Q3_K block.
#[inline]
pub fn q3k_scales(sc: &[u8; 12]) -> [i32; 16] {
    std::array::from_fn(|i| {
        let k = i % 4;
        let hi = sc[8 + k];
        let v = match i / 4 {
            0 => (sc[k] & 0x0f) | ((hi & 3) << 4),
            1 => (sc[4 + k] & 0x0f) | (((hi >> 2) & 3) << 4),
            2 => (sc[k] >> 4) | (((hi >> 4) & 3) << 4),
            _ => (sc[4 + k] >> 4) | (((hi >> 6) & 3) << 4),
        };
        v as i32 - 32
    })
}

/// Accumulate one 32-byte chunk into the eight i32 lanes: bytes 0..16 use
/// `scale_lo`, bytes 16..32 use `scale_hi` (equal for 32-value sub-blocks).
#[inline]
fn add_chunk(
    lanes: &mut [i32; 8],
    q: impl Fn(usize) -> i32,
    y: &[i8],
    scale_lo: i32,
    scale_hi: i32,
) {
    for (l, lane) in lanes.iter_mut().enumerate() {
        let s: i32 = (4 * l..4 * l + 4).map(|t| q(t) * y[t] as i32).sum();
        *lane += if l < 4 { scale_lo } else { scale_hi } * s;
    }
}

impl BlockFormat for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2_K;
    const BLOCK_SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = f16_le(b.d);
            let min = f16_le(b.dmin);
            for (i, v) in o.iter_mut().enumerate() {
                let (half, k, t) = (i / 128, (i % 128) / 32, i % 32);
                let sc = b.scales[8 * half + 2 * k + t / 16];
                let q = (b.qs[32 * half + t] >> (2 * k)) & 3;
                let dl = d * (sc & 0x0f) as f32;
                let ml = min * (sc >> 4) as f32;
                *v = dl * q as f32 - ml;
            }
        }
    }

    /// `ggml_vec_dot_q2_K_q8_K` (AVX2): mins through bsums into the same
    /// lanes first, then the quants.
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8K]) -> f32 {
        let mut acc = Lanes8::default();
        for (x, y) in w.iter().zip(a) {
            let d = y.d() * f16_le(x.d);
            let dmin = -y.d() * f16_le(x.dmin);
            let bs = y.bsums();
            let m = |j: usize| (x.scales[j] >> 4) as i32;
            let mins: [i32; 8] =
                std::array::from_fn(|l| m(2 * l) * bs[2 * l] + m(2 * l + 1) * bs[2 * l + 1]);
            acc.fma(dmin, &mins);

            let mut sumi = [0i32; 8];
            for half in 0..2 {
                for k in 0..4 {
                    let s = |h: usize| (x.scales[8 * half + 2 * k + h] & 0x0f) as i32;
                    let q = |t: usize| ((x.qs[32 * half + t] >> (2 * k)) & 3) as i32;
                    let base = 128 * half + 32 * k;
                    add_chunk(&mut sumi, q, &y.qs[base..base + 32], s(0), s(1));
                }
            }
            acc.fma(d, &sumi);
        }
        acc.sum()
    }
}

impl BlockFormat for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3_K;
    const BLOCK_SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d_all = f16_le(b.d);
            let scales = q3k_scales(&b.scales);
            for (i, v) in o.iter_mut().enumerate() {
                let (half, k, t) = (i / 128, (i % 128) / 32, i % 32);
                let dl = d_all * scales[8 * half + 2 * k + t / 16] as f32;
                let low = ((b.qs[32 * half + t] >> (2 * k)) & 3) as i32;
                let high = (b.hmask[t] >> (4 * half + k)) & 1;
                let q = low - if high != 0 { 0 } else { 4 };
                *v = dl * q as f32;
            }
        }
    }

    /// `ggml_vec_dot_q3_K_q8_K` (AVX2).
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8K]) -> f32 {
        let mut acc = Lanes8::default();
        for (x, y) in w.iter().zip(a) {
            let d = y.d() * f16_le(x.d);
            let scales = q3k_scales(&x.scales);
            let mut sumi = [0i32; 8];
            for half in 0..2 {
                for k in 0..4 {
                    let q = |t: usize| {
                        let low = ((x.qs[32 * half + t] >> (2 * k)) & 3) as i32;
                        let high = (x.hmask[t] >> (4 * half + k)) & 1;
                        low - if high != 0 { 0 } else { 4 }
                    };
                    let s = 8 * half + 2 * k;
                    let base = 128 * half + 32 * k;
                    add_chunk(
                        &mut sumi,
                        q,
                        &y.qs[base..base + 32],
                        scales[s],
                        scales[s + 1],
                    );
                }
            }
            acc.fma(d, &sumi);
        }
        acc.sum()
    }
}

/// Dot product shared by Q4_K and Q5_K: `q(j, t)` is the unsigned quant of
/// element `32·j + t` (sub-block j). Returns (lanes, per-4 min products).
#[inline]
fn k4_lanes(
    scales: &[u8; 12],
    y: &BlockQ8K,
    q: impl Fn(usize, usize) -> i32,
) -> ([i32; 8], [i32; 4]) {
    let sm: [(u8, u8); 8] = std::array::from_fn(|j| scale_min_k4(j, scales));
    let bs = y.bsums();
    let q8s: [i32; 8] = std::array::from_fn(|i| bs[2 * i] + bs[2 * i + 1]);
    let prod: [i32; 4] = std::array::from_fn(|k| {
        sm[2 * k].1 as i32 * q8s[2 * k] + sm[2 * k + 1].1 as i32 * q8s[2 * k + 1]
    });
    let mut sumi = [0i32; 8];
    for (j, &(sc, _)) in sm.iter().enumerate() {
        let base = 32 * j;
        let sc = sc as i32;
        add_chunk(&mut sumi, |t| q(j, t), &y.qs[base..base + 32], sc, sc);
    }
    (sumi, prod)
}

impl BlockFormat for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    const BLOCK_SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = f16_le(b.d);
            let min = f16_le(b.dmin);
            for (j, o) in o.chunks_exact_mut(32).enumerate() {
                let (sc, m) = scale_min_k4(j, &b.scales);
                let d1 = d * sc as f32;
                let m1 = min * m as f32;
                for (t, v) in o.iter_mut().enumerate() {
                    let byte = b.qs[32 * (j / 2) + t];
                    let q = if j % 2 == 0 { byte & 0x0f } else { byte >> 4 };
                    *v = d1 * q as f32 - m1;
                }
            }
        }
    }

    /// `ggml_vec_dot_q4_K_q8_K` (AVX2): quants into eight lanes, mins into a
    /// separate four-lane accumulator, added at the end.
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8K]) -> f32 {
        let mut acc = Lanes8::default();
        let mut acc_m = [0f32; 4];
        for (x, y) in w.iter().zip(a) {
            let d = y.d() * f16_le(x.d);
            let dmin = -y.d() * f16_le(x.dmin);
            let (sumi, prod) = k4_lanes(&x.scales, y, |j, t| {
                let byte = x.qs[32 * (j / 2) + t];
                (if j % 2 == 0 { byte & 0x0f } else { byte >> 4 }) as i32
            });
            for (m, &p) in acc_m.iter_mut().zip(&prod) {
                *m = dmin.mul_add(p as f32, *m);
            }
            acc.fma(d, &sumi);
        }
        acc.sum() + sum4(&acc_m)
    }
}

impl BlockFormat for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    const BLOCK_SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = f16_le(b.d);
            let min = f16_le(b.dmin);
            for (j, o) in o.chunks_exact_mut(32).enumerate() {
                let (sc, m) = scale_min_k4(j, &b.scales);
                let d1 = d * sc as f32;
                let m1 = min * m as f32;
                for (t, v) in o.iter_mut().enumerate() {
                    let byte = b.qs[32 * (j / 2) + t];
                    let low = if j % 2 == 0 { byte & 0x0f } else { byte >> 4 };
                    let q = low + if (b.qh[t] >> j) & 1 != 0 { 16 } else { 0 };
                    *v = d1 * q as f32 - m1;
                }
            }
        }
    }

    /// `ggml_vec_dot_q5_K_q8_K` (AVX2): the min products are summed as an
    /// integer per super-block and added with one FMA to a scalar.
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8K]) -> f32 {
        let mut acc = Lanes8::default();
        let mut summs = 0f32;
        for (x, y) in w.iter().zip(a) {
            let d = y.d() * f16_le(x.d);
            let dmin = -y.d() * f16_le(x.dmin);
            let (sumi, prod) = k4_lanes(&x.scales, y, |j, t| {
                let byte = x.qs[32 * (j / 2) + t];
                let low = if j % 2 == 0 { byte & 0x0f } else { byte >> 4 };
                (low + ((x.qh[t] >> j) & 1) * 16) as i32
            });
            let total: i32 = prod.iter().sum();
            summs = dmin.mul_add(total as f32, summs);
            acc.fma(d, &sumi);
        }
        acc.sum() + summs
    }
}

/// Unsigned 6-bit quant of element `128·half + 32·k + t` of a Q6_K block.
#[inline]
fn q6(b: &BlockQ6K, half: usize, k: usize, t: usize) -> i32 {
    let ql = b.ql[64 * half + 32 * (k % 2) + t];
    let low = if k < 2 { ql & 0x0f } else { ql >> 4 };
    let high = (b.qh[32 * half + t] >> (2 * k)) & 3;
    (low | (high << 4)) as i32
}

impl BlockFormat for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const BLOCK_SIZE: usize = QK_K;
    type Dot = BlockQ8K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
            let d = f16_le(b.d);
            for (i, v) in o.iter_mut().enumerate() {
                let (half, k, t) = (i / 128, (i % 128) / 32, i % 32);
                let sc = b.scales[8 * half + 2 * k + t / 16];
                let q = q6(b, half, k, t) - 32;
                *v = d * sc as f32 * q as f32;
            }
        }
    }

    /// `ggml_vec_dot_q6_K_q8_K` (AVX2): unsigned quants in the lanes, the
    /// −32 offset subtracted per lane through bsums.
    #[inline(always)]
    fn vec_dot(w: &[Self], a: &[BlockQ8K]) -> f32 {
        let mut acc = Lanes8::default();
        for (x, y) in w.iter().zip(a) {
            let d = y.d() * f16_le(x.d);
            let bs = y.bsums();
            let sc = |j: usize| x.scales[j] as i32;
            let mut sumi = [0i32; 8];
            for half in 0..2 {
                for k in 0..4 {
                    let s = 8 * half + 2 * k;
                    let base = 128 * half + 32 * k;
                    let q = |t: usize| q6(x, half, k, t);
                    add_chunk(&mut sumi, q, &y.qs[base..base + 32], sc(s), sc(s + 1));
                }
            }
            for (l, lane) in sumi.iter_mut().enumerate() {
                *lane -= 32 * (bs[2 * l] * sc(2 * l) + bs[2 * l + 1] * sc(2 * l + 1));
            }
            acc.fma(d, &sumi);
        }
        acc.sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_k4_unpacks_six_bit_fields() {
        // Scales 0..8 = 1..8 + 40 (uses the top bits), mins = 63 - j.
        let sc: [u8; 8] = std::array::from_fn(|j| j as u8 + 41);
        let mn: [u8; 8] = std::array::from_fn(|j| 63 - j as u8);
        let mut q = [0u8; 12];
        for j in 0..4 {
            q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            q[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            q[j + 8] = (sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4);
        }
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &q), (sc[j], mn[j]));
        }
    }

    #[test]
    fn q3k_scales_unpack() {
        let want: [i32; 16] = std::array::from_fn(|i| (i as i32 * 4 + 1) % 64 - 32);
        let u: [u8; 16] = std::array::from_fn(|i| (want[i] + 32) as u8);
        let mut q = [0u8; 12];
        for k in 0..4 {
            q[k] = (u[k] & 0x0f) | ((u[8 + k] & 0x0f) << 4);
            q[4 + k] = (u[4 + k] & 0x0f) | ((u[12 + k] & 0x0f) << 4);
            q[8 + k] = (u[k] >> 4)
                | ((u[4 + k] >> 4) << 2)
                | ((u[8 + k] >> 4) << 4)
                | ((u[12 + k] >> 4) << 6);
        }
        assert_eq!(q3k_scales(&q), want);
    }
}
