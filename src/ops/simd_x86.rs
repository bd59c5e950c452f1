//! Eight-lane (AVX2 + FMA + F16C) forms of the element-wise steps the
//! operators share. Each lane does exactly the float operations of the
//! scalar function it mirrors, so results are the same bits; the scalar
//! functions stay the reference and the tests compare the two.

use std::arch::x86_64::*;

/// Whether the x86-64 vector operators may run: the CPU has AVX2, FMA and
/// F16C and they are not switched off (`STRATA_FORCE_SCALAR`, or a
/// `STRATA_ISA` cap below the hand-written kernels).
pub fn enabled() -> bool {
    crate::kernels::hand_written_x86()
}

/// [`crate::ops::act::ggml_v_expf`] on eight lanes: the same range
/// reduction, polynomial and special cases, lane by lane.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::excessive_precision)]
pub unsafe fn v_expf(x: __m256) -> __m256 {
    let shifter = _mm256_set1_ps(12582912.0);
    let z = _mm256_fmadd_ps(x, _mm256_set1_ps(1.442_695_021_629_333_5), shifter);
    let n = _mm256_sub_ps(z, shifter);
    let b = _mm256_fnmadd_ps(
        n,
        _mm256_set1_ps(1.428_606_765_330_187e-6),
        _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_751_953_125), x),
    );
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let k = _mm256_castsi256_ps(_mm256_add_epi32(
        e,
        _mm256_castps_si256(_mm256_set1_ps(1.0)),
    ));
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_set1_ps(0.008_247_390_389_442_444),
                b,
                _mm256_set1_ps(0.041_899_766_772_985_46),
            ),
            u,
            _mm256_fmadd_ps(
                _mm256_set1_ps(0.166_683_956_980_705_26),
                b,
                _mm256_set1_ps(0.499_991_267_919_540_4),
            ),
        ),
        u,
        _mm256_mul_ps(_mm256_set1_ps(0.999_999_403_953_552_2), b),
    );
    let normal = _mm256_fmadd_ps(j, k, k);
    if _mm256_movemask_ps(big) == 0 {
        return normal;
    }
    // Lanes whose exponent leaves the normal range: scale in two steps.
    let le0 = _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps());
    let g = _mm256_and_si256(
        _mm256_castps_si256(le0),
        _mm256_set1_epi32(0x8200_0000u32 as i32),
    );
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let huge = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
    let scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
    let r = _mm256_blendv_ps(normal, scaled, big);
    _mm256_blendv_ps(r, _mm256_mul_ps(s1, s1), huge)
}

/// [`crate::ops::act::silu_v`] on eight lanes: `x / (1 + exp(0 - x))`.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn v_silu(x: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    let e = v_expf(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(x, _mm256_add_ps(one, e))
}

/// `Lanes8::sum` order: upper half onto lower half, then
/// `(t0 + t2) + (t1 + t3)`.
///
/// # Safety
/// The CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub unsafe fn hsum8(a: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps::<1>(a), _mm256_castps256_ps128(a));
    let s = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Eight f16 values at `p` as f32.
///
/// # Safety
/// The CPU has F16C and AVX; `p` points at eight readable f16 values.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn load_f16x8(p: *const half::f16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
}

/// Each lane rounded to the nearest f16 (ties to even) and back.
///
/// # Safety
/// The CPU has F16C and AVX.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn round_f16(x: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::act::{ggml_v_expf, silu_v};

    fn lanes(v: __m256) -> [f32; 8] {
        let mut o = [0f32; 8];
        // SAFETY: an unaligned store of eight lanes into eight floats.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), v) };
        o
    }

    #[test]
    fn exp_and_silu_lanes_equal_the_scalar_functions() {
        if !enabled() {
            return;
        }
        let mut xs: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            88.0,
            88.5,
            89.0,
            -87.0,
            -88.0,
            -100.0,
            -103.0,
            -104.0,
            -150.0,
            200.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-30,
            -1e-30,
            f32::MIN_POSITIVE,
        ];
        let mut s = 0x1234_5678u32;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let v = f32::from_bits(s);
            if v.is_finite() && v.abs() < 300.0 {
                xs.push(v);
            }
            xs.push((s as f32 / u32::MAX as f32 - 0.5) * 240.0);
        }
        while xs.len() % 8 != 0 {
            xs.push(0.5);
        }
        for c in xs.chunks_exact(8) {
            // SAFETY: `enabled()` checked AVX2, FMA and F16C.
            let (e, si) = unsafe {
                let x = _mm256_loadu_ps(c.as_ptr());
                (lanes(v_expf(x)), lanes(v_silu(x)))
            };
            for i in 0..8 {
                let (want, got) = (ggml_v_expf(c[i]), e[i]);
                assert!(
                    want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
                    "exp({}) = {want} vs {got}",
                    c[i]
                );
                let (want, got) = (silu_v(c[i]), si[i]);
                assert!(
                    want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
                    "silu({}) = {want} vs {got}",
                    c[i]
                );
            }
        }
    }
}
