//! A loaded model (or a contiguous range of its layers): configuration,
//! weights viewed in the mapped file, tokenizer, and the forward pass.

pub mod arch;
pub mod config;
mod layers;
pub mod moe;
pub mod weights;

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

pub use config::Config;

use crate::gguf::GgufFile;
use crate::kv_cache::KvCache;
use crate::ops::attention::DotOrder;
use crate::ops::{matmul_with, norm, Weight};
use crate::shard::{digest, Digest, ShardInfo};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use weights::{Binder, LayerWeights};

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Worker threads for this model's compute; `None` = all cores.
    pub n_threads: Option<usize>,
    /// Load only these layers (a shard); `None` = all.
    pub layers: Option<Range<usize>>,
    /// Summation order where llama.cpp's depends on the batch size.
    pub numerics: Numerics,
}

/// The two summation orders Strata offers (see `docs/determinism.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Numerics {
    /// Bit-for-bit what llama.cpp computes: attention sums in one order for a
    /// batch of tokens and in another for a single token, as llama.cpp's CPU
    /// backend does. Results depend on how a prompt is split into calls.
    #[default]
    LlamaCpp,
    /// Every token is computed as llama.cpp computes a single token, whatever
    /// the batch: results are independent of how a prompt is split into
    /// forward calls (shards, verification, replay). Decode steps equal
    /// llama.cpp's; prompt logits differ from its batched ones in low bits.
    BatchInvariant,
}

impl Numerics {
    fn attention_order(self, n_tokens: usize) -> DotOrder {
        match self {
            Numerics::LlamaCpp => DotOrder::llama_cpp(n_tokens),
            Numerics::BatchInvariant => DotOrder::VecDot,
        }
    }
}

/// What a forward call consumes.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Token ids (only for a model that holds the embedding).
    Tokens(&'a [u32]),
    /// Hidden states `[n][n_embd]` from the previous shard.
    Hidden(&'a [f32]),
}

impl Input<'_> {
    fn len(&self, n_embd: usize) -> usize {
        match self {
            Input::Tokens(t) => t.len(),
            Input::Hidden(h) => h.len() / n_embd.max(1),
        }
    }
}

/// One sequence of a [`Model::forward_batch`] call.
#[derive(Debug)]
pub struct BatchItem<'a> {
    /// The sequence's own cache (rolled back to `pos` first).
    pub cache: &'a mut KvCache,
    pub input: Input<'a>,
    /// Position of the input's first token; at most `cache.len()`.
    pub pos: usize,
    pub logits: Logits,
}

/// Which positions produce logits (for a model that holds the output head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's.
    Last,
    /// Every token's.
    All,
    /// None (a prompt chunk that is not the last: its logits would be
    /// discarded). A model without the output head ignores this.
    None,
}

/// What a forward call produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Hidden states `[n][n_embd]` for the next shard.
    Hidden(Vec<f32>),
    /// Logits `[rows][n_vocab]`, one row per requested position.
    Logits(Vec<f32>),
}

/// A loaded model or shard. Immutable once loaded and shareable across
/// threads: every mutable state lives in a [`KvCache`] owned by a session.
pub struct Model {
    file: Arc<GgufFile>,
    config: Config,
    layers: Range<usize>,
    /// `[n_vocab rows][n_embd]`, first shard only.
    embedding: Option<Weight>,
    blocks: Vec<LayerWeights>,
    /// `[n_embd]`, last shard only.
    output_norm: Option<Vec<f32>>,
    /// `[n_vocab rows][n_embd]` (the embedding when tied), last shard only.
    output: Option<Weight>,
    tokenizer: Tokenizer,
    pool: rayon::ThreadPool,
    /// Forward-pass buffers free for the next call.
    scratch: Mutex<Vec<layers::Scratch>>,
    /// Set when the file is a shard file.
    shard: Option<ShardInfo>,
    digest: OnceLock<Digest>,
    numerics: Numerics,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("arch", &self.config.arch)
            .field("layers", &self.layers)
            .finish()
    }
}

impl Model {
    /// Load a model from a GGUF file.
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
        Self::from_file(Arc::new(GgufFile::open(path)?), opts)
    }

    /// Build a model over an already opened file.
    pub fn from_file(file: Arc<GgufFile>, opts: &LoadOptions) -> Result<Model> {
        let arch_name = file.get_str("general.architecture")?;
        let spec = arch::lookup(arch_name)?;
        let mut config = Config::from_gguf(&file, spec)?;
        // A shard file vouches for its parent's digest only once its tensors
        // match the hashes it records.
        let shard = ShardInfo::from_gguf(&file)?
            .map(|s| s.verified(&file))
            .transpose()?;
        let available = shard
            .as_ref()
            .map_or(0..config.n_layer, |s| s.layers.clone());
        if shard.as_ref().is_some_and(|s| s.n_layer != config.n_layer) {
            return Err(Error::Malformed {
                offset: 0,
                reason: "the shard's layer count disagrees with block_count".into(),
            });
        }
        let layers = opts.layers.clone().unwrap_or(available.clone());
        if layers.start >= layers.end
            || layers.start < available.start
            || layers.end > available.end
        {
            return Err(Error::invalid(
                "layers",
                format!(
                    "range {}..{} is empty or outside the {} layers {}..{}",
                    layers.start,
                    layers.end,
                    if shard.is_some() {
                        "shard file's"
                    } else {
                        "model's"
                    },
                    available.start,
                    available.end
                ),
            ));
        }
        let b = Binder { file: &file };
        config.rope.freq_factors = b.optional_vector("rope_freqs.weight", config.rope.n_rot / 2)?;
        let first = layers.start == 0;
        let last = layers.end == config.n_layer;
        let (e, nv) = (config.n_embd, config.n_vocab);
        let embedding = if first || (last && file.tensor("output.weight").is_none()) {
            Some(b.matrix("token_embd.weight", nv, e)?)
        } else {
            None
        };
        let blocks = b.layers(&config, layers.clone())?;
        let (output_norm, output) = if last {
            let head = match file.tensor("output.weight") {
                Some(_) => b.matrix("output.weight", nv, e)?,
                None => embedding
                    .clone()
                    .ok_or_else(|| Error::MissingTensor("output.weight".into()))?,
            };
            (Some(b.vector("output_norm.weight", e)?), Some(head))
        } else {
            (None, None)
        };
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let n_threads = match opts.n_threads {
            Some(0) => return Err(Error::invalid("n_threads", "must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .thread_name(|i| format!("strata-{i}"))
            .build()
            .map_err(|e| Error::invalid("n_threads", e.to_string()))?;
        Ok(Model {
            embedding: if first { embedding } else { None },
            file,
            config,
            layers,
            blocks,
            output_norm,
            output,
            tokenizer,
            pool,
            scratch: Mutex::new(Vec::new()),
            shard,
            digest: OnceLock::new(),
            numerics: opts.numerics,
        })
    }

    /// The model's identity digest. For a shard file, the parent model's
    /// (recorded in the file); otherwise computed from the whole file once
    /// (this reads every tensor) and kept.
    pub fn digest(&self) -> Digest {
        if let Some(s) = &self.shard {
            return s.parent;
        }
        *self.digest.get_or_init(|| digest::model_digest(&self.file))
    }

    /// The summation order this model was loaded with.
    pub fn numerics(&self) -> Numerics {
        self.numerics
    }

    /// The shard description, when the model was loaded from a shard file.
    pub fn shard_info(&self) -> Option<&ShardInfo> {
        self.shard.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The GGUF file the model was loaded from.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// The layers this model holds.
    pub fn layers(&self) -> Range<usize> {
        self.layers.clone()
    }

    /// Whether this model takes token ids (holds the embedding).
    pub fn takes_tokens(&self) -> bool {
        self.layers.start == 0
    }

    /// Whether this model produces logits (holds the output head).
    pub fn gives_logits(&self) -> bool {
        self.output.is_some()
    }

    /// Worker threads.
    pub fn n_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Run `f` on the model's worker threads (for work between forward
    /// calls that should use the same threads, such as sampling several
    /// sequences at once).
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// A KV cache for this model's layers, holding at most `n_ctx` positions.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        KvCache::new(
            self.blocks.len(),
            self.config.k_width(),
            self.config.v_width(),
            n_ctx,
        )
    }

    /// Run the model's layers over `input` placed at positions
    /// `pos..pos+n`, extending `cache`. `pos` must equal `cache.len()` or be
    /// smaller (the cache is then rolled back to `pos` first).
    pub fn forward(
        &self,
        cache: &mut KvCache,
        input: Input,
        pos: usize,
        logits: Logits,
    ) -> Result<Output> {
        let mut one = [BatchItem {
            cache,
            input,
            pos,
            logits,
        }];
        let mut got = None;
        self.run_batch(&mut one, &mut |o| got = Some(o))?;
        Ok(got.expect("one output per item"))
    }

    /// Run several sequences through the model in one pass: each item is a
    /// sequence with its own cache, its own input (a prompt chunk or one
    /// decode token) at its own position. Every matrix product runs over
    /// the rows of all items together, so each weight block is read once
    /// for the whole batch; attention runs per sequence over its own cache.
    /// Returns one output per item, in order.
    ///
    /// In [`Numerics::BatchInvariant`] an item's output has the same bits
    /// whatever else is in the batch. In [`Numerics::LlamaCpp`] attention
    /// sums in the order llama.cpp picks for a batch of the total size, as
    /// llama.cpp does for several sequences in one `llama_decode`.
    ///
    /// Every item is checked before anything runs; an error names the item
    /// and leaves every cache as it was.
    pub fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> Result<Vec<Output>> {
        let mut out = Vec::with_capacity(items.len());
        self.run_batch(items, &mut |o| out.push(o))?;
        Ok(out)
    }

    /// [`Model::forward_batch`], handing each output to `emit` in order
    /// (so that a single forward allocates no list).
    fn run_batch(
        &self,
        items: &mut [BatchItem<'_>],
        emit: &mut (dyn FnMut(Output) + Send),
    ) -> Result<()> {
        let cfg = &self.config;
        if items.is_empty() {
            return Ok(());
        }
        let mut n = 0usize;
        for (i, it) in items.iter().enumerate() {
            self.check_item(it)
                .map_err(|e| e.in_batch(i, items.len()))?;
            n += it.input.len(cfg.n_embd);
        }
        let order = self.numerics.attention_order(n);
        // Buffers of an earlier call, if one is free (concurrent calls each
        // take their own; the list holds at most as many as ran at once).
        let mut s = lock(&self.scratch).pop().unwrap_or_default();
        s.fit(cfg, n);
        let out = self
            .pool
            .install(|| self.forward_in(items, order, &mut s, emit));
        lock(&self.scratch).push(s);
        out
    }

    /// The checks of one batch item.
    fn check_item(&self, it: &BatchItem<'_>) -> Result<()> {
        let cfg = &self.config;
        let n = it.input.len(cfg.n_embd);
        if n == 0 {
            return Err(Error::EmptyPrompt);
        }
        it.cache.check_room(it.pos, n)?;
        if it.cache.n_layers() != self.blocks.len()
            || it.cache.k_width() != cfg.k_width()
            || it.cache.v_width() != cfg.v_width()
        {
            return Err(Error::invalid(
                "cache",
                "the KV cache was made for another model or layer range",
            ));
        }
        match it.input {
            Input::Hidden(h) => {
                if self.takes_tokens() {
                    return Err(Error::invalid(
                        "input",
                        "the first shard takes token ids, not hidden states",
                    ));
                }
                if h.len() != n * cfg.n_embd {
                    return Err(Error::invalid(
                        "input",
                        format!(
                            "{} values is not a whole number of {}-wide rows",
                            h.len(),
                            cfg.n_embd
                        ),
                    ));
                }
            }
            Input::Tokens(tokens) => {
                if self.embedding.is_none() {
                    return Err(Error::invalid(
                        "input",
                        "only the first shard takes token ids",
                    ));
                }
                if let Some(&id) = tokens.iter().find(|&&t| t as usize >= cfg.n_vocab) {
                    return Err(Error::TokenOutOfRange {
                        id,
                        n_vocab: cfg.n_vocab,
                    });
                }
            }
        }
        Ok(())
    }

    /// [`Model::forward_batch`] after the checks, with the call's buffers.
    fn forward_in(
        &self,
        items: &mut [BatchItem<'_>],
        order: DotOrder,
        s: &mut layers::Scratch,
        emit: &mut (dyn FnMut(Output) + Send),
    ) -> Result<()> {
        let cfg = &self.config;
        let e = cfg.n_embd;
        let mut row = 0;
        for it in items.iter_mut() {
            let n = it.input.len(e);
            let x = &mut s.x[row * e..(row + n) * e];
            match it.input {
                Input::Tokens(tokens) => self.embed(tokens, x)?,
                Input::Hidden(h) => x.copy_from_slice(h),
            }
            it.cache.truncate(it.pos);
            s.positions.extend(it.pos..it.pos + n);
            s.rows.push(row..row + n);
            row += n;
        }
        let rows = std::mem::take(&mut s.rows);
        for (i, w) in self.blocks.iter().enumerate() {
            layers::block(cfg, w, items, &rows, i, s, order);
        }
        for (it, r) in items.iter_mut().zip(&rows) {
            it.cache.set_len(it.pos + r.len());
        }
        s.rows = rows;
        let (Some(out_norm), Some(head)) = (&self.output_norm, &self.output) else {
            for r in &s.rows {
                emit(Output::Hidden(s.x[r.start * e..r.end * e].to_vec()));
            }
            return Ok(());
        };
        // The rows that give logits, gathered for one product with the head.
        let mut m = 0;
        for (it, i) in items.iter().zip(0..) {
            let rows = s.rows[i].clone();
            let r = match it.logits {
                Logits::Last => rows.end - 1..rows.end,
                Logits::All => rows,
                Logits::None => rows.end..rows.end,
            };
            s.picked.push(m..m + r.len());
            if m != r.start {
                s.x.copy_within(r.start * e..r.end * e, m * e);
            }
            m += r.len();
        }
        if m == 0 {
            for _ in &s.picked {
                emit(Output::Logits(Vec::new()));
            }
            return Ok(());
        }
        let rows = &mut s.x[..m * e];
        norm::rms_norm(rows, out_norm, cfg.rms_eps);
        let mut out = vec![0f32; m * cfg.n_vocab];
        matmul_with(head, rows, m, &mut out, &mut s.act);
        if let Some(cap) = cfg.final_logit_softcap {
            layers::softcap(&mut out, cap);
        }
        if s.picked.len() == 1 {
            emit(Output::Logits(out));
            return Ok(());
        }
        let v = cfg.n_vocab;
        for r in &s.picked {
            emit(Output::Logits(out[r.start * v..r.end * v].to_vec()));
        }
        Ok(())
    }

    /// The embedding rows of `tokens` into `x` (`[n][n_embd]`).
    fn embed(&self, tokens: &[u32], x: &mut [f32]) -> Result<()> {
        let emb = self
            .embedding
            .as_ref()
            .ok_or_else(|| Error::invalid("input", "only the first shard takes token ids"))?;
        let e = self.config.n_embd;
        for (&t, row) in tokens.iter().zip(x.chunks_exact_mut(e)) {
            if t as usize >= self.config.n_vocab {
                return Err(Error::TokenOutOfRange {
                    id: t,
                    n_vocab: self.config.n_vocab,
                });
            }
            emb.dequantize_row(t as usize, row)?;
            if let Some(f) = self.config.embd_scale {
                layers::scale(row, f);
            }
        }
        Ok(())
    }
}

/// The buffers' list, even after a panic in another thread's forward call
/// (the buffers hold no invariant a panic could break).
fn lock(m: &Mutex<Vec<layers::Scratch>>) -> MutexGuard<'_, Vec<layers::Scratch>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
