//! Sessions: one conversation's state (KV cache, token history) over a shared
//! model. Many sessions can run on one model at once, from several threads.

use std::sync::Arc;

use crate::kv_cache::KvCache;
use crate::model::{BatchItem, Input, Logits, Model, Output};
use crate::{Error, Result};

/// How to create a session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Most positions (prompt + generated tokens) the session may hold.
    /// `None`: the model's training context, capped at 4096.
    pub n_ctx: Option<usize>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { n_ctx: None }
    }
}

/// One session's part of a [`Session::forward_batch`] call.
pub struct SessionInput<'s, 'a> {
    pub session: &'s mut Session,
    pub input: Input<'a>,
    /// Where the input starts (rolling back anything held from there on).
    pub pos: usize,
    pub logits: Logits,
}

/// A session: a KV cache and the tokens it holds.
pub struct Session {
    model: Arc<Model>,
    cache: KvCache,
    /// Token ids at positions `0..len` (for a model that takes tokens).
    history: Vec<u32>,
}

impl Session {
    pub fn new(model: Arc<Model>, opts: &SessionOptions) -> Result<Session> {
        let n_ctx = opts
            .n_ctx
            .unwrap_or_else(|| model.config().n_ctx_train.min(4096));
        if n_ctx == 0 {
            return Err(Error::invalid("n_ctx", "must be at least 1"));
        }
        if n_ctx > 1 << 24 {
            return Err(Error::invalid(
                "n_ctx",
                format!("{n_ctx} is more than 2^24 positions"),
            ));
        }
        Ok(Session {
            cache: model.new_cache(n_ctx),
            model,
            history: Vec::new(),
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Positions held.
    pub fn position(&self) -> usize {
        self.cache.len()
    }

    /// The context limit.
    pub fn n_ctx(&self) -> usize {
        self.cache.max_positions()
    }

    /// Token ids held, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.history
    }

    /// Forget positions from `pos` on (rollback for replay or speculation).
    pub fn truncate(&mut self, pos: usize) {
        self.cache.truncate(pos);
        self.history.truncate(pos);
    }

    /// Forget everything.
    pub fn reset(&mut self) {
        self.cache.clear();
        self.history.clear();
    }

    /// Bytes of KV cache currently allocated.
    pub fn cache_bytes(&self) -> usize {
        self.cache.allocated_bytes()
    }

    /// Evaluate `tokens` after what the session holds; returns the logits
    /// of the last one.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.eval(tokens, Logits::Last)
    }

    /// Evaluate `tokens`; returns logits for every one (`[n][n_vocab]`).
    pub fn feed_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.eval(tokens, Logits::All)
    }

    fn eval(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        if !self.model.gives_logits() {
            return Err(Error::invalid(
                "session",
                "this model is a shard without the output head; use forward()",
            ));
        }
        let pos = self.cache.len();
        match self
            .model
            .forward(&mut self.cache, Input::Tokens(tokens), pos, which)?
        {
            Output::Logits(l) => {
                self.history.extend_from_slice(tokens);
                Ok(l)
            }
            Output::Hidden(_) => unreachable!("a model with a head gives logits"),
        }
    }

    /// Run the model (or shard) on `input` at position `pos` (rolling back
    /// anything held from `pos` on). The general entry point for shards.
    pub fn forward(&mut self, input: Input, pos: usize, which: Logits) -> Result<Output> {
        if pos > self.cache.len() {
            return Err(Error::invalid(
                "position",
                format!("{pos} is past the session's {} positions", self.cache.len()),
            ));
        }
        let out = self.model.forward(&mut self.cache, input, pos, which)?;
        self.history.truncate(pos);
        if let Input::Tokens(t) = input {
            self.history.extend_from_slice(t);
        }
        Ok(out)
    }

    /// Run several sessions of one model in one batched forward pass
    /// ([`Model::forward_batch`]); one output per item, in order. An error
    /// names the item at fault (`Error::BatchItem`, unless there is one
    /// item) and changes no session.
    pub fn forward_batch(items: &mut [SessionInput<'_, '_>]) -> Result<Vec<Output>> {
        let Some(first) = items.first() else {
            return Ok(Vec::new());
        };
        let model = Arc::clone(&first.session.model);
        for (i, it) in items.iter().enumerate() {
            let e = if !Arc::ptr_eq(&it.session.model, &model) {
                Error::invalid("session", "the sessions of a batch must share one model")
            } else if it.pos > it.session.cache.len() {
                Error::invalid(
                    "position",
                    format!(
                        "{} is past the session's {} positions",
                        it.pos,
                        it.session.cache.len()
                    ),
                )
            } else {
                continue;
            };
            return Err(e.in_batch(i, items.len()));
        }
        let mut batch: Vec<BatchItem<'_>> = items
            .iter_mut()
            .map(|it| BatchItem {
                cache: &mut it.session.cache,
                input: it.input,
                pos: it.pos,
                logits: it.logits,
            })
            .collect();
        let out = model.forward_batch(&mut batch)?;
        drop(batch);
        for it in items.iter_mut() {
            it.session.history.truncate(it.pos);
            if let Input::Tokens(t) = it.input {
                it.session.history.extend_from_slice(t);
            }
        }
        Ok(out)
    }
}
