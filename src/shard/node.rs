//! A shard node: one loaded model or layer range serving many sessions. It
//! takes frames in and gives frames out, validating each against the model
//! digest, its layer boundary, width and the session's position.
//!
//! Sessions are independent: each has its own KV cache behind its own lock,
//! so different sessions run concurrently from several threads, and a bad
//! frame or a failed forward never touches another session's state.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::digest::Digest;
use super::frame::{DType, Frame, FrameKind};
use crate::model::{Input, Logits, Model, Output};
use crate::session::{Session, SessionInput, SessionOptions};
use crate::{Error, Result};

/// Limits that keep a node's memory bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLimits {
    /// Most sessions open at once.
    pub max_sessions: usize,
    /// Context limit of each session (positions).
    pub n_ctx: usize,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            max_sessions: 64,
            n_ctx: 4096,
        }
    }
}

/// What a forward returns besides the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardResult {
    pub frame: Frame,
    /// BLAKE3 of the output payload (equal on every node that computed the
    /// same thing).
    pub digest: Digest,
}

/// A loaded shard serving sessions.
pub struct ShardNode {
    model: Arc<Model>,
    digest: Digest,
    limits: NodeLimits,
    /// Element type of the hidden-state frames this node sends.
    out_dtype: DType,
    sessions: Mutex<HashMap<u64, Arc<Mutex<Session>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a session lock cannot leave it half-written in a
    // way later calls rely on (a forward rolls back to the frame's position
    // first), so a poisoned lock is taken over.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ShardNode {
    pub fn new(model: Arc<Model>, limits: NodeLimits) -> Result<ShardNode> {
        if limits.max_sessions == 0 || limits.n_ctx == 0 {
            return Err(Error::invalid(
                "limits",
                "sessions and context must be at least 1",
            ));
        }
        Ok(ShardNode {
            digest: model.digest(),
            model,
            limits,
            out_dtype: DType::F32,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Send hidden states as `dtype` (f32 is exact; f16/bf16 halve the bytes
    /// but change the next shard's input).
    pub fn with_output_dtype(mut self, dtype: DType) -> Result<ShardNode> {
        if dtype == DType::U32 {
            return Err(Error::invalid(
                "dtype",
                "hidden states are f32, f16 or bf16",
            ));
        }
        self.out_dtype = dtype;
        Ok(self)
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn limits(&self) -> &NodeLimits {
        &self.limits
    }

    /// The layer boundary this node's input frames carry.
    pub fn boundary(&self) -> u32 {
        self.model.layers().start as u32
    }

    /// Row width of the input frames.
    pub fn input_width(&self) -> u32 {
        if self.model.takes_tokens() {
            1
        } else {
            self.model.config().n_embd as u32
        }
    }

    /// Number of open sessions.
    pub fn n_sessions(&self) -> usize {
        lock(&self.sessions).len()
    }

    fn session(&self, id: u64) -> Result<Arc<Mutex<Session>>> {
        let mut map = lock(&self.sessions);
        if let Some(s) = map.get(&id) {
            return Ok(Arc::clone(s));
        }
        if map.len() >= self.limits.max_sessions {
            return Err(Error::TooManySessions {
                limit: self.limits.max_sessions,
            });
        }
        let s = Session::new(
            Arc::clone(&self.model),
            &SessionOptions {
                n_ctx: Some(self.limits.n_ctx),
            },
        )?;
        let s = Arc::new(Mutex::new(s));
        map.insert(id, Arc::clone(&s));
        Ok(s)
    }

    /// Positions held by a session (0 for an unknown one).
    pub fn position(&self, id: u64) -> usize {
        // Release the map before waiting on the session: a long forward on
        // one session must not stall lookups of the others.
        let session = lock(&self.sessions).get(&id).cloned();
        session.map_or(0, |s| lock(&s).position())
    }

    /// Run a frame through this node's layers. The first frame for a new
    /// session id opens it. A frame whose position is below the session's
    /// rolls the session back first (replay, speculation).
    pub fn forward(&self, frame: &Frame) -> Result<ForwardResult> {
        let mut out = self.forward_batch(std::slice::from_ref(frame));
        out.pop().expect("one result per frame")
    }

    /// Run the frames of several sessions through this node's layers in one
    /// batched pass (each weight block read once for all of them); one
    /// result per frame, in order. Each frame is checked as
    /// [`ShardNode::forward`] checks it, and a bad frame (or a second frame
    /// for a session already in the batch) fails alone: the others run.
    /// In the batch-invariant mode each output has the bits it has when
    /// the frame runs alone.
    pub fn forward_batch(&self, frames: &[Frame]) -> Vec<Result<ForwardResult>> {
        let mut results: Vec<Option<Result<ForwardResult>>> = frames.iter().map(|_| None).collect();
        let mut seen = HashSet::new();
        let mut ready = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            if !seen.insert(f.session) {
                results[i] = Some(Err(Error::invalid(
                    "frames",
                    format!("session {} has two frames in one batch", f.session),
                )));
                continue;
            }
            let held = self.position(f.session) as u64;
            let checked = f
                .check(&self.digest, self.boundary(), self.input_width(), held)
                .and_then(|()| self.session(f.session));
            match checked {
                Ok(s) => ready.push((i, s)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        // Sessions locked in id order, so that concurrent batches never
        // wait on each other in a cycle.
        ready.sort_by_key(|(i, _)| frames[*i].session);
        let mut held: Vec<(usize, MutexGuard<'_, Session>, Payload)> = Vec::new();
        for (i, s) in &ready {
            let f = &frames[*i];
            let payload = if f.kind == FrameKind::Tokens {
                f.token_ids().map(Payload::Ids)
            } else {
                f.values().map(Payload::Values)
            };
            match payload {
                Ok(p) => held.push((*i, lock(s), p)),
                Err(e) => results[*i] = Some(Err(e)),
            }
        }
        while !held.is_empty() {
            let mut items: Vec<SessionInput<'_, '_>> = held
                .iter_mut()
                .map(|(i, s, p)| SessionInput {
                    session: &mut **s,
                    input: p.input(),
                    pos: frames[*i].position as usize,
                    logits: Logits::Last,
                })
                .collect();
            match Session::forward_batch(&mut items) {
                Ok(outs) => {
                    for ((i, _, _), out) in held.iter().zip(outs) {
                        results[*i] = Some(self.output_frame(&frames[*i], out));
                    }
                    break;
                }
                Err(Error::BatchItem { index, source }) => {
                    // That frame fails; the rest run again without it.
                    let (i, guard, _) = held.remove(index);
                    drop(guard);
                    results[i] = Some(Err(*source));
                }
                Err(e) => {
                    results[held[0].0] = Some(Err(e));
                    break;
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::invalid("frames", "not run"))))
            .collect()
    }

    /// The frame that carries a forward's output for `frame`.
    fn output_frame(&self, frame: &Frame, out: Output) -> Result<ForwardResult> {
        let n = frame.n_tokens as u64;
        let cfg = self.model.config();
        let frame = match out {
            Output::Hidden(h) => Frame::floats(
                FrameKind::Hidden,
                self.out_dtype,
                self.digest,
                self.model.layers().end as u32,
                frame.session,
                frame.position,
                cfg.n_embd as u32,
                &h,
            )?,
            Output::Logits(l) => Frame::floats(
                FrameKind::Logits,
                DType::F32,
                self.digest,
                cfg.n_layer as u32,
                frame.session,
                frame.position + n - 1,
                cfg.n_vocab as u32,
                &l,
            )?,
        };
        Ok(ForwardResult {
            digest: frame.payload_digest(),
            frame,
        })
    }

    /// Roll a session back to `pos` positions.
    pub fn truncate(&self, id: u64, pos: usize) -> Result<()> {
        let s = lock(&self.sessions)
            .get(&id)
            .cloned()
            .ok_or(Error::UnknownSession(id))?;
        lock(&s).truncate(pos);
        Ok(())
    }

    /// Close a session and free its cache.
    pub fn close(&self, id: u64) -> Result<()> {
        lock(&self.sessions)
            .remove(&id)
            .map(|_| ())
            .ok_or(Error::UnknownSession(id))
    }
}

/// A frame's rows, decoded.
enum Payload {
    Ids(Vec<u32>),
    Values(Vec<f32>),
}

impl Payload {
    fn input(&self) -> Input<'_> {
        match self {
            Payload::Ids(t) => Input::Tokens(t),
            Payload::Values(v) => Input::Hidden(v),
        }
    }
}
