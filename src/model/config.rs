//! Hyperparameters read from GGUF metadata. Each field says which key it
//! comes from and the default llama.cpp uses when the key is absent.

use super::arch::ArchSpec;
use crate::gguf::GgufFile;
use crate::ops::rope::Rope;
use crate::{Error, Result};

/// Largest width, head count or layer count accepted from a file.
const MAX_DIM: u64 = 1 << 20;

/// Model hyperparameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `general.architecture`.
    pub arch: String,
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
    /// Layout from the architecture; `{arch}.rope.dimension_count` (default
    /// `head_dim_k`), `{arch}.rope.freq_base` (default 10000),
    /// `{arch}.rope.scaling.factor` with type `linear` (default none).
    pub rope: Rope,
}

impl Config {
    pub fn from_gguf(file: &GgufFile, spec: &ArchSpec) -> Result<Config> {
        let a = spec.name;
        let key = |k: &str| format!("{a}.{k}");
        let opt = |k: &str| -> Result<Option<usize>> {
            match file.get(&key(k)) {
                None => Ok(None),
                Some(_) => Ok(Some(file.get_usize_max(&key(k), MAX_DIM)?)),
            }
        };
        let n_layer = file.get_usize_max(&key("block_count"), MAX_DIM)?;
        let n_embd = file.get_usize_max(&key("embedding_length"), MAX_DIM)?;
        let n_ff = file.get_usize_max(&key("feed_forward_length"), MAX_DIM)?;
        let n_head = file.get_usize_max(&key("attention.head_count"), MAX_DIM)?;
        let n_head_kv = opt("attention.head_count_kv")?.unwrap_or(n_head);
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(Error::Malformed {
                offset: 0,
                reason: format!(
                    "head counts {n_head} (query) and {n_head_kv} (key/value) are not a valid grouping"
                ),
            });
        }
        let head_dim_k = opt("attention.key_length")?.unwrap_or(n_embd / n_head);
        let head_dim_v = opt("attention.value_length")?.unwrap_or(head_dim_k);
        let n_rot = opt("rope.dimension_count")?.unwrap_or(head_dim_k);
        if head_dim_k == 0 || n_rot > head_dim_k || n_rot % 2 != 0 {
            return Err(Error::Malformed {
                offset: 0,
                reason: format!(
                    "rope dimension count {n_rot} does not fit key length {head_dim_k}"
                ),
            });
        }
        let f32_or = |k: &str, d: f32| -> Result<f32> {
            match file.get(&key(k)) {
                None => Ok(d),
                Some(_) => file.get_f32(&key(k)),
            }
        };
        let freq_base = f32_or("rope.freq_base", spec.default_rope_base)?;
        let freq_scale = match file.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            Some("linear") => 1.0 / f32_or("rope.scaling.factor", 1.0)?,
            _ => 1.0,
        };
        // From the embedding; a middle shard file has none, so fall back to
        // the output head, then to the tokenizer's vocabulary.
        let n_vocab = file
            .tensor("token_embd.weight")
            .or_else(|| file.tensor("output.weight"))
            .map(|t| t.n_rows() as usize)
            .or_else(|| file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map(|a| a.len()))
            .ok_or_else(|| Error::MissingTensor("token_embd.weight".into()))?;
        Ok(Config {
            arch: a.to_string(),
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_vocab,
            n_ctx_train: opt("context_length")?.unwrap_or(2048),
            rms_eps: f32_or("attention.layer_norm_rms_epsilon", 1e-5)?,
            rope: Rope {
                layout: spec.rope_layout,
                n_rot,
                freq_base,
                freq_scale,
                freq_factors: None,
            },
        })
    }

    /// Width of one position's keys in the KV cache.
    pub fn k_width(&self) -> usize {
        self.n_head_kv * self.head_dim_k
    }

    /// Width of one position's values in the KV cache.
    pub fn v_width(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
}
