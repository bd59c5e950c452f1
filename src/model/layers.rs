//! The transformer block shared by the supported architectures, written as
//! one readable pass: norm, attention, residual add, norm, MLP, residual add.

use super::config::Config;
use super::weights::LayerWeights;
use crate::kv_cache::KvCache;
use crate::ops::attention::{attention, AttentionShape};
use crate::ops::{act, matmul, norm};

/// Scratch buffers for one forward call of `n` tokens.
pub struct Scratch {
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

impl Scratch {
    pub fn new(cfg: &Config, n: usize) -> Scratch {
        Scratch {
            h: vec![0.0; n * cfg.n_embd],
            q: vec![0.0; n * cfg.n_head * cfg.head_dim_k],
            k: vec![0.0; n * cfg.k_width()],
            v: vec![0.0; n * cfg.v_width()],
            att: vec![0.0; n * cfg.n_head * cfg.head_dim_v],
            proj: vec![0.0; n * cfg.n_embd],
            gate: vec![0.0; n * cfg.n_ff],
            up: vec![0.0; n * cfg.n_ff],
        }
    }
}

/// Run one block over `x` (`[n][n_embd]`, updated in place) for tokens at
/// `positions`, reading and extending cache layer `cache_layer`.
pub fn block(
    cfg: &Config,
    w: &LayerWeights,
    x: &mut [f32],
    positions: &[usize],
    cache: &mut KvCache,
    cache_layer: usize,
    s: &mut Scratch,
) {
    let n = positions.len();
    // Attention.
    norm::rms_norm_into(x, &w.attn_norm, cfg.rms_eps, &mut s.h);
    matmul(&w.wq, &s.h, n, &mut s.q);
    matmul(&w.wk, &s.h, n, &mut s.k);
    matmul(&w.wv, &s.h, n, &mut s.v);
    cfg.rope
        .apply(&mut s.q, cfg.n_head, cfg.head_dim_k, positions);
    cfg.rope
        .apply(&mut s.k, cfg.n_head_kv, cfg.head_dim_k, positions);
    cache.store(cache_layer, positions[0], &s.k, &s.v);
    let shape = AttentionShape {
        n_head: cfg.n_head,
        n_kv_head: cfg.n_head_kv,
        k_dim: cfg.head_dim_k,
        v_dim: cfg.head_dim_v,
        scale: 1.0 / (cfg.head_dim_k as f32).sqrt(),
        window: None,
        softcap: None,
    };
    attention(
        &shape,
        &s.q,
        cache.keys(cache_layer),
        cache.values(cache_layer),
        positions,
        &mut s.att,
    );
    matmul(&w.wo, &s.att, n, &mut s.proj);
    add(x, &s.proj);

    // MLP.
    norm::rms_norm_into(x, &w.ffn_norm, cfg.rms_eps, &mut s.h);
    matmul(&w.w_gate, &s.h, n, &mut s.gate);
    matmul(&w.w_up, &s.h, n, &mut s.up);
    act::swiglu(&mut s.gate, &s.up);
    matmul(&w.w_down, &s.gate, n, &mut s.proj);
    add(x, &s.proj);
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
