//! AVX-512 VNNI tile kernels (see `tile.rs`): Q4_0, Q4_1, Q5_0, Q5_1 and
//! Q8_0 (against Q8_0/Q8_1), Q4_K and Q6_K (against Q8_K).
//!
//! # Layout
//! A tile is 4 weight rows × `T` ≤ 4 tokens: 16 (row, token) pairs, each
//! with its own 256-bit accumulator holding the reference's eight lanes.
//! Per 32 values and pair the work is the integer dot into the eight i32
//! lanes — one `vpdpbusd` (32-value formats), or `vpmaddubsw` + `vpdpwssd`
//! with the chunk's scales (K-quants) — and, per block, one conversion and
//! one FMA whose scale `dx·dy` is broadcast from memory (an embedded
//! broadcast operand: no shuffle). Everything else is done once for many
//! pairs, in the steps of [`TileKernel`]:
//! - `pack`, once per four rows and call: the quants unpacked to unsigned
//!   bytes in element order, the scales converted to f32 (and for the
//!   K-quants, the sub-block scales laid out for `vpdpwssd`);
//! - `prepare`, once per group of tokens: their scales as f32, the 32-value
//!   formats' offset corrections, the K-quants' group sums;
//! - `scales`, per tile, for all of a group's tiles before they run: the 16
//!   products `dx·dy` of each block in one multiply (and Q4_K's minimum
//!   terms, a separate accumulator), stored for the FMAs to broadcast;
//! - `tile`: the dot products and FMAs, then the 16 `hsum8`s transposed
//!   (four rows of two tokens per step).
//!
//! On AMD Zen 4 the integer multiplies and the FMAs share two 256-bit
//! pipes (one cycle per pair and 32-value block at best); the kernels keep
//! the rest (loads, conversions, shuffles) off them, so a Q4_1 block costs
//! about 1.5 cycles per pair (the row kernel: about 3.4). Keeping four rows
//! in the 128-bit lanes of 512-bit registers, with activations broadcast,
//! was slower: the broadcasts and per-lane scale shuffles crowd the other
//! pipes.
//!
//! # Why the results are the reference's bits
//! Per block and per pair, as in the reference ([`crate::quant`]) and the
//! row kernels (`x86.rs`):
//! - `lane[l]` is the exact integer sum of its four values' products:
//!   32-value formats: `vpdpbusd` of the unsigned weight quants (`q`, or for
//!   Q8_0 `q + 128` as `q ^ 0x80`) with the signed activations, on top of
//!   the exact correction `−k·Σy` of those four activations, where `k` is
//!   the format's offset (8 for Q4_0, 16 for Q5_0, 128 for Q8_0, 0 with a
//!   minimum): `Σ q·y − k·Σy = Σ (q − k)·y`; `vpdpbusd` does not saturate
//!   and no sum exceeds 4·255·128. K-quants: see the section below.
//! - `d = dx·dy`, one single-rounded product (F16C conversion is exact);
//! - `acc[l] = fma(lane[l], d, acc[l])`, one fused multiply-add per block
//!   per lane, in block order;
//! - Q4_1/Q5_1: `summs = fma(m, s, summs)` per block;
//! - at the end `hsum8(acc)` (`(v0 + v2) + (v1 + v3)` of `v[i] = acc[4 +
//!   i] + acc[i]`), then `+ summs` (or Q4_K's minimum term).
//!
//! Rows that do not fill a tile go through the row kernels of `x86.rs`.

// Index loops rather than iterator adapters, which the compiler may leave
// uninlined (see `TileKernel`).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::tile::{tiles, Dot, Scratch, TileFn, TileKernel, MAX_TOKENS};
use super::x86::{add_fifth_bit, load32, nibbles, Act32, Q32, Q4K, Q6K, Q8_0};
use super::Kernel;
use crate::quant::{
    BlockFormat, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K,
    BlockQ8_0, GgmlType,
};

/// # Safety
/// The CPU has AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tiles_avx512vnni<K: TileKernel>(w: &[u8], a: &[u8], n: usize, out: &mut [f32]) {
    tiles::<K>(w, a, n, out)
}

/// The AVX-512 VNNI tile kernel for `ty`, if there is one.
pub(super) fn avx512vnni(ty: GgmlType) -> Option<TileFn> {
    Some(match ty {
        GgmlType::Q4_0 => tiles_avx512vnni::<Tile32<BlockQ4_0>> as TileFn,
        GgmlType::Q4_1 => tiles_avx512vnni::<Tile32<BlockQ4_1>>,
        GgmlType::Q5_0 => tiles_avx512vnni::<Tile32<BlockQ5_0>>,
        GgmlType::Q5_1 => tiles_avx512vnni::<Tile32<BlockQ5_1>>,
        GgmlType::Q8_0 => tiles_avx512vnni::<Tile32<BlockQ8_0>>,
        GgmlType::Q4_K => tiles_avx512vnni::<TileQ4K>,
        GgmlType::Q6_K => tiles_avx512vnni::<TileQ6K>,
        _ => return None,
    })
}

/// The first four bytes of a block (f16 `d` and, where there is one, f16
/// `m` or `s`; otherwise two bytes that are never used) as an i32.
#[inline(always)]
fn head<B>(b: &B) -> i32 {
    const { assert!(std::mem::size_of::<B>() >= 4) };
    // SAFETY: the block has at least four bytes (checked at compile time),
    // all plain data, read unaligned.
    unsafe { std::ptr::read_unaligned((b as *const B).cast::<i32>()) }
}

/// The f16 pairs `[a0, b0, a1, b1, a2, b2, a3, b3]` of four block heads as
/// f32 `[a0, a1, a2, a3, b0, b1, b2, b3]`.
#[inline(always)]
unsafe fn heads4(h: [i32; 4]) -> __m256 {
    let v = _mm256_cvtph_ps(_mm_setr_epi32(h[0], h[1], h[2], h[3]));
    _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7))
}

/// `[hsum8(a[0]), .., hsum8(a[3]) | hsum8(b[0]), .., hsum8(b[3])]`, each
/// as `x86.rs`'s `hsum8` computes it: `v[i] = x[4 + i] + x[i]`, then
/// `(v0 + v2) + (v1 + v3)`, with the four accumulators' `v` transposed into
/// lanes so that each step serves all of them.
#[inline(always)]
unsafe fn hsum8_4x2(a: [__m256; 4], b: [__m256; 4]) -> __m256 {
    let (v0, v1, v2, v3) = (
        halves_sum(a[0], b[0]),
        halves_sum(a[1], b[1]),
        halves_sum(a[2], b[2]),
        halves_sum(a[3], b[3]),
    );
    // Per lane: [v0_0 + v0_2, v1_0 + v1_2, v0_1 + v0_3, v1_1 + v1_3].
    let u01 = _mm256_add_ps(_mm256_unpacklo_ps(v0, v1), _mm256_unpackhi_ps(v0, v1));
    let u23 = _mm256_add_ps(_mm256_unpacklo_ps(v2, v3), _mm256_unpackhi_ps(v2, v3));
    _mm256_add_ps(
        _mm256_shuffle_ps::<0b01_00_01_00>(u01, u23),
        _mm256_shuffle_ps::<0b11_10_11_10>(u01, u23),
    )
}

/// `[x.hi + x.lo | y.hi + y.lo]` (`v` of `hsum8` for two accumulators).
#[inline(always)]
unsafe fn halves_sum(x: __m256, y: __m256) -> __m256 {
    _mm256_add_ps(
        _mm256_permute2f128_ps::<0x31>(x, y),
        _mm256_permute2f128_ps::<0x20>(x, y),
    )
}

// ---------------------------------------------------------------------------
// 32-value formats.

/// A 32-value weight format with a tile kernel.
pub(super) trait Format32: BlockFormat<Dot: Act32> {
    /// Subtracted from every (unsigned) quant: 8 for Q4_0, 16 for Q5_0,
    /// 128 for Q8_0, 0 for the formats with a minimum.
    const OFFSET: u8;
    /// Whether the block has a minimum `m` (added as `m·s` per block).
    const HAS_MIN: bool;
    /// The row kernel (for rows that do not fill a tile).
    type Row: Kernel<W = Self>;

    /// The 32 quants in element order, unsigned (the offset not applied).
    unsafe fn quants(&self) -> __m256i;
}

impl Format32 for BlockQ4_0 {
    const OFFSET: u8 = 8;
    const HAS_MIN: bool = false;
    type Row = Q32<BlockQ4_0, true>;

    #[inline(always)]
    unsafe fn quants(&self) -> __m256i {
        nibbles(&self.qs)
    }
}

impl Format32 for BlockQ4_1 {
    const OFFSET: u8 = 0;
    const HAS_MIN: bool = true;
    type Row = Q32<BlockQ4_1, true>;

    #[inline(always)]
    unsafe fn quants(&self) -> __m256i {
        nibbles(&self.qs)
    }
}

impl Format32 for BlockQ5_0 {
    const OFFSET: u8 = 16;
    const HAS_MIN: bool = false;
    type Row = Q32<BlockQ5_0, true>;

    #[inline(always)]
    unsafe fn quants(&self) -> __m256i {
        add_fifth_bit::<true>(nibbles(&self.qs), u32::from_le_bytes(self.qh))
    }
}

impl Format32 for BlockQ5_1 {
    const OFFSET: u8 = 0;
    const HAS_MIN: bool = true;
    type Row = Q32<BlockQ5_1, true>;

    #[inline(always)]
    unsafe fn quants(&self) -> __m256i {
        add_fifth_bit::<true>(nibbles(&self.qs), u32::from_le_bytes(self.qh))
    }
}

impl Format32 for BlockQ8_0 {
    const OFFSET: u8 = 128;
    const HAS_MIN: bool = false;
    type Row = Q8_0<true>;

    /// `q + 128` as `q ^ 0x80`.
    #[inline(always)]
    unsafe fn quants(&self) -> __m256i {
        _mm256_xor_si256(load32(&self.qs), _mm256_set1_epi8(-128))
    }
}

/// The tile kernel of a [`Format32`].
pub(super) struct Tile32<B>(std::marker::PhantomData<B>);

/// A block of four rows, packed: unsigned quants and `[dx0..4, mx0..4]`.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
pub(super) struct Pack32 {
    q: [[u8; 32]; 4],
    s: [f32; 8],
}

// SAFETY: u8 and f32 arrays (any bit pattern), alignment 32.
unsafe impl Scratch for Pack32 {}

/// A block of up to four tokens, prepared: the corrections `−k·Σy` per lane
/// (formats with an offset only) and `[dy0..4, sy0..4]`.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
pub(super) struct Prep32 {
    c: [[i32; 8]; MAX_TOKENS],
    s: [f32; 8],
}

// SAFETY: i32 and f32 arrays (any bit pattern), alignment 32.
unsafe impl Scratch for Prep32 {}

/// A block of a tile: `d[4r + t]`, `dx·dy` of pair (row r, token t).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Scales32 {
    d: [f32; 16],
}

// SAFETY: f32 arrays (any bit pattern), alignment 64.
unsafe impl Scratch for Scales32 {}

/// Lane `i` of a tile's scale registers: row `i / 4` (from `[dx0..4,
/// mx0..4]`), token `i % 4`.
const IDX_DX: [i32; 16] = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3];
const IDX_MX: [i32; 16] = [4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7];

impl<B: Format32> TileKernel for Tile32<B> {
    type W = B;
    type Pack = Pack32;
    type Prep = Prep32;
    type Scales = Scales32;

    #[inline(always)]
    unsafe fn one(w: &[B], a: &[Dot<B>]) -> f32 {
        B::Row::one(w, a)
    }

    #[inline(always)]
    unsafe fn pack(w: [&[B]; 4], pack: &mut [Pack32]) {
        let nb = pack.len();
        assert!(w[0].len() == nb && w[1].len() == nb && w[2].len() == nb && w[3].len() == nb);
        for b in 0..nb {
            let x = [&w[0][b], &w[1][b], &w[2][b], &w[3][b]];
            let p = &mut pack[b];
            for r in 0..4 {
                _mm256_store_si256(p.q[r].as_mut_ptr().cast(), x[r].quants());
            }
            let h = [head(x[0]), head(x[1]), head(x[2]), head(x[3])];
            _mm256_store_ps(p.s.as_mut_ptr(), heads4(h));
        }
    }

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: &[Dot<B>], prep: &mut [Prep32]) {
        const { assert!(T >= 1 && T <= MAX_TOKENS) };
        let nb = prep.len();
        assert_eq!(a.len(), T * nb);
        let k = _mm256_set1_epi8(B::OFFSET as i8);
        for b in 0..nb {
            let p = &mut prep[b];
            let y = |t: usize| tok::<_, T>(a, nb, t, b);
            let h = [head(y(0)), head(y(1)), head(y(2)), head(y(3))];
            _mm256_store_ps(p.s.as_mut_ptr(), heads4(h));
            if B::OFFSET != 0 {
                for t in 0..T {
                    let z = _mm256_setzero_si256();
                    let ky = _mm256_dpbusd_epi32(z, k, load32(y(t).qs()));
                    _mm256_store_si256(p.c[t].as_mut_ptr().cast(), _mm256_sub_epi32(z, ky));
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn scales<const T: usize>(pack: &[Pack32], prep: &[Prep32], scales: &mut [Scales32]) {
        let nb = pack.len();
        assert!(prep.len() == nb && scales.len() == nb + 1);
        let idx_dx = _mm512_loadu_si512(IDX_DX.as_ptr().cast());
        for b in 0..nb {
            let xs = _mm512_castps256_ps512(_mm256_load_ps(pack[b].s.as_ptr()));
            let dy = _mm512_broadcast_f32x4(_mm_load_ps(prep[b].s.as_ptr()));
            let dv = _mm512_mul_ps(_mm512_permutexvar_ps(idx_dx, xs), dy);
            _mm512_store_ps(scales[b].d.as_mut_ptr(), dv);
        }
    }

    #[inline(always)]
    unsafe fn tile<const T: usize>(
        pack: &[Pack32],
        a: &[Dot<B>],
        prep: &[Prep32],
        scales: &[Scales32],
    ) -> [[f32; 4]; T] {
        const { assert!(T >= 1 && T <= MAX_TOKENS) };
        let nb = pack.len();
        assert!(a.len() == T * nb && prep.len() == nb && scales.len() == nb + 1);
        // The compiler could otherwise take the scales from the registers
        // of `scales` (inlined beside it), with one shuffle per pair and
        // block, costlier than the FMA; from memory they are broadcast
        // operands of the FMAs.
        // SAFETY: an empty asm statement.
        unsafe {
            std::arch::asm!("/* {0} */", in(reg) scales.as_ptr(), options(nostack, preserves_flags))
        };
        let idx_mx = _mm512_loadu_si512(IDX_MX.as_ptr().cast());
        let mut acc = [[_mm256_setzero_ps(); T]; 4];
        let mut summs = _mm512_setzero_ps(); // pair (r, t) in lane 4r + t
        for b in 0..nb {
            // SAFETY: b < nb, the length of `pack` and `prep`, and less than
            // that of `scales` (asserted).
            let (p, q, s) = unsafe {
                (
                    pack.get_unchecked(b),
                    prep.get_unchecked(b),
                    scales.get_unchecked(b),
                )
            };
            if B::HAS_MIN {
                let xs = _mm512_castps256_ps512(_mm256_load_ps(p.s.as_ptr()));
                let mx = _mm512_permutexvar_ps(idx_mx, xs);
                let sy = _mm512_broadcast_f32x4(_mm_load_ps(q.s[4..].as_ptr()));
                summs = _mm512_fmadd_ps(mx, sy, summs);
            }
            let xq = [
                _mm256_load_si256(p.q[0].as_ptr().cast()),
                _mm256_load_si256(p.q[1].as_ptr().cast()),
                _mm256_load_si256(p.q[2].as_ptr().cast()),
                _mm256_load_si256(p.q[3].as_ptr().cast()),
            ];
            for t in 0..T {
                let c = if B::OFFSET != 0 {
                    _mm256_load_si256(q.c[t].as_ptr().cast())
                } else {
                    _mm256_setzero_si256()
                };
                // SAFETY: t < T and b < nb, `a` holds T·nb blocks (asserted).
                let yq = load32(unsafe { a.get_unchecked(t * nb + b) }.qs());
                for r in 0..4 {
                    let l = _mm256_dpbusd_epi32(c, xq[r], yq);
                    let dt = _mm256_set1_ps(s.d[4 * r + t]);
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(l), dt, acc[r][t]);
                }
            }
        }
        let extra = if B::HAS_MIN {
            // `summs` in the layout `finish` adds: pair (r, t) at 4t + r.
            let mut sm = [0f32; 16];
            _mm512_storeu_ps(
                sm.as_mut_ptr(),
                _mm512_permutexvar_ps(_mm512_loadu_si512(TRANSPOSE4.as_ptr().cast()), summs),
            );
            Some(sm)
        } else {
            None
        };
        finish(acc, extra.as_ref())
    }
}

/// Lane `4t + r` of the result: lane `4r + t` of the source (a 4×4
/// transpose).
const TRANSPOSE4: [i32; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

// ---------------------------------------------------------------------------
// K-quants against Q8_K.
//
// Per 32-value chunk `j` of a block and per pair, `vpmaddubsw` of the
// unsigned quants (< 64) with the activations (pairs of products, at most
// 2·63·128 in magnitude: exact in i16) and `vpdpwssd` of those with the
// chunk's i16 scales (the scale of lanes 0..4 in words 0..8, of lanes 4..8
// in words 8..16) add `scale · Σ q·y` of each lane's four values into the
// pair's eight i32 lanes, exactly, as `add_chunk` of the reference. Then,
// per block, one FMA of the lanes with `d = dy·dx`. The rest as in each
// format's reference: Q4_K's minimum terms go through their own four-lane
// accumulator (computed by [`TileKernel::scales`], off the tile's critical
// path) and are added after `hsum8`; Q6_K's offset of −32 is folded into
// the lanes' starting values, `−32·(bs[2l]·sc[2l] + bs[2l+1]·sc[2l+1])`.

/// The tokens of a group, prepared: `dy`, and the group sums the formats
/// need (`q8s`: per 32 values, for Q4_K; `bs`: per 16, for Q6_K).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct PrepK {
    q8s: [[i16; 8]; MAX_TOKENS],
    bs: [[i16; 16]; MAX_TOKENS],
    dy: [f32; 4],
}

// SAFETY: i16 and f32 arrays (any bit pattern), alignment 64.
unsafe impl Scratch for PrepK {}

/// `d[4r + t]`: `dx·dy` of pair (row r, token t) of a block of a tile; in
/// the extra entry, Q4_K's minimum term of pair (r, t) at `4t + r`.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct ScalesK {
    d: [f32; 16],
}

// SAFETY: an f32 array (any bit pattern), alignment 64.
unsafe impl Scratch for ScalesK {}

/// Four rows' block of Q4_K, packed: quants by 32-value chunk, each chunk's
/// scale twice in an i32 (for `vpdpwssd`'s broadcast operand), the mins,
/// and the f32 `d` and `dmin` of each row.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct PackQ4K {
    q: [[[u8; 32]; 8]; 4],
    sc: [[u32; 8]; 4],
    mins: [[i16; 8]; 4],
    dx: [f32; 4],
    dmin: [f32; 4],
}

// SAFETY: integer and f32 arrays (any bit pattern), alignment 64.
unsafe impl Scratch for PackQ4K {}

/// Four rows' block of Q6_K, packed: quants (6 bits) by 32-value chunk,
/// each chunk's i16 scale vector, the 16 scales times −32, and `d`.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct PackQ6K {
    q: [[[u8; 32]; 8]; 4],
    sc: [[[i16; 16]; 8]; 4],
    scn: [[i16; 16]; 4],
    dx: [f32; 4],
}

// SAFETY: integer and f32 arrays (any bit pattern), alignment 64.
unsafe impl Scratch for PackQ6K {}

/// The tile kernel of Q4_K.
pub(super) struct TileQ4K;

/// The tile kernel of Q6_K.
pub(super) struct TileQ6K;

/// Scale and min of sub-block `j` of a K-quant's 12 packed scale bytes
/// (ggml's `get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Token `t`'s block `b` (the last token's for `t >= T`) of a group's
/// tokens `a`, `nb` blocks each.
#[inline(always)]
fn tok<B, const T: usize>(a: &[B], nb: usize, t: usize, b: usize) -> &B {
    &a[t.min(T - 1) * nb + b]
}

/// `[dy0, dy1, dy2, dy3]` of block `b` of a group's tokens (the last
/// repeated).
#[inline(always)]
fn dy4<const T: usize>(a: &[BlockQ8K], nb: usize, b: usize) -> [f32; 4] {
    let dy = |t: usize| f32::from_le_bytes(tok::<_, T>(a, nb, t, b).d);
    [dy(0), dy(1), dy(2), dy(3)]
}

/// `dx·dy` of the 16 pairs (pair (r, t) at `4r + t`) from `[dx0..4]` and
/// `[dy0..4]`.
#[inline(always)]
unsafe fn outer4(dx: &[f32; 4], dy: &[f32; 4]) -> __m512 {
    let idx = _mm512_loadu_si512(IDX_DX.as_ptr().cast());
    let dx = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_loadu_ps(dx.as_ptr())));
    _mm512_mul_ps(dx, _mm512_broadcast_f32x4(_mm_loadu_ps(dy.as_ptr())))
}

/// A packed block of four K-quant rows, as the dot products use it.
trait KPack {
    /// The unsigned quants of row `r`'s 32-value chunk `j`.
    unsafe fn q(&self, r: usize, j: usize) -> __m256i;
    /// `acc + vpdpwssd(pairs, scales of row r's chunk j)`.
    unsafe fn dot_scale(&self, r: usize, j: usize, acc: __m256i, pairs: __m256i) -> __m256i;
    /// The lanes' starting values for pair (r, t).
    unsafe fn init(&self, prep: &PrepK, r: usize, t: usize) -> __m256i;
}

impl KPack for PackQ4K {
    #[inline(always)]
    unsafe fn q(&self, r: usize, j: usize) -> __m256i {
        _mm256_load_si256(self.q[r][j].as_ptr().cast())
    }

    #[inline(always)]
    unsafe fn dot_scale(&self, r: usize, j: usize, acc: __m256i, pairs: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, pairs, _mm256_set1_epi32(self.sc[r][j] as i32))
    }

    #[inline(always)]
    unsafe fn init(&self, _: &PrepK, _: usize, _: usize) -> __m256i {
        _mm256_setzero_si256()
    }
}

impl KPack for PackQ6K {
    #[inline(always)]
    unsafe fn q(&self, r: usize, j: usize) -> __m256i {
        _mm256_load_si256(self.q[r][j].as_ptr().cast())
    }

    #[inline(always)]
    unsafe fn dot_scale(&self, r: usize, j: usize, acc: __m256i, pairs: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, pairs, _mm256_load_si256(self.sc[r][j].as_ptr().cast()))
    }

    /// `−32·(bs[2l]·sc[2l] + bs[2l + 1]·sc[2l + 1])` per lane.
    #[inline(always)]
    unsafe fn init(&self, prep: &PrepK, r: usize, t: usize) -> __m256i {
        _mm256_madd_epi16(
            _mm256_load_si256(prep.bs[t].as_ptr().cast()),
            _mm256_load_si256(self.scn[r].as_ptr().cast()),
        )
    }
}

/// The dot products of a K-quant tile (tokens as in
/// [`TileKernel::prepare`]): per pair and block, the lanes start from
/// `init`, take chunk by chunk `dot_scale(maddubs(q, y))`, then one FMA
/// with the block's `d`. Returns the accumulators `[r][t]`.
#[inline(always)]
unsafe fn k_dots<P: KPack, const T: usize>(
    pack: &[P],
    a: &[BlockQ8K],
    prep: &[PrepK],
    scales: &[ScalesK],
) -> [[__m256; T]; 4] {
    let nb = pack.len();
    assert!(a.len() == T * nb && prep.len() == nb && scales.len() == nb + 1);
    // The scales are read from memory as broadcast operands of the FMAs
    // (see `Tile32`).
    // SAFETY: an empty asm statement.
    unsafe {
        std::arch::asm!("/* {0} */", in(reg) scales.as_ptr(), options(nostack, preserves_flags))
    };
    let mut acc = [[_mm256_setzero_ps(); T]; 4];
    for b in 0..nb {
        // One row at a time, written out: as a loop the compiler keeps the
        // accumulators in memory.
        let [a0, a1, a2, a3] = &mut acc;
        k_row(pack, a, prep, scales, b, 0, a0);
        k_row(pack, a, prep, scales, b, 1, a1);
        k_row(pack, a, prep, scales, b, 2, a2);
        k_row(pack, a, prep, scales, b, 3, a3);
    }
    acc
}

/// Row `r` of block `b` of a K-quant tile (see [`k_dots`], which checks
/// the sizes). Each row reloads the activations (the empty asm statement),
/// which the compiler would otherwise keep for all four rows, spilling
/// them.
#[inline(always)]
unsafe fn k_row<P: KPack, const T: usize>(
    pack: &[P],
    a: &[BlockQ8K],
    prep: &[PrepK],
    scales: &[ScalesK],
    b: usize,
    r: usize,
    acc: &mut [__m256; T],
) {
    let nb = pack.len();
    // SAFETY: an empty asm statement.
    unsafe { std::arch::asm!("", options(nostack, preserves_flags)) };
    // SAFETY: b < nb, the length of `pack` and `prep`, and less than that
    // of `scales` (asserted by `k_dots`).
    let (p, pr, s) = unsafe {
        (
            pack.get_unchecked(b),
            prep.get_unchecked(b),
            scales.get_unchecked(b),
        )
    };
    let qv = [
        p.q(r, 0),
        p.q(r, 1),
        p.q(r, 2),
        p.q(r, 3),
        p.q(r, 4),
        p.q(r, 5),
        p.q(r, 6),
        p.q(r, 7),
    ];
    for t in 0..T {
        // SAFETY: t < T and b < nb, `a` holds T·nb blocks (asserted by
        // `k_dots`).
        let y = unsafe { a.get_unchecked(t * nb + b) };
        let mut lanes = p.init(pr, r, t);
        for j in 0..8 {
            let yj = _mm256_loadu_si256(y.qs[32 * j..].as_ptr().cast());
            lanes = p.dot_scale(r, j, lanes, _mm256_maddubs_epi16(qv[j], yj));
        }
        let dt = _mm256_set1_ps(s.d[4 * r + t]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), dt, acc[t]);
    }
}

/// `hsum8` of every pair plus `extra[4t + r]` if given, as `out[t][r]`.
#[inline(always)]
unsafe fn finish<const T: usize>(
    acc: [[__m256; T]; 4],
    extra: Option<&[f32; 16]>,
) -> [[f32; 4]; T] {
    let mut out = [[0f32; 4]; T];
    let mut t = 0;
    while t < T {
        let t1 = (t + 1).min(T - 1);
        let mut res = hsum8_4x2(
            [acc[0][t], acc[1][t], acc[2][t], acc[3][t]],
            [acc[0][t1], acc[1][t1], acc[2][t1], acc[3][t1]],
        );
        if let Some(e) = extra {
            let lo = _mm_loadu_ps(e[4 * t..].as_ptr());
            let hi = _mm_loadu_ps(e[4 * t1..].as_ptr());
            res = _mm256_add_ps(res, _mm256_set_m128(hi, lo));
        }
        let mut f = [0f32; 8];
        _mm256_storeu_ps(f.as_mut_ptr(), res);
        out[t].copy_from_slice(&f[..4]);
        if t + 1 < T {
            out[t + 1].copy_from_slice(&f[4..]);
        }
        t += 2;
    }
    out
}

impl TileKernel for TileQ4K {
    type W = BlockQ4K;
    type Pack = PackQ4K;
    type Prep = PrepK;
    type Scales = ScalesK;

    #[inline(always)]
    unsafe fn one(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
        Q4K::<true>::one(w, a)
    }

    #[inline(always)]
    unsafe fn pack(w: [&[BlockQ4K]; 4], pack: &mut [PackQ4K]) {
        let nb = pack.len();
        assert!(w.iter().all(|r| r.len() == nb));
        let m4 = _mm256_set1_epi8(0x0f);
        for (b, p) in pack.iter_mut().enumerate() {
            for (r, w) in w.iter().enumerate() {
                // SAFETY: b < nb, the length of every row (asserted).
                let x = unsafe { w.get_unchecked(b) };
                for i in 0..4 {
                    let bits = _mm256_loadu_si256(x.qs[32 * i..].as_ptr().cast());
                    let lo = _mm256_and_si256(bits, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                    _mm256_store_si256(p.q[r][2 * i].as_mut_ptr().cast(), lo);
                    _mm256_store_si256(p.q[r][2 * i + 1].as_mut_ptr().cast(), hi);
                }
                for j in 0..8 {
                    let (sc, m) = scale_min_k4(j, &x.scales);
                    p.sc[r][j] = sc as u32 * 0x0001_0001;
                    p.mins[r][j] = m as i16;
                }
                p.dx[r] = half::f16::from_le_bytes(x.d).to_f32();
                p.dmin[r] = half::f16::from_le_bytes(x.dmin).to_f32();
            }
        }
    }

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: &[BlockQ8K], prep: &mut [PrepK]) {
        const { assert!(T >= 1 && T <= MAX_TOKENS) };
        let nb = prep.len();
        assert_eq!(a.len(), T * nb);
        for b in 0..nb {
            let p = &mut prep[b];
            p.dy = dy4::<T>(a, nb, b);
            for t in 0..MAX_TOKENS {
                let y = tok::<_, T>(a, nb, t, b);
                let bs = _mm256_loadu_si256(y.bsums.as_ptr().cast());
                // bs[2i] + bs[2i + 1]: sums of 32 values, within i16.
                let q8s = _mm_hadd_epi16(
                    _mm256_castsi256_si128(bs),
                    _mm256_extracti128_si256::<1>(bs),
                );
                _mm_storeu_si128(p.q8s[t].as_mut_ptr().cast(), q8s);
            }
        }
    }

    /// `d` per block, and each pair's minimum term: per block
    /// `acc_m = fma(dmin, prod, acc_m)` (`dmin = −dy·dmin_x`, `prod[k] =
    /// m[2k]·q8s[2k] + m[2k+1]·q8s[2k+1]`; four pairs of a row in one
    /// register, pair (r, t) in the 128-bit lane t), then `(m0 + m2) + (m1
    /// + m3)`, as the reference's `sum4`.
    #[inline(always)]
    unsafe fn scales<const T: usize>(pack: &[PackQ4K], prep: &[PrepK], scales: &mut [ScalesK]) {
        let nb = pack.len();
        assert!(prep.len() == nb && scales.len() == nb + 1);
        let mut accm = [_mm512_setzero_ps(); 4];
        let sign = _mm512_set1_epi32(i32::MIN);
        for b in 0..nb {
            let (p, q) = (&pack[b], &prep[b]);
            _mm512_store_ps(scales[b].d.as_mut_ptr(), outer4(&p.dx, &q.dy));
            // (−dy)·dmin_x of pair (r, t) at 4r + t (the sign flipped, as
            // the reference's negation).
            let dy = _mm512_broadcast_f32x4(_mm_loadu_ps(q.dy.as_ptr()));
            let ndy = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(dy), sign));
            let idx = _mm512_loadu_si512(IDX_DX.as_ptr().cast());
            let dmin =
                _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_loadu_ps(p.dmin.as_ptr())));
            let dmin = _mm512_mul_ps(ndy, dmin);
            let q8s = _mm512_loadu_si512(q.q8s.as_ptr().cast());
            for (r, am) in accm.iter_mut().enumerate() {
                let mins = _mm512_broadcast_i32x4(_mm_loadu_si128(p.mins[r].as_ptr().cast()));
                let prod = _mm512_madd_epi16(mins, q8s);
                // Lane 4t + k: dmin of pair (r, t).
                let i = 4 * r as i32;
                let sel = _mm512_setr_epi32(
                    i,
                    i,
                    i,
                    i,
                    i + 1,
                    i + 1,
                    i + 1,
                    i + 1,
                    i + 2,
                    i + 2,
                    i + 2,
                    i + 2,
                    i + 3,
                    i + 3,
                    i + 3,
                    i + 3,
                );
                *am = _mm512_fmadd_ps(
                    _mm512_permutexvar_ps(sel, dmin),
                    _mm512_cvtepi32_ps(prod),
                    *am,
                );
            }
        }
        let mut m = [[0f32; 16]; 4];
        for (r, am) in accm.iter().enumerate() {
            let u = _mm512_add_ps(*am, _mm512_permute_ps::<0b01_00_11_10>(*am));
            let v = _mm512_add_ps(u, _mm512_permute_ps::<0b10_11_00_01>(u));
            _mm512_storeu_ps(m[r].as_mut_ptr(), v);
        }
        let extra = &mut scales[nb].d;
        for t in 0..4 {
            for r in 0..4 {
                extra[4 * t + r] = m[r][4 * t];
            }
        }
    }

    #[inline(always)]
    unsafe fn tile<const T: usize>(
        pack: &[PackQ4K],
        a: &[BlockQ8K],
        prep: &[PrepK],
        scales: &[ScalesK],
    ) -> [[f32; 4]; T] {
        const { assert!(T >= 1 && T <= MAX_TOKENS) };
        let acc = k_dots::<_, T>(pack, a, prep, scales);
        finish(acc, Some(&scales[pack.len()].d))
    }
}

impl TileKernel for TileQ6K {
    type W = BlockQ6K;
    type Pack = PackQ6K;
    type Prep = PrepK;
    type Scales = ScalesK;

    #[inline(always)]
    unsafe fn one(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
        Q6K::<true>::one(w, a)
    }

    #[inline(always)]
    unsafe fn pack(w: [&[BlockQ6K]; 4], pack: &mut [PackQ6K]) {
        let nb = pack.len();
        assert!(w.iter().all(|r| r.len() == nb));
        let m4 = _mm256_set1_epi8(0x0f);
        let m2 = _mm256_set1_epi8(3);
        for (b, p) in pack.iter_mut().enumerate() {
            for (r, w) in w.iter().enumerate() {
                // SAFETY: b < nb, the length of every row (asserted).
                let x = unsafe { w.get_unchecked(b) };
                for half in 0..2 {
                    let ql1 = _mm256_loadu_si256(x.ql[64 * half..].as_ptr().cast());
                    let ql2 = _mm256_loadu_si256(x.ql[64 * half + 32..].as_ptr().cast());
                    let qh = _mm256_loadu_si256(x.qh[32 * half..].as_ptr().cast());
                    let high = |h: __m256i| _mm256_slli_epi16::<4>(_mm256_and_si256(h, m2));
                    let q = [
                        _mm256_or_si256(_mm256_and_si256(ql1, m4), high(qh)),
                        _mm256_or_si256(
                            _mm256_and_si256(ql2, m4),
                            high(_mm256_srli_epi16::<2>(qh)),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                            high(_mm256_srli_epi16::<4>(qh)),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql2), m4),
                            high(_mm256_srli_epi16::<6>(qh)),
                        ),
                    ];
                    for (k, q) in q.into_iter().enumerate() {
                        _mm256_store_si256(p.q[r][4 * half + k].as_mut_ptr().cast(), q);
                    }
                }
                for (j, sc) in p.sc[r].iter_mut().enumerate() {
                    let (lo, hi) = (x.scales[2 * j] as i16, x.scales[2 * j + 1] as i16);
                    sc[..8].fill(lo);
                    sc[8..].fill(hi);
                }
                for (n, &s) in p.scn[r].iter_mut().zip(&x.scales) {
                    *n = -32 * s as i16;
                }
                p.dx[r] = half::f16::from_le_bytes(x.d).to_f32();
            }
        }
    }

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: &[BlockQ8K], prep: &mut [PrepK]) {
        const { assert!(T >= 1 && T <= MAX_TOKENS) };
        let nb = prep.len();
        assert_eq!(a.len(), T * nb);
        for b in 0..nb {
            let p = &mut prep[b];
            p.dy = dy4::<T>(a, nb, b);
            for t in 0..MAX_TOKENS {
                let y = tok::<_, T>(a, nb, t, b);
                let bs = _mm256_loadu_si256(y.bsums.as_ptr().cast());
                _mm256_storeu_si256(p.bs[t].as_mut_ptr().cast(), bs);
            }
        }
    }

    #[inline(always)]
    unsafe fn scales<const T: usize>(pack: &[PackQ6K], prep: &[PrepK], scales: &mut [ScalesK]) {
        let nb = pack.len();
        assert!(prep.len() == nb && scales.len() == nb + 1);
        for b in 0..nb {
            _mm512_store_ps(scales[b].d.as_mut_ptr(), outer4(&pack[b].dx, &prep[b].dy));
        }
    }

    #[inline(always)]
    unsafe fn tile<const T: usize>(
        pack: &[PackQ6K],
        a: &[BlockQ8K],
        prep: &[PrepK],
        scales: &[ScalesK],
    ) -> [[f32; 4]; T] {
        const { assert!(T >= 1 && T <= MAX_TOKENS) };
        let acc = k_dots::<_, T>(pack, a, prep, scales);
        finish(acc, None)
    }
}
