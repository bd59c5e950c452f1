//! Activation functions.

use std::sync::OnceLock;

use half::f16;

/// SiLU, `x / (1 + exp(-x))`, with the C library's `expf` (ggml's scalar
/// `ggml_silu_f32`).
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// SiLU as ggml's AVX2 code computes it (`ggml_v_silu`):
/// `x / (1 + ggml_v_expf(0 - x))`.
#[inline]
pub fn silu_v(x: f32) -> f32 {
    x / (1.0 + ggml_v_expf(0.0 - x))
}

/// SwiGLU in place on rows of `width`, as ggml's `ggml_vec_swiglu_f32`
/// runs on x86-64 with AVX2 and FMA: `gate = silu(gate) * up`, with the
/// vectorised SiLU ([`silu_v`]) on each full group of 8 values from the
/// start of a row and the scalar one ([`silu`]) on the rest.
pub fn swiglu(gate: &mut [f32], up: &[f32], width: usize) {
    #[cfg(target_arch = "x86_64")]
    if super::simd_x86::enabled() {
        // SAFETY: `enabled()` checked AVX2, FMA and F16C.
        return unsafe { swiglu_x86(gate, up, width) };
    }
    swiglu_scalar(gate, up, width)
}

/// [`swiglu`] one value at a time (the twin of the vector form).
pub fn swiglu_scalar(gate: &mut [f32], up: &[f32], width: usize) {
    let body = width - width % 8;
    for (g, u) in gate.chunks_exact_mut(width).zip(up.chunks_exact(width)) {
        for (g, &u) in g[..body].iter_mut().zip(&u[..body]) {
            *g = silu_v(*g) * u;
        }
        for (g, &u) in g[body..].iter_mut().zip(&u[body..]) {
            *g = silu(*g) * u;
        }
    }
}

/// [`swiglu`] with the vectorised SiLU on eight lanes at a time.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn swiglu_x86(gate: &mut [f32], up: &[f32], width: usize) {
    use std::arch::x86_64::*;
    let body = width - width % 8;
    for (g, u) in gate.chunks_exact_mut(width).zip(up.chunks_exact(width)) {
        for (g, u) in g[..body].chunks_exact_mut(8).zip(u[..body].chunks_exact(8)) {
            let s = super::simd_x86::v_silu(_mm256_loadu_ps(g.as_ptr()));
            _mm256_storeu_ps(
                g.as_mut_ptr(),
                _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr())),
            );
        }
        for (g, &u) in g[body..].iter_mut().zip(&u[body..]) {
            *g = silu(*g) * u;
        }
    }
}

/// One lane of ggml's vectorised `ggml_v_expf` (x86-64, AVX2 + FMA):
/// `exp(x)` by range reduction `x = n·ln2 + b` and a degree-5 polynomial,
/// with the same fused operations and special cases (0 below about
/// -103.97, infinity above about 88.38). Each lane's result does not depend
/// on the others.
#[allow(clippy::excessive_precision)]
pub fn ggml_v_expf(x: f32) -> f32 {
    const SHIFTER: f32 = 12582912.0; // 0x1.8p23
    const LOG2E: f32 = 1.442_695_021_629_333_5; // 0x1.715476p+0
    const LN2_HI: f32 = 0.693_145_751_953_125; // 0x1.62e4p-1
    const LN2_LO: f32 = 1.428_606_765_330_187e-6; // 0x1.7f7d1cp-20
    const C1: f32 = 0.999_999_403_953_552_2; // 0x1.ffffecp-1
    const C2: f32 = 0.499_991_267_919_540_4; // 0x1.fffdb6p-2
    const C3: f32 = 0.166_683_956_980_705_26; // 0x1.555e66p-3
    const C4: f32 = 0.041_899_766_772_985_46; // 0x1.573e2ep-5
    const C5: f32 = 0.008_247_390_389_442_444; // 0x1.0e4020p-7

    let z = x.mul_add(LOG2E, SHIFTER);
    let n = z - SHIFTER;
    let b = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = C5
        .mul_add(b, C4)
        .mul_add(u, C3.mul_add(b, C2))
        .mul_add(u, C1 * b);
    // NaN takes this branch too, as in ggml (its test is `|n| > 126`).
    if n.abs() <= 126.0 || n.is_nan() {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    if n.abs() > 192.0 {
        return s1 * s1;
    }
    let s2 = f32::from_bits(e.wrapping_sub(g));
    s2.mul_add(j, s2) * s1
}

// ggml's constants, written out to the digits that give their f32 values.
#[allow(clippy::excessive_precision)]
const SQRT_2_OVER_PI: f32 = 0.797_884_560_802_865_4;
const GELU_COEF_A: f32 = 0.044715;

/// GELU, tanh approximation, in f32 as ggml's `ggml_gelu_f32` computes it:
/// `0.5·x·(1 + tanh(√(2/π)·x·(1 + a·x²)))`, with `1 + (a·x)·x` as one fused
/// multiply-add (as ggml's x86-64 build compiles it).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

/// ggml's GELU table: `gelu_tanh` of every f16 value, rounded to f16
/// (`ggml_table_gelu_f16`, indexed by the f16 bits).
fn gelu_table() -> &'static [f16] {
    static TABLE: OnceLock<Vec<f16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| f16::from_f32(gelu_tanh(f16::from_bits(bits).to_f32())))
            .collect()
    })
}

/// GELU as ggml's CPU backend applies it to f32 tensors (`GGML_GELU_FP16`):
/// 0 at or below -10, `x` at or above 10, otherwise the table entry of `x`
/// rounded to f16.
#[inline]
pub fn gelu(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        gelu_table()[f16::from_f32(x).to_bits() as usize].to_f32()
    }
}

/// GeGLU in place, as ggml's `ggml_vec_geglu_f32`: `gate = gelu(gate) * up`
/// (0 at or below -10, `gate * up` at or above 10).
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            table[f16::from_f32(x).to_bits() as usize].to_f32() * u
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_equals_its_scalar_twin() {
        // Widths with and without a partial last group of eight.
        for width in [8, 13, 64, 1536, 2051] {
            let n = 3 * width;
            let g: Vec<f32> = (0..n)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 0.031)
                .collect();
            let u: Vec<f32> = (0..n)
                .map(|i| ((i * 104_729 % 997) as f32 - 498.0) * 0.01)
                .collect();
            let (mut a, mut b) = (g.clone(), g);
            swiglu(&mut a, &u, width);
            swiglu_scalar(&mut b, &u, width);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "width {width}");
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(silu(0.0), 0.0);
        assert_eq!(silu_v(0.0), 0.0);
        assert!((silu_v(1.0) - 0.731_058_6).abs() < 1e-6);
        assert_eq!(ggml_v_expf(0.0), 1.0);
        assert_eq!(ggml_v_expf(-120.0), 0.0);
        assert_eq!(ggml_v_expf(100.0), f32::INFINITY);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert_eq!(SQRT_2_OVER_PI.to_bits(), 0x3f4c_422a);
        assert!(ggml_v_expf(f32::NAN).is_nan());
        let mut x = -80.0f32;
        while x < 80.0 {
            let (a, b) = (ggml_v_expf(x), x.exp());
            assert!((a - b).abs() <= 2e-6 * b, "{x}: {a} vs {b}");
            x += 0.37;
        }
    }

    #[test]
    fn geglu_follows_the_table_and_its_limits() {
        let mut g = vec![-20.0, -10.0, 0.0, 1.0, 10.0, 12.5];
        geglu(&mut g, &[2.0; 6]);
        assert_eq!(g[..3], [0.0, 0.0, 0.0]);
        assert_eq!(g[3], f16::from_f32(gelu_tanh(1.0)).to_f32() * 2.0);
        assert_eq!(g[4..], [20.0, 25.0]);
        assert_eq!(gelu(0.5), f16::from_f32(gelu_tanh(0.5)).to_f32());
    }
}
