//! Every tile kernel against the scalar reference, bit for bit, for every
//! (row, token) pair: on every level this CPU has, on random rows (quantized
//! like real weights and activations, and raw random blocks including −128
//! quants), extreme quants, row counts that do and do not fill a tile,
//! token counts 1..=9, and rows of real model files when they are present.

use super::tests::{for_model_tensors, quantizable, random_blocks, Rng, TYPES};
use super::*;
use crate::quant;

/// The types that have a tile kernel at the AVX-512 VNNI level.
const TILED: [GgmlType; 7] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

/// The tile kernels (or per-token row kernels) this CPU runs for `ty`.
fn tiles_for(ty: GgmlType) -> Vec<TileDot> {
    Isa::ALL
        .iter()
        .filter_map(|&isa| tile_dot_for(ty, isa))
        .collect()
}

/// Checks every level's [`TileDot::dot_tile`] for `ty` against the
/// reference on the weight rows `w` and the `n_tokens` activation rows `a`
/// (`n` values each). Returns the number of comparisons.
fn check_tile(ty: GgmlType, n: usize, w: &[u8], a: &[u8], n_tokens: usize, what: &str) -> usize {
    let rb = ty.row_bytes(n as u64).unwrap() as usize;
    let ab = quant::vec_dot_type(ty).row_bytes(n as u64).unwrap() as usize;
    assert_eq!(a.len(), ab * n_tokens);
    let rows = w.len() / rb;
    let want: Vec<u32> = a
        .chunks_exact(ab)
        .flat_map(|y| {
            w.chunks_exact(rb)
                .map(move |x| quant::vec_dot(ty, n, x, y).to_bits())
        })
        .collect();
    let mut checks = 0;
    for k in tiles_for(ty) {
        let mut got = vec![0f32; rows * n_tokens];
        k.dot_tile(w, a, n_tokens, &mut got);
        for (i, (g, &e)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                e,
                "{ty} {k:?} {what}: n {n}, token {} of {n_tokens}, row {} of {rows}: {g} vs reference {}",
                i / rows,
                i % rows,
                f32::from_bits(e)
            );
        }
        checks += got.len();
    }
    checks
}

#[test]
fn tiled_types_have_tile_kernels() {
    for ty in TYPES {
        let k = tile_dot(ty).unwrap();
        assert_eq!(k.isa, row_dot(ty).unwrap().isa, "{ty}");
        assert_eq!(
            k.is_tiled(),
            k.isa == Isa::Avx512Vnni && TILED.contains(&ty),
            "{ty} {k:?}"
        );
        assert!(!tile_dot_for(ty, Isa::Scalar).unwrap().is_tiled());
    }
    assert!(tile_dot(GgmlType::I32).is_none());
    println!(
        "{:?}",
        TYPES
            .iter()
            .map(|&t| tile_dot(t).unwrap())
            .collect::<Vec<_>>()
    );
}

#[test]
fn quantized_tiles_match_the_reference_bit_for_bit() {
    let mut rng = Rng(11);
    let mut checks = 0;
    for ty in TYPES.into_iter().filter(|&t| quantizable(t)) {
        let at = quant::vec_dot_type(ty);
        let lengths: &[usize] = if ty.block_size() == 1 {
            &[7, 64, 576]
        } else {
            &[32, 96, 576, 1536]
        };
        for &n in lengths {
            let rb = ty.row_bytes(n as u64).unwrap() as usize;
            let ab = at.row_bytes(n as u64).unwrap() as usize;
            for rows in [1, 3, 4, 5, 8, 11, 16] {
                for n_tokens in 1..=9 {
                    let scale = [0.02f32, 1.0, 30.0][(rows + n_tokens) % 3];
                    let mut w = vec![0u8; rb * rows];
                    let mut a = vec![0u8; ab * n_tokens];
                    quant::quantize_reference(ty, &rng.values(n * rows, scale), &mut w).unwrap();
                    let x = rng.values(n * n_tokens, 1.0 / scale);
                    for (ar, xr) in a.chunks_exact_mut(ab).zip(x.chunks_exact(n)) {
                        quant::quantize(at, xr, ar).unwrap();
                    }
                    checks += check_tile(ty, n, &w, &a, n_tokens, "quantized");
                }
            }
        }
    }
    println!("{checks} comparisons");
}

#[test]
fn random_block_tiles_match_the_reference_bit_for_bit() {
    let mut rng = Rng(12);
    let mut checks = 0;
    for ty in TYPES {
        let at = quant::vec_dot_type(ty);
        let bs = ty.block_size();
        let block_counts: &[usize] = if bs == 1 {
            &[5, 64]
        } else if bs == 32 {
            &[1, 2, 3, 18, 48]
        } else {
            &[1, 2, 6]
        };
        for &nb in block_counts {
            let n = nb * bs;
            for rows in [1, 4, 6, 9, 12] {
                for n_tokens in 1..=9 {
                    let w = random_blocks(&mut rng, ty, nb * rows);
                    let a = random_blocks(&mut rng, at, n / at.block_size() * n_tokens);
                    checks += check_tile(ty, n, &w, &a, n_tokens, "random blocks");
                }
            }
        }
    }
    println!("{checks} comparisons");
}

/// Extreme quants: all −128 or all 127 on either side, and mixed, per token.
#[test]
fn extreme_quant_tiles_match_the_reference() {
    let pats = [0x80u8, 0x7f, 0xff, 0x00, 0x88];
    for ty in TILED {
        let at = quant::vec_dot_type(ty);
        let (ts, ats) = (ty.type_size(), at.type_size());
        let nb = if ty.block_size() == 32 { 18 } else { 3 };
        let n = nb * ty.block_size();
        for (i, &wq) in pats.iter().enumerate() {
            let rows = 5 + i;
            let mut w = vec![wq; ts * nb * rows];
            // Tokens with different quant patterns.
            let n_tokens = pats.len();
            let mut a: Vec<u8> = pats
                .iter()
                .flat_map(|&aq| std::iter::repeat_n(aq, ats * nb))
                .collect();
            // Scale fields 1.0 (f16 0x3c00), minimum / Q8_1 sum field -1.0;
            // K-quants: d (and dmin) 1.0, Q8_K: d 1.0 and true sums.
            let one = [0x00, 0x3c];
            for b in w.chunks_exact_mut(ts) {
                let n = b.len();
                match ty {
                    GgmlType::Q4_1 | GgmlType::Q5_1 => {
                        b[..2].copy_from_slice(&one);
                        b[2..4].copy_from_slice(&[0x00, 0xbc]);
                    }
                    GgmlType::Q4_K => {
                        b[..2].copy_from_slice(&one);
                        b[2..4].copy_from_slice(&one);
                    }
                    GgmlType::Q6_K => b[n - 2..].copy_from_slice(&one),
                    _ => b[..2].copy_from_slice(&one),
                }
            }
            for b in a.chunks_exact_mut(ats) {
                match at {
                    GgmlType::Q8_K => {
                        b[..4].copy_from_slice(&1f32.to_le_bytes());
                        for j in 0..16 {
                            let s: i32 = b[4 + 16 * j..20 + 16 * j]
                                .iter()
                                .map(|&q| q as i8 as i32)
                                .sum();
                            b[260 + 2 * j..262 + 2 * j].copy_from_slice(&(s as i16).to_le_bytes());
                        }
                    }
                    GgmlType::Q8_1 => {
                        b[..2].copy_from_slice(&one);
                        b[2..4].copy_from_slice(&[0x00, 0xbc]);
                    }
                    _ => b[..2].copy_from_slice(&one),
                }
            }
            check_tile(ty, n, &w, &a, n_tokens, &format!("w {wq:#x}"));
        }
    }
}

#[test]
fn mismatched_tile_sizes_give_nan() {
    for isa in Isa::ALL {
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_1,
            GgmlType::Q4_0,
            GgmlType::Q4_K,
            GgmlType::F16,
        ] {
            let Some(k) = tile_dot_for(ty, isa) else {
                continue;
            };
            let (ts, at) = (ty.type_size(), quant::vec_dot_type(ty));
            let per = at.type_size() * ty.block_size() / at.block_size();
            let nan = |w: &[u8], a: &[u8], n_tokens: usize, n_out: usize| {
                let mut out = vec![0f32; n_out];
                k.dot_tile(w, a, n_tokens, &mut out);
                assert!(out.iter().all(|v| v.is_nan()), "{ty} {isa}: {out:?}");
            };
            // Tokens longer than rows; rows not whole; tokens not whole.
            nan(&vec![0u8; 4 * ts], &vec![0u8; 2 * 2 * per], 2, 8);
            nan(&vec![0u8; 4 * ts + 1], &vec![0u8; 2 * per], 2, 8);
            nan(&vec![0u8; 4 * ts], &vec![0u8; 2 * per + 1], 2, 8);
            // Output not whole tokens; no tokens.
            nan(&vec![0u8; 4 * ts], &vec![0u8; 3 * per], 3, 13);
            nan(&vec![0u8; 4 * ts], &[], 0, 4);
            k.dot_tile(&[], &[], 1, &mut []);
            if k.is_tiled() {
                // Rows of no values: every dot product is +0, as the
                // reference's.
                let mut out = [f32::NAN; 6];
                k.dot_tile(&[], &[], 2, &mut out);
                assert!(out.iter().all(|v| v.to_bits() == 0), "{ty} {isa}: {out:?}");
            }
        }
    }
}

/// Up to `max_rows` rows of each listed tensor of a real model against
/// tokens quantized from model-like values.
fn check_model(file: &str, tensors: &[&str], max_rows: usize) {
    let mut rng = Rng(13);
    for_model_tensors(file, tensors, max_rows, |name, ty, n, w| {
        let at = quant::vec_dot_type(ty);
        let ab = at.row_bytes(n as u64).unwrap() as usize;
        let n_tokens = 7;
        let mut a = vec![0u8; ab * n_tokens];
        for (i, ar) in a.chunks_exact_mut(ab).enumerate() {
            let scale = [0.05f32, 1.0, 8.0][i % 3];
            quant::quantize(at, &rng.values(n, scale), ar).unwrap();
        }
        check_tile(ty, n, w, &a, n_tokens, name);
    });
}

#[test]
fn smollm2_tensor_tiles_match_the_reference() {
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
        1024,
    );
}

#[test]
fn gemma3_tensor_tiles_match_the_reference() {
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
        1024,
    );
}
