//! The activation quantizers of [`super::q8`] with AVX2 (Q8_0, Q8_1, Q8_K):
//! the same operations lane by lane, so the same bytes. The scalar
//! functions stay the twins these are tested against (`quant::tests`).
//!
//! * Q8_0/Q8_1: `amax` is a maximum (exact in any order; a NaN input is
//!   skipped as `f32::max` skips it, because `vmaxps` returns its second
//!   operand, the running maximum, when the first is NaN); `v·id` rounded
//!   by `vroundps` (ties to even), converted by `vcvtps2dq` (NaN and
//!   out-of-range give `i32::MIN`) and narrowed with saturating packs,
//!   which is `round_even_i8`.
//! * Q8_K: the signed value of largest magnitude (first one on ties) and
//!   ggml's `nearest_int` (add 1.5·2^23, keep the low mantissa bits), then
//!   `min(127)` and truncation to i8, as the scalar code does.

use std::arch::x86_64::*;

use super::block::to_f16_le;
use super::q8::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK8_0, QK_K};

/// Whether these quantizers may run (see [`crate::kernels`]'s switches).
pub(super) fn enabled() -> bool {
    crate::kernels::hand_written_x86()
}

/// One 32-value block: `(d, quants, Σ quants)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_block(x: &[f32; QK8_0]) -> (f32, [i8; QK8_0], i32) {
    let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(x[8 * i..].as_ptr()));
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_setzero_ps();
    for v in v {
        m = _mm256_max_ps(_mm256_andnot_ps(sign, v), m);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), m);
    let amax = lanes.iter().fold(0f32, |a, &b| a.max(b));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let i: [__m256i; 4] = std::array::from_fn(|k| {
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(v[k], id),
        );
        _mm256_cvtps_epi32(r)
    });
    let a = _mm256_packs_epi32(i[0], i[1]);
    let b = _mm256_packs_epi32(i[2], i[3]);
    let q = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(a, b),
        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
    );
    let mut qs = [0i8; QK8_0];
    _mm256_storeu_si256(qs.as_mut_ptr().cast(), q);
    // Σ quants from the narrowed bytes (the i32 lanes may hold i32::MIN).
    let wide = [
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(qs.as_ptr().cast())),
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(qs[8..].as_ptr().cast())),
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(qs[16..].as_ptr().cast())),
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(qs[24..].as_ptr().cast())),
    ];
    let s = _mm256_add_epi32(
        _mm256_add_epi32(wide[0], wide[1]),
        _mm256_add_epi32(wide[2], wide[3]),
    );
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    (d, qs, _mm_cvtsi128_si32(s))
}

/// [`BlockQ8_0`]'s activation quantizer.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8_0(src: &[f32], blocks: &mut [BlockQ8_0]) {
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK8_0)) {
        let (d, qs, _) = q8_block(x.try_into().expect("32 values"));
        *b = BlockQ8_0 {
            d: to_f16_le(d),
            qs,
        };
    }
}

/// [`BlockQ8_1`]'s activation quantizer.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8_1(src: &[f32], blocks: &mut [BlockQ8_1]) {
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK8_0)) {
        let (d, qs, sum) = q8_block(x.try_into().expect("32 values"));
        *b = BlockQ8_1 {
            d: to_f16_le(d),
            s: to_f16_le(d * sum as f32),
            qs,
        };
    }
}

/// [`BlockQ8K`]'s quantizer (ggml's `quantize_row_q8_K_ref`).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8_k(src: &[f32], blocks: &mut [BlockQ8K]) {
    let sign = _mm256_set1_ps(-0.0);
    for (b, x) in blocks.iter_mut().zip(src.chunks_exact(QK_K)) {
        let mut m = _mm256_setzero_ps();
        for c in x.chunks_exact(8) {
            m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(c.as_ptr())), m);
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let amax = lanes.iter().fold(0f32, |a, &b| a.max(b));
        if amax == 0.0 {
            *b = BlockQ8K {
                d: [0; 4],
                qs: [0; QK_K],
                bsums: [[0; 2]; QK_K / 16],
            };
            continue;
        }
        // The first value of that magnitude, with its sign.
        let max = *x
            .iter()
            .find(|v| v.abs() == amax)
            .expect("amax is one of the magnitudes");
        let iscale = _mm256_set1_ps(-127.0 / max);
        let magic = _mm256_set1_ps(12_582_912.0);
        let mut wide = [0i32; QK_K];
        for (w, c) in wide.chunks_exact_mut(8).zip(x.chunks_exact(8)) {
            let v = _mm256_add_ps(_mm256_mul_ps(iscale, _mm256_loadu_ps(c.as_ptr())), magic);
            let i = _mm256_sub_epi32(
                _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x007f_ffff)),
                _mm256_set1_epi32(0x0040_0000),
            );
            _mm256_storeu_si256(
                w.as_mut_ptr().cast(),
                _mm256_min_epi32(i, _mm256_set1_epi32(127)),
            );
        }
        let qs: [i8; QK_K] = std::array::from_fn(|i| wide[i] as i8);
        let bsums = std::array::from_fn(|j| {
            let s: i32 = qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            (s as i16).to_le_bytes()
        });
        *b = BlockQ8K {
            d: (1.0 / (-127.0 / max)).to_le_bytes(),
            qs,
            bsums,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::q8::{quantize_q8_0_scalar, quantize_q8_1_scalar, quantize_q8_k_scalar};
    use crate::quant::{blocks_as_bytes, BlockFormat};

    /// Rows of activation-like values, plus rows with ties (k + 0.5 after
    /// scaling), zeros, a single outlier, infinities, NaN and subnormals.
    fn rows() -> Vec<Vec<f32>> {
        let n = QK_K * 2;
        let mut s = 0x9e37_79b9u32;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as f32 / u32::MAX as f32 - 0.5
        };
        let mut out = Vec::new();
        for scale in [1e-6f32, 0.01, 1.0, 37.0, 3e4] {
            out.push((0..n).map(|_| rnd() * scale).collect::<Vec<_>>());
        }
        // Values that land exactly on .5 after scaling by 127/amax = 1.
        out.push(
            (0..n)
                .map(|i| (i % 255) as f32 - 127.0 + 0.5 * (i % 2) as f32)
                .collect(),
        );
        out.push(vec![0.0; n]);
        let mut one = vec![0.0; n];
        one[77] = -3.0;
        one[300] = 3.0;
        out.push(one);
        for special in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-40, -0.0] {
            let mut r: Vec<f32> = (0..n).map(|_| rnd()).collect();
            r[5] = special;
            r[260] = special;
            out.push(r);
        }
        out
    }

    #[test]
    fn vector_quantizers_equal_their_scalar_twins() {
        if !enabled() {
            return;
        }
        for (i, x) in rows().iter().enumerate() {
            let n = x.len();
            let (mut a, mut b) = (vec![zero::<BlockQ8_0>(); n / 32], vec![zero(); n / 32]);
            // SAFETY: `enabled()` checked the features.
            unsafe { quantize_q8_0(x, &mut a) };
            quantize_q8_0_scalar(x, &mut b);
            assert_eq!(blocks_as_bytes(&a), blocks_as_bytes(&b), "q8_0 row {i}");
            let (mut a, mut b) = (vec![zero::<BlockQ8_1>(); n / 32], vec![zero(); n / 32]);
            // SAFETY: as above.
            unsafe { quantize_q8_1(x, &mut a) };
            quantize_q8_1_scalar(x, &mut b);
            assert_eq!(blocks_as_bytes(&a), blocks_as_bytes(&b), "q8_1 row {i}");
            let (mut a, mut b) = (vec![zero::<BlockQ8K>(); n / QK_K], vec![zero(); n / QK_K]);
            // SAFETY: as above.
            unsafe { quantize_q8_k(x, &mut a) };
            quantize_q8_k_scalar(x, &mut b);
            assert_eq!(blocks_as_bytes(&a), blocks_as_bytes(&b), "q8_k row {i}");
        }
    }

    fn zero<B: BlockFormat>() -> B {
        crate::quant::cast_blocks::<B>(&vec![0u8; std::mem::size_of::<B>()]).expect("one block")[0]
    }
}
