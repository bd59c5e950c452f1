//! Making receipts: a [`ReceiptBuilder`] records each generated token with
//! the digest of the logits it was sampled from; `Session` methods generate
//! with one.

use super::{chat_template_digest, logits_digest, tokenizer_digest, Receipt, NUMERICS_VERSION};
use crate::generate::{Completion, GenerateParams, StopReason, TokenEvent, TokenStream};
use crate::sampler::SamplerParams;
use crate::session::Session;
use crate::shard::Digest;
use crate::{Error, Model, Numerics, Result};

/// Gathers a receipt while a generation runs.
#[derive(Debug, Clone)]
pub struct ReceiptBuilder {
    receipt: Receipt,
}

impl ReceiptBuilder {
    /// A receipt for a generation on `model` that continues `prompt` (every
    /// token the context holds, from position 0) with `sampler`. Refuses a
    /// model not loaded with [`Numerics::BatchInvariant`]
    /// (`Error::NeedsBatchInvariant`): only there does one batched pass
    /// reproduce the decode's bits. Computes the model digest if it was not
    /// yet (reads every tensor once).
    pub fn new(model: &Model, prompt: &[u32], sampler: &SamplerParams) -> Result<ReceiptBuilder> {
        if model.numerics() != Numerics::BatchInvariant {
            return Err(Error::NeedsBatchInvariant { what: "a receipt" });
        }
        if !(model.takes_tokens() && model.gives_logits()) {
            return Err(Error::invalid(
                "model",
                "a receipt needs the whole model (token embedding and output head)",
            ));
        }
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        sampler.validate()?;
        let clamp = |v: usize| v.min(u32::MAX as usize);
        Ok(ReceiptBuilder {
            receipt: Receipt {
                numerics_version: NUMERICS_VERSION,
                model: model.digest(),
                tokenizer: tokenizer_digest(model.file()),
                chat_template: None,
                sampler: SamplerParams {
                    top_k: clamp(sampler.top_k),
                    repeat_last_n: clamp(sampler.repeat_last_n),
                    ..sampler.clone()
                },
                prompt: prompt.to_vec(),
                tokens: Vec::new(),
                commitments: Vec::new(),
            },
        })
    }

    /// Record that the prompt was rendered with this chat template.
    pub fn chat_template(mut self, template: &str) -> ReceiptBuilder {
        self.receipt.chat_template = Some(chat_template_digest(template));
        self
    }

    /// Record generated token `token`, sampled from `logits`.
    pub fn push(&mut self, logits: &[f32], token: u32) {
        self.push_digest(logits_digest(logits), token);
    }

    /// Record `token` with a commitment already computed
    /// ([`super::logits_digest`]).
    pub fn push_digest(&mut self, commitment: Digest, token: u32) {
        self.receipt.tokens.push(token);
        self.receipt.commitments.push(commitment);
    }

    /// The next token of `stream`, recorded. Use it in place of
    /// `stream.next()`.
    pub fn next_from(&mut self, stream: &mut TokenStream<'_>) -> Option<Result<TokenEvent>> {
        if stream.is_done() {
            return None;
        }
        let commitment = logits_digest(stream.logits());
        let ev = stream.next()?;
        if let Ok(e) = &ev {
            self.push_digest(commitment, e.id);
        }
        Some(ev)
    }

    /// Tokens recorded so far.
    pub fn len(&self) -> usize {
        self.receipt.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.receipt.tokens.is_empty()
    }

    pub fn finish(self) -> Receipt {
        self.receipt
    }
}

impl Session {
    /// [`Session::generate`] with a receipt. The receipt's prompt is every
    /// token the session holds followed by `prompt`'s, so a receipt covers
    /// a whole conversation. The model must be loaded with
    /// [`Numerics::BatchInvariant`] (`Error::NeedsBatchInvariant`
    /// otherwise, before anything runs).
    pub fn generate_with_receipt(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        on_token: impl FnMut(&TokenEvent) -> bool,
    ) -> Result<(Completion, Receipt)> {
        let ids =
            self.model()
                .tokenizer()
                .encode(prompt, params.add_special, params.parse_special)?;
        self.generate_tokens_with_receipt(&ids, params, on_token)
    }

    /// As [`Session::generate_with_receipt`], from token ids.
    pub fn generate_tokens_with_receipt(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        mut on_token: impl FnMut(&TokenEvent) -> bool,
    ) -> Result<(Completion, Receipt)> {
        let mut builder = self.receipt_builder(prompt, &params.sampler)?;
        let mut stream = self.generate_from_tokens(prompt, params)?;
        while let Some(ev) = builder.next_from(&mut stream) {
            if !on_token(&ev?) {
                stream.stop(StopReason::Callback);
            }
        }
        Ok((stream.finish(), builder.finish()))
    }

    /// A builder for a generation that continues what the session holds
    /// with `prompt`.
    pub fn receipt_builder(
        &self,
        prompt: &[u32],
        sampler: &SamplerParams,
    ) -> Result<ReceiptBuilder> {
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if self.tokens().len() != self.position() {
            return Err(Error::invalid(
                "session",
                "a receipt needs the token ids of every position the session holds",
            ));
        }
        let mut context = self.tokens().to_vec();
        context.extend_from_slice(prompt);
        ReceiptBuilder::new(self.model(), &context, sampler)
    }
}
