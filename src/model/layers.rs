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
use super::moe;
use super::weights::{Ffn, LayerWeights};
use std::ops::Range;

use crate::model::BatchItem;
use crate::ops::attention::{attention_segments, AttentionShape, DotOrder};
use crate::ops::{act, matmul_group, matmul_with, norm};

/// Scratch buffers for one forward call of `n` tokens. A model keeps them
/// between calls (see [`Scratch::fit`]), so that a decode step allocates
/// nothing in its layer loop.
#[derive(Default)]
pub struct Scratch {
    /// The hidden states, `[n][n_embd]`.
    pub x: Vec<f32>,
    /// Token positions, `[n]`.
    pub positions: Vec<usize>,
    /// Each sequence's rows of the batch.
    pub rows: Vec<Range<usize>>,
    /// Each sequence's rows of the logits.
    pub picked: Vec<Range<usize>>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Quantized activations of the current matmul (sized by the matmul).
    pub(crate) act: Vec<u8>,
    /// The mixture-of-experts MLP's buffers (empty for a dense model).
    moe: moe::MoeScratch,
}

impl Scratch {
    /// Size every buffer for `n` tokens (`positions` emptied, to be filled).
    /// A buffer keeps its memory unless it holds more than four times what
    /// `n` tokens need (a long prompt followed by decode steps), so that one
    /// long call does not pin its memory for good.
    pub fn fit(&mut self, cfg: &Config, n: usize) {
        fit(&mut self.x, n * cfg.n_embd);
        fit(&mut self.h, n * cfg.n_embd);
        fit(&mut self.q, n * cfg.n_head * cfg.head_dim_k);
        fit(&mut self.k, n * cfg.k_width());
        fit(&mut self.v, n * cfg.v_width());
        fit(&mut self.att, n * cfg.n_head * cfg.head_dim_v);
        fit(&mut self.proj, n * cfg.n_embd);
        // A mixture-of-experts MLP keeps its own buffers.
        let ff = if cfg.moe.is_some() { 0 } else { cfg.n_ff };
        fit(&mut self.gate, n * ff);
        fit(&mut self.up, n * ff);
        fit(&mut self.positions, 0);
        self.rows.clear();
        self.picked.clear();
        // Quantized activations take at most about 1.1 bytes per value.
        release_if_oversized(&mut self.act, 2 * n * cfg.n_embd.max(cfg.n_ff));
        if let Some(m) = &cfg.moe {
            self.moe.trim(m, cfg.n_embd, n);
        }
    }
}

/// `v` resized to `len` default values, after [`release_if_oversized`].
fn fit<T: Clone + Default>(v: &mut Vec<T>, len: usize) {
    release_if_oversized(v, len);
    v.resize(len, T::default());
}

/// Drop `v`'s memory if it holds more than four times what `need` values
/// (at least a few KB) take.
fn release_if_oversized<T>(v: &mut Vec<T>, need: usize) {
    if v.capacity() > 4 * need.max(1024) {
        *v = Vec::new();
    }
}

/// Run one block over `x` (`[n][n_embd]`, updated in place) for tokens at
/// `positions`: every matrix product over all rows at once, attention per
/// sequence (`items[i]`, rows `rows[i]` of the batch) over its own cache
/// (layer `cache_layer`, extended with the sequence's rows); attention sums
/// its dot products in `order`.
pub fn block(
    cfg: &Config,
    w: &LayerWeights,
    items: &mut [BatchItem<'_>],
    rows: &[Range<usize>],
    cache_layer: usize,
    s: &mut Scratch,
    order: DotOrder,
) {
    let Scratch {
        x,
        positions,
        rows: _,
        picked: _,
        h,
        q,
        k,
        v,
        att,
        proj,
        gate,
        up,
        act,
        moe: moe_scratch,
    } = s;
    let (x, positions) = (&mut x[..], &positions[..]);
    let n = positions.len();
    let layer = cfg.layer_attention(w.index);

    // Attention.
    norm::rms_norm_into(x, &w.attn_norm, cfg.rms_eps, h);
    // Q, K and V read the same input: one quantization, one parallel region.
    matmul_group(
        [&w.wq, &w.wk, &w.wv],
        h,
        n,
        [&mut q[..], &mut k[..], &mut v[..]],
        act,
    );
    add_bias(q, w.bq.as_deref());
    add_bias(k, w.bk.as_deref());
    add_bias(v, w.bv.as_deref());
    if let Some(qn) = &w.q_norm {
        norm::rms_norm(q, qn, cfg.rms_eps);
    }
    if let Some(kn) = &w.k_norm {
        norm::rms_norm(k, kn, cfg.rms_eps);
    }
    layer.rope.apply(q, cfg.n_head, cfg.head_dim_k, positions);
    layer
        .rope
        .apply(k, cfg.n_head_kv, cfg.head_dim_k, positions);
    let score_scale = match cfg.attn_scale {
        AttnScale::Scores(f) => f,
        AttnScale::Queries(f) => {
            scale(q, f);
            1.0
        }
    };
    let (kw, vw) = (cfg.k_width(), cfg.v_width());
    for (it, r) in items.iter_mut().zip(rows) {
        let r = r.clone();
        it.cache.store(
            cache_layer,
            positions[r.start],
            &k[r.start * kw..r.end * kw],
            &v[r.start * vw..r.end * vw],
        );
    }
    let shape = AttentionShape {
        n_head: cfg.n_head,
        n_kv_head: cfg.n_head_kv,
        k_dim: cfg.head_dim_k,
        v_dim: cfg.head_dim_v,
        scale: score_scale,
        window: layer.window,
        softcap: cfg.attn_softcap,
    };
    let items = &*items;
    attention_segments(
        &shape,
        order,
        q,
        positions,
        rows,
        |i| {
            let c = &items[i].cache;
            (c.keys(cache_layer), c.values(cache_layer))
        },
        att,
    );
    matmul_with(&w.wo, att, n, proj, act);
    add_bias(proj, w.bo.as_deref());
    if let Some(pn) = &w.post_attn_norm {
        norm::rms_norm(proj, pn, cfg.rms_eps);
    }
    add(x, proj);

    // MLP.
    norm::rms_norm_into(x, &w.ffn_norm, cfg.rms_eps, h);
    match &w.ffn {
        Ffn::Moe(mw) => moe::ffn(mw, h, n, proj, act, moe_scratch),
        Ffn::Dense {
            gate: wg,
            up: wu,
            down: wd,
        } => {
            matmul_group([wg, wu], h, n, [&mut gate[..], &mut up[..]], act);
            match cfg.block.mlp {
                Mlp::SwiGlu => act::swiglu(gate, up, cfg.n_ff),
                Mlp::GeGlu => act::geglu(gate, up),
            }
            matmul_with(wd, gate, n, proj, act);
        }
    }
    if let Some(pn) = &w.post_ffn_norm {
        norm::rms_norm(proj, pn, cfg.rms_eps);
    }
    add(x, proj);
}

/// `out[t] += bias` for every row `t` of `out`, if there is a bias.
fn add_bias(out: &mut [f32], bias: Option<&[f32]>) {
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
