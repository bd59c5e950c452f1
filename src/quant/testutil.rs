//! Deterministic test data: a SplitMix64 generator (no `rand` dependency)
//! and random-but-valid block bytes for every format.

use super::GgmlType;

/// SplitMix64: tiny, fast, and good enough to make test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Roughly standard normal (Irwin-Hall with 4 terms, rescaled).
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform()).sum();
        (s - 2.0) * 1.732_050_8
    }

    /// `n` values like real weights/activations: normal, with occasional
    /// outliers and exact zeros, scaled per call.
    pub fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let r = self.uniform();
                if r < 0.01 {
                    0.0
                } else if r < 0.02 {
                    self.normal() * 8.0 * scale
                } else {
                    self.normal() * scale
                }
            })
            .collect()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// A small positive f16 scale (never NaN/inf/subnormal), little-endian.
    pub fn f16_scale(&mut self) -> [u8; 2] {
        half::f16::from_f32(0.001 + self.uniform() * 0.05).to_le_bytes()
    }
}

/// Random block bytes for `nb` blocks of `ty` whose float fields are sane, so
/// dequantized values are finite. Q8_K blocks get consistent bsums.
pub fn random_blocks(rng: &mut Rng, ty: GgmlType, nb: usize) -> Vec<u8> {
    let ts = ty.type_size();
    let mut out = rng.bytes(nb * ts);
    for blk in out.chunks_exact_mut(ts) {
        match ty {
            GgmlType::F32 => blk.copy_from_slice(&rng.normal().to_le_bytes()),
            GgmlType::F16 => blk.copy_from_slice(&half::f16::from_f32(rng.normal()).to_le_bytes()),
            GgmlType::BF16 => {
                blk.copy_from_slice(&half::bf16::from_f32(rng.normal()).to_le_bytes())
            }
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => {
                blk[0..2].copy_from_slice(&rng.f16_scale())
            }
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => {
                blk[0..2].copy_from_slice(&rng.f16_scale());
                blk[2..4].copy_from_slice(&half::f16::from_f32(-rng.uniform()).to_le_bytes());
            }
            GgmlType::Q8_K => {
                blk[0..4].copy_from_slice(&(0.001 + rng.uniform() * 0.01).to_le_bytes());
                for q in &mut blk[4..260] {
                    if *q == 0x80 {
                        *q = 0x81; // keep quants in -127..=127 like real Q8_K
                    }
                }
                for j in 0..16 {
                    let s: i32 = blk[4 + 16 * j..4 + 16 * j + 16]
                        .iter()
                        .map(|&q| q as i8 as i32)
                        .sum();
                    blk[260 + 2 * j..262 + 2 * j].copy_from_slice(&(s as i16).to_le_bytes());
                }
            }
            GgmlType::Q2_K => {
                let n = blk.len();
                blk[n - 4..n - 2].copy_from_slice(&rng.f16_scale());
                blk[n - 2..].copy_from_slice(&rng.f16_scale());
            }
            GgmlType::Q3_K | GgmlType::Q6_K => {
                let n = blk.len();
                blk[n - 2..].copy_from_slice(&rng.f16_scale());
            }
            GgmlType::Q4_K | GgmlType::Q5_K => {
                blk[0..2].copy_from_slice(&rng.f16_scale());
                blk[2..4].copy_from_slice(&rng.f16_scale());
            }
            _ => {}
        }
    }
    out
}
