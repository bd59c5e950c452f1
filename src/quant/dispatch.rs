//! The type-erased entry points: pick the block struct for a [`GgmlType`],
//! check the buffer sizes, and call the [`BlockFormat`] implementation.

use super::block::{cast_blocks, cast_blocks_mut, BlockFormat};
use super::float::{BF16, F16, F32};
use super::k_quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use super::q4::{BlockQ4_0, BlockQ4_1};
use super::q5::{BlockQ5_0, BlockQ5_1};
use super::q8::{BlockQ8K, BlockQ8_0, BlockQ8_1};
use super::GgmlType;
use crate::{Error, Result};

/// Run `$body` with `$B` bound to the block struct of `$ty`, or evaluate
/// `$other` for the integer/f64 types, which have no block format here.
macro_rules! with_block {
    ($ty:expr, $B:ident => $body:expr, _ => $other:expr) => {
        match $ty {
            GgmlType::F32 => {
                type $B = F32;
                $body
            }
            GgmlType::F16 => {
                type $B = F16;
                $body
            }
            GgmlType::BF16 => {
                type $B = BF16;
                $body
            }
            GgmlType::Q4_0 => {
                type $B = BlockQ4_0;
                $body
            }
            GgmlType::Q4_1 => {
                type $B = BlockQ4_1;
                $body
            }
            GgmlType::Q5_0 => {
                type $B = BlockQ5_0;
                $body
            }
            GgmlType::Q5_1 => {
                type $B = BlockQ5_1;
                $body
            }
            GgmlType::Q8_0 => {
                type $B = BlockQ8_0;
                $body
            }
            GgmlType::Q8_1 => {
                type $B = BlockQ8_1;
                $body
            }
            GgmlType::Q2_K => {
                type $B = BlockQ2K;
                $body
            }
            GgmlType::Q3_K => {
                type $B = BlockQ3K;
                $body
            }
            GgmlType::Q4_K => {
                type $B = BlockQ4K;
                $body
            }
            GgmlType::Q5_K => {
                type $B = BlockQ5K;
                $body
            }
            GgmlType::Q6_K => {
                type $B = BlockQ6K;
                $body
            }
            GgmlType::Q8_K => {
                type $B = BlockQ8K;
                $body
            }
            GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 | GgmlType::F64 => $other,
        }
    };
}
pub(crate) use with_block;

/// Whether `ty` has a block format (dequantize and vec_dot work for it).
pub fn is_supported(ty: GgmlType) -> bool {
    with_block!(ty, B => { let _ = B::BLOCK_SIZE; true }, _ => false)
}

fn unsupported(ty: GgmlType, what: &str) -> Error {
    Error::invalid(
        "ty",
        format!("{what} is not supported for tensor type {ty}"),
    )
}

/// Number of blocks that `n` values of `ty` make, or an error naming the
/// mismatch.
fn whole_blocks(ty: GgmlType, n: usize, what: &'static str) -> Result<usize> {
    let bs = ty.block_size();
    if n % bs != 0 {
        return Err(Error::invalid(
            what,
            format!("{n} values is not a whole number of {ty} blocks ({bs} values each)"),
        ));
    }
    Ok(n / bs)
}

fn check_bytes(ty: GgmlType, n: usize, bytes: usize, what: &'static str) -> Result<()> {
    let expected = whole_blocks(ty, n, what)? * ty.type_size();
    if bytes != expected {
        return Err(Error::invalid(
            what,
            format!("{n} values of {ty} take {expected} bytes, got {bytes}"),
        ));
    }
    Ok(())
}

fn dequantize_as<B: BlockFormat>(src: &[u8], out: &mut [f32]) -> Result<()> {
    check_bytes(B::TYPE, out.len(), src.len(), "src")?;
    let blocks = cast_blocks::<B>(src).ok_or_else(|| Error::invalid("src", "not whole blocks"))?;
    B::dequantize(blocks, out);
    Ok(())
}

/// Dequantize `out.len()` values stored as `ty` in `src` (a whole number of
/// blocks). Errors (`Error::InvalidParameter`) on a size mismatch or a type
/// without a block format; never panics.
pub fn dequantize(ty: GgmlType, src: &[u8], out: &mut [f32]) -> Result<()> {
    with_block!(ty, B => dequantize_as::<B>(src, out), _ => Err(unsupported(ty, "dequantize")))
}

fn quantize_as<B: BlockFormat>(src: &[f32], out: &mut [u8], reference: bool) -> Result<()> {
    check_bytes(B::TYPE, src.len(), out.len(), "out")?;
    let blocks =
        cast_blocks_mut::<B>(out).ok_or_else(|| Error::invalid("out", "not whole blocks"))?;
    if reference {
        B::quantize_reference(src, blocks)
    } else {
        B::quantize(src, blocks)
    }
}

/// Quantize `src` into `out` (exactly the right number of bytes) the way
/// ggml's CPU backend quantizes activations (`from_float`, x86-64 AVX2
/// build). Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
/// Q8_K; other types give `Error::InvalidParameter`.
pub fn quantize(ty: GgmlType, src: &[f32], out: &mut [u8]) -> Result<()> {
    with_block!(ty, B => quantize_as::<B>(src, out, false), _ => Err(unsupported(ty, "quantize")))
}

/// Quantize like `ggml_quantize_chunk` without an importance matrix (how
/// model files are written). Same as [`quantize`] except for Q8_0 and Q8_1,
/// whose reference rounds half away from zero with inverse scale `1/d`.
pub fn quantize_reference(ty: GgmlType, src: &[f32], out: &mut [u8]) -> Result<()> {
    with_block!(ty, B => quantize_as::<B>(src, out, true), _ => Err(unsupported(ty, "quantize")))
}

/// The activation format a weight type is dotted against, as in ggml's CPU
/// backend: Q4_0/Q5_0/Q8_0 -> Q8_0; Q4_1/Q5_1 -> Q8_1; K-quants -> Q8_K;
/// F16 -> F16; BF16 -> BF16; F32 -> F32. Q8_1 and Q8_K pair with themselves;
/// the integer and f64 types (no block format) map to F32.
pub fn vec_dot_type(ty: GgmlType) -> GgmlType {
    with_block!(ty, B => <B as BlockFormat>::Dot::TYPE, _ => GgmlType::F32)
}

fn vec_dot_as<B: BlockFormat>(n: usize, w: &[u8], a: &[u8]) -> Result<f32> {
    let nb = whole_blocks(B::TYPE, n, "n")?;
    let wb = nb * B::TYPE.type_size();
    let ab = n / <B::Dot as BlockFormat>::BLOCK_SIZE * B::Dot::TYPE.type_size();
    if w.len() < wb || a.len() < ab {
        return Err(Error::invalid(
            "w/a",
            format!(
                "{n} values need {wb} weight bytes ({}) and {ab} activation bytes ({}), got {} and {}",
                B::TYPE,
                B::Dot::TYPE,
                w.len(),
                a.len()
            ),
        ));
    }
    let wblocks =
        cast_blocks::<B>(&w[..wb]).ok_or_else(|| Error::invalid("w", "not whole blocks"))?;
    let ablocks =
        cast_blocks::<B::Dot>(&a[..ab]).ok_or_else(|| Error::invalid("a", "not whole blocks"))?;
    Ok(B::vec_dot(wblocks, ablocks))
}

/// Checked [`vec_dot`]: errors instead of returning NaN.
pub fn try_vec_dot(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> Result<f32> {
    with_block!(ty, B => vec_dot_as::<B>(n, w, a), _ => Err(unsupported(ty, "vec_dot")))
}

/// Scalar reference dot product of one weight row (`n` values of type `ty`)
/// with one activation row (`n` values of type `vec_dot_type(ty)`). Integer
/// sums per block, float combine in the fixed order of ggml's AVX2 kernel.
///
/// Callers guarantee the sizes (`w`/`a` at least as long as `n` values need;
/// extra bytes are ignored). On a violation this debug-asserts, and in
/// release builds returns NaN rather than panicking.
pub fn vec_dot(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    match try_vec_dot(ty, n, w, a) {
        Ok(v) => v,
        Err(e) => {
            debug_assert!(false, "vec_dot: {e}");
            f32::NAN
        }
    }
}
