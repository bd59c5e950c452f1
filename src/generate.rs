//! Text generation on a session: prompt in, a stream of tokens and text out,
//! stopping at end-of-generation tokens, a token budget or stop strings.

use std::collections::VecDeque;
use std::time::Instant;

use crate::draft::{Draft, DraftStats, Drafter, Pacer};
use crate::sampler::{Sampler, SamplerParams};
use crate::session::Session;
use crate::stop::StopText;
use crate::tokenizer::StreamDecoder;
use crate::{Error, Result};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Generation stops when the text contains one of these; the text
    /// returned ends before it.
    pub stop: Vec<String>,
    /// Add BOS/EOS to the prompt as the model's metadata asks.
    pub add_special: bool,
    /// Let special-token text in the prompt (e.g. `<|im_start|>`) become
    /// special tokens.
    pub parse_special: bool,
    /// Speculative decoding: how to draft tokens that one pass checks
    /// (see [`crate::draft`]). Bit-identical to plain decoding in
    /// `Numerics::BatchInvariant`.
    pub draft: Draft,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 128,
            sampler: SamplerParams::default(),
            stop: Vec::new(),
            add_special: true,
            parse_special: true,
            draft: Draft::None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` were generated.
    MaxTokens,
    /// A stop string appeared.
    StopString,
    /// The caller's callback asked to stop.
    Callback,
    /// The session's context is full.
    ContextFull,
}

/// Wall-clock timings of one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub prompt_tokens: usize,
    pub prompt_ms: f64,
    pub generated_tokens: usize,
    pub generation_ms: f64,
    /// Drafted and accepted tokens (all zero without a draft).
    pub draft: DraftStats,
}

impl Timings {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        per_second(self.prompt_tokens, self.prompt_ms)
    }
    pub fn generation_tokens_per_second(&self) -> f64 {
        per_second(self.generated_tokens, self.generation_ms)
    }
}

fn per_second(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

/// The result of a generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub prompt_tokens: Vec<u32>,
    /// Generated ids (including an end-of-generation token if one ended it).
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop_reason: StopReason,
    pub timings: Timings,
}

/// One generated token and the text it completes (possibly empty while a
/// multi-byte character or a possible stop string is pending).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    pub id: u32,
    pub text: String,
}

/// An iterator of generated tokens; see [`Session::generate_iter`].
pub struct TokenStream<'s> {
    session: &'s mut Session,
    sampler: Sampler,
    decoder: StreamDecoder,
    /// Decoded text, held back while it could start a stop string.
    stop: StopText,
    max_tokens: usize,
    logits: Vec<f32>,
    drafter: Drafter,
    pacer: Pacer,
    /// Tokens drafted in the latest pass with a draft, and how many of
    /// them have been accepted so far.
    pass: (usize, usize),
    /// Drafted tokens fed to the session but not yet sampled, in order.
    pending: VecDeque<u32>,
    /// The logits after each pending token (`[pending.len()][n_vocab]`,
    /// from `pending_at` on).
    pending_logits: Vec<f32>,
    pending_at: usize,
    completion: Completion,
    done: Option<StopReason>,
    started: Instant,
}

impl Session {
    /// Tokenize `prompt`, evaluate it, and return an iterator over the
    /// generated tokens.
    pub fn generate_iter(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
    ) -> Result<TokenStream<'_>> {
        let tok = self.model().tokenizer();
        let ids = tok.encode(prompt, params.add_special, params.parse_special)?;
        self.generate_from_tokens(&ids, params)
    }

    /// As [`Session::generate_iter`], from token ids.
    pub fn generate_from_tokens(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
    ) -> Result<TokenStream<'_>> {
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let drafter = Drafter::new(&params.draft, self)?;
        let sampler = Sampler::new(params.sampler.clone())?;
        let t0 = Instant::now();
        let logits = self.feed(prompt)?;
        let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
        let decoder = StreamDecoder::new(self.model().tokenizer());
        Ok(TokenStream {
            sampler,
            decoder,
            stop: StopText::new(&params.stop),
            max_tokens: params.max_tokens,
            logits,
            drafter,
            pacer: Pacer::new(params.draft.max_draft()),
            pass: (0, 0),
            pending: VecDeque::new(),
            pending_logits: Vec::new(),
            pending_at: 0,
            completion: Completion {
                prompt_tokens: prompt.to_vec(),
                tokens: Vec::new(),
                text: String::new(),
                stop_reason: StopReason::MaxTokens,
                timings: Timings {
                    prompt_tokens: prompt.len(),
                    prompt_ms,
                    ..Default::default()
                },
            },
            done: if params.max_tokens == 0 {
                Some(StopReason::MaxTokens)
            } else {
                None
            },
            started: Instant::now(),
            session: self,
        })
    }

    /// Generate to completion, calling `on_token` for each token; the
    /// callback returns `false` to stop.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        mut on_token: impl FnMut(&TokenEvent) -> bool,
    ) -> Result<Completion> {
        let mut stream = self.generate_iter(prompt, params)?;
        while let Some(ev) = stream.next() {
            if !on_token(&ev?) {
                stream.stop(StopReason::Callback);
            }
        }
        Ok(stream.finish())
    }
}

impl TokenStream<'_> {
    /// End the stream early.
    pub fn stop(&mut self, reason: StopReason) {
        self.end(reason);
    }

    /// The logits the next token will be sampled from (those of the last
    /// position evaluated). Receipts hash them before each step.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Whether the stream has ended (the iterator returns `None` from now on).
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// The completion so far (final once the iterator returned `None`).
    pub fn finish(mut self) -> Completion {
        self.discard_pending();
        let tail = self.decoder.finish();
        let mut c = std::mem::replace(
            &mut self.completion,
            Completion {
                prompt_tokens: Vec::new(),
                tokens: Vec::new(),
                text: String::new(),
                stop_reason: StopReason::MaxTokens,
                timings: Timings::default(),
            },
        );
        if c.stop_reason != StopReason::StopString {
            c.text
                .push_str(&std::mem::replace(&mut self.stop, StopText::new(&[])).finish());
            c.text.push_str(&tail);
        }
        c.stop_reason = self.done.unwrap_or(StopReason::MaxTokens);
        c.timings.generated_tokens = c.tokens.len();
        c
    }

    /// Mark the stream ended and leave the session as plain decoding would:
    /// holding the prompt and the tokens fed, no drafted ones.
    fn end(&mut self, reason: StopReason) {
        if self.done.is_none() {
            self.done = Some(reason);
        }
        self.discard_pending();
    }

    /// Cut drafted tokens not yet sampled out of the session.
    fn discard_pending(&mut self) {
        if !self.pending.is_empty() {
            let pos = self.session.position() - self.pending.len();
            self.session.truncate(pos);
            self.pending.clear();
        }
        self.pending_logits.clear();
        self.pending_at = 0;
    }

    fn step(&mut self) -> Result<TokenEvent> {
        let id = self.sampler.sample(&self.logits);
        self.sampler.accept(id);
        self.completion.tokens.push(id);
        let tok = self.session.model().tokenizer();
        if tok.is_eog(id) {
            self.end(StopReason::EndOfGeneration);
            return Ok(TokenEvent {
                id,
                text: String::new(),
            });
        }
        let (text, stopped) = self.stop.push(&self.decoder.push(id));
        self.completion.text.push_str(&text);
        if stopped {
            self.completion.stop_reason = StopReason::StopString;
            self.end(StopReason::StopString);
            return Ok(TokenEvent { id, text });
        }
        // Where plain decoding would stand: drafted tokens not counted.
        let held = self.session.position() - self.pending.len();
        if self.completion.tokens.len() >= self.max_tokens {
            self.end(StopReason::MaxTokens);
        } else if held >= self.session.n_ctx() {
            self.end(StopReason::ContextFull);
        } else {
            self.advance(id)?;
        }
        self.completion.timings.generation_ms = self.started.elapsed().as_secs_f64() * 1e3;
        Ok(TokenEvent { id, text })
    }

    /// The logits after `id`: from the last pass if `id` was drafted there,
    /// else from a new pass over `id` and a new draft.
    fn advance(&mut self, id: u32) -> Result<()> {
        let n_vocab = self.logits.len();
        if let Some(d) = self.pending.pop_front() {
            if d == id {
                let row = self.pending_at * n_vocab;
                self.logits
                    .copy_from_slice(&self.pending_logits[row..row + n_vocab]);
                self.pending_at += 1;
                self.pass.1 += 1;
                self.completion.timings.draft.accepted += 1;
                return Ok(());
            }
            // `d` and what follows it were drafted after a token the
            // sampler did not pick.
            self.pending.push_front(d);
            self.discard_pending();
        }
        self.pending_logits.clear();
        self.pending_at = 0;
        let (drafted, accepted) = std::mem::take(&mut self.pass);
        self.pacer.record(drafted, accepted);
        // Tokens still to sample after `id`, and positions left after it:
        // a draft longer than either is never used.
        let to_sample = self.max_tokens - self.completion.tokens.len();
        let room = self.session.n_ctx() - self.session.position() - 1;
        let limit = to_sample.saturating_sub(1).min(room);
        let draft = match self.pacer.next_limit().min(limit) {
            0 => Vec::new(),
            n => {
                let mut text = self.session.tokens().to_vec();
                text.push(id);
                self.drafter.draft(&text, n)?
            }
        };
        if draft.is_empty() {
            self.logits = self.session.feed(&[id])?;
            return Ok(());
        }
        let mut batch = Vec::with_capacity(draft.len() + 1);
        batch.push(id);
        batch.extend_from_slice(&draft);
        let all = self.session.feed_all(&batch)?;
        self.logits.copy_from_slice(&all[..n_vocab]);
        self.pending_logits = all;
        // Row 0 is `id`'s own; the pending tokens' rows follow it.
        self.pending_at = 1;
        self.completion.timings.draft.passes += 1;
        self.completion.timings.draft.drafted += draft.len();
        self.pass = (draft.len(), 0);
        self.pending.extend(draft);
        Ok(())
    }
}

impl Drop for TokenStream<'_> {
    fn drop(&mut self) {
        self.discard_pending();
    }
}

impl Iterator for TokenStream<'_> {
    type Item = Result<TokenEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done.is_some() {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            self.end(StopReason::Callback);
        }
        self.completion.timings.generation_ms = self.started.elapsed().as_secs_f64() * 1e3;
        Some(r)
    }
}
