//! Spot-checking a shard node: a verifier that holds the same shard
//! recomputes the node's output frames for the input frames it was given,
//! batched, and compares their payload digests with what the node claimed.

use std::sync::Arc;

use crate::shard::{Digest, Frame, NodeLimits, ShardNode};
use crate::{Error, Model, Numerics, Result};

/// One forward a node did: the frame it received and the digest of the
/// output frame's payload it returned ([`crate::shard::ForwardResult::digest`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameClaim {
    pub input: Frame,
    pub output_digest: Digest,
}

/// What [`check_shard`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardCheck {
    /// Every output was reproduced.
    Holds { frames: usize },
    /// The first claim (in the given order) whose output differs.
    Differs {
        index: usize,
        session: u64,
        position: u64,
        claimed: Digest,
        recomputed: Digest,
    },
    /// A frame the verifying node refuses (another model, boundary, width,
    /// a gap in its session's positions, ...): the claim cannot be right.
    Refused { index: usize, reason: String },
}

/// Recompute `claims` on `model` (a fresh [`ShardNode`] of the same shard,
/// loaded with [`Numerics::BatchInvariant`]) and report the first claim
/// whose output digest differs.
///
/// Each session's frames must be given in the order the node received
/// them. They run in rounds: round `k` holds the `k`-th frame of every
/// session, in one [`ShardNode::forward_batch`] call, so the work is
/// batched across sessions while each session's cache grows as it did on
/// the node. In the batch-invariant mode that gives every output the bits
/// it had on the node, whatever was batched with it there. `n_ctx` bounds
/// each session's context (as the node's own limit did).
pub fn check_shard(model: Arc<Model>, claims: &[FrameClaim], n_ctx: usize) -> Result<ShardCheck> {
    if model.numerics() != Numerics::BatchInvariant {
        return Err(Error::NeedsBatchInvariant {
            what: "checking a shard's outputs",
        });
    }
    // Round of each claim: how many earlier claims its session has.
    let mut seen: std::collections::HashMap<u64, usize> = Default::default();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, c) in claims.iter().enumerate() {
        let r = seen.entry(c.input.session).or_insert(0);
        if rounds.len() <= *r {
            rounds.push(Vec::new());
        }
        rounds[*r].push(i);
        *r += 1;
    }
    let node = ShardNode::new(
        model,
        NodeLimits {
            max_sessions: seen.len().max(1),
            n_ctx,
        },
    )?;
    // Results by claim index; the first failing index in claim order is
    // reported, so every round runs unless an earlier claim already failed.
    let mut first_bad: Option<(usize, ShardCheck)> = None;
    for round in &rounds {
        if first_bad.as_ref().is_some_and(|(i, _)| *i < round[0]) {
            break;
        }
        let frames: Vec<Frame> = round.iter().map(|&i| claims[i].input.clone()).collect();
        for (&i, res) in round.iter().zip(node.forward_batch(&frames)) {
            let c = &claims[i];
            let bad = match res {
                Ok(out) if out.digest == c.output_digest => continue,
                Ok(out) => ShardCheck::Differs {
                    index: i,
                    session: c.input.session,
                    position: c.input.position,
                    claimed: c.output_digest,
                    recomputed: out.digest,
                },
                Err(e) => ShardCheck::Refused {
                    index: i,
                    reason: e.to_string(),
                },
            };
            if first_bad.as_ref().is_none_or(|(j, _)| i < *j) {
                first_bad = Some((i, bad));
            }
        }
    }
    Ok(match first_bad {
        Some((_, bad)) => bad,
        None => ShardCheck::Holds {
            frames: claims.len(),
        },
    })
}
