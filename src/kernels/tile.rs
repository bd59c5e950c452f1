//! Tile kernels: dot products of several weight rows with several
//! activation rows (tokens) at once, for prompt processing.
//!
//! A [`TileDot`] computes `out[t][r] = w[r] · a[t]` for `R` consecutive
//! weight rows and `T` consecutive activation rows (already quantized to
//! the weight type's dot format). Where a level has a tile kernel for the
//! type (`x86_tile.rs`: AVX-512 VNNI for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K
//! and Q6_K), it works on tiles of 4 rows × up to [`MAX_TOKENS`] tokens:
//! the weight rows are unpacked (nibbles, fifth bits, scales) once per
//! call and used for every token, the activations are loaded once per tile
//! and used for all four rows, and the kernel does little per (row, token)
//! pair beyond the integer multiply-adds and one FMA per block. Elsewhere
//! (other types, other levels, `STRATA_FORCE_SCALAR`) it runs the level's
//! row kernel ([`RowDot::dot_rows`]) once per token.
//!
//! Every output has exactly the bits of [`RowDot::dot`] (and so of the
//! scalar reference) for its row and token: the tile kernels do, per
//! (row, token) pair, the reference's arithmetic in the reference's order
//! (see `x86_tile.rs`); `tile_tests.rs` checks this.
//!
//! Measured on AMD Zen 4 (one core, `benches/kernels.rs`, group `tile`):
//! 16 rows × 576 values × 64 tokens, ~2.3× (Q4_1) and ~2.8× (Q8_0) the
//! throughput of the row kernel per token (Q4_0, Q5_0, Q5_1: 2.4–3.3×);
//! Q4_K and Q6_K (16 × 1536 × 64) ~2.2× and ~2.4×.

// The tile machinery is used only by the x86-64 kernels so far.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
// Index loops rather than iterator adapters (see `TileKernel`).
#![allow(clippy::needless_range_loop)]

use super::{allowed_levels, row_dot_for, Isa, RowDot};
use crate::quant::{cast_blocks, BlockFormat, GgmlType};

/// The most tokens one tile holds.
pub const MAX_TOKENS: usize = 4;

/// `out[t][r] = w[r] · a[t]`: weight rows, activation rows, token count,
/// output (`[n_tokens][out.len() / n_tokens]`).
pub(super) type TileFn = unsafe fn(&[u8], &[u8], usize, &mut [f32]);

/// Dot products of weight rows with activation rows, for one weight type.
#[derive(Clone, Copy)]
pub struct TileDot {
    tile: Option<TileFn>,
    row: RowDot,
    /// The level of the kernels (tile kernel if [`TileDot::is_tiled`], row
    /// kernel either way).
    pub isa: Isa,
}

impl std::fmt::Debug for TileDot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_tiled() { "tiles" } else { "rows" };
        write!(f, "TileDot({}, {kind})", self.isa)
    }
}

impl TileDot {
    /// Whether a tile kernel runs (rather than the row kernel per token).
    pub fn is_tiled(&self) -> bool {
        self.tile.is_some()
    }

    /// The row kernel of the same type and level.
    pub fn row_dot(&self) -> RowDot {
        self.row
    }

    /// `out[t * R + r] = w[r] · a[t]`, where `w` holds `R` consecutive
    /// weight rows, `a` holds `n_tokens` consecutive activation rows (each
    /// as long in values as a weight row) and `out` is `[n_tokens][R]`
    /// (`R = out.len() / n_tokens`; the layout of a matmul's output).
    ///
    /// Each result has the bits of [`RowDot::dot`] of its row and token.
    /// On a size mismatch every output is NaN.
    ///
    /// The tile kernels pack the weight rows once per call, then walk the
    /// tokens in groups of up to [`MAX_TOKENS`] and, for each group, all
    /// the rows: callers pass a few dozen rows at a time, so that the
    /// packed rows (about 10 KB per 16 Q4_1 rows of 576 values) stay in the
    /// L1 or L2 cache, and as many tokens as they have.
    pub fn dot_tile(&self, w: &[u8], a: &[u8], n_tokens: usize, out: &mut [f32]) {
        if n_tokens == 0 || !out.len().is_multiple_of(n_tokens) || !a.len().is_multiple_of(n_tokens)
        {
            out.fill(f32::NAN);
            return;
        }
        match self.tile {
            // SAFETY: `tile` was chosen by `tile_dot_for`, which only hands
            // out a kernel after detecting the features it was compiled for
            // on this CPU; the kernels check all sizes themselves.
            Some(f) => unsafe { f(w, a, n_tokens, out) },
            None => {
                let (ar, or) = (a.len() / n_tokens, out.len() / n_tokens);
                for t in 0..n_tokens {
                    let ot = &mut out[t * or..(t + 1) * or];
                    self.row.dot_rows(w, &a[t * ar..(t + 1) * ar], ot);
                }
            }
        }
    }
}

/// The fastest tile kernel for weight type `ty` on this CPU (honouring
/// `STRATA_FORCE_SCALAR` and `STRATA_ISA` like [`super::row_dot`]), or
/// `None` for a type without a dot product. Types without a tile kernel
/// at the chosen level get the level's row kernel, per token.
pub fn tile_dot(ty: GgmlType) -> Option<TileDot> {
    allowed_levels()
        .iter()
        .find_map(|&isa| tile_dot_for(ty, isa))
}

/// The tile kernel for `ty` built for `isa` (or, if the level has none for
/// `ty`, its row kernel per token); `None` if this CPU lacks the level or
/// the level has no kernel at all for `ty`.
pub fn tile_dot_for(ty: GgmlType, isa: Isa) -> Option<TileDot> {
    let row = row_dot_for(ty, isa)?;
    let tile: Option<TileFn> = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => super::x86_tile::avx512vnni(ty),
        _ => None,
    };
    Some(TileDot { tile, row, isa })
}

/// The activation block format of weight format `W`.
pub(super) type Dot<W> = <W as BlockFormat>::Dot;

/// Plain data that the tile kernels keep in scratch memory.
///
/// # Safety
/// Every bit pattern is a valid value, and the alignment is at most 64.
pub(super) unsafe trait Scratch: Copy {}

/// A tile kernel for one weight format, compiled into each level's entry
/// point through [`tiles`].
///
/// The kernel first packs every four weight rows of a call into a form
/// made for the tiles (quants unpacked to bytes, scales to f32:
/// [`TileKernel::Pack`]), and for every group of tokens prepares what all
/// the group's tiles need of the tokens ([`TileKernel::Prep`]); the tiles
/// then only multiply and add.
///
/// The methods are inlined into one function per format and level, so the
/// kernels avoid closures and iterator adapters in their loops: the
/// compiler may leave those uninlined, compiled without the level's
/// features, which costs far more than the loops themselves.
///
/// # Safety
/// All methods require that the CPU supports the features of the level the
/// caller was compiled for; the slices passed hold the same number of
/// blocks (checked by the kernels).
pub(super) trait TileKernel {
    /// The weight block format.
    type W: BlockFormat;

    /// Four weight rows' block, packed.
    type Pack: Scratch;

    /// A group of up to [`MAX_TOKENS`] tokens' block, prepared.
    type Prep: Scratch;

    /// A tile's block: the scales of its (row, token) pairs.
    type Scales: Scratch;

    /// `pack[b]` for block `b` of the four rows `w`, for every block.
    unsafe fn pack(w: [&[Self::W]; 4], pack: &mut [Self::Pack]);

    /// `prep[b]` for block `b` of the `T` ≤ [`MAX_TOKENS`] tokens in `a`
    /// (token `t`'s block `b` at `a[t * nb + b]`), for every block.
    unsafe fn prepare<const T: usize>(a: &[Dot<Self::W>], prep: &mut [Self::Prep]);

    /// `scales[b]` of the tile of the four rows packed in `pack` and the
    /// `T` ≤ [`MAX_TOKENS`] tokens prepared in `prep`, for every block `b`,
    /// and in `scales[nb]` whatever else the tile needs (`scales` is one
    /// longer than `pack`). Computed for all of a group's tiles before the
    /// first of them runs, so that the tiles find them in the cache, long
    /// stored.
    unsafe fn scales<const T: usize>(
        pack: &[Self::Pack],
        prep: &[Self::Prep],
        scales: &mut [Self::Scales],
    );

    /// `out[t][i] = w[i] · a[t]` for the four rows packed in `pack` and
    /// the `T` ≤ [`MAX_TOKENS`] tokens in `a` (as for `prepare`), prepared
    /// in `prep`, with the tile's `scales`; each result has the bits of
    /// [`TileKernel::one`] of its row and token.
    unsafe fn tile<const T: usize>(
        pack: &[Self::Pack],
        a: &[Dot<Self::W>],
        prep: &[Self::Prep],
        scales: &[Self::Scales],
    ) -> [[f32; 4]; T];

    /// `w · a` for one row and one token (the row kernel).
    unsafe fn one(w: &[Self::W], a: &[Dot<Self::W>]) -> f32;
}

/// A cache line of scratch memory.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

thread_local! {
    /// Scratch memory of the tile kernels, reused across calls.
    static SCRATCH: std::cell::Cell<Vec<Line>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The cache lines `n` values of `T` take.
fn lines_for<T>(n: usize) -> usize {
    (n * std::mem::size_of::<T>()).div_ceil(64)
}

/// The first [`lines_for`]`::<T>(n)` lines of `lines` as `n` values of `T`,
/// and the rest.
fn carve<T: Scratch>(lines: &mut [Line], n: usize) -> (&mut [T], &mut [Line]) {
    let (head, rest) = lines.split_at_mut(lines_for::<T>(n));
    // SAFETY: `head` is initialized memory, aligned to 64, of at least
    // `n * size_of::<T>()` bytes, borrowed mutably for the result's
    // lifetime; `T: Scratch` has alignment at most 64 and no invalid bit
    // patterns.
    let vals = unsafe { std::slice::from_raw_parts_mut(head.as_mut_ptr().cast::<T>(), n) };
    (vals, rest)
}

/// Checks the sizes, packs the rows, then runs `K` on groups of up to
/// [`MAX_TOKENS`] tokens: each group is prepared once and goes through the
/// tiles of every four rows; the remaining rows go through the row kernel.
/// Meant to be inlined into a `#[target_feature]` entry point so that the
/// kernel is compiled for that level.
///
/// # Safety
/// The CPU supports the features of the level `K` was written for.
#[inline(always)]
pub(super) unsafe fn tiles<K: TileKernel>(w: &[u8], a: &[u8], n_tokens: usize, out: &mut [f32]) {
    let (Some(wb), Some(ab)) = (cast_blocks::<K::W>(w), cast_blocks::<Dot<K::W>>(a)) else {
        out.fill(f32::NAN);
        return;
    };
    if n_tokens == 0 || !out.len().is_multiple_of(n_tokens) || !ab.len().is_multiple_of(n_tokens) {
        out.fill(f32::NAN);
        return;
    }
    let n_rows = out.len() / n_tokens;
    if n_rows == 0 {
        return;
    }
    let nb = ab.len() / n_tokens;
    if wb.len() != n_rows * nb || K::W::BLOCK_SIZE != Dot::<K::W>::BLOCK_SIZE {
        out.fill(f32::NAN);
        return;
    }
    if nb == 0 {
        // Empty rows: every kernel's (and the reference's) sum is +0.
        out.fill(0.0);
        return;
    }
    let groups = n_rows / 4;
    let mut scratch = SCRATCH.take();
    let need = lines_for::<K::Pack>(groups * nb)
        + lines_for::<K::Prep>(nb)
        + lines_for::<K::Scales>(groups * (nb + 1));
    if scratch.len() < need {
        scratch.resize(need, Line([0; 64]));
    }
    let (packs, rest) = carve::<K::Pack>(&mut scratch, groups * nb);
    let (prep, rest) = carve::<K::Prep>(rest, nb);
    let (scales, _) = carve::<K::Scales>(rest, groups * (nb + 1));
    for g in 0..groups {
        let r = &wb[4 * g * nb..(4 * g + 4) * nb];
        let rows = [&r[..nb], &r[nb..2 * nb], &r[2 * nb..3 * nb], &r[3 * nb..]];
        // SAFETY: four rows of `nb` blocks, `nb` packs; the features are
        // the caller's promise.
        unsafe { K::pack(rows, &mut packs[g * nb..(g + 1) * nb]) };
    }
    let mut t0 = 0;
    while t0 < n_tokens {
        let n = (n_tokens - t0).min(MAX_TOKENS);
        let a = &ab[t0 * nb..(t0 + n) * nb];
        let o = &mut out[t0 * n_rows..(t0 + n) * n_rows];
        // SAFETY: as above.
        unsafe {
            match n {
                1 => group::<K, 1>(wb, packs, a, prep, scales, o),
                2 => group::<K, 2>(wb, packs, a, prep, scales, o),
                3 => group::<K, 3>(wb, packs, a, prep, scales, o),
                _ => group::<K, MAX_TOKENS>(wb, packs, a, prep, scales, o),
            }
        }
        t0 += n;
    }
    SCRATCH.set(scratch);
}

/// All rows (`w`, packed by fours in `packs`) against the `T` tokens of
/// `a` (`prep.len()` blocks each), into `out` (`[T][rows]`); `scales` has
/// room for every tile's scales (`nb + 1` each).
///
/// # Safety
/// As [`tiles`]; `a` holds exactly `T` tokens, `w` whole rows.
#[inline(always)]
unsafe fn group<K: TileKernel, const T: usize>(
    w: &[K::W],
    packs: &[K::Pack],
    a: &[Dot<K::W>],
    prep: &mut [K::Prep],
    scales: &mut [K::Scales],
    out: &mut [f32],
) {
    let nb = prep.len();
    let n_rows = out.len() / T;
    let groups = n_rows / 4;
    if groups > 0 {
        // SAFETY: T tokens of `nb` blocks each, `nb` preps.
        unsafe { K::prepare::<T>(a, prep) };
    }
    for g in 0..groups {
        let s = &mut scales[g * (nb + 1)..(g + 1) * (nb + 1)];
        // SAFETY: `nb` packs and preps, `nb + 1` scales.
        unsafe { K::scales::<T>(&packs[g * nb..(g + 1) * nb], prep, s) };
    }
    for g in 0..groups {
        let p = &packs[g * nb..(g + 1) * nb];
        let s = &scales[g * (nb + 1)..(g + 1) * (nb + 1)];
        // SAFETY: `nb` packs, T tokens of `nb` blocks, `nb` preps, `nb + 1`
        // scales.
        let res = unsafe { K::tile::<T>(p, a, prep, s) };
        for t in 0..T {
            let o = t * n_rows + 4 * g;
            out[o..o + 4].copy_from_slice(&res[t]);
        }
    }
    for r in 4 * groups..n_rows {
        for t in 0..T {
            // SAFETY: a row and a token of `nb` blocks.
            out[t * n_rows + r] =
                unsafe { K::one(&w[r * nb..(r + 1) * nb], &a[t * nb..(t + 1) * nb]) };
        }
    }
}
