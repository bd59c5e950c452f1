//! Receipts: a generation's verifiable record, and its exact check in one
//! batched forward pass.
//!
//! A node that generates text can return, with the text, a [`Receipt`]: the
//! model's digest, the engine's [`NUMERICS_VERSION`], the tokenizer's and
//! chat template's identities, the prompt's token ids, the sampler settings
//! and seed, the generated token ids, and for each generated token a
//! commitment to the logits it was sampled from, gathered in a Merkle tree
//! whose root the receipt's fingerprint covers.
//!
//! Any other node holding the model checks it with [`verify`]: one forward
//! pass over prompt + generated tokens with [`Logits::All`](crate::Logits)
//! (split into chunks only to bound memory), each position's logits hashed
//! and compared with its commitment, and the sampler replayed from those
//! logits. In [`Numerics::BatchInvariant`](crate::Numerics) a position's
//! logits have the same bits however the tokens are split into forward
//! calls, on any thread count and kernel level, so the batched pass (the
//! compute-efficient prefill kind) reproduces the token-by-token decode's
//! bits exactly: no tolerance, no statistics.
//!
//! # The commitment: a digest of each position's logits
//!
//! Commitment `j` is BLAKE3 of the little-endian f32 bytes of the logits
//! that generated token `j` was sampled from: the last prompt position's
//! for `j = 0`, then the position of generated token `j - 1`. This is what
//! the sampler consumes, so a matching commitment proves the token choice
//! had exactly these inputs, and it covers every layer, the final norm, the
//! output head and any logit soft-capping. It is also the digest a last
//! shard's logits frame carries ([`Frame::payload_digest`]), so a
//! pipeline's nodes and a receipt agree on it. (A digest of the final
//! hidden state would be cheaper to hash, but it would leave the output
//! head unchecked and is not what [`Model::forward`] hands back.)
//!
//! # Sampling replay
//!
//! The sampler ([`crate::sampler`]) is a pure function of the logits, its
//! [`SamplerParams`] (seed included) and the generated tokens so far (the
//! penalties' window): it draws exactly one random number per non-greedy
//! call from a seeded xoshiro256** and uses its own `exp`. So the verifier
//! creates a fresh sampler with the receipt's settings and, position by
//! position, samples from the recomputed logits and accepts the receipt's
//! token. Verifiable: every [`SamplerParams`] setting (greedy, temperature,
//! top-k, top-p, min-p, repetition, frequency and presence penalties, the
//! seed). Not recorded, so not verifiable: constraints that mask logits
//! (grammars, JSON schemas) and logit biases. Stop strings need nothing:
//! the receipt holds the tokens generated up to the stop.
//!
//! `docs/receipts.md` describes the binary and JSON forms byte by byte.
//!
//! [`Frame::payload_digest`]: crate::shard::Frame::payload_digest
//! [`Model::forward`]: crate::Model::forward

mod format;
mod generate;
mod json;
pub mod merkle;
mod shard_check;
mod verify;

pub use generate::ReceiptBuilder;
pub use shard_check::{check_shard, FrameClaim, ShardCheck};
pub use verify::{
    verify, verify_bytes, Divergence, DivergenceReason, Holds, Inconsistency, Verification,
    VerifyOptions,
};

use crate::gguf::{put_string, put_value, GgufFile};
use crate::sampler::SamplerParams;
use crate::shard::Digest;

/// The engine's numerics version: a number that names every summation
/// order of the forward pass in [`Numerics::BatchInvariant`] (kernels,
/// activation quantization, attention, norms, RoPE, the output head). Two
/// builds with the same number give the same bits for the same model and
/// tokens; a receipt records it, and a verifier with another number
/// refuses the receipt as inconsistent rather than report a false
/// mismatch.
///
/// It changes whenever any summation order changes, in any kernel level
/// (`tests/receipts.rs` pins the logits of a synthetic model to a digest
/// recorded for this version, so such a change fails there until this
/// number and the digest are updated together).
///
/// [`Numerics::BatchInvariant`]: crate::Numerics::BatchInvariant
pub const NUMERICS_VERSION: u32 = 1;

/// Most positions (prompt + generated tokens) a receipt may hold: a bound
/// on what a decoder allocates and a verifier computes.
pub const MAX_POSITIONS: usize = 1 << 22;

/// A generation's verifiable record (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// [`NUMERICS_VERSION`] of the engine that generated.
    pub numerics_version: u32,
    /// The model's digest ([`crate::Model::digest`]).
    pub model: Digest,
    /// [`tokenizer_digest`] of the model's tokenizer.
    pub tokenizer: Digest,
    /// [`chat_template_digest`] of the template the prompt was rendered
    /// with; `None` when no template was applied.
    pub chat_template: Option<Digest>,
    /// Sampler settings, seed included.
    pub sampler: SamplerParams,
    /// Token ids of the whole context the generation continued (at least one).
    pub prompt: Vec<u32>,
    /// Generated token ids, in order.
    pub tokens: Vec<u32>,
    /// `[tokens.len()]`: commitment `j` is [`logits_digest`] of the logits
    /// token `j` was sampled from.
    pub commitments: Vec<Digest>,
}

impl Receipt {
    /// Position whose logits gave generated token `index`.
    pub fn logits_position(&self, index: usize) -> usize {
        self.prompt.len() - 1 + index
    }

    /// Merkle root over the (position, token, commitment) leaves.
    pub fn root(&self) -> Digest {
        merkle::root(&self.leaves())
    }

    /// The leaves of the commitment tree, one per generated token.
    pub fn leaves(&self) -> Vec<Digest> {
        self.tokens
            .iter()
            .zip(&self.commitments)
            .enumerate()
            .map(|(j, (&t, c))| merkle::leaf(self.logits_position(j) as u64, t, c))
            .collect()
    }

    /// The receipt's fingerprint: BLAKE3 over everything it records, with
    /// the commitments through their Merkle root (see `docs/receipts.md`).
    pub fn fingerprint(&self) -> Digest {
        format::fingerprint(self, &self.root())
    }

    /// The binary form (`docs/receipts.md`).
    pub fn to_bytes(&self) -> Vec<u8> {
        format::encode(self)
    }

    /// Decode and check the binary form: every field, the counts against
    /// the length, the Merkle root and the fingerprint.
    /// `Error::ReceiptMalformed` names the first bad field.
    pub fn from_bytes(b: &[u8]) -> crate::Result<Receipt> {
        format::decode(b)
    }

    /// The JSON form (`docs/receipts.md`), one line.
    pub fn to_json(&self) -> String {
        json::write(self)
    }

    /// Read the JSON form, with the same checks as [`Receipt::from_bytes`].
    pub fn from_json(text: &str) -> crate::Result<Receipt> {
        json::read(text)
    }

    /// Read either form: JSON if the first non-blank byte is `{`.
    pub fn parse(b: &[u8]) -> crate::Result<Receipt> {
        match b.iter().find(|c| !c.is_ascii_whitespace()) {
            Some(b'{') => {
                let text = std::str::from_utf8(b).map_err(|e| crate::Error::ReceiptMalformed {
                    field: "json",
                    reason: format!("not UTF-8: {e}"),
                })?;
                Receipt::from_json(text)
            }
            _ => Receipt::from_bytes(b),
        }
    }
}

/// BLAKE3 of the little-endian bytes of `logits`: a position's commitment.
pub fn logits_digest(logits: &[f32]) -> Digest {
    let mut h = blake3::Hasher::new();
    // Through a buffer of whole blocks, so that BLAKE3 hashes several 1 KiB
    // chunks at once with its SIMD code, on any byte order.
    let mut buf = [0u8; 16 * 1024];
    for part in logits.chunks(buf.len() / 4) {
        for (b, v) in buf.chunks_exact_mut(4).zip(part) {
            b.copy_from_slice(&v.to_le_bytes());
        }
        h.update(&buf[..part.len() * 4]);
    }
    Digest(*h.finalize().as_bytes())
}

/// Identity of a model's tokenizer: BLAKE3 over its `tokenizer.*` metadata
/// (vocabulary, scores, token types, merges, special-token ids and flags),
/// keys sorted, each encoded as GGUF encodes it, the chat template
/// (`tokenizer.chat_template*`) left out.
pub fn tokenizer_digest(file: &GgufFile) -> Digest {
    let mut kv: Vec<_> = file
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer.") && !k.starts_with("tokenizer.chat_template"))
        .collect();
    kv.sort_by(|a, b| a.0.cmp(&b.0));
    let mut buf = b"strata-tokenizer-v1\0".to_vec();
    for (k, v) in kv {
        put_string(&mut buf, k);
        buf.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
        put_value(&mut buf, v);
    }
    Digest::of(&buf)
}

/// Identity of a chat template: BLAKE3 of its UTF-8 text.
pub fn chat_template_digest(template: &str) -> Digest {
    Digest::of(template.as_bytes())
}

/// The chat template a model file carries (`tokenizer.chat_template`).
pub fn model_chat_template(file: &GgufFile) -> Option<&str> {
    file.get_str("tokenizer.chat_template").ok()
}

pub(crate) fn malformed(field: &'static str, reason: impl Into<String>) -> crate::Error {
    crate::Error::ReceiptMalformed {
        field,
        reason: reason.into(),
    }
}
