//! Checking a receipt: one batched forward pass over prompt + generated
//! tokens, each position's logits hashed and compared with its commitment,
//! the sampler replayed from those logits.

use rayon::prelude::*;

use super::{logits_digest, tokenizer_digest, Receipt, MAX_POSITIONS, NUMERICS_VERSION};
use crate::model::{Input, Logits, Output};
use crate::sampler::Sampler;
use crate::shard::Digest;
use crate::{Error, Model, Numerics, Result};

/// Bounds on what a verification holds in memory at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Most positions per forward call. Default 512.
    pub max_chunk: usize,
    /// Most bytes of logits per forward call (rows × vocabulary × 4): a
    /// large vocabulary gets shorter chunks. Default 128 MiB.
    pub logits_budget: usize,
    /// Most positions a receipt may ask to recompute (its KV cache grows to
    /// that). Default [`MAX_POSITIONS`].
    pub max_positions: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            max_chunk: 512,
            logits_budget: 128 << 20,
            max_positions: MAX_POSITIONS,
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    /// Every commitment and every token was reproduced.
    Holds(Holds),
    /// The first generated token whose logits or choice differ.
    Differs(Divergence),
    /// The receipt cannot be checked against this model and engine.
    Inconsistent(Inconsistency),
}

impl Verification {
    pub fn holds(&self) -> bool {
        matches!(self, Verification::Holds(_))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Holds {
    /// Generated tokens checked (commitments recomputed, draws replayed).
    pub tokens: usize,
    /// Positions evaluated (prompt + generated tokens but the last).
    pub positions: usize,
    pub fingerprint: Digest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// Index of the generated token (0 = the first).
    pub index: usize,
    /// Position whose logits it was sampled from (prompt length - 1 + index).
    pub position: usize,
    pub reason: DivergenceReason,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DivergenceReason {
    /// The recomputed logits are not the ones the receipt committed to.
    Commitment {
        recorded: Digest,
        recomputed: Digest,
    },
    /// The logits match, but the sampler, replayed on them with the
    /// receipt's settings and seed, picks another token.
    Token { recorded: u32, replayed: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inconsistency {
    /// The receipt was made with another engine numerics version.
    NumericsVersion { receipt: u32, engine: u32 },
    /// The receipt names another model.
    ModelDigest { receipt: Digest, model: Digest },
    /// The receipt names another tokenizer than the model's.
    TokenizerDigest { receipt: Digest, model: Digest },
    /// The sampler settings do not validate.
    Sampler(String),
    /// A token id is not in the model's vocabulary (`index` counts prompt
    /// then generated tokens).
    TokenOutOfRange {
        index: usize,
        id: u32,
        n_vocab: usize,
    },
    /// More positions than the verifier's bound.
    TooManyPositions { positions: usize, limit: usize },
}

impl std::fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inconsistency::NumericsVersion { receipt, engine } => write!(
                f,
                "the receipt has numerics version {receipt}, this engine {engine}"
            ),
            Inconsistency::ModelDigest { receipt, model } => {
                write!(f, "the receipt is for model {receipt}, not {model}")
            }
            Inconsistency::TokenizerDigest { receipt, model } => write!(
                f,
                "the receipt's tokenizer is {receipt}, the model's {model}"
            ),
            Inconsistency::Sampler(e) => write!(f, "the sampler settings are invalid: {e}"),
            Inconsistency::TokenOutOfRange { index, id, n_vocab } => write!(
                f,
                "token {index} is id {id}, outside the model's {n_vocab} tokens"
            ),
            Inconsistency::TooManyPositions { positions, limit } => write!(
                f,
                "{positions} positions, more than this verifier's limit of {limit}"
            ),
        }
    }
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "generated token {} (logits of position {}): ",
            self.index, self.position
        )?;
        match &self.reason {
            DivergenceReason::Commitment {
                recorded,
                recomputed,
            } => write!(
                f,
                "the logits differ (receipt commits {recorded}, recomputed {recomputed})"
            ),
            DivergenceReason::Token { recorded, replayed } => write!(
                f,
                "the receipt has token {recorded}, the replayed sampler picks {replayed}"
            ),
        }
    }
}

/// The checks that need no forward pass.
fn consistency(model: &Model, r: &Receipt, opts: &VerifyOptions) -> Option<Inconsistency> {
    if r.numerics_version != NUMERICS_VERSION {
        return Some(Inconsistency::NumericsVersion {
            receipt: r.numerics_version,
            engine: NUMERICS_VERSION,
        });
    }
    let digest = model.digest();
    if r.model != digest {
        return Some(Inconsistency::ModelDigest {
            receipt: r.model,
            model: digest,
        });
    }
    let tok = tokenizer_digest(model.file());
    if r.tokenizer != tok {
        return Some(Inconsistency::TokenizerDigest {
            receipt: r.tokenizer,
            model: tok,
        });
    }
    if let Err(e) = r.sampler.validate() {
        return Some(Inconsistency::Sampler(e.to_string()));
    }
    let n_vocab = model.config().n_vocab;
    let all = r.prompt.iter().chain(&r.tokens);
    if let Some((index, &id)) = all.enumerate().find(|(_, &t)| t as usize >= n_vocab) {
        return Some(Inconsistency::TokenOutOfRange { index, id, n_vocab });
    }
    let positions = r.prompt.len() + r.tokens.len().saturating_sub(1);
    let limit = opts.max_positions.min(MAX_POSITIONS);
    if positions > limit {
        return Some(Inconsistency::TooManyPositions { positions, limit });
    }
    None
}

/// Decode `bytes` (binary or JSON, [`Receipt::parse`]) and [`verify`] it.
/// A malformed receipt is `Err(Error::ReceiptMalformed)`.
pub fn verify_bytes(model: &Model, bytes: &[u8], opts: &VerifyOptions) -> Result<Verification> {
    verify(model, &Receipt::parse(bytes)?, opts)
}

/// Check `receipt` against `model`: the consistency checks, then one
/// forward pass over the prompt and the generated tokens (chunked to
/// `opts`' bounds), each commitment recomputed and each draw replayed.
/// Stops at the first divergence. `model` must be loaded with
/// [`Numerics::BatchInvariant`] (`Error::NeedsBatchInvariant`); an error
/// of the forward pass is returned as it is.
pub fn verify(model: &Model, receipt: &Receipt, opts: &VerifyOptions) -> Result<Verification> {
    if model.numerics() != Numerics::BatchInvariant {
        return Err(Error::NeedsBatchInvariant {
            what: "verifying a receipt",
        });
    }
    if !(model.takes_tokens() && model.gives_logits()) {
        return Err(Error::invalid(
            "model",
            "verifying a receipt needs the whole model (token embedding and output head)",
        ));
    }
    if opts.max_chunk == 0 {
        return Err(Error::invalid("max_chunk", "must be at least 1"));
    }
    if receipt.prompt.is_empty() || receipt.commitments.len() != receipt.tokens.len() {
        return Err(super::malformed(
            "counts",
            format!(
                "{} prompt tokens, {} generated tokens, {} commitments",
                receipt.prompt.len(),
                receipt.tokens.len(),
                receipt.commitments.len()
            ),
        ));
    }
    if let Some(i) = consistency(model, receipt, opts) {
        return Ok(Verification::Inconsistent(i));
    }
    let r = receipt;
    let holds = |positions| {
        Verification::Holds(Holds {
            tokens: r.tokens.len(),
            positions,
            fingerprint: r.fingerprint(),
        })
    };
    let g = r.tokens.len();
    if g == 0 {
        return Ok(holds(0));
    }
    // Positions fed: the prompt, then every generated token but the last
    // (its logits gave nothing the receipt records).
    let fed: Vec<u32> = r.prompt.iter().chain(&r.tokens[..g - 1]).copied().collect();
    let first = r.prompt.len() - 1; // the first position with a commitment
    let n_vocab = model.config().n_vocab;
    let rows = (opts.logits_budget / (n_vocab * 4).max(1)).clamp(1, opts.max_chunk);
    let mut cache = model.new_cache(fed.len());
    let mut pos = 0;
    // The prompt before the first committed position: no logits needed.
    while pos < first {
        let n = (first - pos).min(opts.max_chunk);
        model.forward(
            &mut cache,
            Input::Tokens(&fed[pos..pos + n]),
            pos,
            Logits::None,
        )?;
        pos += n;
    }
    let mut sampler = Sampler::new(r.sampler.clone())?;
    while pos < fed.len() {
        let n = (fed.len() - pos).min(rows);
        let out = model.forward(
            &mut cache,
            Input::Tokens(&fed[pos..pos + n]),
            pos,
            Logits::All,
        )?;
        let Output::Logits(logits) = out else {
            return Err(Error::invalid("model", "the model gave no logits"));
        };
        // Hash the chunk's rows on the model's threads, then replay in order.
        let digests: Vec<Digest> = model.install(|| {
            logits
                .par_chunks_exact(n_vocab)
                .map(logits_digest)
                .collect()
        });
        for (k, (row, recomputed)) in logits.chunks_exact(n_vocab).zip(digests).enumerate() {
            let index = pos + k - first;
            let position = pos + k;
            let recorded = r.commitments[index];
            if recorded != recomputed {
                return Ok(Verification::Differs(Divergence {
                    index,
                    position,
                    reason: DivergenceReason::Commitment {
                        recorded,
                        recomputed,
                    },
                }));
            }
            let replayed = sampler.sample(row);
            let token = r.tokens[index];
            if replayed != token {
                return Ok(Verification::Differs(Divergence {
                    index,
                    position,
                    reason: DivergenceReason::Token {
                        recorded: token,
                        replayed,
                    },
                }));
            }
            sampler.accept(token);
        }
        pos += n;
    }
    Ok(holds(fed.len()))
}
