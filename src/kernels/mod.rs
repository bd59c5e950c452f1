//! Row dot-product kernels chosen once per CPU at run time.
//!
//! Today every kernel is the scalar reference of [`crate::quant`] compiled
//! twice: once for the baseline target and once with AVX2, FMA and F16C
//! enabled (x86-64), where the reference's fused multiply-adds become single
//! instructions instead of library calls and the compiler may vectorise the
//! integer loops. Both builds run the same operations in the same order, and
//! a fused multiply-add is exactly rounded either way, so they return
//! identical bits (tested below and by the model tests).

use crate::quant::{
    cast_blocks, dispatch::with_block, BlockFormat, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0,
    BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, GgmlType,
    BF16, F16, F32,
};

/// The instruction-set level a kernel was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable code (the scalar reference).
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
}

/// Dot product of one weight row and one activation row of matching sizes.
#[derive(Clone, Copy)]
pub struct RowDot {
    f: unsafe fn(&[u8], &[u8]) -> f32,
    pub isa: Isa,
}

impl RowDot {
    /// `w` must hold whole weight blocks and `a` the matching activation
    /// blocks (checked; a mismatch yields NaN, never out-of-bounds access).
    #[inline]
    pub fn dot(&self, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: `f` was chosen by `row_dot`, which only hands out a
        // feature-gated kernel after detecting the features on this CPU.
        unsafe { (self.f)(w, a) }
    }
}

#[inline(always)]
fn dot_blocks<B: BlockFormat>(w: &[u8], a: &[u8]) -> f32 {
    match (cast_blocks::<B>(w), cast_blocks::<B::Dot>(a)) {
        (Some(wb), Some(ab)) if wb.len() * B::BLOCK_SIZE == ab.len() * <B::Dot as BlockFormat>::BLOCK_SIZE => {
            B::vec_dot(wb, ab)
        }
        _ => f32::NAN,
    }
}

fn dot_scalar<B: BlockFormat>(w: &[u8], a: &[u8]) -> f32 {
    dot_blocks::<B>(w, a)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2<B: BlockFormat>(w: &[u8], a: &[u8]) -> f32 {
    dot_blocks::<B>(w, a)
}

/// Whether this CPU runs the AVX2 build.
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
            && std::env::var_os("STRATA_FORCE_SCALAR").is_none()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The fastest row kernel for weight type `ty` on this CPU, or `None` for a
/// type without a dot product.
pub fn row_dot(ty: GgmlType) -> Option<RowDot> {
    row_dot_for(ty, if has_avx2() { Isa::Avx2 } else { Isa::Scalar })
}

/// The row kernel for `ty` built for `isa` (which must be supported by this
/// CPU; `None` otherwise).
pub fn row_dot_for(ty: GgmlType, isa: Isa) -> Option<RowDot> {
    let f: unsafe fn(&[u8], &[u8]) -> f32 = match isa {
        Isa::Scalar => with_block!(ty, B => dot_scalar::<B>, _ => return None),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if has_avx2() => with_block!(ty, B => dot_avx2::<B>, _ => return None),
        _ => return None,
    };
    Some(RowDot { f, isa })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant;

    #[test]
    fn every_build_matches_the_scalar_reference_bit_for_bit() {
        let n = 512;
        let mut state = 42u64;
        let mut rnd = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        let x: Vec<f32> = (0..n).map(|_| rnd()).collect();
        let w: Vec<f32> = (0..n).map(|_| rnd()).collect();
        for ty in [
            GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
            GgmlType::Q5_1, GgmlType::Q8_0,
        ] {
            let at = quant::vec_dot_type(ty);
            let mut wq = vec![0u8; ty.row_bytes(n as u64).unwrap() as usize];
            let mut aq = vec![0u8; at.row_bytes(n as u64).unwrap() as usize];
            quant::quantize(ty, &w, &mut wq).unwrap();
            quant::quantize(at, &x, &mut aq).unwrap();
            let reference = quant::vec_dot(ty, n, &wq, &aq);
            for isa in [Isa::Scalar, Isa::Avx2] {
                if let Some(k) = row_dot_for(ty, isa) {
                    assert_eq!(k.dot(&wq, &aq).to_bits(), reference.to_bits(), "{ty} {isa:?}");
                }
            }
        }
    }

    #[test]
    fn mismatched_sizes_give_nan() {
        let k = row_dot(GgmlType::Q8_0).unwrap();
        assert!(k.dot(&[0u8; 34], &[0u8; 68]).is_nan());
        assert!(k.dot(&[0u8; 33], &[0u8; 34]).is_nan());
    }
}
