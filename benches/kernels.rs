//! Row dot-product kernels: weight bytes read per second, per weight type
//! and instruction-set level, on one thread.
//!
//! Each case dots a whole weight matrix shaped like one of SmolLM2-135M's or
//! Gemma 3 270M's with one quantized activation row (`RowDot::dot_rows`,
//! what a decode step's matmul runs), plus the Q8_0 output head
//! (49152 × 576). The matrices other than the head fit in L2, so these are
//! compute-bound figures; a full model streams from memory.
//!
//! With `--features llama-cpp`, ggml's own CPU `vec_dot` for the type runs
//! on the same rows (one call per row, as ggml's matmul makes) under the id
//! `<type>/ggml`.
//!
//! The `tile` group measures prompt processing's kernel, in multiply-adds
//! per second: weight rows against several tokens through the tile kernel
//! (`TileDot::dot_tile`, id `<type>-<rows>x<cols>x<tokens>/<level>-tile`)
//! and through the row kernel once per token (`.../<level>-rows`, what a
//! matmul of many tokens ran before the tile kernels). Shapes: 64 rows × 8
//! tokens; 16 rows × 64 tokens (a matmul task's call); and, for the
//! 32-value formats, 32 rows × 2 tokens (a small batch).
//!
//! `cargo bench --bench kernels [--features llama-cpp] -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata::kernels::{row_dot_for, tile_dot_for, Isa};
use strata::quant::{self, GgmlType};

/// Deterministic model-like values (SplitMix64 → roughly normal).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    let mut uniform = move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| ((0..4).map(|_| uniform()).sum::<f32>() - 2.0) * 1.73 * scale)
        .collect()
}

/// Weight rows of `ty`. The K-quants cannot be quantized here, so their
/// rows are random bytes with sane scales (same speed either way).
fn weights(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let bytes = ty.row_bytes(cols as u64).unwrap() as usize * rows;
    let mut w = vec![0u8; bytes];
    if quant::quantize_reference(ty, &values(rows * cols, 1, 0.05), &mut w).is_err() {
        let noise = values(bytes, 2, 1.0);
        for (b, v) in w.iter_mut().zip(&noise) {
            *b = v.to_bits() as u8;
        }
        let ts = ty.type_size();
        let one = half::f16::from_f32(0.01).to_le_bytes();
        for blk in w.chunks_exact_mut(ts) {
            match ty {
                GgmlType::Q6_K => blk[ts - 2..].copy_from_slice(&one),
                _ => {
                    blk[..2].copy_from_slice(&one);
                    blk[2..4].copy_from_slice(&one);
                }
            }
        }
    }
    w
}

fn bench_case(c: &mut Criterion, group: &str, ty: GgmlType, rows: usize, cols: usize) {
    let w = weights(ty, rows, cols);
    let at = quant::vec_dot_type(ty);
    let mut a = vec![0u8; at.row_bytes(cols as u64).unwrap() as usize];
    quant::quantize(at, &values(cols, 3, 1.0), &mut a).unwrap();
    let mut out = vec![0f32; rows];
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(w.len() as u64));
    let name = ty.name().to_lowercase();
    for isa in Isa::ALL.iter().rev() {
        let Some(k) = row_dot_for(ty, *isa) else {
            continue;
        };
        g.bench_function(BenchmarkId::new(&name, isa.name()), |b| {
            b.iter(|| {
                k.dot_rows(std::hint::black_box(&w), &a, &mut out);
                std::hint::black_box(&out);
            })
        });
        if matches!(ty, GgmlType::Q4_1 | GgmlType::Q8_0) && group == "rows" {
            // One `dot` per row: what the multi-row kernel saves.
            let rb = w.len() / rows;
            g.bench_function(BenchmarkId::new(&name, format!("{isa}-1row")), |b| {
                b.iter(|| {
                    for (o, r) in out.iter_mut().zip(w.chunks_exact(rb)) {
                        *o = k.dot(std::hint::black_box(r), &a);
                    }
                    std::hint::black_box(&out);
                })
            });
        }
    }
    #[cfg(feature = "llama-cpp")]
    {
        let rb = w.len() / rows;
        let f = ggml::vec_dot(ty);
        g.bench_function(BenchmarkId::new(&name, "ggml"), |b| {
            b.iter(|| {
                for (o, r) in out.iter_mut().zip(w.chunks_exact(rb)) {
                    *o = f(cols, std::hint::black_box(r), &a);
                }
                std::hint::black_box(&out);
            })
        });
    }
    g.finish();
}

/// ggml's CPU kernels, through the llama.cpp build the parity tests use.
#[cfg(feature = "llama-cpp")]
mod ggml {
    use llama_cpp_sys_2 as sys;
    use strata::quant::{self, GgmlType};

    /// ggml's `vec_dot` for weight type `ty` as a closure over one row.
    pub fn vec_dot(ty: GgmlType) -> impl Fn(usize, &[u8], &[u8]) -> f32 {
        // SAFETY: ggml_cpu_init only fills ggml's lookup tables; the traits
        // of a valid type id are static.
        let t = unsafe {
            sys::ggml_cpu_init();
            *sys::ggml_get_type_traits_cpu(ty.id() as sys::ggml_type)
        };
        assert_eq!(
            t.vec_dot_type,
            quant::vec_dot_type(ty).id() as sys::ggml_type
        );
        let f = t.vec_dot.expect("vec_dot");
        move |n, w, a| {
            assert!(w.len() >= ty.row_bytes(n as u64).unwrap() as usize);
            let mut s = 0f32;
            // SAFETY: `w` holds n values of `ty` (checked) and `a` is the
            // matching activation row built by the caller; one result.
            unsafe {
                f(
                    n as i32,
                    &mut s,
                    0,
                    w.as_ptr().cast(),
                    0,
                    a.as_ptr().cast(),
                    0,
                    1,
                )
            };
            s
        }
    }
}

/// `rows` weight rows against `n_tokens` tokens: the tile kernel and the
/// row kernel per token, at every level that has a tile kernel for `ty`
/// (and the row kernel at the best level without one).
fn bench_tile(c: &mut Criterion, ty: GgmlType, rows: usize, cols: usize, n_tokens: usize) {
    let w = weights(ty, rows, cols);
    let at = quant::vec_dot_type(ty);
    let ab = at.row_bytes(cols as u64).unwrap() as usize;
    let mut a = vec![0u8; ab * n_tokens];
    for (t, ar) in a.chunks_exact_mut(ab).enumerate() {
        quant::quantize(at, &values(cols, 3 + t as u64, 1.0), ar).unwrap();
    }
    let mut out = vec![0f32; rows * n_tokens];
    let mut g = c.benchmark_group("tile");
    g.throughput(Throughput::Elements((rows * cols * n_tokens) as u64));
    let name = format!("{}-{rows}x{cols}x{n_tokens}", ty.name().to_lowercase());
    for isa in Isa::ALL {
        let Some(k) = tile_dot_for(ty, isa) else {
            continue;
        };
        if k.is_tiled() {
            g.bench_function(BenchmarkId::new(&name, format!("{isa}-tile")), |b| {
                b.iter(|| {
                    k.dot_tile(std::hint::black_box(&w), &a, n_tokens, &mut out);
                    std::hint::black_box(&out);
                })
            });
        }
        let r = k.row_dot();
        g.bench_function(BenchmarkId::new(&name, format!("{isa}-rows")), |b| {
            b.iter(|| {
                for (y, o) in a.chunks_exact(ab).zip(out.chunks_exact_mut(rows)) {
                    r.dot_rows(std::hint::black_box(&w), y, o);
                }
                std::hint::black_box(&out);
            })
        });
        if !k.is_tiled() {
            break;
        }
    }
    g.finish();
}

fn tile_kernels(c: &mut Criterion) {
    for ty in [
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
    ] {
        bench_tile(c, ty, 64, 576, 8);
        bench_tile(c, ty, 16, 576, 64);
        bench_tile(c, ty, 32, 576, 2);
    }
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        bench_tile(c, ty, 64, 1536, 8);
        bench_tile(c, ty, 16, 1536, 64);
    }
}

fn kernels(c: &mut Criterion) {
    // SmolLM2 ffn_up/gate-like for the 32-value formats, ffn_down-like for
    // the K-quants (rows must be whole 256-value super-blocks).
    for ty in [
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::F16,
    ] {
        bench_case(c, "rows", ty, 1536, 576);
    }
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        bench_case(c, "rows", ty, 576, 1536);
    }
    bench_case(c, "head", GgmlType::Q8_0, 49152, 576);
}

criterion_group!(benches, kernels, tile_kernels);
criterion_main!(benches);
