//! The block-format trait, safe byte <-> block casts, and the small numeric
//! helpers every format shares (f16 fields, ggml's rounding rules, and the
//! eight-lane float accumulator of ggml's AVX2 dot products).

use super::GgmlType;
use crate::{Error, Result};

/// Marker for block structs that may be viewed in place over raw tensor bytes.
///
/// # Safety
/// An implementor must be `#[repr(C)]`, have alignment 1 (only `u8`/`i8`
/// fields and arrays of them), contain no padding, and accept every bit
/// pattern as a valid value. Then any `&[u8]` whose length is a multiple of
/// `size_of::<Self>()` is a valid `&[Self]`, at any address.
pub unsafe trait PlainBytes: Copy + Sized + 'static {}

/// One GGML block format: `BLOCK_SIZE` values stored in `size_of::<Self>()`
/// bytes (the block struct mirrors ggml's `block_*` layout field by field).
///
/// Methods work on whole slices of blocks. They never panic on mismatched
/// lengths; the callers in [`super::dispatch`] check lengths first and the
/// methods only process as many blocks as both sides have.
pub trait BlockFormat: PlainBytes {
    /// The ggml type id of this format.
    const TYPE: GgmlType;
    /// Values per block.
    const BLOCK_SIZE: usize;
    /// The activation format a weight row of this type is dotted against.
    type Dot: BlockFormat;

    /// Expand `blocks` into `out` (`BLOCK_SIZE` values per block), with the
    /// arithmetic of ggml's `dequantize_row_*` / `to_float`.
    fn dequantize(blocks: &[Self], out: &mut [f32]);

    /// Quantize `src` into `blocks` the way ggml's CPU backend quantizes a row
    /// (`type_traits_cpu[..].from_float`, x86-64 with AVX2 build). Formats that
    /// ggml only quantizes offline return an error.
    fn quantize(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        let _ = (src, blocks);
        Err(Error::invalid(
            "ty",
            format!("quantizing to {} is not supported", Self::TYPE),
        ))
    }

    /// Quantize the way `ggml_quantize_chunk` does without an importance
    /// matrix (the `quantize_row_*_ref` functions used to write model files).
    /// Differs from [`BlockFormat::quantize`] only for Q8_0 and Q8_1.
    fn quantize_reference(src: &[f32], blocks: &mut [Self]) -> Result<()> {
        Self::quantize(src, blocks)
    }

    /// Dot product of a weight row with an activation row of the same length
    /// (in values). Integer sums per block; the float part is combined in the
    /// order of ggml's AVX2 kernel for the type, so the result is the same
    /// bits on every machine and for every way of splitting rows over threads.
    fn vec_dot(w: &[Self], a: &[Self::Dot]) -> f32;
}

/// View `bytes` as blocks. `None` if the length is not a whole number of blocks.
pub fn cast_blocks<B: PlainBytes>(bytes: &[u8]) -> Option<&[B]> {
    const { assert!(std::mem::align_of::<B>() == 1 && std::mem::size_of::<B>() > 0) };
    let size = std::mem::size_of::<B>();
    if bytes.len() % size != 0 {
        return None;
    }
    // SAFETY: `B: PlainBytes` has alignment 1, no padding and no invalid bit
    // patterns, and the slice covers exactly `len / size` whole blocks of
    // initialized bytes borrowed for the same lifetime.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) })
}

/// Mutable version of [`cast_blocks`].
pub fn cast_blocks_mut<B: PlainBytes>(bytes: &mut [u8]) -> Option<&mut [B]> {
    const { assert!(std::mem::align_of::<B>() == 1 && std::mem::size_of::<B>() > 0) };
    let size = std::mem::size_of::<B>();
    if bytes.len() % size != 0 {
        return None;
    }
    // SAFETY: as in `cast_blocks`; the exclusive borrow of `bytes` moves to
    // the returned slice, and every bit pattern written through it is a valid
    // byte sequence.
    Some(unsafe {
        std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / size)
    })
}

/// View blocks as their bytes.
pub fn blocks_as_bytes<B: PlainBytes>(blocks: &[B]) -> &[u8] {
    // SAFETY: `B` has no padding, so all `size_of_val(blocks)` bytes are
    // initialized; alignment 1 is always satisfied for `u8`.
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks))
    }
}

/// An IEEE half stored little-endian, as in every ggml block.
#[inline]
pub fn f16_le(bytes: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(bytes).to_f32()
}

/// f32 -> IEEE half, round to nearest even (ggml's `GGML_FP32_TO_FP16` and
/// F16C's `vcvtps2ph` agree on every non-NaN input).
#[inline]
pub fn to_f16_le(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

/// ggml's `nearest_int`: add 1.5·2^23 and read the low mantissa bits, which
/// rounds half to even for |x| < 2^22 (the only range ggml uses it in).
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// AVX's `round(nearest)` + `cvtps2dq` + saturating packs to i8, as in the x86
/// activation quantizers: ties to even; NaN and out-of-range give -128 (the
/// "integer indefinite" value saturated).
#[inline]
pub fn round_even_i8(x: f32) -> i8 {
    let r = x.round_ties_even();
    if r.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&r) {
        return i8::MIN;
    }
    (r as i32).clamp(-128, 127) as i8
}

/// Eight f32 accumulator lanes combined as ggml's AVX2 kernels do: each block
/// adds `scale · lane` with one rounding (FMA), and `sum` reduces the lanes
/// pairwise like `hsum_float_8` (upper half onto lower half, then 0+2, 1+3).
#[derive(Clone, Copy, Default)]
pub struct Lanes8(pub [f32; 8]);

impl Lanes8 {
    #[inline]
    pub fn fma(&mut self, scale: f32, ints: &[i32; 8]) {
        for (acc, &v) in self.0.iter_mut().zip(ints) {
            *acc = scale.mul_add(v as f32, *acc);
        }
    }

    #[inline]
    pub fn sum(&self) -> f32 {
        let a = &self.0;
        let r = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
        sum4(&r)
    }
}

/// `_mm_movehl_ps` + `_mm_add_ps`, then `_mm_movehdup_ps` + `_mm_add_ss`.
#[inline]
pub fn sum4(r: &[f32; 4]) -> f32 {
    (r[0] + r[2]) + (r[1] + r[3])
}

/// Integer dot product of 32 weight values with 32 activation values, split
/// into the eight lanes of `maddubs`/`madd` (lane `l` holds elements
/// `4l..4l+4`).
#[inline]
pub fn lanes_32(x: &[i32; 32], y: &[i8; 32]) -> [i32; 8] {
    let mut out = [0i32; 8];
    for (l, o) in out.iter_mut().enumerate() {
        *o = (0..4).map(|k| x[4 * l + k] * y[4 * l + k] as i32).sum();
    }
    out
}
