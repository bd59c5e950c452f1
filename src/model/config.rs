//! Hyperparameters read from GGUF metadata. Each field says which key it
//! comes from and the default llama.cpp uses when the key is absent. Keys
//! common to every architecture are read here; a family reads its own in
//! its `hparams` function (see [`super::arch`]).

use super::arch::{ArchSpec, BlockSpec};
use super::moe::MoeConfig;
use crate::gguf::GgufFile;
use crate::ops::rope::{Rope, Yarn};
use crate::{Error, Result};

/// Largest width, head count or layer count accepted from a file.
const MAX_DIM: u64 = 1 << 20;

/// How the attention scores are scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttnScale {
    /// `q·k` is multiplied by this (llama.cpp's `kq_scale`, usually
    /// `1/sqrt(head_dim_k)`).
    Scores(f32),
    /// The queries are multiplied by this after RoPE, and `q·k` is not
    /// scaled (Gemma's `ggml_scale(Q)`; the result differs from scaling
    /// the scores in rounding, since the queries are rounded to f16).
    Queries(f32),
}

/// Model hyperparameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `general.architecture`.
    pub arch: String,
    /// The block layout of the architecture (which norms, which MLP).
    pub block: BlockSpec,
    /// `{arch}.block_count`.
    pub n_layer: usize,
    /// `{arch}.embedding_length`.
    pub n_embd: usize,
    /// `{arch}.feed_forward_length`.
    pub n_ff: usize,
    /// `{arch}.attention.head_count`.
    pub n_head: usize,
    /// `{arch}.attention.head_count_kv`; default `n_head`.
    pub n_head_kv: usize,
    /// `{arch}.attention.key_length`; default `n_embd / n_head`.
    pub head_dim_k: usize,
    /// `{arch}.attention.value_length`; default `head_dim_k`.
    pub head_dim_v: usize,
    /// Rows of `token_embd.weight`.
    pub n_vocab: usize,
    /// `{arch}.context_length`; default 2048.
    pub n_ctx_train: usize,
    /// `{arch}.attention.layer_norm_rms_epsilon`; default 1e-5.
    pub rms_eps: f32,
    /// RoPE of the global-attention layers. Layout from the architecture;
    /// `{arch}.rope.dimension_count` (default `head_dim_k`),
    /// `{arch}.rope.freq_base` (default from the architecture),
    /// `{arch}.rope.scaling.factor` unless `{arch}.rope.scaling.type` is
    /// `none` (default none), YaRN and the attention factor as
    /// [`rope_scaling`] reads them.
    pub rope: Rope,
    /// Attention score scaling; default `Scores(1/sqrt(head_dim_k))`.
    pub attn_scale: AttnScale,
    /// Token embeddings are multiplied by this (Gemma: `sqrt(n_embd)`);
    /// default none.
    pub embd_scale: Option<f32>,
    /// `{arch}.final_logit_softcapping`: logits become
    /// `cap * tanh(logit / cap)`; default none.
    pub final_logit_softcap: Option<f32>,
    /// Attention scores become `cap * tanh(score / cap)` before the softmax
    /// (Gemma 2's `attn_logit_softcapping`); default none.
    pub attn_softcap: Option<f32>,
    /// Sliding-window attention (`{arch}.attention.sliding_window`, for the
    /// families that use it); default none.
    pub swa: Option<SlidingWindow>,
    /// Mixture-of-experts MLPs (`{arch}.expert_count` > 0); default none
    /// (a dense MLP).
    pub moe: Option<MoeConfig>,
}

/// Interleaved sliding-window and global attention layers.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    /// Positions a sliding layer attends to (its own included).
    pub window: usize,
    /// Per layer: whether it is a sliding-window layer.
    pub layers: Vec<bool>,
    /// RoPE of the sliding layers (their own base, no scaling).
    pub rope: Rope,
}

/// The attention settings of one layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerAttention<'a> {
    pub rope: &'a Rope,
    /// `Some(n)`: attend only to the last `n` positions.
    pub window: Option<usize>,
}

/// Typed access to `{arch}.*` metadata keys.
pub struct Hparams<'a> {
    pub file: &'a GgufFile,
    pub arch: &'a str,
}

impl Hparams<'_> {
    /// The full key name.
    pub fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    /// A required count or width.
    pub fn usize(&self, k: &str) -> Result<usize> {
        self.file.get_usize_max(&self.key(k), MAX_DIM)
    }

    /// An optional count or width.
    pub fn opt_usize(&self, k: &str) -> Result<Option<usize>> {
        match self.file.get(&self.key(k)) {
            None => Ok(None),
            Some(_) => self.usize(k).map(Some),
        }
    }

    /// An optional float.
    pub fn opt_f32(&self, k: &str) -> Result<Option<f32>> {
        match self.file.get(&self.key(k)) {
            None => Ok(None),
            Some(_) => self.file.get_f32(&self.key(k)).map(Some),
        }
    }

    /// An optional string.
    pub fn opt_str(&self, k: &str) -> Option<&str> {
        self.file.get(&self.key(k)).and_then(|v| v.as_str())
    }
}

/// RoPE scaling as llama.cpp reads it: the linear factor
/// (`{arch}.rope.scaling.factor`, positions × `1/factor`) for every type but
/// `none`; for `rope.scaling.type = yarn` also YaRN's ramp (`ext_factor`
/// 1, `beta_fast` 32, `beta_slow` 1, over
/// `{arch}.rope.scaling.original_context_length`, default the training
/// context) and magnitude: llama.cpp's attention factor
/// `(1 + 0.1 ln f) / (1 + 0.1 ln f)` for a factor `f > 1` (its mscale,
/// divided by the one ggml's rope applies again), times
/// `{arch}.rope.scaling.attn_factor` (default 1, used by every type).
/// Returns the position scale and the YaRN parameters (`None` when plain
/// RoPE gives the same bits).
pub fn rope_scaling(h: &Hparams, n_ctx_train: usize) -> Result<(f32, Option<Yarn>)> {
    let ty = h.opt_str("rope.scaling.type").unwrap_or("linear");
    if !matches!(ty, "none" | "linear" | "yarn" | "longrope") {
        return Err(Error::Malformed {
            offset: 0,
            reason: format!("{} '{ty}' is not a known type", h.key("rope.scaling.type")),
        });
    }
    let freq_scale = match h.opt_f32("rope.scaling.factor")? {
        _ if ty == "none" => 1.0,
        Some(f) if f != 0.0 => 1.0 / f,
        _ => 1.0,
    };
    let rope_attn_factor = h.opt_f32("rope.scaling.attn_factor")?.unwrap_or(1.0);
    let n_ctx_orig = match h.opt_usize("rope.scaling.original_context_length")? {
        Some(n) if n > 0 => n,
        _ => n_ctx_train,
    };
    let mut yarn = Yarn {
        ext_factor: 0.0,
        attn_factor: 1.0,
        beta_fast: 32.0,
        beta_slow: 1.0,
        n_ctx_orig,
    };
    if ty == "yarn" {
        yarn.ext_factor = 1.0;
        let factor = 1.0 / freq_scale;
        let mscale = if factor <= 1.0 {
            1.0
        } else {
            0.1f32.mul_add(factor.ln(), 1.0)
        };
        yarn.attn_factor = mscale * (1.0 / 0.1f32.mul_add(factor.ln(), 1.0));
    }
    yarn.attn_factor *= rope_attn_factor;
    let plain = yarn.ext_factor == 0.0 && yarn.attn_factor == 1.0;
    Ok((freq_scale, (!plain).then_some(yarn)))
}

impl Config {
    pub fn from_gguf(file: &GgufFile, spec: &ArchSpec) -> Result<Config> {
        let h = Hparams {
            file,
            arch: spec.name,
        };
        let n_layer = h.usize("block_count")?;
        let n_embd = h.usize("embedding_length")?;
        let n_ff = h.usize("feed_forward_length")?;
        let n_head = h.usize("attention.head_count")?;
        let n_head_kv = h.opt_usize("attention.head_count_kv")?.unwrap_or(n_head);
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(Error::Malformed {
                offset: 0,
                reason: format!(
                    "head counts {n_head} (query) and {n_head_kv} (key/value) are not a valid grouping"
                ),
            });
        }
        let head_dim_k = h
            .opt_usize("attention.key_length")?
            .unwrap_or(n_embd / n_head);
        let head_dim_v = h.opt_usize("attention.value_length")?.unwrap_or(head_dim_k);
        let n_rot = h.opt_usize("rope.dimension_count")?.unwrap_or(head_dim_k);
        if head_dim_k == 0 || n_rot > head_dim_k || n_rot % 2 != 0 {
            return Err(Error::Malformed {
                offset: 0,
                reason: format!(
                    "rope dimension count {n_rot} does not fit key length {head_dim_k}"
                ),
            });
        }
        let freq_base = h
            .opt_f32("rope.freq_base")?
            .unwrap_or(spec.default_rope_base);
        let n_ctx_train = h.opt_usize("context_length")?.unwrap_or(2048);
        let (freq_scale, yarn) = rope_scaling(&h, n_ctx_train)?;
        // From the embedding; a middle shard file has none, so fall back to
        // the output head, then to the tokenizer's vocabulary.
        let n_vocab = file
            .tensor("token_embd.weight")
            .or_else(|| file.tensor("output.weight"))
            .map(|t| t.n_rows() as usize)
            .or_else(|| {
                file.get("tokenizer.ggml.tokens")
                    .and_then(|v| v.as_array())
                    .map(|a| a.len())
            })
            .ok_or_else(|| Error::MissingTensor("token_embd.weight".into()))?;
        let mut cfg = Config {
            arch: spec.name.to_string(),
            block: spec.block,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_vocab,
            n_ctx_train,
            rms_eps: h
                .opt_f32("attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-5),
            rope: Rope {
                layout: spec.rope_layout,
                n_rot,
                freq_base,
                freq_scale,
                freq_factors: None,
                yarn,
            },
            attn_scale: AttnScale::Scores(1.0 / (head_dim_k as f32).sqrt()),
            embd_scale: None,
            final_logit_softcap: None,
            attn_softcap: None,
            swa: None,
            moe: MoeConfig::from_hparams(&h, n_ff)?,
        };
        (spec.hparams)(&h, &mut cfg)?;
        Ok(cfg)
    }

    /// Width of one position's keys in the KV cache.
    pub fn k_width(&self) -> usize {
        self.n_head_kv * self.head_dim_k
    }

    /// Width of one position's values in the KV cache.
    pub fn v_width(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }

    /// RoPE and window of layer `il` (an index into the whole model).
    pub fn layer_attention(&self, il: usize) -> LayerAttention<'_> {
        match &self.swa {
            Some(s) if s.layers.get(il).copied().unwrap_or(false) => LayerAttention {
                rope: &s.rope,
                window: Some(s.window),
            },
            _ => LayerAttention {
                rope: &self.rope,
                window: None,
            },
        }
    }
}
