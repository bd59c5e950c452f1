//! Strata's element-wise operators checked bit for bit against ggml's CPU
//! operators (linked through `llama-cpp-sys-2`), each built as llama.cpp's
//! graphs build them: SwiGLU (`ggml_swiglu_split`, vectorised body and
//! scalar tail), GeGLU (`ggml_geglu_split`, over every f16 input),
//! RMSNorm × weight on whole rows and on heads (`ggml_rms_norm` +
//! `ggml_mul`), RoPE in both layouts (`ggml_rope_ext`), and scaling
//! (`ggml_scale`).
//!
//! Run: `cargo test --release --features llama-cpp --test ops_vs_ggml`.
#![cfg(feature = "llama-cpp")]

use std::sync::Once;

use half::f16;
use llama_cpp_sys_2 as sys;
use strata::ops::rope::{Rope, RopeLayout, Yarn};
use strata::ops::{act, norm};

/// SplitMix64 test-data generator.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn init() {
    static ONCE: Once = Once::new();
    // SAFETY: ggml_cpu_init only fills ggml's internal lookup tables.
    ONCE.call_once(|| unsafe { sys::ggml_cpu_init() });
}

/// A ggml context for one graph; freed on drop.
struct Ctx(*mut sys::ggml_context);

impl Ctx {
    fn new() -> Ctx {
        init();
        // SAFETY: ggml_init with an owned buffer of the given size.
        let ctx = unsafe {
            sys::ggml_init(sys::ggml_init_params {
                mem_size: 512 << 20,
                mem_buffer: std::ptr::null_mut(),
                no_alloc: false,
            })
        };
        assert!(!ctx.is_null());
        Ctx(ctx)
    }

    /// An f32 tensor of shape `ne` (ggml order) holding `data`.
    fn tensor(&self, ne: &[usize], data: &[f32]) -> *mut sys::ggml_tensor {
        assert_eq!(ne.iter().product::<usize>(), data.len());
        // SAFETY: the tensor is allocated in the context with exactly
        // `data.len()` f32 values.
        unsafe {
            let t = match ne.len() {
                1 => sys::ggml_new_tensor_1d(self.0, sys::GGML_TYPE_F32, ne[0] as i64),
                2 => {
                    sys::ggml_new_tensor_2d(self.0, sys::GGML_TYPE_F32, ne[0] as i64, ne[1] as i64)
                }
                _ => sys::ggml_new_tensor_3d(
                    self.0,
                    sys::GGML_TYPE_F32,
                    ne[0] as i64,
                    ne[1] as i64,
                    ne[2] as i64,
                ),
            };
            std::slice::from_raw_parts_mut((*t).data as *mut f32, data.len()).copy_from_slice(data);
            t
        }
    }

    /// Compute `out` with `threads` threads and read its `n` f32 values.
    fn compute(&self, out: *mut sys::ggml_tensor, n: usize, threads: i32) -> Vec<f32> {
        // SAFETY: `out` belongs to this context and holds `n` f32 values.
        unsafe {
            let gf = sys::ggml_new_graph(self.0);
            sys::ggml_build_forward_expand(gf, out);
            let status = sys::ggml_graph_compute_with_ctx(self.0, gf, threads);
            assert_eq!(status, sys::GGML_STATUS_SUCCESS);
            std::slice::from_raw_parts((*out).data as *const f32, n).to_vec()
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: the context came from ggml_init and is freed once.
        unsafe { sys::ggml_free(self.0) }
    }
}

fn assert_bits(ours: &[f32], theirs: &[f32], what: &str) {
    assert_eq!(ours.len(), theirs.len());
    let bad: Vec<_> = ours
        .iter()
        .zip(theirs)
        .enumerate()
        .filter(|(_, (a, b))| a.to_bits() != b.to_bits())
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} differ, first (index, (strata, ggml)) {:?}",
        bad.len(),
        ours.len(),
        &bad[..bad.len().min(5)]
    );
}

/// GeGLU over every f16 value as the gate (and values around ±10), with
/// random up values: the GELU table and its limits.
#[test]
fn geglu_matches_ggml_on_every_f16_input() {
    let mut gate: Vec<f32> = (0..=u16::MAX)
        .map(|b| f16::from_bits(b).to_f32())
        .filter(|x| x.is_finite())
        .collect();
    let mut rng = Rng(1);
    gate.extend((0..4096).map(|_| rng.uniform() * 12.0));
    gate.extend([-10.0, 10.0, -10.000001, 9.999999, 10.000001]);
    let n = gate.len();
    let up: Vec<f32> = (0..n).map(|_| rng.uniform() * 3.0).collect();
    let ctx = Ctx::new();
    let g = ctx.tensor(&[n], &gate);
    let u = ctx.tensor(&[n], &up);
    // SAFETY: both tensors belong to `ctx` and have the same shape.
    let out = unsafe { sys::ggml_geglu_split(ctx.0, g, u) };
    let theirs = ctx.compute(out, n, 2);
    let mut ours = gate.clone();
    act::geglu(&mut ours, &up);
    assert_bits(&ours, &theirs, "geglu");
}

/// SwiGLU on rows whose width is and is not a multiple of 8 (ggml's
/// vectorised SiLU on groups of 8, the scalar one on the tail), over a wide
/// range of gate values (exp's overflow and underflow branches included).
#[test]
fn swiglu_matches_ggml() {
    let mut rng = Rng(5);
    for (width, rows) in [(1536, 3), (100, 5), (7, 2)] {
        let n = width * rows;
        let gate: Vec<f32> = (0..n)
            .map(|i| match i % 5 {
                0 => rng.uniform() * 150.0,
                _ => rng.uniform() * 8.0,
            })
            .collect();
        let up: Vec<f32> = (0..n).map(|_| rng.uniform() * 3.0).collect();
        let ctx = Ctx::new();
        let g = ctx.tensor(&[width, rows], &gate);
        let u = ctx.tensor(&[width, rows], &up);
        // SAFETY: both tensors belong to `ctx` and have the same shape.
        let out = unsafe { sys::ggml_swiglu_split(ctx.0, g, u) };
        let theirs = ctx.compute(out, n, 2);
        let mut ours = gate.clone();
        act::swiglu(&mut ours, &up, width);
        assert_bits(&ours, &theirs, &format!("swiglu width {width}"));
    }
}

/// RMSNorm then multiplication by the weight, on 640-wide rows (Gemma's
/// width) and on 256-wide heads (its per-head Q/K norm).
#[test]
fn rms_norm_times_weight_matches_ggml() {
    let mut rng = Rng(2);
    for (width, rows, eps) in [(640, 7, 1e-6), (256, 4 * 5, 1e-6), (576, 3, 1e-5)] {
        let x: Vec<f32> = (0..width * rows).map(|_| rng.uniform() * 30.0).collect();
        let w: Vec<f32> = (0..width).map(|_| 1.0 + rng.uniform()).collect();
        let ctx = Ctx::new();
        let xt = ctx.tensor(&[width, rows], &x);
        let wt = ctx.tensor(&[width], &w);
        // SAFETY: tensors of `ctx`; the weight broadcasts over the rows.
        let out = unsafe { sys::ggml_mul(ctx.0, sys::ggml_rms_norm(ctx.0, xt, eps), wt) };
        let theirs = ctx.compute(out, x.len(), 2);
        let mut ours = x.clone();
        norm::rms_norm(&mut ours, &w, eps);
        assert_bits(&ours, &theirs, &format!("rms_norm width {width}"));
    }
}

/// RoPE of `[n_tokens][n_heads][head_dim]` at scattered positions, both
/// layouts, with and without rotating the whole head, and with linear
/// scaling.
#[test]
fn rope_matches_ggml_in_both_layouts() {
    let mut rng = Rng(3);
    let cases = [
        (RopeLayout::Neox, 256, 256, 4, 1_000_000.0, 1.0),
        (RopeLayout::Neox, 256, 256, 1, 10_000.0, 1.0),
        (RopeLayout::Normal, 64, 64, 9, 100_000.0, 1.0),
        (RopeLayout::Neox, 64, 32, 2, 10_000.0, 0.25),
        (RopeLayout::Normal, 128, 128, 2, 500_000.0, 0.125),
    ];
    for (layout, head_dim, n_rot, n_heads, base, scale) in cases {
        let positions: Vec<usize> = vec![0, 1, 2, 7, 63, 64, 100, 511, 512, 1000, 4095];
        let n = positions.len();
        let x: Vec<f32> = (0..n * n_heads * head_dim)
            .map(|_| rng.uniform() * 4.0)
            .collect();
        let rope = Rope {
            layout,
            n_rot,
            freq_base: base,
            freq_scale: scale,
            freq_factors: None,
            yarn: None,
        };
        let mut ours = x.clone();
        rope.apply(&mut ours, n_heads, head_dim, &positions);
        let ctx = Ctx::new();
        let xt = ctx.tensor(&[head_dim, n_heads, n], &x);
        // SAFETY: a 1-D i32 tensor of `n` positions in `ctx`.
        let theirs = unsafe {
            let pos = sys::ggml_new_tensor_1d(ctx.0, sys::GGML_TYPE_I32, n as i64);
            let pd = std::slice::from_raw_parts_mut((*pos).data as *mut i32, n);
            for (d, &p) in pd.iter_mut().zip(&positions) {
                *d = p as i32;
            }
            let mode = match layout {
                RopeLayout::Normal => 0,
                RopeLayout::Neox => 2,
            };
            let out = sys::ggml_rope_ext(
                ctx.0,
                xt,
                pos,
                std::ptr::null_mut(),
                n_rot as i32,
                mode,
                4096,
                base,
                scale,
                0.0,
                1.0,
                32.0,
                1.0,
            );
            ctx.compute(out, x.len(), 2)
        };
        assert_bits(
            &ours,
            &theirs,
            &format!("rope {layout:?} {head_dim}/{n_rot}"),
        );
    }
}

/// YaRN RoPE (`ggml_rope_ext` with `ext_factor`, `attn_factor`, betas and
/// the original context): the ramp between interpolated and extrapolated
/// angles, the magnitude scaling, and an attention factor alone
/// (`ext_factor = 0`), in both layouts and with frequency factors.
#[test]
fn rope_yarn_matches_ggml() {
    let mut rng = Rng(5);
    // layout, head_dim, n_rot, heads, base, freq_scale, ext, attn, betas,
    // n_ctx_orig, frequency factors.
    let cases = [
        (
            RopeLayout::Neox,
            128,
            128,
            2,
            1_000_000.0,
            0.25,
            1.0,
            0.9,
            (32.0, 1.0),
            32768,
            false,
        ),
        (
            RopeLayout::Neox,
            64,
            64,
            3,
            10_000.0,
            0.5,
            1.0,
            1.0,
            (32.0, 1.0),
            4096,
            false,
        ),
        (
            RopeLayout::Normal,
            128,
            96,
            2,
            500_000.0,
            0.125,
            1.0,
            0.7,
            (16.0, 2.0),
            8192,
            true,
        ),
        (
            RopeLayout::Neox,
            64,
            64,
            2,
            150_000.0,
            1.0 / 32.0,
            1.0,
            0.8,
            (32.0, 1.0),
            4096,
            false,
        ),
        (
            RopeLayout::Neox,
            64,
            64,
            2,
            10_000.0,
            1.0,
            0.0,
            1.25,
            (32.0, 1.0),
            4096,
            false,
        ),
    ];
    for (layout, head_dim, n_rot, n_heads, base, scale, ext, attn, (bf, bs), n_orig, ff) in cases {
        let positions: Vec<usize> = vec![0, 1, 3, 64, 511, 4095, 4096, 20000, 131071];
        let n = positions.len();
        let x: Vec<f32> = (0..n * n_heads * head_dim)
            .map(|_| rng.uniform() * 4.0)
            .collect();
        let factors: Option<Vec<f32>> = ff.then(|| {
            (0..n_rot / 2)
                .map(|_| 1.0 + 8.0 * (rng.uniform() + 1.0))
                .collect()
        });
        let rope = Rope {
            layout,
            n_rot,
            freq_base: base,
            freq_scale: scale,
            freq_factors: factors.clone(),
            yarn: Some(Yarn {
                ext_factor: ext,
                attn_factor: attn,
                beta_fast: bf,
                beta_slow: bs,
                n_ctx_orig: n_orig,
            }),
        };
        let mut ours = x.clone();
        rope.apply(&mut ours, n_heads, head_dim, &positions);
        let ctx = Ctx::new();
        let xt = ctx.tensor(&[head_dim, n_heads, n], &x);
        let ft = factors
            .as_ref()
            .map_or(std::ptr::null_mut(), |f| ctx.tensor(&[f.len()], f));
        // SAFETY: a 1-D i32 tensor of `n` positions in `ctx`.
        let theirs = unsafe {
            let pos = sys::ggml_new_tensor_1d(ctx.0, sys::GGML_TYPE_I32, n as i64);
            let pd = std::slice::from_raw_parts_mut((*pos).data as *mut i32, n);
            for (d, &p) in pd.iter_mut().zip(&positions) {
                *d = p as i32;
            }
            let mode = match layout {
                RopeLayout::Normal => 0,
                RopeLayout::Neox => 2,
            };
            let out = sys::ggml_rope_ext(
                ctx.0,
                xt,
                pos,
                ft,
                n_rot as i32,
                mode,
                n_orig as i32,
                base,
                scale,
                ext,
                attn,
                bf,
                bs,
            );
            ctx.compute(out, x.len(), 2)
        };
        assert_bits(
            &ours,
            &theirs,
            &format!("yarn {layout:?} {head_dim}/{n_rot} scale {scale} ext {ext}"),
        );
    }
}

/// `ggml_scale` (the query scale and the embedding scale of Gemma) is a
/// plain f32 multiply.
#[test]
fn scale_matches_ggml() {
    let mut rng = Rng(4);
    let x: Vec<f32> = (0..4099).map(|_| rng.uniform() * 100.0).collect();
    for f in [0.0625f32, (640f32).sqrt(), 1.0 / 3.0] {
        let ctx = Ctx::new();
        let xt = ctx.tensor(&[x.len()], &x);
        // SAFETY: a tensor of `ctx`.
        let out = unsafe { sys::ggml_scale(ctx.0, xt, f) };
        let theirs = ctx.compute(out, x.len(), 2);
        let ours: Vec<f32> = x.iter().map(|v| v * f).collect();
        assert_bits(&ours, &theirs, &format!("scale {f}"));
    }
}
