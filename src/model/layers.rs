//! The transformer block shared by the supported architectures, written as
//! one readable pass: norm, attention, residual add, norm, MLP, residual add.
//! The steps some families add (Q/K/V biases, per-head Q/K norms, norms
//! after attention and after the MLP, query scaling, sliding windows) run
//! where the layer's weights and the config ask for them; see
//! [`BlockSpec`](super::arch::BlockSpec).
//!
//! Every step is the float operation llama.cpp's graph runs, in its order,
//! so that results stay bit-identical to llama.cpp's CPU backend.

use super::arch::Mlp;
use super::config::{AttnScale, Config};
use super::weights::LayerWeights;
use crate::kv_cache::KvCache;
use crate::ops::attention::{attention_in_order, AttentionShape, DotOrder};
use crate::ops::{act, matmul, norm, Weight};

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
/// `positions`, reading and extending cache layer `cache_layer`; attention
/// sums its dot products in `order`.
#[allow(clippy::too_many_arguments)]
pub fn block(
    cfg: &Config,
    w: &LayerWeights,
    x: &mut [f32],
    positions: &[usize],
    cache: &mut KvCache,
    cache_layer: usize,
    s: &mut Scratch,
    order: DotOrder,
) {
    let n = positions.len();
    let layer = cfg.layer_attention(w.index);

    // Attention.
    norm::rms_norm_into(x, &w.attn_norm, cfg.rms_eps, &mut s.h);
    linear(&w.wq, w.bq.as_deref(), &s.h, n, &mut s.q);
    linear(&w.wk, w.bk.as_deref(), &s.h, n, &mut s.k);
    linear(&w.wv, w.bv.as_deref(), &s.h, n, &mut s.v);
    if let Some(qn) = &w.q_norm {
        norm::rms_norm(&mut s.q, qn, cfg.rms_eps);
    }
    if let Some(kn) = &w.k_norm {
        norm::rms_norm(&mut s.k, kn, cfg.rms_eps);
    }
    layer
        .rope
        .apply(&mut s.q, cfg.n_head, cfg.head_dim_k, positions);
    layer
        .rope
        .apply(&mut s.k, cfg.n_head_kv, cfg.head_dim_k, positions);
    let score_scale = match cfg.attn_scale {
        AttnScale::Scores(f) => f,
        AttnScale::Queries(f) => {
            scale(&mut s.q, f);
            1.0
        }
    };
    cache.store(cache_layer, positions[0], &s.k, &s.v);
    let shape = AttentionShape {
        n_head: cfg.n_head,
        n_kv_head: cfg.n_head_kv,
        k_dim: cfg.head_dim_k,
        v_dim: cfg.head_dim_v,
        scale: score_scale,
        window: layer.window,
        softcap: None,
    };
    attention_in_order(
        &shape,
        order,
        &s.q,
        cache.keys(cache_layer),
        cache.values(cache_layer),
        positions,
        &mut s.att,
    );
    linear(&w.wo, w.bo.as_deref(), &s.att, n, &mut s.proj);
    if let Some(pn) = &w.post_attn_norm {
        norm::rms_norm(&mut s.proj, pn, cfg.rms_eps);
    }
    add(x, &s.proj);

    // MLP.
    norm::rms_norm_into(x, &w.ffn_norm, cfg.rms_eps, &mut s.h);
    matmul(&w.w_gate, &s.h, n, &mut s.gate);
    matmul(&w.w_up, &s.h, n, &mut s.up);
    match cfg.block.mlp {
        Mlp::SwiGlu => act::swiglu(&mut s.gate, &s.up, cfg.n_ff),
        Mlp::GeGlu => act::geglu(&mut s.gate, &s.up),
    }
    matmul(&w.w_down, &s.gate, n, &mut s.proj);
    if let Some(pn) = &w.post_ffn_norm {
        norm::rms_norm(&mut s.proj, pn, cfg.rms_eps);
    }
    add(x, &s.proj);
}

/// `out = W·x (+ bias)` for `n` rows of `x`.
fn linear(w: &Weight, bias: Option<&[f32]>, x: &[f32], n: usize, out: &mut [f32]) {
    matmul(w, x, n, out);
    if let Some(b) = bias {
        for row in out.chunks_exact_mut(b.len()) {
            add(row, b);
        }
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `x *= f`, elementwise (ggml's `ggml_scale` / a broadcast `ggml_mul`).
pub fn scale(x: &mut [f32], f: f32) {
    for v in x {
        *v *= f;
    }
}

/// `cap * tanh(x / cap)` in ggml's steps (`scale(1/cap)`, `tanh`,
/// `scale(cap)`).
pub fn softcap(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in x {
        *v = (*v * inv).tanh() * cap;
    }
}
