//! Strata's attention checked bit for bit against ggml's non-fused CPU
//! attention (linked through `llama-cpp-sys-2`), built as llama.cpp's
//! `build_attn_mha` builds it: `mul_mat(K, Q)` over an f16 K cache,
//! `soft_max_ext` with a causal mask, `mul_mat(Vᵀ, KQ)` over a transposed
//! f16 V cache padded to 256 cells, for a batch of tokens and for a single
//! token.
//!
//! Run: `cargo test --release --features llama-cpp --test attention_vs_ggml`.
#![cfg(feature = "llama-cpp")]

use std::sync::Once;

use half::f16;
use llama_cpp_sys_2 as sys;
use strata::ops::attention::{attention, AttentionShape};

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

    fn normal(&mut self) -> f32 {
        let s: f32 = (0..4)
            .map(|_| (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
            .sum();
        (s - 2.0) * 1.732_050_8
    }
}

fn init() {
    static ONCE: Once = Once::new();
    // SAFETY: ggml_cpu_init only fills ggml's internal lookup tables.
    ONCE.call_once(|| unsafe { sys::ggml_cpu_init() });
}

/// A test case: `past` cached positions, then `n` new tokens.
struct Case {
    shape: AttentionShape,
    past: usize,
    n: usize,
    /// Spread of the scores (larger: peakier softmax, tiny probabilities).
    q_scale: f32,
    seed: u64,
}

const N_KV: usize = 256;

/// ggml's result, `[token][n_head * v_dim]`.
fn ggml_attention(c: &Case, q: &[f32], keys: &[f16], values: &[f16], threads: i32) -> Vec<f32> {
    let s = &c.shape;
    let (dk, dv, nh, nkvh) = (s.k_dim, s.v_dim, s.n_head, s.n_kv_head);
    let (n, len) = (c.n, c.past + c.n);
    init();
    // SAFETY: every tensor is created in `ctx` with the sizes written to it
    // below; the context is freed at the end.
    unsafe {
        let ctx = sys::ggml_init(sys::ggml_init_params {
            mem_size: 256 << 20,
            mem_buffer: std::ptr::null_mut(),
            no_alloc: false,
        });
        assert!(!ctx.is_null());
        let f16t = sys::GGML_TYPE_F16;
        let f32t = sys::GGML_TYPE_F32;
        // K cache: [N_KV][nkvh * dk]; V cache transposed: [nkvh * dv][N_KV].
        let kc = sys::ggml_new_tensor_2d(ctx, f16t, (nkvh * dk) as i64, N_KV as i64);
        let vc = sys::ggml_new_tensor_2d(ctx, f16t, N_KV as i64, (nkvh * dv) as i64);
        let kd = std::slice::from_raw_parts_mut((*kc).data as *mut u16, N_KV * nkvh * dk);
        let vd = std::slice::from_raw_parts_mut((*vc).data as *mut u16, N_KV * nkvh * dv);
        kd.fill(0);
        vd.fill(0);
        for j in 0..len {
            for i in 0..nkvh * dk {
                kd[j * nkvh * dk + i] = keys[j * nkvh * dk + i].to_bits();
            }
            for i in 0..nkvh * dv {
                vd[i * N_KV + j] = values[j * nkvh * dv + i].to_bits();
            }
        }
        let qt = sys::ggml_new_tensor_3d(ctx, f32t, dk as i64, nh as i64, n as i64);
        std::slice::from_raw_parts_mut((*qt).data as *mut f32, n * nh * dk).copy_from_slice(q);
        let mask = sys::ggml_new_tensor_2d(ctx, f32t, N_KV as i64, n as i64);
        let md = std::slice::from_raw_parts_mut((*mask).data as *mut f32, n * N_KV);
        for t in 0..n {
            let pos = c.past + t;
            let first = s.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for j in 0..N_KV {
                md[t * N_KV + j] = if j >= first && j <= pos {
                    0.0
                } else {
                    f32::NEG_INFINITY
                };
            }
        }

        let k = sys::ggml_view_4d(
            ctx,
            kc,
            dk as i64,
            nkvh as i64,
            N_KV as i64,
            1,
            dk * 2,
            nkvh * dk * 2,
            nkvh * dk * 2 * N_KV,
            0,
        );
        let v = sys::ggml_view_4d(
            ctx,
            vc,
            N_KV as i64,
            nkvh as i64,
            dv as i64,
            1,
            N_KV * dv * 2,
            N_KV * 2,
            N_KV * dv * nkvh * 2,
            0,
        );
        let qp = sys::ggml_permute(ctx, qt, 0, 2, 1, 3);
        let k = sys::ggml_permute(ctx, k, 0, 2, 1, 3);
        let v = sys::ggml_permute(ctx, v, 0, 2, 1, 3);
        let mut kq = sys::ggml_mul_mat(ctx, k, qp);
        if let Some(cap) = s.softcap {
            // As build_attn_mha does it (the models that use a softcap
            // scale the query beforehand and pass scale 1).
            assert_eq!(s.scale, 1.0);
            kq = sys::ggml_scale(ctx, kq, 1.0 / cap);
            kq = sys::ggml_tanh(ctx, kq);
            kq = sys::ggml_scale(ctx, kq, cap);
        }
        let kq = sys::ggml_soft_max_ext(ctx, kq, mask, s.scale, 0.0);
        let kqv = sys::ggml_mul_mat(ctx, v, kq);
        let out = sys::ggml_cont(ctx, sys::ggml_permute(ctx, kqv, 0, 2, 1, 3));
        let gf = sys::ggml_new_graph(ctx);
        sys::ggml_build_forward_expand(gf, out);
        let status = sys::ggml_graph_compute_with_ctx(ctx, gf, threads);
        assert_eq!(status, sys::GGML_STATUS_SUCCESS);
        let r = std::slice::from_raw_parts((*out).data as *const f32, n * nh * dv).to_vec();
        sys::ggml_free(ctx);
        r
    }
}

fn check(c: &Case) {
    let s = &c.shape;
    let len = c.past + c.n;
    let mut rng = Rng(c.seed);
    let q: Vec<f32> = (0..c.n * s.n_head * s.k_dim)
        .map(|_| rng.normal() * c.q_scale)
        .collect();
    let keys: Vec<f16> = (0..len * s.n_kv_head * s.k_dim)
        .map(|_| f16::from_f32(rng.normal()))
        .collect();
    let values: Vec<f16> = (0..len * s.n_kv_head * s.v_dim)
        .map(|_| f16::from_f32(rng.normal() * 0.5))
        .collect();
    let positions: Vec<usize> = (c.past..len).collect();
    let mut ours = vec![0.0; c.n * s.n_head * s.v_dim];
    attention(s, &q, &keys, &values, &positions, &mut ours);
    for threads in [1, 2, 3] {
        let theirs = ggml_attention(c, &q, &keys, &values, threads);
        let bad: Vec<_> = ours
            .iter()
            .zip(&theirs)
            .enumerate()
            .filter(|(_, (a, b))| a.to_bits() != b.to_bits())
            .collect();
        assert!(
            bad.is_empty(),
            "past {} n {} threads {threads}: {} of {} differ, first {:?}",
            c.past,
            c.n,
            bad.len(),
            ours.len(),
            bad[0]
        );
    }
}

fn smollm2(window: Option<usize>) -> AttentionShape {
    AttentionShape {
        n_head: 9,
        n_kv_head: 3,
        k_dim: 64,
        v_dim: 64,
        scale: 0.125,
        window,
        softcap: None,
    }
}

#[test]
fn batch_matches_ggml_bit_for_bit() {
    for (i, (past, n, q_scale)) in [
        (0, 2, 1.0),
        (0, 17, 1.0),
        (5, 40, 3.0),
        (100, 64, 6.0),
        (0, 200, 2.0),
    ]
    .into_iter()
    .enumerate()
    {
        check(&Case {
            shape: smollm2(None),
            past,
            n,
            q_scale,
            seed: i as u64,
        });
    }
}

#[test]
fn single_token_matches_ggml_bit_for_bit() {
    for (i, past) in [0, 1, 7, 8, 33, 130, 255].into_iter().enumerate() {
        for q_scale in [1.0, 4.0, 12.0] {
            check(&Case {
                shape: smollm2(None),
                past,
                n: 1,
                q_scale,
                seed: 100 + i as u64,
            });
        }
    }
}

#[test]
fn other_head_sizes_match_ggml_bit_for_bit() {
    // A head length that is not a multiple of 32 (ggml_vec_dot_f16 leaves a
    // tail) nor of 8 (tinyBLAS pads the last step).
    for k_dim in [20, 48, 80] {
        let shape = AttentionShape {
            n_head: 4,
            n_kv_head: 2,
            k_dim,
            v_dim: 32,
            scale: 1.0 / (k_dim as f32).sqrt(),
            window: None,
            softcap: None,
        };
        check(&Case {
            shape: shape.clone(),
            past: 3,
            n: 9,
            q_scale: 2.0,
            seed: k_dim as u64,
        });
        check(&Case {
            shape,
            past: 50,
            n: 1,
            q_scale: 2.0,
            seed: k_dim as u64 + 1,
        });
    }
}

#[test]
fn sliding_window_matches_a_masked_ggml_softmax() {
    check(&Case {
        shape: smollm2(Some(16)),
        past: 30,
        n: 20,
        q_scale: 2.0,
        seed: 7,
    });
    check(&Case {
        shape: smollm2(Some(16)),
        past: 60,
        n: 1,
        q_scale: 2.0,
        seed: 8,
    });
}

#[test]
fn softcap_matches_ggml_bit_for_bit() {
    let shape = AttentionShape {
        scale: 1.0,
        softcap: Some(50.0),
        ..smollm2(None)
    };
    check(&Case {
        shape: shape.clone(),
        past: 10,
        n: 12,
        q_scale: 2.0,
        seed: 9,
    });
    check(&Case {
        shape,
        past: 40,
        n: 1,
        q_scale: 2.0,
        seed: 10,
    });
}
