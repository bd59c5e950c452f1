//! Drafting for speculative decoding: guesses of the next few tokens that
//! one batched forward pass then checks.
//!
//! Decoding reads every weight once per token, so at the bandwidth limit a
//! pass over 1 token and a pass over 8 cost almost the same. A generation
//! with a draft feeds the sampled token together with the drafted ones and
//! gets logits for all of them; each drafted token the sampler would have
//! picked anyway is accepted without a pass of its own, and the cache is
//! cut back past the first one it would not have picked.
//!
//! In [`Numerics::BatchInvariant`](crate::Numerics::BatchInvariant) a
//! token's logits have the same bits in a batch as alone, so the sampler —
//! greedy or seeded, with penalties — sees exactly the logits plain decoding
//! would, in the same order, and the output is bit-identical to plain
//! decoding. Under `Numerics::LlamaCpp`, batches sum attention in another
//! order than single tokens, so a speculative generation can differ from a
//! plain one in low bits of the logits (and, rarely, in a token).
//!
//! Two drafters:
//! - prompt lookup: the longest recent n-gram at the end of the text is
//!   looked up earlier in the text (the prompt included), and the tokens
//!   that followed it there are the draft. It costs nothing but a scan and
//!   pays on copy-heavy work: rewriting, summarizing, editing code,
//!   answering from a given passage;
//! - a draft model: a smaller model with the same vocabulary decodes the
//!   draft greedily in a session of its own, kept in step with the text.

use std::sync::Arc;

use crate::model::Model;
use crate::sampler::argmax;
use crate::session::{Session, SessionOptions};
use crate::{Error, Result};

/// How a generation drafts tokens (see [`GenerateParams`](crate::GenerateParams)).
#[derive(Debug, Clone, Default)]
pub enum Draft {
    /// Plain decoding: one pass per token.
    #[default]
    None,
    /// Prompt lookup: n-gram matches in the text so far.
    Lookup(Lookup),
    /// A draft model's greedy continuation.
    Model(DraftModel),
}

/// A draft model and how far it drafts.
#[derive(Clone)]
pub struct DraftModel {
    /// A whole model (embedding and output head) whose vocabulary is the
    /// target's, token for token.
    pub model: Arc<Model>,
    /// Most tokens drafted per pass (1..=64).
    pub max_draft: usize,
}

impl std::fmt::Debug for DraftModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.model.config();
        write!(
            f,
            "DraftModel({}, {} layers, max_draft {})",
            c.arch, c.n_layer, self.max_draft
        )
    }
}

impl Draft {
    /// Prompt lookup drafting up to `max_draft` tokens per pass, with the
    /// default n-gram sizes.
    pub fn lookup(max_draft: usize) -> Draft {
        Draft::Lookup(Lookup {
            max_draft,
            ..Lookup::default()
        })
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        match self {
            Draft::None => Ok(()),
            Draft::Lookup(l) => l.validate(),
            Draft::Model(m) => check_max_draft("draft_model.max_draft", m.max_draft),
        }
    }

    /// The most tokens a pass drafts (0 without a draft).
    pub fn max_draft(&self) -> usize {
        match self {
            Draft::None => 0,
            Draft::Lookup(l) => l.max_draft,
            Draft::Model(m) => m.max_draft,
        }
    }
}

fn check_max_draft(name: &'static str, n: usize) -> Result<()> {
    if n == 0 || n > MAX_DRAFT {
        return Err(Error::invalid(
            name,
            format!("{n} is not in 1..={MAX_DRAFT}"),
        ));
    }
    Ok(())
}

/// A generation's drafter: what a [`Draft`] needs while it runs.
pub(crate) enum Drafter {
    None,
    Lookup(Lookup),
    /// The draft model's session: the text so far, then its latest draft.
    Model(Session),
}

impl Drafter {
    /// The drafter of `draft` for generations on `target` (checked: the
    /// settings, and a draft model's vocabulary against the target's).
    pub(crate) fn new(draft: &Draft, target: &Session) -> Result<Drafter> {
        draft.validate()?;
        Ok(match draft {
            Draft::None => Drafter::None,
            Draft::Lookup(l) => Drafter::Lookup(*l),
            Draft::Model(d) => {
                check_vocab(target.model(), &d.model)?;
                let opts = SessionOptions {
                    n_ctx: Some(target.n_ctx()),
                };
                Drafter::Model(Session::new(Arc::clone(&d.model), &opts)?)
            }
        })
    }

    /// Up to `limit` drafted tokens to follow `text`.
    pub(crate) fn draft(&mut self, text: &[u32], limit: usize) -> Result<Vec<u32>> {
        match self {
            Drafter::None => Ok(Vec::new()),
            Drafter::Lookup(l) => Ok(l.draft(text, limit)),
            Drafter::Model(s) => model_draft(s, text, limit),
        }
    }
}

/// The draft model's greedy continuation of `text`, `limit` tokens, after
/// bringing its session in step with `text` (what it holds past their
/// common prefix — its previous draft, mostly — is cut back first).
fn model_draft(s: &mut Session, text: &[u32], limit: usize) -> Result<Vec<u32>> {
    if limit == 0 || text.is_empty() {
        return Ok(Vec::new());
    }
    let held = s.tokens();
    let common = held.iter().zip(text).take_while(|(a, b)| a == b).count();
    // At least the last token is fed again, for its logits.
    let keep = common.min(text.len() - 1);
    s.truncate(keep);
    let mut logits = s.feed(&text[keep..])?;
    let mut out = Vec::with_capacity(limit);
    for i in 0..limit {
        let t = argmax(&logits);
        out.push(t);
        if i + 1 < limit {
            logits = s.feed(&[t])?;
        }
    }
    Ok(out)
}

/// A draft model must take and give the target's tokens: a whole model,
/// the same vocabulary token for token.
fn check_vocab(target: &Model, draft: &Model) -> Result<()> {
    if !draft.gives_logits() || !draft.takes_tokens() {
        return Err(Error::invalid(
            "draft_model",
            "is a shard; a draft model needs its embedding and output head",
        ));
    }
    let (a, b) = (target.tokenizer(), draft.tokenizer());
    if a.n_vocab() != b.n_vocab() {
        return Err(Error::invalid(
            "draft_model",
            format!(
                "has {} tokens, the model {}; a draft model needs the same vocabulary",
                b.n_vocab(),
                a.n_vocab()
            ),
        ));
    }
    if let Some(id) = (0..a.n_vocab() as u32).find(|&i| a.token_text(i) != b.token_text(i)) {
        return Err(Error::invalid(
            "draft_model",
            format!("token {id} differs from the model's; a draft model needs the same vocabulary"),
        ));
    }
    Ok(())
}

/// Prompt lookup settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// Most tokens drafted per pass (1..=64).
    pub max_draft: usize,
    /// The shortest n-gram matched (≥ 1).
    pub min_ngram: usize,
    /// The longest n-gram matched, tried first (`min_ngram..=16`).
    pub max_ngram: usize,
}

impl Default for Lookup {
    fn default() -> Self {
        Lookup {
            max_draft: DEFAULT_MAX_DRAFT,
            min_ngram: 3,
            max_ngram: 5,
        }
    }
}

/// The most tokens one pass may draft.
pub const MAX_DRAFT: usize = 64;

/// Tokens drafted per pass where the caller names no number.
pub const DEFAULT_MAX_DRAFT: usize = 8;

impl Lookup {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        check_max_draft("lookup.max_draft", self.max_draft)?;
        if self.min_ngram == 0 || self.min_ngram > self.max_ngram || self.max_ngram > 16 {
            return Err(Error::invalid(
                "lookup.ngram",
                format!(
                    "sizes {}..={} are not within 1..=16 in order",
                    self.min_ngram, self.max_ngram
                ),
            ));
        }
        Ok(())
    }

    /// Up to `limit` (and [`Lookup::max_draft`]) tokens that followed the
    /// most recent earlier occurrence of the longest n-gram ending `text`,
    /// n from `max_ngram` down to `min_ngram`; empty when nothing matches.
    pub fn draft(&self, text: &[u32], limit: usize) -> Vec<u32> {
        let limit = limit.min(self.max_draft);
        if limit == 0 {
            return Vec::new();
        }
        for n in (self.min_ngram..=self.max_ngram).rev() {
            if text.len() <= n {
                continue;
            }
            let tail = &text[text.len() - n..];
            // The latest start before the tail itself, so that something
            // follows the match.
            if let Some(i) = (0..text.len() - n).rev().find(|&i| &text[i..i + n] == tail) {
                let from = i + n;
                let to = (from + limit).min(text.len());
                return text[from..to].to_vec();
            }
        }
        Vec::new()
    }
}

/// How many tokens to draft next, from how the last drafts fared: a
/// drafted token that is not accepted costs a row of compute for nothing
/// (on a model with a large vocabulary, mostly the output head's), so the
/// draft grows while whole drafts are accepted, shrinks to what was
/// accepted when one is cut short (never below [`Pacer::MIN_DRAFT`]: a
/// pass over two tokens costs most of two single steps on a small CPU, so
/// a one-token draft almost never pays), and pauses, for longer each time,
/// after drafts of which nothing was accepted. Which tokens come out never
/// depends on it, only how many passes they take.
#[derive(Debug, Clone)]
pub struct Pacer {
    max: usize,
    cap: usize,
    /// Draft chances still to pass up.
    skip: usize,
    /// The pause after the latest fully rejected draft.
    backoff: usize,
}

impl Pacer {
    /// The longest pause, in draft chances.
    const MAX_BACKOFF: usize = 32;
    /// The shortest draft once drafts have failed.
    pub const MIN_DRAFT: usize = 2;

    /// Drafts of at most `max` tokens, starting at `max`.
    pub fn new(max: usize) -> Pacer {
        Pacer {
            max,
            cap: max,
            skip: 0,
            backoff: 0,
        }
    }

    /// The most tokens to draft at this chance (0: do not draft).
    pub fn next_limit(&mut self) -> usize {
        if self.skip > 0 {
            self.skip -= 1;
            0
        } else {
            self.cap
        }
    }

    /// A draft of `drafted` tokens had its first `accepted` accepted.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        if accepted >= drafted {
            self.cap = (self.cap + 2).min(self.max);
            self.backoff = 0;
        } else if accepted == 0 {
            self.cap = Self::MIN_DRAFT.min(self.max);
            self.backoff = (self.backoff * 2).clamp(2, Self::MAX_BACKOFF);
            self.skip = self.backoff;
        } else {
            self.cap = (accepted + 1).max(Self::MIN_DRAFT).min(self.max);
            self.backoff = 0;
        }
    }
}

/// How a speculative generation went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DraftStats {
    /// Forward passes that carried a draft.
    pub passes: usize,
    /// Tokens drafted.
    pub drafted: usize,
    /// Drafted tokens the sampler accepted.
    pub accepted: usize,
}

impl DraftStats {
    /// Accepted drafted tokens per drafted token (0 when nothing was
    /// drafted).
    pub fn acceptance(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lk(max_draft: usize, min_ngram: usize, max_ngram: usize) -> Lookup {
        Lookup {
            max_draft,
            min_ngram,
            max_ngram,
        }
    }

    #[test]
    fn drafts_what_followed_the_latest_longest_match() {
        let l = lk(3, 1, 3);
        // "5 6" occurs at 1 and 6; the latest earlier one (6) is followed
        // by 9; but the 3-gram "4 5 6" occurs only at 0, followed by 7 8 1.
        let text = [4, 5, 6, 7, 8, 1, 5, 6, 9, 4, 5, 6];
        assert_eq!(l.draft(&text, 10), vec![7, 8, 1]);
        // Only a 2-gram: the latest match wins.
        let text = [5, 6, 1, 2, 5, 6, 3, 4, 5, 6];
        assert_eq!(l.draft(&text, 10), vec![3, 4, 5]);
        assert_eq!(l.draft(&text, 2), vec![3, 4]);
        assert_eq!(l.draft(&text, 0), Vec::<u32>::new());
    }

    #[test]
    fn a_match_may_run_into_the_tail_and_stops_at_the_end() {
        let l = lk(8, 2, 2);
        // "1 1" at 0 is followed by "1 1" (the tail itself) and then ends.
        assert_eq!(l.draft(&[1, 1, 1], 8), vec![1]);
        assert_eq!(l.draft(&[1, 2, 3], 8), Vec::<u32>::new());
        assert_eq!(l.draft(&[], 8), Vec::<u32>::new());
        assert_eq!(l.draft(&[7, 7], 8), Vec::<u32>::new());
    }

    #[test]
    fn the_pacer_grows_on_success_and_pauses_after_misses() {
        let mut p = Pacer::new(8);
        assert_eq!(p.next_limit(), 8);
        p.record(8, 3);
        assert_eq!(p.next_limit(), 4);
        p.record(4, 4);
        assert_eq!(p.next_limit(), 6);
        p.record(6, 6);
        p.record(8, 8);
        assert_eq!(p.next_limit(), 8);
        p.record(8, 0);
        // Two chances passed up, then a draft of two.
        assert_eq!((p.next_limit(), p.next_limit(), p.next_limit()), (0, 0, 2));
        p.record(2, 0);
        let next: Vec<usize> = (0..5).map(|_| p.next_limit()).collect();
        assert_eq!(next, [0, 0, 0, 0, 2]);
        p.record(2, 1);
        assert_eq!(p.next_limit(), 2);
        p.record(2, 2);
        assert_eq!(p.next_limit(), 4);
        p.record(0, 0);
        assert_eq!(p.next_limit(), 4);
        // A one-token limit stays one.
        let mut one = Pacer::new(1);
        one.record(1, 0);
        assert_eq!(
            (one.next_limit(), one.next_limit(), one.next_limit()),
            (0, 0, 1)
        );
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(lk(0, 1, 2).validate().is_err());
        assert!(lk(MAX_DRAFT + 1, 1, 2).validate().is_err());
        assert!(lk(4, 0, 2).validate().is_err());
        assert!(lk(4, 3, 2).validate().is_err());
        assert!(lk(4, 1, 17).validate().is_err());
        assert!(Lookup::default().validate().is_ok());
        assert!(Draft::None.validate().is_ok());
        assert!(Draft::lookup(64).validate().is_ok());
    }
}
