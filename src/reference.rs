//! llama.cpp as a reference engine (feature `llama-cpp`): the parity tests
//! and `strata bench --vs llama.cpp` load the same GGUF file through the
//! `llama-cpp-2` crate and compare tokens, logits and speed with Strata's.
//!
//! Attention runs with llama.cpp's non-fused path unless asked otherwise
//! ([`RefOptions::flash_attention`]), the path whose arithmetic Strata's
//! attention follows.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::{Error, Result};

fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(false),
            );
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| reference_error(e))
}

fn reference_error(e: impl std::fmt::Display) -> Error {
    Error::invalid("llama.cpp reference", e.to_string())
}

/// Load a model with `use_extra_bufts = false`, which `llama-cpp-2`'s
/// parameters do not expose: through the raw API, then handed to a
/// [`LlamaModel`], which frees it on drop.
fn load_without_repacking(path: &Path) -> Result<LlamaModel> {
    backend()?;
    let c_path = path
        .to_str()
        .and_then(|p| std::ffi::CString::new(p).ok())
        .ok_or_else(|| reference_error(format!("path {} is not valid UTF-8", path.display())))?;
    // SAFETY: plain C calls with a valid NUL-terminated path and parameters
    // from llama.cpp's own defaults; the backend is initialised above.
    let raw = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_default_params();
        params.use_extra_bufts = false;
        llama_cpp_sys_2::llama_model_load_from_file(c_path.as_ptr(), params)
    };
    let raw = std::ptr::NonNull::new(raw)
        .ok_or_else(|| reference_error(format!("llama.cpp could not load {}", path.display())))?;
    // SAFETY: `LlamaModel` is `#[repr(transparent)]` over a non-null
    // `llama_model` pointer in llama-cpp-2 =0.1.160 (pinned in Cargo.toml),
    // and owns it: it is freed exactly once, when the `LlamaModel` drops.
    Ok(unsafe {
        std::mem::transmute::<std::ptr::NonNull<llama_cpp_sys_2::llama_model>, LlamaModel>(raw)
    })
}

/// Context settings for the reference.
#[derive(Debug, Clone)]
pub struct RefOptions {
    pub n_threads: usize,
    pub n_ctx: u32,
    /// Use llama.cpp's fused flash-attention kernel (its default on CPU).
    pub flash_attention: bool,
    /// Let llama.cpp repack weights into its interleaved CPU layouts (its
    /// default, `llama_model_params.use_extra_bufts`). With AVX2 it repacks
    /// Q4_0 and Q4_K matrices and multiplies them with other kernels, whose
    /// summation order and activation quantization differ from the
    /// reference dot products Strata follows; turn it off for bit-level
    /// comparisons of models with such tensors.
    pub repack_weights: bool,
}

impl Default for RefOptions {
    fn default() -> Self {
        RefOptions {
            n_threads: 2,
            n_ctx: 2048,
            flash_attention: false,
            repack_weights: true,
        }
    }
}

/// One sequence of [`Reference::timed_parallel`].
#[derive(Debug, Clone, Default)]
pub struct StreamTimings {
    /// Seconds from the start of the run until the first generated token
    /// was known.
    pub first_token_seconds: f64,
    /// Seconds from the start of the run until the last one was.
    pub last_token_seconds: f64,
    /// The generated tokens, in order.
    pub tokens: Vec<u32>,
}

/// A model loaded in llama.cpp.
pub struct Reference {
    model: LlamaModel,
    opts: RefOptions,
}

/// Timings of a prompt + generation run.
#[derive(Debug, Clone, Default)]
pub struct RefTimings {
    pub prompt_tokens: usize,
    pub prompt_seconds: f64,
    pub generated: usize,
    pub generation_seconds: f64,
    /// The tokens fed back during generation, in order (timed runs only).
    pub tokens: Vec<u32>,
}

impl Reference {
    pub fn load(path: impl AsRef<Path>, opts: RefOptions) -> Result<Reference> {
        let model = if opts.repack_weights {
            LlamaModel::load_from_file(backend()?, path, &LlamaModelParams::default())
                .map_err(reference_error)?
        } else {
            load_without_repacking(path.as_ref())?
        };
        Ok(Reference { model, opts })
    }

    fn context(&self) -> Result<LlamaContext<'_>> {
        let fa = if self.opts.flash_attention {
            llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED
        } else {
            llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.opts.n_ctx))
            .with_n_batch(self.opts.n_ctx)
            .with_n_ubatch(512)
            .with_n_threads(self.opts.n_threads as i32)
            .with_n_threads_batch(self.opts.n_threads as i32)
            .with_flash_attention_policy(fa);
        self.model
            .new_context(backend()?, params)
            .map_err(reference_error)
    }

    /// llama.cpp's tokenization.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), add_special, parse_special)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect()
    }

    /// The bytes llama.cpp gives for one token.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        self.model
            .vocab()
            .token_to_piece(LlamaToken(id as i32), special, None)
    }

    pub fn n_vocab(&self) -> usize {
        self.model.n_vocab() as usize
    }

    /// Logits for every position of `tokens`, evaluated as one batch per
    /// `chunk` tokens.
    pub fn logits_all(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let mut ctx = self.context()?;
        let mut batch = LlamaBatch::new(tokens.len(), 1);
        for (i, &t) in tokens.iter().enumerate() {
            batch
                .add(LlamaToken(t as i32), i as i32, &[0], true)
                .map_err(reference_error)?;
        }
        ctx.decode(&mut batch).map_err(reference_error)?;
        Ok((0..tokens.len())
            .map(|i| ctx.get_logits_ith(i as i32).to_vec())
            .collect())
    }

    /// A benchmark run: the prompt as one batch (timed), then `n` decode
    /// steps of one token each (timed), each feeding back the argmax,
    /// ignoring end-of-generation tokens.
    pub fn timed_run(&self, prompt: &[u32], n: usize) -> Result<RefTimings> {
        let mut ctx = self.context()?;
        let mut batch = LlamaBatch::new(prompt.len().max(1), 1);
        let last = prompt.len().saturating_sub(1);
        for (i, &t) in prompt.iter().enumerate() {
            batch
                .add(LlamaToken(t as i32), i as i32, &[0], i == last)
                .map_err(reference_error)?;
        }
        let t0 = Instant::now();
        ctx.decode(&mut batch).map_err(reference_error)?;
        let prompt_seconds = t0.elapsed().as_secs_f64();
        let mut tok = crate::sampler::argmax(ctx.get_logits_ith(last as i32));
        let mut tokens = Vec::with_capacity(n);
        let t1 = Instant::now();
        for i in 0..n {
            tokens.push(tok);
            batch.clear();
            batch
                .add(
                    LlamaToken(tok as i32),
                    (prompt.len() + i) as i32,
                    &[0],
                    true,
                )
                .map_err(reference_error)?;
            ctx.decode(&mut batch).map_err(reference_error)?;
            tok = crate::sampler::argmax(ctx.get_logits_ith(0));
        }
        Ok(RefTimings {
            prompt_tokens: prompt.len(),
            prompt_seconds,
            generated: n,
            generation_seconds: t1.elapsed().as_secs_f64(),
            tokens,
        })
    }

    /// Batched decoding of several sequences, as llama.cpp serves them: one
    /// context with a KV stream per sequence (`n_seq_max` = the number of
    /// prompts, each sequence with its own `n_ctx` positions), every prompt
    /// evaluated in one `llama_decode` (each token carrying its sequence id),
    /// then `n - 1` steps of one `llama_decode` over one token per sequence,
    /// the argmax of each sequence's logits fed back (end-of-generation
    /// tokens ignored). Only the decodes are timed, from before the prompts'
    /// decode; creating the context is not.
    pub fn timed_parallel(&self, prompts: &[Vec<u32>], n: usize) -> Result<Vec<StreamTimings>> {
        let n_seq = prompts.len();
        if n_seq == 0 || prompts.iter().any(|p| p.is_empty()) {
            return Err(Error::EmptyPrompt);
        }
        if n == 0 {
            return Err(reference_error(
                "a parallel run generates at least one token",
            ));
        }
        let per_seq = self.opts.n_ctx.max(1);
        let total: usize = prompts.iter().map(|p| p.len()).sum();
        let too_big = || reference_error("the sequences do not fit llama.cpp's limits");
        let n_ctx = u32::try_from(n_seq)
            .ok()
            .and_then(|s| s.checked_mul(per_seq))
            .ok_or_else(too_big)?;
        let n_batch = u32::try_from(total.max(n_seq)).map_err(|_| too_big())?;
        let fa = if self.opts.flash_attention {
            llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED
        } else {
            llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_seq_max(n_seq as u32)
            .with_n_batch(n_batch)
            .with_n_ubatch(512)
            .with_n_threads(self.opts.n_threads as i32)
            .with_n_threads_batch(self.opts.n_threads as i32)
            .with_flash_attention_policy(fa);
        let mut ctx = self
            .model
            .new_context(backend()?, params)
            .map_err(reference_error)?;
        let mut batch = LlamaBatch::new(total.max(n_seq), n_seq as i32);
        // Index in the batch of each sequence's last prompt token.
        let mut last = Vec::with_capacity(n_seq);
        for (s, prompt) in prompts.iter().enumerate() {
            for (i, &t) in prompt.iter().enumerate() {
                batch
                    .add(
                        LlamaToken(t as i32),
                        i as i32,
                        &[s as i32],
                        i + 1 == prompt.len(),
                    )
                    .map_err(reference_error)?;
            }
            last.push(batch.n_tokens() - 1);
        }
        let mut out = vec![StreamTimings::default(); n_seq];
        let t0 = Instant::now();
        ctx.decode(&mut batch).map_err(reference_error)?;
        let mut toks: Vec<u32> = last
            .iter()
            .map(|&i| crate::sampler::argmax(ctx.get_logits_ith(i)))
            .collect();
        let first = t0.elapsed().as_secs_f64();
        for (o, &t) in out.iter_mut().zip(&toks) {
            o.first_token_seconds = first;
            o.tokens.reserve(n);
            o.tokens.push(t);
        }
        for step in 1..n {
            batch.clear();
            for (s, (&t, prompt)) in toks.iter().zip(prompts).enumerate() {
                batch
                    .add(
                        LlamaToken(t as i32),
                        (prompt.len() + step - 1) as i32,
                        &[s as i32],
                        true,
                    )
                    .map_err(reference_error)?;
            }
            ctx.decode(&mut batch).map_err(reference_error)?;
            for (s, t) in toks.iter_mut().enumerate() {
                *t = crate::sampler::argmax(ctx.get_logits_ith(s as i32));
                out[s].tokens.push(*t);
            }
        }
        let end = t0.elapsed().as_secs_f64();
        for o in &mut out {
            o.last_token_seconds = if n > 1 { end } else { first };
        }
        Ok(out)
    }

    /// Greedy decoding: the prompt as one batch, then `n` tokens one by one
    /// (stopping early at an end-of-generation token). Returns the tokens
    /// and the logits each was chosen from.
    pub fn greedy(
        &self,
        prompt: &[u32],
        n: usize,
    ) -> Result<(Vec<u32>, Vec<Vec<f32>>, RefTimings)> {
        let mut ctx = self.context()?;
        let mut batch = LlamaBatch::new(prompt.len().max(1), 1);
        let last = prompt.len() - 1;
        for (i, &t) in prompt.iter().enumerate() {
            batch
                .add(LlamaToken(t as i32), i as i32, &[0], i == last)
                .map_err(reference_error)?;
        }
        let t0 = Instant::now();
        ctx.decode(&mut batch).map_err(reference_error)?;
        let mut timings = RefTimings {
            prompt_tokens: prompt.len(),
            prompt_seconds: t0.elapsed().as_secs_f64(),
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut all_logits = Vec::new();
        let mut logits = ctx.get_logits_ith(last as i32).to_vec();
        let t1 = Instant::now();
        let vocab = self.model.vocab();
        for i in 0..n {
            let tok = crate::sampler::argmax(&logits);
            all_logits.push(std::mem::take(&mut logits));
            out.push(tok);
            if vocab.is_eog(LlamaToken(tok as i32)) || i + 1 == n {
                break;
            }
            batch.clear();
            batch
                .add(
                    LlamaToken(tok as i32),
                    (prompt.len() + i) as i32,
                    &[0],
                    true,
                )
                .map_err(reference_error)?;
            ctx.decode(&mut batch).map_err(reference_error)?;
            logits = ctx.get_logits_ith(0).to_vec();
        }
        timings.generated = out.len();
        timings.generation_seconds = t1.elapsed().as_secs_f64();
        Ok((out, all_logits, timings))
    }
}
