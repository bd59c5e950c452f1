//! Every kernel against the scalar reference, bit for bit: one test body
//! run on every level this CPU has, on random rows (quantized like real
//! weights and activations, and raw random blocks including −128 quants),
//! on several lengths and row counts, and on rows of real model files when
//! they are present.

use super::*;
use crate::gguf::GgufFile;
use crate::quant;

/// The weight types with a dot product.
pub(super) const TYPES: [GgmlType; 13] = [
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

/// SplitMix64.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub(super) fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform()).sum();
        (s - 2.0) * 1.732_050_8
    }

    /// Weight- or activation-like values: normal with outliers and zeros.
    pub(super) fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| match self.uniform() {
                r if r < 0.01 => 0.0,
                r if r < 0.03 => self.normal() * 10.0 * scale,
                _ => self.normal() * scale,
            })
            .collect()
    }

    pub(super) fn f16(&mut self, lo: f32, hi: f32) -> [u8; 2] {
        half::f16::from_f32(lo + self.uniform() * (hi - lo)).to_le_bytes()
    }
}

/// `nb` blocks of random bytes with finite, model-like scale fields; every
/// quant bit pattern occurs (−128 in Q8 blocks included).
pub(super) fn random_blocks(rng: &mut Rng, ty: GgmlType, nb: usize) -> Vec<u8> {
    let ts = ty.type_size();
    let mut out: Vec<u8> = (0..nb * ts).map(|_| rng.next_u64() as u8).collect();
    for b in out.chunks_exact_mut(ts) {
        let n = b.len();
        match ty {
            GgmlType::F32 => b.copy_from_slice(&rng.normal().to_le_bytes()),
            GgmlType::F16 => b.copy_from_slice(&half::f16::from_f32(rng.normal()).to_le_bytes()),
            GgmlType::BF16 => b.copy_from_slice(&half::bf16::from_f32(rng.normal()).to_le_bytes()),
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => {
                b[..2].copy_from_slice(&rng.f16(1e-4, 0.05))
            }
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => {
                b[..2].copy_from_slice(&rng.f16(1e-4, 0.05));
                b[2..4].copy_from_slice(&rng.f16(-1.0, 1.0));
            }
            GgmlType::Q8_K => {
                b[..4].copy_from_slice(&(1e-4 + rng.uniform() * 0.02).to_le_bytes());
                for j in 0..16 {
                    let s: i32 = b[4 + 16 * j..20 + 16 * j]
                        .iter()
                        .map(|&q| q as i8 as i32)
                        .sum();
                    b[260 + 2 * j..262 + 2 * j].copy_from_slice(&(s as i16).to_le_bytes());
                }
            }
            GgmlType::Q2_K => {
                let (d, m) = (rng.f16(1e-4, 0.05), rng.f16(1e-4, 0.05));
                b[n - 4..n - 2].copy_from_slice(&d);
                b[n - 2..].copy_from_slice(&m);
            }
            GgmlType::Q3_K | GgmlType::Q6_K => b[n - 2..].copy_from_slice(&rng.f16(1e-4, 0.05)),
            GgmlType::Q4_K | GgmlType::Q5_K => {
                b[..2].copy_from_slice(&rng.f16(1e-4, 0.05));
                b[2..4].copy_from_slice(&rng.f16(1e-4, 0.05));
            }
            _ => {}
        }
    }
    out
}

/// Whether `ty` can be quantized from f32 here (not the K-quants).
pub(super) fn quantizable(ty: GgmlType) -> bool {
    !matches!(
        ty,
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K
    )
}

/// The levels this CPU runs, with the kernel each has for `ty`.
fn kernels_for(ty: GgmlType) -> Vec<RowDot> {
    Isa::ALL
        .iter()
        .filter_map(|&isa| row_dot_for(ty, isa))
        .collect()
}

/// Checks every kernel for `ty` against the reference on `rows` weight rows
/// (concatenated in `w`) and the activation row `a` of `n` values, through
/// both `dot` and `dot_rows`. Returns the number of comparisons.
fn check_rows(ty: GgmlType, n: usize, w: &[u8], a: &[u8], what: &str) -> usize {
    let rb = ty.row_bytes(n as u64).unwrap() as usize;
    let rows = w.len() / rb;
    let want: Vec<u32> = w
        .chunks_exact(rb)
        .map(|r| quant::vec_dot(ty, n, r, a).to_bits())
        .collect();
    let mut checks = 0;
    for k in kernels_for(ty) {
        let mut got = vec![0f32; rows];
        k.dot_rows(w, a, &mut got);
        for (r, (g, &e)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                e,
                "{ty} {} {what}: n {n}, row {r} of {rows}: {g} vs reference {}",
                k.isa,
                f32::from_bits(e)
            );
        }
        let one = k.dot(&w[..rb], a);
        assert_eq!(one.to_bits(), want[0], "{ty} {} {what}: dot, n {n}", k.isa);
        checks += rows + 1;
    }
    checks
}

#[test]
fn levels_are_consistent() {
    assert!(Isa::Scalar.is_available());
    for ty in TYPES {
        assert_eq!(row_dot_for(ty, Isa::Scalar).unwrap().isa, Isa::Scalar);
        let best = row_dot(ty).unwrap();
        assert!(best.isa.is_available(), "{ty}");
    }
    assert!(row_dot(GgmlType::I32).is_none());
    if Isa::Avx2.is_available() {
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            assert!(row_dot_for(ty, Isa::Avx2).is_some(), "{ty}");
        }
    }
    println!(
        "levels here: {:?}",
        Isa::ALL
            .iter()
            .filter(|i| i.is_available())
            .collect::<Vec<_>>()
    );
}

#[test]
fn quantized_rows_match_the_reference_bit_for_bit() {
    let mut rng = Rng(1);
    let mut checks = 0;
    for ty in TYPES.into_iter().filter(|&t| quantizable(t)) {
        let at = quant::vec_dot_type(ty);
        let lengths: &[usize] = if ty.block_size() == 1 {
            &[1, 7, 31, 32, 33, 100, 576, 1000]
        } else {
            &[32, 64, 96, 256, 576, 1536, 4096]
        };
        for &n in lengths {
            for rows in [1, 3, 4, 5, 8, 11] {
                for scale in [0.02f32, 1.0, 30.0] {
                    let rb = ty.row_bytes(n as u64).unwrap() as usize;
                    let mut w = vec![0u8; rb * rows];
                    let mut a = vec![0u8; at.row_bytes(n as u64).unwrap() as usize];
                    quant::quantize_reference(ty, &rng.values(n * rows, scale), &mut w).unwrap();
                    quant::quantize(at, &rng.values(n, 1.0 / scale), &mut a).unwrap();
                    checks += check_rows(ty, n, &w, &a, "quantized");
                }
            }
        }
    }
    println!("{checks} comparisons");
}

#[test]
fn random_blocks_match_the_reference_bit_for_bit() {
    let mut rng = Rng(2);
    let mut checks = 0;
    for ty in TYPES {
        let at = quant::vec_dot_type(ty);
        let bs = ty.block_size();
        let block_counts: &[usize] = if bs == 1 {
            &[5, 32, 64, 77, 1024]
        } else if bs == 32 {
            &[1, 2, 3, 18, 48, 160]
        } else {
            &[1, 2, 3, 6, 16]
        };
        for &nb in block_counts {
            for rows in [1, 4, 6, 9] {
                for _ in 0..4 {
                    let w = random_blocks(&mut rng, ty, nb * rows);
                    let a = random_blocks(&mut rng, at, nb * bs / at.block_size());
                    checks += check_rows(ty, nb * bs, &w, &a, "random blocks");
                }
            }
        }
    }
    println!("{checks} comparisons");
}

/// Extreme quants: all −128 or all 127 on either side (the cases where
/// sign tricks and saturating 16-bit sums go wrong), and mixed.
#[test]
fn extreme_quants_match_the_reference() {
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q4_1,
        GgmlType::Q5_1,
    ] {
        let at = quant::vec_dot_type(ty);
        let (ts, ats) = (ty.type_size(), at.type_size());
        let nb = 18;
        for (wq, aq) in [
            (0x80u8, 0x80u8),
            (0x80, 0x7f),
            (0x7f, 0x80),
            (0xff, 0x80),
            (0x00, 0x80),
        ] {
            let mut w = vec![wq; ts * nb * 5];
            let mut a = vec![aq; ats * nb];
            // Scale fields 1.0 (f16 0x3c00), Q8_1 sum field -1.0.
            for b in w.chunks_exact_mut(ts) {
                b[..2].copy_from_slice(&[0x00, 0x3c]);
                if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                    b[2..4].copy_from_slice(&[0x00, 0xbc]);
                }
            }
            for b in a.chunks_exact_mut(ats) {
                b[..2].copy_from_slice(&[0x00, 0x3c]);
                if at == GgmlType::Q8_1 {
                    b[2..4].copy_from_slice(&[0x00, 0xbc]);
                }
            }
            check_rows(ty, nb * 32, &w, &a, &format!("w {wq:#x} a {aq:#x}"));
        }
    }
}

#[test]
fn mismatched_sizes_give_nan() {
    for isa in Isa::ALL {
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_1,
            GgmlType::Q4_K,
            GgmlType::F16,
        ] {
            let Some(k) = row_dot_for(ty, isa) else {
                continue;
            };
            let (ts, at) = (ty.type_size(), quant::vec_dot_type(ty));
            let per = at.type_size() * ty.block_size() / at.block_size();
            assert!(
                k.dot(&vec![0u8; ts], &vec![0u8; 2 * per]).is_nan(),
                "{ty} {isa}"
            );
            assert!(
                k.dot(&vec![0u8; ts + 1], &vec![0u8; per]).is_nan(),
                "{ty} {isa}"
            );
            let mut out = [0f32; 3];
            k.dot_rows(&vec![0u8; 4 * ts], &vec![0u8; per], &mut out);
            assert!(out.iter().all(|v| v.is_nan()), "{ty} {isa}");
            k.dot_rows(&[], &[], &mut []);
        }
    }
}

/// Up to `max_rows` rows of each listed tensor of a real model, passed to
/// `check(name, type, values per row, rows' bytes)`. A model that is not
/// in the cache fails the test: `scripts/fetch-models.sh` puts it there.
pub(super) fn for_model_tensors(
    file: &str,
    tensors: &[&str],
    max_rows: usize,
    mut check: impl FnMut(&str, GgmlType, usize, &[u8]),
) {
    let path = crate::model_cache::dir().join(file);
    let f = GgufFile::open(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/fetch-models.sh or set STRATA_MODELS_DIR",
            path.display()
        )
    });
    for name in tensors {
        let t = f
            .tensor(name)
            .unwrap_or_else(|| panic!("{file}: no tensor {name}"));
        let n = t.row_len() as usize;
        let rb = t.ty.row_bytes(n as u64).unwrap() as usize;
        let rows = (t.n_rows() as usize).min(max_rows);
        check(name, t.ty, n, &f.tensor_data(t)[..rows * rb]);
        println!("{file} {name} ({}): {rows} rows x {n} ok", t.ty);
    }
}

/// Up to `max_rows` rows of each listed tensor of a real model against
/// activations quantized from model-like values.
fn check_model(file: &str, tensors: &[&str], max_rows: usize) {
    let mut rng = Rng(3);
    for_model_tensors(file, tensors, max_rows, |name, ty, n, w| {
        let at = quant::vec_dot_type(ty);
        let mut a = vec![0u8; at.row_bytes(n as u64).unwrap() as usize];
        for scale in [0.05f32, 1.0, 8.0] {
            quant::quantize(at, &rng.values(n, scale), &mut a).unwrap();
            check_rows(ty, n, w, &a, name);
        }
    });
}

#[test]
fn smollm2_tensors_match_the_reference() {
    check_model(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        &[
            "token_embd.weight",
            "blk.0.attn_q.weight",
            "blk.0.attn_k.weight",
            "blk.0.ffn_up.weight",
            "blk.0.ffn_down.weight",
            "blk.29.ffn_gate.weight",
        ],
        2048,
    );
}

#[test]
fn gemma3_tensors_match_the_reference() {
    check_model(
        "gemma-3-270m-q4_k_m.gguf",
        &[
            "token_embd.weight",
            "blk.0.attn_q.weight",
            "blk.0.attn_v.weight",
            "blk.0.attn_output.weight",
            "blk.0.ffn_down.weight",
            "blk.0.ffn_up.weight",
            "blk.17.ffn_down.weight",
        ],
        2048,
    );
}
