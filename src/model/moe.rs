//! Mixture-of-experts MLP layers (Mixtral in the `llama` architecture,
//! Qwen3-MoE): a router (`blk.N.ffn_gate_inp`, `[n_expert rows][n_embd]`)
//! picks `n_expert_used` experts per token (see [`crate::ops::moe`]), each a
//! gated MLP whose matrices are slabs of the stacked
//! `blk.N.ffn_{gate,up,down}_exps` tensors (`[n_embd, n_ff_exp, n_expert]`
//! and `[n_ff_exp, n_embd, n_expert]` in ggml's order: expert `e` is rows
//! `e·rows..(e+1)·rows` of a 2-D matrix). The output is the sum of the
//! experts' outputs times their weights, added in the order the router
//! ranked them (llama.cpp's `build_moe_ffn`).
//!
//! Only the selected experts' rows are read. A batch is grouped by expert:
//! each expert's weights run once over all the tokens that chose it (one
//! tile matmul), and every (token, expert) result is computed by the same
//! per-row kernel call it would get alone, so results do not depend on the
//! batch.

use super::config::Hparams;
use super::weights::Binder;
use crate::ops::moe::{route, Gating};
use crate::ops::{act, matmul_group, matmul_with, Weight};
use crate::{Error, Result};
use rayon::prelude::*;

/// llama.cpp's `LLAMA_MAX_EXPERTS`.
pub const MAX_EXPERTS: usize = 512;

/// The expert hyperparameters of a mixture-of-experts model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeConfig {
    /// `{arch}.expert_count`.
    pub n_expert: usize,
    /// `{arch}.expert_used_count`: experts run per token.
    pub n_expert_used: usize,
    /// Rows of one expert's gate and up matrices:
    /// `{arch}.expert_feed_forward_length`, default from the family
    /// (`feed_forward_length` for Mixtral-style `llama`).
    pub n_ff_exp: usize,
    /// Post-processing of the selected weights (both families here
    /// normalize and do not scale).
    pub gating: Gating,
}

fn bad(reason: String) -> Error {
    Error::Malformed { offset: 0, reason }
}

impl MoeConfig {
    /// The expert keys of a file, `None` for a dense model (no
    /// `expert_count`, or 0). Inconsistent counts are an error.
    pub fn from_hparams(h: &Hparams, n_ff: usize) -> Result<Option<MoeConfig>> {
        let n_expert = h.opt_usize("expert_count")?.unwrap_or(0);
        let used = h.opt_usize("expert_used_count")?.unwrap_or(0);
        if n_expert == 0 {
            if used != 0 {
                return Err(bad(format!(
                    "{} is {used} but there are no experts ({} is 0 or absent)",
                    h.key("expert_used_count"),
                    h.key("expert_count")
                )));
            }
            return Ok(None);
        }
        if n_expert > MAX_EXPERTS {
            return Err(bad(format!(
                "{} experts is more than the {MAX_EXPERTS} supported",
                n_expert
            )));
        }
        if used == 0 || used > n_expert {
            return Err(bad(format!(
                "{} = {used} is not between 1 and {} = {n_expert}",
                h.key("expert_used_count"),
                h.key("expert_count")
            )));
        }
        let n_ff_exp = h.opt_usize("expert_feed_forward_length")?.unwrap_or(n_ff);
        if n_ff_exp == 0 {
            return Err(bad("the experts' feed-forward length is 0".into()));
        }
        Ok(Some(MoeConfig {
            n_expert,
            n_expert_used: used,
            n_ff_exp,
            gating: Gating {
                norm: true,
                scale: 0.0,
            },
        }))
    }
}

/// The weights of one mixture-of-experts MLP.
#[derive(Debug)]
pub struct MoeWeights {
    /// The expert counts and gating these weights were bound for.
    pub config: MoeConfig,
    /// `[n_expert rows][n_embd]`
    pub router: Weight,
    /// Per expert, `[n_ff_exp rows][n_embd]`.
    pub gate: Vec<Weight>,
    /// Per expert, `[n_ff_exp rows][n_embd]`.
    pub up: Vec<Weight>,
    /// Per expert, `[n_embd rows][n_ff_exp]`.
    pub down: Vec<Weight>,
}

impl MoeWeights {
    /// Bytes of every expert's matrices (the router not included).
    pub fn expert_bytes(&self) -> u64 {
        [&self.gate, &self.up, &self.down]
            .iter()
            .flat_map(|v| v.iter())
            .map(|w| w.data().len() as u64)
            .sum()
    }
}

/// The names of layer `i`'s expert tensors.
pub fn tensor_names(i: usize) -> [String; 4] {
    [
        "ffn_gate_inp",
        "ffn_gate_exps",
        "ffn_up_exps",
        "ffn_down_exps",
    ]
    .map(|s| format!("blk.{i}.{s}.weight"))
}

/// Bind layer `i`'s router and stacked experts, checking their shapes.
pub fn bind(b: &Binder<'_>, m: &MoeConfig, n_embd: usize, i: usize) -> Result<MoeWeights> {
    let [router, gate, up, down] = tensor_names(i);
    Ok(MoeWeights {
        config: *m,
        router: b.matrix(&router, m.n_expert, n_embd)?,
        gate: stacked(b, &gate, m.n_expert, m.n_ff_exp, n_embd)?,
        up: stacked(b, &up, m.n_expert, m.n_ff_exp, n_embd)?,
        down: stacked(b, &down, m.n_expert, n_embd, m.n_ff_exp)?,
    })
}

/// A `[cols, rows, n]` tensor as `n` matrices of `[rows][cols]`.
fn stacked(b: &Binder<'_>, name: &str, n: usize, rows: usize, cols: usize) -> Result<Vec<Weight>> {
    let t = b
        .file
        .tensor(name)
        .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
    if t.dims != [cols as u64, rows as u64, n as u64] {
        return Err(Error::BadTensor {
            name: name.to_string(),
            reason: format!("shape {:?}, expected [{cols}, {rows}, {n}]", t.dims),
        });
    }
    if !super::weights::is_weight_type(t.ty) {
        return Err(Error::UnsupportedTensorType {
            name: name.to_string(),
            ty: t.ty.name(),
            context: "matrix multiplication",
        });
    }
    let slab = t.ty.row_bytes(cols as u64).unwrap_or(0) as usize * rows;
    let start = (b.file.data_offset() + t.offset) as usize;
    if slab * n != t.size as usize {
        return Err(Error::BadTensor {
            name: name.to_string(),
            reason: format!("{} bytes, expected {n} slabs of {slab}", t.size),
        });
    }
    Ok((0..n)
        .map(|e| {
            let s = start + e * slab;
            Weight::new(
                name,
                t.ty,
                rows,
                cols,
                std::sync::Arc::clone(b.file),
                s..s + slab,
            )
        })
        .collect())
}

/// Buffers of [`ffn`], kept between calls with the forward pass's other
/// buffers (each grows to the largest call and is reused).
#[derive(Default)]
pub struct MoeScratch {
    /// `[n][n_expert]`: router logits, then probabilities.
    logits: Vec<f32>,
    /// `[n][k]`: each token's experts, best first, and their weights.
    chosen: Vec<usize>,
    weights: Vec<f32>,
    /// `[n_expert]`: the sort's indices.
    idx: Vec<i32>,
    /// `[n_expert + 1]`: where each expert's slots start in `order`.
    start: Vec<usize>,
    fill: Vec<usize>,
    /// `[n·k]`: slot numbers (`token·k + rank`) grouped by expert.
    order: Vec<usize>,
    /// One expert's buffers (decode steps, which run one expert at a time).
    expert: ExpertBuffers,
    /// `[n][k][n_embd]`: each slot's weighted expert output.
    slots: Vec<f32>,
}

impl MoeScratch {
    /// Drop the buffers that hold more than four times what `n` tokens
    /// need (a long prompt followed by decode steps), as the forward
    /// pass's other buffers do.
    pub fn trim(&mut self, m: &MoeConfig, n_embd: usize, n: usize) {
        fn drop_big<T>(v: &mut Vec<T>, need: usize) {
            if v.capacity() > 4 * need.max(1024) {
                *v = Vec::new();
            }
        }
        let (ne, k, ff) = (m.n_expert, m.n_expert_used, m.n_ff_exp);
        drop_big(&mut self.logits, n * ne);
        drop_big(&mut self.chosen, n * k);
        drop_big(&mut self.weights, n * k);
        drop_big(&mut self.order, n * k);
        let b = &mut self.expert;
        drop_big(&mut b.xe, n * n_embd);
        drop_big(&mut b.g, n * ff);
        drop_big(&mut b.u, n * ff);
        drop_big(&mut b.d, n * n_embd);
        drop_big(&mut b.act, 2 * n * n_embd.max(ff));
        drop_big(&mut self.slots, n * k * n_embd);
    }
}

/// Above this many tokens the experts of a layer run in parallel with each
/// other (each matmul still computes every output with one kernel call, so
/// the bits do not change); up to it, one after another, each matmul
/// parallel over its rows, with no allocation.
const PARALLEL_EXPERTS_FROM: usize = 3;

/// One expert's gathered inputs `[m][n_embd]`, gate and up
/// `[m][n_ff_exp]`, output `[m][n_embd]` and quantized activations.
#[derive(Default)]
struct ExpertBuffers {
    xe: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    d: Vec<f32>,
    act: Vec<u8>,
}

impl ExpertBuffers {
    /// Expert `ex` over the rows of `x` that `list`'s slots name (slot
    /// `token·k + rank`): `d = down(swiglu(gate(x), up(x)))`. False if no
    /// token chose it.
    fn run(&mut self, w: &MoeWeights, ex: usize, x: &[f32], list: &[usize], k: usize) -> bool {
        let (e, ff, r) = (w.router.cols, w.config.n_ff_exp, list.len());
        if r == 0 {
            return false;
        }
        let xe = sized(&mut self.xe, r * e);
        for (row, &slot) in list.iter().enumerate() {
            let t = slot / k;
            xe[row * e..(row + 1) * e].copy_from_slice(&x[t * e..(t + 1) * e]);
        }
        let g = sized(&mut self.g, r * ff);
        let u = sized(&mut self.u, r * ff);
        matmul_group([&w.gate[ex], &w.up[ex]], xe, r, [g, u], &mut self.act);
        act::swiglu(g, u, ff);
        let d = sized(&mut self.d, r * e);
        matmul_with(&w.down[ex], g, r, d, &mut self.act);
        true
    }
}

/// `v` holding exactly `len` values (old contents kept where they fit;
/// every caller overwrites what it reads).
fn sized<T: Clone + Default>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    v.resize(len, T::default());
    &mut v[..]
}

/// `out = moe(x)` for `n` rows of `x` (`[n][n_embd]`, the normalized MLP
/// input); `out` is `[n][n_embd]`. `act` is the matmuls' activation buffer.
pub fn ffn(
    w: &MoeWeights,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    act: &mut Vec<u8>,
    s: &mut MoeScratch,
) {
    let m = &w.config;
    let (ne, k) = (m.n_expert, m.n_expert_used);
    let e = w.router.cols;
    // Route every token.
    let logits = sized(&mut s.logits, n * ne);
    matmul_with(&w.router, x, n, logits, act);
    let chosen = sized(&mut s.chosen, n * k);
    let weights = sized(&mut s.weights, n * k);
    for t in 0..n {
        route(
            &mut logits[t * ne..(t + 1) * ne],
            k,
            m.gating,
            &mut s.idx,
            &mut chosen[t * k..(t + 1) * k],
            &mut weights[t * k..(t + 1) * k],
        );
    }
    // The (token, slot) pairs of each expert, in token order.
    let start = sized(&mut s.start, ne + 1);
    start.fill(0);
    for &x in chosen.iter() {
        start[x + 1] += 1;
    }
    for i in 0..ne {
        start[i + 1] += start[i];
    }
    s.fill.clear();
    s.fill.extend_from_slice(start);
    let order = sized(&mut s.order, n * k);
    for (slot, &x) in chosen.iter().enumerate() {
        order[s.fill[x]] = slot;
        s.fill[x] += 1;
    }
    let slots = sized(&mut s.slots, n * k * e);
    let (order, start, weights) = (&*order, &*start, &*weights);
    let scatter = |slots: &mut [f32], list: &[usize], d: &[f32]| {
        for (row, &slot) in list.iter().enumerate() {
            let wt = weights[slot];
            let dst = &mut slots[slot * e..(slot + 1) * e];
            for (o, &v) in dst.iter_mut().zip(&d[row * e..(row + 1) * e]) {
                *o = v * wt;
            }
        }
    };
    if n > PARALLEL_EXPERTS_FROM {
        // A prompt: the experts run side by side (each with its own
        // buffers), rather than one parallel matmul after another.
        let outs: Vec<Vec<f32>> = (0..ne)
            .into_par_iter()
            .map(|ex| {
                let list = &order[start[ex]..start[ex + 1]];
                let mut b = ExpertBuffers::default();
                b.run(w, ex, x, list, k);
                b.d
            })
            .collect();
        for (ex, d) in outs.iter().enumerate() {
            scatter(slots, &order[start[ex]..start[ex + 1]], d);
        }
    } else {
        let b = &mut s.expert;
        for ex in 0..ne {
            let list = &order[start[ex]..start[ex + 1]];
            if b.run(w, ex, x, list, k) {
                scatter(slots, list, &b.d);
            }
        }
    }
    // ggml adds the slots' views in rank order.
    for t in 0..n {
        let o = &mut out[t * e..(t + 1) * e];
        o.copy_from_slice(&slots[t * k * e..(t * k + 1) * e]);
        for j in 1..k {
            let sl = &slots[(t * k + j) * e..(t * k + j + 1) * e];
            for (a, &b) in o.iter_mut().zip(sl) {
                *a += b;
            }
        }
    }
}
