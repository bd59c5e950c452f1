//! Binding tensors of a GGUF file to the model's weights, with shape checks.
//! Only the tensors of the requested layer range are bound (and so only
//! those pages of the mapping are ever touched).

use std::ops::Range;
use std::sync::Arc;

use super::config::Config;
use super::moe::{self, MoeWeights};
use crate::gguf::GgufFile;
use crate::ops::Weight;
use crate::quant::{self, GgmlType};
use crate::{Error, Result};

/// Weights of one transformer block. The optional ones are bound when the
/// architecture's [`BlockSpec`](super::arch::BlockSpec) uses them (norms)
/// or when the file has them (biases).
#[derive(Debug)]
pub struct LayerWeights {
    /// The layer's index in the whole model (for per-layer settings).
    pub index: usize,
    /// `[n_embd]`
    pub attn_norm: Vec<f32>,
    /// `[n_head*head_dim_k rows][n_embd]`
    pub wq: Weight,
    /// `[n_head_kv*head_dim_k rows][n_embd]`
    pub wk: Weight,
    /// `[n_head_kv*head_dim_v rows][n_embd]`
    pub wv: Weight,
    /// `[n_head*head_dim_k]`, `[n_head_kv*head_dim_k]`,
    /// `[n_head_kv*head_dim_v]`: Q/K/V biases (Qwen 2).
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// `[head_dim_k]` each: per-head RMSNorm of queries and keys.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// `[n_embd rows][n_head*head_dim_v]`
    pub wo: Weight,
    /// `[n_embd]`: output projection bias.
    pub bo: Option<Vec<f32>>,
    /// `[n_embd]`: RMSNorm of the attention output (Gemma).
    pub post_attn_norm: Option<Vec<f32>>,
    /// `[n_embd]`
    pub ffn_norm: Vec<f32>,
    /// The MLP: dense, or a mixture of experts.
    pub ffn: Ffn,
    /// `[n_embd]`: RMSNorm of the MLP output (Gemma).
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// A layer's MLP.
#[derive(Debug)]
pub enum Ffn {
    Dense {
        /// `[n_ff rows][n_embd]`
        gate: Weight,
        /// `[n_ff rows][n_embd]`
        up: Weight,
        /// `[n_embd rows][n_ff]`
        down: Weight,
    },
    /// Experts chosen per token by a router (see [`super::moe`]).
    Moe(MoeWeights),
}

/// Types a weight matrix may have (those with a dot product kernel).
pub fn is_weight_type(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K
    )
}

/// Looks tensors up by name and checks their shapes.
pub struct Binder<'a> {
    pub file: &'a Arc<GgufFile>,
}

impl Binder<'_> {
    /// A `[rows][cols]` matrix.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Weight> {
        let t = self
            .file
            .tensor(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        let dims_ok = t.dims.len() >= 2
            && t.dims[0] == cols as u64
            && t.dims[1] == rows as u64
            && t.dims[2..].iter().all(|&d| d == 1);
        if !dims_ok {
            return Err(Error::BadTensor {
                name: name.to_string(),
                reason: format!("shape {:?}, expected [{cols}, {rows}]", t.dims),
            });
        }
        if !is_weight_type(t.ty) {
            return Err(Error::UnsupportedTensorType {
                name: name.to_string(),
                ty: t.ty.name(),
                context: "matrix multiplication",
            });
        }
        let start = (self.file.data_offset() + t.offset) as usize;
        Ok(Weight::new(
            name,
            t.ty,
            rows,
            cols,
            Arc::clone(self.file),
            start..start + t.size as usize,
        ))
    }

    /// A vector of `n` values, dequantized to f32.
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let t = self
            .file
            .tensor(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        if t.n_elements() != n as u64 {
            return Err(Error::BadTensor {
                name: name.to_string(),
                reason: format!("shape {:?}, expected [{n}]", t.dims),
            });
        }
        let mut out = vec![0f32; n];
        quant::dequantize(t.ty, self.file.tensor_data(t), &mut out)?;
        Ok(out)
    }

    /// A vector if the tensor exists.
    pub fn optional_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        match self.file.tensor(name) {
            None => Ok(None),
            Some(_) => self.vector(name, n).map(Some),
        }
    }

    pub fn layer(&self, cfg: &Config, i: usize) -> Result<LayerWeights> {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        let bias = |s: &str, n: usize| self.optional_vector(&format!("blk.{i}.{s}.bias"), n);
        let (e, q, kv_k, kv_v) = (
            cfg.n_embd,
            cfg.n_head * cfg.head_dim_k,
            cfg.k_width(),
            cfg.v_width(),
        );
        let required = |on: bool, name: &str, n: usize| -> Result<Option<Vec<f32>>> {
            if on {
                self.vector(&p(name), n).map(Some)
            } else {
                Ok(None)
            }
        };
        let b = cfg.block;
        let [wq, wk, wv] = self.qkv(&p, q, kv_k, kv_v, e)?;
        Ok(LayerWeights {
            index: i,
            attn_norm: self.vector(&p("attn_norm"), e)?,
            wq,
            wk,
            wv,
            bq: bias("attn_q", q)?,
            bk: bias("attn_k", kv_k)?,
            bv: bias("attn_v", kv_v)?,
            q_norm: required(b.qk_norm, "attn_q_norm", cfg.head_dim_k)?,
            k_norm: required(b.qk_norm, "attn_k_norm", cfg.head_dim_k)?,
            wo: self.matrix(&p("attn_output"), e, cfg.n_head * cfg.head_dim_v)?,
            bo: bias("attn_output", e)?,
            post_attn_norm: required(b.post_norms, "post_attention_norm", e)?,
            ffn_norm: self.vector(&p("ffn_norm"), e)?,
            ffn: self.ffn(cfg, i)?,
            post_ffn_norm: required(b.post_norms, "post_ffw_norm", e)?,
        })
    }

    /// The Q, K and V projections: `attn_q`, `attn_k`, `attn_v`, or the
    /// rows of one fused `attn_qkv` (`[q + kv_k + kv_v rows][n_embd]`, Q's
    /// rows first, then K's, then V's, as llama.cpp splits it).
    fn qkv(
        &self,
        p: &dyn Fn(&str) -> String,
        q: usize,
        kv_k: usize,
        kv_v: usize,
        e: usize,
    ) -> Result<[Weight; 3]> {
        let name = p("attn_qkv");
        if self.file.tensor(&name).is_none() {
            return Ok([
                self.matrix(&p("attn_q"), q, e)?,
                self.matrix(&p("attn_k"), kv_k, e)?,
                self.matrix(&p("attn_v"), kv_v, e)?,
            ]);
        }
        let bias = name.replace(".weight", ".bias");
        if self.file.tensor(&bias).is_some() {
            return Err(Error::BadTensor {
                name: bias,
                reason: "biases of a fused Q/K/V projection are not supported".into(),
            });
        }
        let fused = self.matrix(&name, q + kv_k + kv_v, e)?;
        Ok([
            split(&fused, "q", 0..q)?,
            split(&fused, "k", q..q + kv_k)?,
            split(&fused, "v", q + kv_k..q + kv_k + kv_v)?,
        ])
    }

    /// The MLP's gate and up projections: `ffn_gate` and `ffn_up`, or,
    /// without `ffn_gate`, one `ffn_up` of `2 * n_ff` rows holding the gate
    /// rows first and the up rows after them (Phi-3; llama.cpp's fused
    /// SwiGLU takes the first half as the gate).
    fn gate_up(&self, p: &dyn Fn(&str) -> String, n_ff: usize, e: usize) -> Result<[Weight; 2]> {
        if self.file.tensor(&p("ffn_gate")).is_some() {
            return Ok([
                self.matrix(&p("ffn_gate"), n_ff, e)?,
                self.matrix(&p("ffn_up"), n_ff, e)?,
            ]);
        }
        let fused = self.matrix(&p("ffn_up"), 2 * n_ff, e)?;
        Ok([
            split(&fused, "gate", 0..n_ff)?,
            split(&fused, "up", n_ff..2 * n_ff)?,
        ])
    }

    /// Layer `i`'s MLP: the experts when the config has them; otherwise
    /// the dense matrices, and expert tensors are an error (a file whose
    /// metadata says it has no experts).
    fn ffn(&self, cfg: &Config, i: usize) -> Result<Ffn> {
        let e = cfg.n_embd;
        if let Some(m) = &cfg.moe {
            return moe::bind(self, m, e, i).map(Ffn::Moe);
        }
        if let Some(name) = moe::tensor_names(i)
            .into_iter()
            .find(|n| self.file.tensor(n).is_some())
        {
            return Err(Error::BadTensor {
                name,
                reason: format!(
                    "an expert tensor, but {}.expert_count is 0 or absent",
                    cfg.arch
                ),
            });
        }
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        let [gate, up] = self.gate_up(&p, cfg.n_ff, e)?;
        Ok(Ffn::Dense {
            gate,
            up,
            down: self.matrix(&p("ffn_down"), e, cfg.n_ff)?,
        })
    }

    pub fn layers(&self, cfg: &Config, range: Range<usize>) -> Result<Vec<LayerWeights>> {
        range.map(|i| self.layer(cfg, i)).collect()
    }
}

/// Rows `rows` of fused tensor `fused`, named after it and `part`.
fn split(fused: &Weight, part: &str, rows: Range<usize>) -> Result<Weight> {
    fused
        .rows_view(&format!("{}[{part}]", fused.name), rows)
        .ok_or_else(|| Error::BadTensor {
            name: fused.name.clone(),
            reason: format!("has {} rows, too few for its {part} part", fused.rows),
        })
}
