//! Row dot-product kernels, chosen once per CPU at run time.
//!
//! A [`RowDot`] computes `w[r] · a` for one or more consecutive weight rows
//! `w[r]` and one activation row `a` already quantized to the weight type's
//! dot format ([`crate::quant::vec_dot_type`]). Kernels come at these levels
//! ([`Isa`]):
//!
//! - `Scalar`: the reference of [`crate::quant`] (`BlockFormat::vec_dot`).
//! - `ScalarAvx2`: the same reference compiled with AVX2, FMA and F16C
//!   enabled; the fallback for types without hand-written kernels.
//! - `Avx2` and `Avx512Vnni` (`x86.rs`): hand-written `std::arch` kernels for
//!   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K, F16, BF16 and F32.
//! - `Neon` (`neon.rs`, aarch64): hand-written kernels for the 32-value
//!   formats.
//!
//! Every kernel returns the same bits as the scalar reference, on every
//! input, because it does the same arithmetic: the integer sums of a block
//! are exact however they are formed (each kernel keeps them exact even for
//! quants of −128), and the float part is done in the reference's order —
//! the same eight accumulator lanes holding the same integers, one fused
//! multiply-add per block per lane in block order, the same horizontal
//! reduction and the same extra terms. Tests in `tests.rs` check this for
//! every type and every level the machine has, on random and real rows;
//! `benches/kernels.rs` measures each level (and ggml's kernels).
//!
//! A [`TileDot`] ([`tile_dot`], `tile.rs`) does the same for several
//! activation rows at once (a prompt's tokens): tile kernels of 4 rows × 4
//! tokens (`x86_tile.rs`, AVX-512 VNNI) with the same bits per (row, token),
//! or the row kernel once per token where a level has none.
//!
//! Two environment variables, read once per process, override the choice
//! (for measuring and for checking one level end to end):
//!
//! - `STRATA_FORCE_SCALAR`: `1`, `true` or `yes` (any case) make
//!   [`row_dot`] and [`tile_dot`] hand out only the scalar reference; `0`,
//!   `false`, `no` or an empty value leave the choice alone.
//! - `STRATA_ISA`: a level name ([`Isa::name`]: `avx512vnni`, `avx2`,
//!   `neon`, `scalar-avx2`, `scalar`) caps the level rather than pinning
//!   it: that level and the slower ones after it in [`Isa::ALL`] may be
//!   used, so types without a kernel at the named level, and a CPU without
//!   it, fall back to the next level down. An empty value sets no cap.
//!
//! `STRATA_FORCE_SCALAR` wins over `STRATA_ISA`. Any other value is ignored
//! with one warning on stderr (a library does not end its host process).

use std::sync::OnceLock;

use crate::quant::{
    cast_blocks, dispatch::with_block, BlockFormat, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0,
    BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, GgmlType,
    BF16, F16, F32,
};

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(test)]
mod tests;
mod tile;
#[cfg(test)]
mod tile_tests;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_tile;

pub use tile::{tile_dot, tile_dot_for, TileDot, MAX_TOKENS};

/// The instruction-set level a kernel was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable code (the scalar reference).
    Scalar,
    /// The scalar reference compiled for x86-64 with AVX2, FMA and F16C.
    ScalarAvx2,
    /// Hand-written x86-64 kernels: AVX2, FMA and F16C (`vpmaddubsw`).
    Avx2,
    /// Hand-written x86-64 kernels: AVX-512 F/BW/VL and VNNI (`vpdpbusd`),
    /// on 256-bit vectors.
    Avx512Vnni,
    /// Hand-written aarch64 kernels (Advanced SIMD).
    Neon,
}

impl Isa {
    /// Every level, fastest first (the order [`row_dot`] tries them in).
    pub const ALL: [Isa; 5] = [
        Isa::Avx512Vnni,
        Isa::Avx2,
        Isa::Neon,
        Isa::ScalarAvx2,
        Isa::Scalar,
    ];

    /// Short name, as used in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::ScalarAvx2 => "scalar-avx2",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
        }
    }

    /// Whether this CPU can run kernels built for this level.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::ScalarAvx2 | Isa::Avx2 => {
                std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                Isa::Avx2.is_available()
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `out[r] = w[r] · a` for `out.len()` consecutive weight rows in `w`.
type RowsFn = unsafe fn(&[u8], &[u8], &mut [f32]);

/// Dot products of weight rows with one activation row, for one weight type.
#[derive(Clone, Copy)]
pub struct RowDot {
    f: RowsFn,
    pub isa: Isa,
}

impl std::fmt::Debug for RowDot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowDot({})", self.isa)
    }
}

impl RowDot {
    /// Dot product of one weight row `w` with the activation row `a` (the
    /// same number of values; a mismatch yields NaN, never out-of-bounds
    /// access).
    #[inline]
    pub fn dot(&self, w: &[u8], a: &[u8]) -> f32 {
        let mut out = [0f32];
        self.dot_rows(w, a, &mut out);
        out[0]
    }

    /// `out[r] = w[r] · a` where `w` holds `out.len()` consecutive weight
    /// rows, each as long (in values) as `a`. Faster than one [`RowDot::dot`]
    /// per row: the kernels work on four rows at a time, sharing the
    /// activation loads and overlapping the rows' dependency chains. Each
    /// result has the same bits as [`RowDot::dot`] of its row. On a size
    /// mismatch every output is NaN.
    #[inline]
    pub fn dot_rows(&self, w: &[u8], a: &[u8], out: &mut [f32]) {
        // SAFETY: `f` was chosen by `row_dot_for`, which only hands out a
        // kernel after detecting the features it was compiled for on this
        // CPU; the kernels check all sizes themselves.
        unsafe { (self.f)(w, a, out) }
    }
}

/// A dot-product kernel over rows of blocks, compiled into each level's
/// entry point through [`rows`].
///
/// # Safety
/// Both methods require that the CPU supports the features of the level the
/// caller was compiled for, and that every weight row holds exactly as many
/// values as `a` (the formats with kernels have equal block sizes on both
/// sides, so: as many blocks).
pub(crate) trait Kernel {
    /// The weight block format.
    type W: BlockFormat;

    /// `w · a` for one row.
    unsafe fn one(w: &[Self::W], a: &[<Self::W as BlockFormat>::Dot]) -> f32;

    /// `w[r] · a` for four rows; each result has the bits of [`Kernel::one`].
    #[inline(always)]
    unsafe fn four(w: [&[Self::W]; 4], a: &[<Self::W as BlockFormat>::Dot]) -> [f32; 4] {
        [
            Self::one(w[0], a),
            Self::one(w[1], a),
            Self::one(w[2], a),
            Self::one(w[3], a),
        ]
    }
}

/// The scalar reference as a [`Kernel`].
pub(crate) struct Reference<B>(std::marker::PhantomData<B>);

impl<B: BlockFormat> Kernel for Reference<B> {
    type W = B;

    #[inline(always)]
    unsafe fn one(w: &[B], a: &[B::Dot]) -> f32 {
        B::vec_dot(w, a)
    }
}

/// Checks the sizes, then runs `K` on groups of four rows and the rest one
/// by one. Meant to be inlined into a `#[target_feature]` entry point so
/// that the kernel is compiled for that level.
///
/// # Safety
/// The CPU supports the features of the level `K` was written for.
#[inline(always)]
pub(crate) unsafe fn rows<K: Kernel>(w: &[u8], a: &[u8], out: &mut [f32]) {
    type Dot<K> = <<K as Kernel>::W as BlockFormat>::Dot;
    let n = out.len();
    let (Some(wb), Some(ab)) = (cast_blocks::<K::W>(w), cast_blocks::<Dot<K>>(a)) else {
        out.fill(f32::NAN);
        return;
    };
    if n == 0 || wb.len() % n != 0 {
        out.fill(f32::NAN);
        return;
    }
    let nb = wb.len() / n;
    if nb * K::W::BLOCK_SIZE != ab.len() * Dot::<K>::BLOCK_SIZE {
        out.fill(f32::NAN);
        return;
    }
    let mut rows = wb.chunks_exact(nb);
    let mut outs = out.chunks_exact_mut(4);
    for o in &mut outs {
        let (Some(w0), Some(w1), Some(w2), Some(w3)) =
            (rows.next(), rows.next(), rows.next(), rows.next())
        else {
            unreachable!("one row per output");
        };
        // SAFETY: every row holds `nb` blocks, as many values as `a`; the
        // features are the caller's promise.
        o.copy_from_slice(&unsafe { K::four([w0, w1, w2, w3], ab) });
    }
    for (o, w1) in outs.into_remainder().iter_mut().zip(rows) {
        // SAFETY: as above.
        *o = unsafe { K::one(w1, ab) };
    }
}

/// The portable reference.
fn rows_scalar<B: BlockFormat>(w: &[u8], a: &[u8], out: &mut [f32]) {
    // SAFETY: the reference needs no CPU features.
    unsafe { rows::<Reference<B>>(w, a, out) }
}

/// How a `STRATA_FORCE_SCALAR` value reads: `Ok(true)` for `1`, `true`,
/// `yes`; `Ok(false)` for `0`, `false`, `no` and the empty string (any case,
/// surrounding blanks ignored); otherwise the warning to print.
pub(crate) fn parse_force_scalar(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        _ => Err(format!(
            "STRATA_FORCE_SCALAR={value:?} is not one of 1, true, yes (force the scalar \
             kernels) or 0, false, no (do not); ignored"
        )),
    }
}

/// How a `STRATA_ISA` value reads: the level it names (any case,
/// surrounding blanks ignored), `Ok(None)` for the empty string (no cap),
/// otherwise the warning to print.
pub(crate) fn parse_isa(value: &str) -> Result<Option<Isa>, String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    Isa::ALL
        .iter()
        .find(|i| i.name().eq_ignore_ascii_case(v))
        .map(|&i| Some(i))
        .ok_or_else(|| {
            let names: Vec<&str> = Isa::ALL.iter().map(|i| i.name()).collect();
            format!(
                "STRATA_ISA={value:?} is not a kernel level ({}); ignored",
                names.join(", ")
            )
        })
}

/// The levels allowed by the two variables' values (`None`: unset), fastest
/// first, and the warnings their values call for.
fn levels_for(force_scalar: Option<&str>, isa: Option<&str>) -> (&'static [Isa], Vec<String>) {
    let mut warnings = Vec::new();
    let force = match force_scalar.map(parse_force_scalar) {
        Some(Err(w)) => {
            warnings.push(w);
            false
        }
        r => r == Some(Ok(true)),
    };
    let cap = match isa.map(parse_isa) {
        Some(Err(w)) => {
            warnings.push(w);
            None
        }
        r => r.and_then(Result::ok).flatten(),
    };
    if force {
        return (&[Isa::Scalar], warnings);
    }
    let from = cap
        .and_then(|c| Isa::ALL.iter().position(|&i| i == c))
        .unwrap_or(0);
    (&Isa::ALL[from..], warnings)
}

/// The levels [`row_dot`] may use, fastest first (read once per process):
/// all of [`Isa::ALL`], or as `STRATA_FORCE_SCALAR` and `STRATA_ISA` say
/// (see the module documentation). Warnings about their values go to
/// stderr, once.
fn allowed_levels() -> &'static [Isa] {
    static LEVELS: OnceLock<&'static [Isa]> = OnceLock::new();
    LEVELS.get_or_init(|| {
        let var = |name: &str| match std::env::var(name) {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            // Not UTF-8: no documented value, so a warning.
            Err(std::env::VarError::NotUnicode(v)) => Some(v.to_string_lossy().into_owned()),
        };
        let (force, isa) = (var("STRATA_FORCE_SCALAR"), var("STRATA_ISA"));
        let (levels, mut warnings) = levels_for(force.as_deref(), isa.as_deref());
        let cap = isa.as_deref().and_then(|v| parse_isa(v).ok().flatten());
        if let Some(top) = cap.filter(|c| levels.first() == Some(c) && !c.is_available()) {
            warnings.push(format!(
                "STRATA_ISA={top}: this CPU cannot run that level; using the fastest one below it"
            ));
        }
        for w in warnings {
            eprintln!("strata: {w}");
        }
        levels
    })
}

#[cfg(test)]
mod env_tests {
    use super::{levels_for, parse_force_scalar, parse_isa, Isa};

    #[test]
    fn force_scalar_reads_only_the_documented_values() {
        for v in ["1", "true", "yes", "TRUE", " Yes "] {
            assert_eq!(parse_force_scalar(v), Ok(true), "{v:?}");
        }
        for v in ["0", "false", "no", "", "False", " NO"] {
            assert_eq!(parse_force_scalar(v), Ok(false), "{v:?}");
        }
        for v in ["2", "on", "y", "scalar"] {
            let w = parse_force_scalar(v).unwrap_err();
            assert!(
                w.contains("STRATA_FORCE_SCALAR") && w.contains("ignored"),
                "{w}"
            );
        }
    }

    #[test]
    fn isa_reads_the_level_names() {
        for isa in Isa::ALL {
            assert_eq!(parse_isa(isa.name()), Ok(Some(isa)));
            assert_eq!(parse_isa(&isa.name().to_uppercase()), Ok(Some(isa)));
        }
        assert_eq!(parse_isa(""), Ok(None));
        assert_eq!(parse_isa("  "), Ok(None));
        for v in ["avx", "sse2", "avx512", "AVX-2"] {
            let w = parse_isa(v).unwrap_err();
            assert!(w.contains("STRATA_ISA") && w.contains("avx2"), "{w}");
        }
    }

    #[test]
    fn the_variables_make_the_levels() {
        let all: &[Isa] = &Isa::ALL;
        assert_eq!(levels_for(None, None), (all, vec![]));
        assert_eq!(levels_for(Some("0"), None), (all, vec![]));
        assert_eq!(levels_for(Some(""), None), (all, vec![]));
        assert_eq!(levels_for(Some("1"), None).0, &[Isa::Scalar]);
        assert_eq!(levels_for(Some("yes"), Some("avx2")).0, &[Isa::Scalar]);
        let (levels, warnings) = levels_for(None, Some("avx2"));
        assert_eq!(levels[0], Isa::Avx2);
        assert_eq!(levels.last(), Some(&Isa::Scalar));
        assert!(warnings.is_empty());
        // Unknown values: ignored, one warning each.
        let (levels, warnings) = levels_for(Some("maybe"), Some("sse9"));
        assert_eq!(levels, all);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }
}

/// Whether the hand-written x86-64 code (AVX2 + FMA + F16C and up) may run
/// on this CPU under the `STRATA_FORCE_SCALAR` / `STRATA_ISA` overrides; the
/// vector forms of the other operators follow the same switch.
pub fn hand_written_x86() -> bool {
    allowed_levels().contains(&Isa::Avx2) && Isa::Avx2.is_available()
}

/// The fastest row kernel for weight type `ty` on this CPU (see
/// `allowed_levels` for the `STRATA_FORCE_SCALAR` and `STRATA_ISA`
/// overrides), or `None` for a type without a dot product.
pub fn row_dot(ty: GgmlType) -> Option<RowDot> {
    allowed_levels()
        .iter()
        .find_map(|&isa| row_dot_for(ty, isa))
}

/// The row kernel for `ty` built for `isa`; `None` if this CPU lacks the
/// level or the level has no kernel for `ty`.
pub fn row_dot_for(ty: GgmlType, isa: Isa) -> Option<RowDot> {
    if !isa.is_available() {
        return None;
    }
    let f: RowsFn = match isa {
        Isa::Scalar => with_block!(ty, B => rows_scalar::<B>, _ => return None),
        #[cfg(target_arch = "x86_64")]
        Isa::ScalarAvx2 => with_block!(ty, B => x86::rows_reference::<B>, _ => return None),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::avx2(ty)?,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => x86::avx512vnni(ty)?,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::neon(ty)?,
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(RowDot { f, isa })
}
