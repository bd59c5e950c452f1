//! Strata's tensor formats checked against ggml itself (linked through
//! `llama-cpp-sys-2`): dequantization bit for bit against `to_float`, the
//! reference quantizers byte for byte against `ggml_quantize_chunk`, the
//! activation quantizers against the CPU backend's `from_float`, and the dot
//! products against the CPU backend's `vec_dot` (AVX2 build) bit for bit.
//! Every tensor of SmolLM2-135M (Q4_1) and
//! Gemma 3 270M (Q4_K_M) is dequantized both ways and compared.
//!
//! Run: `cargo test --release --features llama-cpp --test quant_vs_ggml`.
#![cfg(feature = "llama-cpp")]

use std::sync::Once;

use llama_cpp_sys_2 as sys;
use strata::quant::{self, GgmlType};

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
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform()).sum();
        (s - 2.0) * 1.732_050_8
    }

    /// Weight/activation-like values: normal, some outliers, some zeros.
    fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| match self.uniform() {
                r if r < 0.01 => 0.0,
                r if r < 0.02 => self.normal() * 8.0 * scale,
                _ => self.normal() * scale,
            })
            .collect()
    }

    fn f16_scale(&mut self) -> [u8; 2] {
        half::f16::from_f32(0.0005 + self.uniform() * 0.05).to_le_bytes()
    }

    /// Random blocks with sane float fields (finite, normal scales).
    fn blocks(&mut self, ty: GgmlType, nb: usize) -> Vec<u8> {
        let ts = ty.type_size();
        let mut out: Vec<u8> = (0..nb * ts).map(|_| self.next_u64() as u8).collect();
        for blk in out.chunks_exact_mut(ts) {
            let n = blk.len();
            match ty {
                GgmlType::F32 => blk.copy_from_slice(&self.normal().to_le_bytes()),
                GgmlType::F16 => {
                    blk.copy_from_slice(&half::f16::from_f32(self.normal()).to_le_bytes())
                }
                GgmlType::BF16 => {
                    blk.copy_from_slice(&half::bf16::from_f32(self.normal()).to_le_bytes())
                }
                GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => {
                    blk[0..2].copy_from_slice(&self.f16_scale())
                }
                GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => {
                    blk[0..2].copy_from_slice(&self.f16_scale());
                    let m = half::f16::from_f32(-self.uniform() * 0.3);
                    blk[2..4].copy_from_slice(&m.to_le_bytes());
                }
                GgmlType::Q2_K => {
                    blk[n - 4..n - 2].copy_from_slice(&self.f16_scale());
                    blk[n - 2..].copy_from_slice(&self.f16_scale());
                }
                GgmlType::Q3_K | GgmlType::Q6_K => blk[n - 2..].copy_from_slice(&self.f16_scale()),
                GgmlType::Q4_K | GgmlType::Q5_K => {
                    blk[0..2].copy_from_slice(&self.f16_scale());
                    blk[2..4].copy_from_slice(&self.f16_scale());
                }
                _ => panic!("no random blocks for {ty}"),
            }
        }
        out
    }
}

const WEIGHT_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn init() {
    static ONCE: Once = Once::new();
    // SAFETY: ggml_cpu_init only fills ggml's internal lookup tables.
    ONCE.call_once(|| unsafe { sys::ggml_cpu_init() });
}

fn traits(ty: GgmlType) -> sys::ggml_type_traits {
    init();
    // SAFETY: every id we pass is a valid ggml type; the traits are static.
    unsafe { *sys::ggml_get_type_traits(ty.id() as sys::ggml_type) }
}

fn cpu_traits(ty: GgmlType) -> sys::ggml_type_traits_cpu {
    init();
    // SAFETY: as above.
    unsafe { *sys::ggml_get_type_traits_cpu(ty.id() as sys::ggml_type) }
}

fn row_bytes(ty: GgmlType, n: usize) -> usize {
    ty.row_bytes(n as u64).expect("whole blocks") as usize
}

fn ggml_to_float(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    assert_eq!(bytes.len(), row_bytes(ty, n));
    if ty == GgmlType::F32 {
        // ggml has no to_float for F32: the bytes are the values.
        return bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
    }
    let f = traits(ty)
        .to_float
        .unwrap_or_else(|| panic!("ggml has no to_float for {ty}"));
    let mut out = vec![0f32; n];
    // SAFETY: `bytes` holds exactly n values of `ty`; `out` has room for n floats.
    unsafe { f(bytes.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
    out
}

fn ggml_quantize_chunk(ty: GgmlType, x: &[f32], n_per_row: usize) -> Vec<u8> {
    init();
    let nrows = x.len() / n_per_row;
    let mut out = vec![0u8; row_bytes(ty, x.len())];
    // SAFETY: `out` is exactly the size of `nrows` rows of `ty`; no imatrix.
    let written = unsafe {
        sys::ggml_quantize_chunk(
            ty.id() as sys::ggml_type,
            x.as_ptr(),
            out.as_mut_ptr().cast(),
            0,
            nrows as i64,
            n_per_row as i64,
            std::ptr::null(),
        )
    };
    assert_eq!(written, out.len());
    out
}

fn ggml_from_float(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let f = cpu_traits(ty)
        .from_float
        .unwrap_or_else(|| panic!("no CPU from_float for {ty}"));
    let mut out = vec![0u8; row_bytes(ty, x.len())];
    // SAFETY: `out` holds exactly x.len() values of `ty`.
    unsafe { f(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
    out
}

fn ggml_from_float_ref(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let f = traits(ty)
        .from_float_ref
        .unwrap_or_else(|| panic!("no from_float_ref for {ty}"));
    let mut out = vec![0u8; row_bytes(ty, x.len())];
    // SAFETY: as above.
    unsafe { f(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
    out
}

fn ggml_vec_dot(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    let t = cpu_traits(ty);
    assert_eq!(
        t.vec_dot_type,
        quant::vec_dot_type(ty).id() as sys::ggml_type,
        "{ty}"
    );
    let f = t.vec_dot.unwrap_or_else(|| panic!("no vec_dot for {ty}"));
    assert!(w.len() >= row_bytes(ty, n));
    assert!(a.len() >= row_bytes(quant::vec_dot_type(ty), n));
    let mut s = 0f32;
    // SAFETY: both rows hold n values of their types; one row, one result.
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

fn ours_dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    quant::dequantize(ty, bytes, &mut out).unwrap();
    out
}

fn ours_quantize(ty: GgmlType, x: &[f32], reference: bool) -> Vec<u8> {
    let mut out = vec![0u8; row_bytes(ty, x.len())];
    if reference {
        quant::quantize_reference(ty, x, &mut out).unwrap();
    } else {
        quant::quantize(ty, x, &mut out).unwrap();
    }
    out
}

/// Index and values of the first differing float bits, if any.
fn first_bit_diff(a: &[f32], b: &[f32]) -> Option<(usize, f32, f32, usize)> {
    let count = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
        .map(|i| (i, a[i], b[i], count))
}

fn first_byte_diff(a: &[u8], b: &[u8], block: usize) -> Option<String> {
    let count = a.iter().zip(b).filter(|(x, y)| x != y).count();
    a.iter().zip(b).position(|(x, y)| x != y).map(|i| {
        let blk = i / block;
        format!(
            "{count} bytes differ; first at byte {i} (block {blk}, offset {}): ours {:#04x}, ggml {:#04x}",
            i % block,
            a[i],
            b[i]
        )
    })
}

#[test]
fn dequantize_matches_ggml_to_float_bit_for_bit() {
    let mut rng = Rng(11);
    // (ggml has no to_float for the activation-only Q8_1 and Q8_K.)
    for ty in WEIGHT_TYPES {
        let n = 256 * 24;
        let inputs = [
            rng.blocks(ty, n / ty.block_size()),
            ggml_quantize_chunk(ty, &rng.values(n, 0.5), 512),
        ];
        for bytes in inputs {
            let ours = ours_dequantize(ty, &bytes, n);
            let theirs = ggml_to_float(ty, &bytes, n);
            if let Some((i, a, b, count)) = first_bit_diff(&ours, &theirs) {
                panic!("{ty}: {count} values differ; first at {i}: ours {a:e}, ggml {b:e}");
            }
        }
    }
}

#[test]
fn reference_quantize_matches_ggml_quantize_chunk() {
    let mut rng = Rng(12);
    let chunked = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
    ];
    for scale in [1e-3f32, 0.3, 40.0] {
        let x = rng.values(256 * 32, scale);
        for ty in chunked {
            let ours = ours_quantize(ty, &x, true);
            let theirs = ggml_quantize_chunk(ty, &x, 1024);
            if let Some(d) = first_byte_diff(&ours, &theirs, ty.type_size()) {
                panic!("{ty} (scale {scale}): {d}");
            }
        }
        // Q8_1 is not in ggml_quantize_chunk; use its row reference. (Q8_K
        // has none: its x86 from_float is the reference, checked below.)
        let ty = GgmlType::Q8_1;
        let ours = ours_quantize(ty, &x, true);
        let theirs = ggml_from_float_ref(ty, &x);
        if let Some(d) = first_byte_diff(&ours, &theirs, ty.type_size()) {
            panic!("{ty} (scale {scale}): {d}");
        }
    }
}

/// Blocks whose scaled values land exactly on .5, to pin down tie rounding:
/// with amax = 127 the x86 inverse scale is exactly 1.
fn tie_rows(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n)
        .map(|_| (rng.next_u64() % 250) as f32 - 125.0 + 0.5)
        .collect();
    for blk in x.chunks_mut(32) {
        blk[(rng.next_u64() % 32) as usize] = if rng.uniform() < 0.5 { 127.0 } else { -127.0 };
    }
    x
}

#[test]
fn activation_quantize_matches_ggml_cpu_from_float() {
    let mut rng = Rng(13);
    let types = [
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q8_K,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
    ];
    let mut rows = vec![tie_rows(&mut rng, 256 * 16)];
    for scale in [1e-4f32, 0.05, 1.0, 300.0] {
        rows.push(rng.values(256 * 16, scale));
    }
    for x in &rows {
        for ty in types {
            let ours = ours_quantize(ty, x, false);
            let theirs = ggml_from_float(ty, x);
            if let Some(d) = first_byte_diff(&ours, &theirs, ty.type_size()) {
                panic!("{ty}: {d}");
            }
        }
    }
}

/// The ties really are ties: the file-writing reference rounds them away
/// from zero, the x86 activation quantizer to even.
#[test]
fn q8_0_tie_rounding_differs_between_reference_and_x86() {
    let mut rng = Rng(14);
    let x = tie_rows(&mut rng, 32 * 8);
    let x86 = ggml_from_float(GgmlType::Q8_0, &x);
    let reference = ggml_quantize_chunk(GgmlType::Q8_0, &x, 256);
    assert_ne!(x86, reference);
    assert_eq!(ours_quantize(GgmlType::Q8_0, &x, false), x86);
    assert_eq!(ours_quantize(GgmlType::Q8_0, &x, true), reference);
}

#[test]
fn vec_dot_matches_ggml_cpu_vec_dot() {
    let mut rng = Rng(15);
    let mut worst = Vec::new();
    for ty in WEIGHT_TYPES {
        let at = quant::vec_dot_type(ty);
        // 2816 = 88·32; 4096 + 17 exercises the float kernels' tails.
        let sizes: &[usize] = if ty.block_size() == 1 {
            &[1, 31, 256, 1024, 2816, 4113]
        } else {
            &[256, 1024, 2816]
        };
        for &n in sizes {
            for trial in 0..6 {
                let w = if trial % 2 == 0 {
                    rng.blocks(ty, n / ty.block_size())
                } else {
                    ggml_quantize_chunk(ty, &rng.values(n, 0.05), n)
                };
                let a = ggml_from_float(at, &rng.values(n, 1.0 + trial as f32));
                let ours = quant::vec_dot(ty, n, &w, &a);
                let theirs = ggml_vec_dot(ty, n, &w, &a);
                let rel = ((ours - theirs) / theirs.abs().max(1e-30)).abs();
                if ours.to_bits() != theirs.to_bits() {
                    worst.push((ty, n, trial, ours, theirs, rel));
                }
            }
        }
    }
    // Every type reproduces its AVX2 kernel exactly.
    for &(ty, n, trial, ours, theirs, rel) in &worst {
        eprintln!("{ty} n={n} trial={trial}: ours {ours:e} vs ggml {theirs:e} (rel {rel:e})");
    }
    assert!(worst.is_empty(), "{} dot products differ", worst.len());
}

/// Dequantize every tensor of a model file both ways, a chunk of rows at a
/// time, and require identical bits; also dot the first rows of each 2-D
/// quantized tensor with a random activation through both vec_dots.
fn check_model(file: &str) {
    let path = strata::model_cache::dir().join(file);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-models.sh or set STRATA_MODELS_DIR",
        path.display()
    );
    let gguf = strata::gguf::GgufFile::open(&path).expect("open model");
    let mut rng = Rng(16);
    let mut checked = 0u64;
    for info in gguf.tensors() {
        let data = gguf.tensor_data(info);
        let ty = info.ty;
        let row = info.row_len() as usize;
        let rb = row_bytes(ty, row);
        assert_eq!(data.len() as u64, info.size, "{}", info.name);
        // About a million values per chunk keeps memory small.
        let rows_per_chunk = (1 << 20) / row.max(1) + 1;
        for chunk in data.chunks(rb * rows_per_chunk) {
            let n = chunk.len() / rb * row;
            let ours = ours_dequantize(ty, chunk, n);
            let theirs = ggml_to_float(ty, chunk, n);
            if let Some((i, a, b, count)) = first_bit_diff(&ours, &theirs) {
                panic!("{file}: tensor {} ({ty}): {count} values differ; first at {i}: ours {a:e}, ggml {b:e}", info.name);
            }
            checked += n as u64;
        }
        if ty != GgmlType::F32 && info.dims.len() == 2 {
            let at = quant::vec_dot_type(ty);
            let a = ggml_from_float(at, &rng.values(row, 1.0));
            for r in data.chunks_exact(rb).take(8) {
                let ours = quant::vec_dot(ty, row, r, &a);
                let theirs = ggml_vec_dot(ty, row, r, &a);
                let float = matches!(ty, GgmlType::F16 | GgmlType::BF16);
                let ok = ours.to_bits() == theirs.to_bits()
                    || (float && ((ours - theirs) / theirs).abs() < 1e-5);
                assert!(
                    ok,
                    "{file}: {} ({ty}) vec_dot ours {ours:e} vs ggml {theirs:e}",
                    info.name
                );
            }
        }
    }
    eprintln!(
        "{file}: {} tensors, {checked} values identical",
        gguf.tensors().len()
    );
}

#[test]
fn smollm2_q4_1_tensors_dequantize_identically() {
    check_model("SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn gemma3_q4_k_m_tensors_dequantize_identically() {
    check_model("gemma-3-270m-q4_k_m.gguf");
}
