//! Serving many requests at once on one model: a request queue and
//! continuous batching.
//!
//! A [`Scheduler`] owns a fixed number of *slots* (sequences that decode
//! together), each with its own KV cache, and one thread that runs steps.
//! Every step is one [`Model::forward_batch`] call: each running request
//! contributes its next token, and requests still reading their prompt
//! contribute a chunk of it, within a bound on tokens per step, so that a
//! long prompt never stalls the streams already running. Requests join and
//! leave between steps. A finished request leaves its tokens in its slot's
//! cache, and a later request whose prompt starts with them (a chat's next
//! turn) is placed in that slot and evaluates only the rest.
//!
//! Requests carry their own sampling parameters, seed, stop strings, token
//! budget and, optionally, a [`Constraint`] (constrained decoding). Results
//! arrive as [`Event`]s, through a channel ([`Scheduler::submit`], a
//! [`Handle`]) or a callback run on the scheduler's thread
//! ([`Scheduler::submit_with`]).
//!
//! With a model loaded in [`Numerics::BatchInvariant`](crate::Numerics),
//! a request's tokens are the same bits whether it ran alone or among any
//! others, in any slot, with any chunking of its prompt.
//!
//! Refusals are typed errors at submission: a full queue
//! ([`Error::QueueFull`]), a prompt longer than a slot's context
//! ([`Error::ContextFull`]), a request that can never fit the KV memory
//! budget ([`Error::KvBudget`]). A request that fits the budget but not
//! now waits in the queue; memory is never allocated past the budget.

mod engine;
mod logprob;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::kv_cache::GROW_POSITIONS;
use crate::sampler::{Sampler, SamplerParams};
use crate::{Error, Model, Result};

/// How a scheduler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// Sequences decoded together (each has its own KV cache).
    pub slots: usize,
    /// Positions (prompt + generated tokens) per sequence.
    pub n_ctx: usize,
    /// Requests that may wait for a slot; more are refused.
    pub max_queue: usize,
    /// Most tokens one step evaluates (decode tokens and prompt chunks).
    pub max_batch_tokens: usize,
    /// Most prompt tokens one sequence evaluates per step.
    pub prefill_chunk: usize,
    /// Most bytes of KV cache all slots may hold together; `None`: enough
    /// for every slot's whole context.
    pub kv_budget_bytes: Option<usize>,
}

impl SchedulerOptions {
    /// Defaults for `model`: 4 slots of the model's training context
    /// (capped at 4096), 64 waiting requests, 512 tokens per step, prompt
    /// chunks of 256.
    pub fn for_model(model: &Model) -> SchedulerOptions {
        SchedulerOptions {
            slots: 4,
            n_ctx: model.config().n_ctx_train.clamp(1, 4096),
            max_queue: 64,
            max_batch_tokens: 512,
            prefill_chunk: 256,
            kv_budget_bytes: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| Err(Error::invalid(name, reason));
        if self.slots == 0 || self.slots > 1024 {
            return bad("slots", "must be 1 to 1024");
        }
        if self.n_ctx == 0 || self.n_ctx > 1 << 24 {
            return bad("n_ctx", "must be 1 to 2^24 positions");
        }
        if self.max_batch_tokens < self.slots {
            return bad(
                "max_batch_tokens",
                "must be at least the number of slots (every running sequence decodes each step)",
            );
        }
        if self.prefill_chunk == 0 {
            return bad("prefill_chunk", "must be at least 1");
        }
        Ok(())
    }
}

/// Constrained decoding: which tokens may come next. The scheduler masks
/// the logits with [`Constraint::allowed`] before sampling and reports the
/// sampled token through [`Constraint::accept`].
pub trait Constraint: Send {
    /// Set bit `t % 32` of `allowed[t / 32]` for every token `t` that may
    /// come next (`allowed` has `n_vocab.div_ceil(32)` words, all zero on
    /// entry). An error ends the request ([`FinishReason::Failed`]).
    fn allowed(&mut self, allowed: &mut [u32]) -> std::result::Result<(), String>;
    /// The token that was sampled.
    fn accept(&mut self, token: u32) -> std::result::Result<(), String>;
    /// Whether the constraint is complete and generation must end now
    /// ([`FinishReason::ConstraintEnd`]).
    fn is_finished(&self) -> bool;
}

/// What to generate.
pub struct Request {
    /// Token ids of the prompt (the caller applies any chat template).
    pub prompt: Vec<u32>,
    /// Most tokens to generate (the context may end generation sooner).
    pub max_tokens: usize,
    pub sampler: SamplerParams,
    /// Generation ends when the text contains one of these; the text
    /// returned ends before it.
    pub stop: Vec<String>,
    /// `Some(k)`: every token carries its log-probability and the `k` most
    /// likely alternatives (`k` ≤ 20).
    pub top_logprobs: Option<usize>,
    /// Constrained decoding, if any.
    pub constraint: Option<Box<dyn Constraint>>,
    /// Keep generating past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

impl Request {
    /// Greedy decoding of at most 128 tokens, no stop strings.
    pub fn new(prompt: Vec<u32>) -> Request {
        Request {
            prompt,
            max_tokens: 128,
            sampler: SamplerParams::greedy(),
            stop: Vec::new(),
            top_logprobs: None,
            constraint: None,
            ignore_eos: false,
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("prompt_tokens", &self.prompt.len())
            .field("max_tokens", &self.max_tokens)
            .field("sampler", &self.sampler)
            .field("stop", &self.stop)
            .field("top_logprobs", &self.top_logprobs)
            .field("constrained", &self.constraint.is_some())
            .finish()
    }
}

/// Most alternatives a token's log-probabilities may list.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A request's identity within its scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// What a request produces, in order; [`Event::Done`] is always last.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Token(TokenOut),
    Done(Finished),
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenOut {
    pub id: u32,
    /// The text this token completes: possibly empty while a multi-byte
    /// character or a possible stop string is pending (see
    /// [`Finished::tail`]).
    pub text: String,
    pub logprob: Option<Logprob>,
}

/// A token's log-probability (natural log of the softmax of the logits the
/// sampler saw, at temperature 1, after any constraint's mask) and the
/// most likely alternatives, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Logprob {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub reason: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens found in the slot's cache (not evaluated again).
    pub cached_tokens: usize,
    /// Tokens generated (an end-of-generation token that ended it included).
    pub completion_tokens: usize,
    /// The whole generated text (a stop string excluded).
    pub text: String,
    /// Text no [`Event::Token`] carried (held back as a possible stop
    /// string or an unfinished character when generation ended): the
    /// tokens' texts followed by `tail` are `text`.
    pub tail: String,
    pub tokens: Vec<u32>,
    /// From submission to the first token (0 if none came).
    pub time_to_first_token_ms: f64,
    /// From submission to the end.
    pub total_ms: f64,
}

impl Finished {
    /// The end of a request that generated nothing.
    fn unstarted(reason: FinishReason, prompt_tokens: usize, total_ms: f64) -> Finished {
        Finished {
            reason,
            prompt_tokens,
            cached_tokens: 0,
            completion_tokens: 0,
            text: String::new(),
            tail: String::new(),
            tokens: Vec::new(),
            time_to_first_token_ms: 0.0,
            total_ms,
        }
    }
}

/// Why a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The slot's context is full.
    ContextFull,
    /// The constraint is complete.
    ConstraintEnd,
    /// Cancelled by the caller (or its event sink went away).
    Cancelled,
    /// Something failed (the message says what); other requests go on.
    Failed(String),
}

impl FinishReason {
    /// The name OpenAI's API gives it: "stop", "length", "cancelled" or
    /// "error".
    pub fn openai(&self) -> &'static str {
        match self {
            FinishReason::EndOfGeneration
            | FinishReason::StopString
            | FinishReason::ConstraintEnd => "stop",
            FinishReason::MaxTokens | FinishReason::ContextFull => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Failed(_) => "error",
        }
    }
}

/// Counters of a scheduler's work since it started, and its state now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Requests in a slot.
    pub running: usize,
    /// Requests waiting for a slot.
    pub queued: usize,
    pub slots: usize,
    pub requests_total: u64,
    pub prompt_tokens_total: u64,
    pub cached_tokens_total: u64,
    pub generated_tokens_total: u64,
    pub ttft_ms_sum: f64,
    pub ttft_count: u64,
    /// KV cache bytes allocated by all slots.
    pub kv_bytes_used: usize,
    pub kv_bytes_budget: usize,
    pub steps_total: u64,
}

/// Receives a request's events on the scheduler's thread; must not block.
/// Returning `false` cancels the request (its receiver went away).
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

/// A submitted request that has no slot yet.
struct Pending {
    id: u64,
    req: Request,
    sampler: Sampler,
    sink: Sink,
    submitted: Instant,
    /// KV bytes the request may come to hold.
    reserve: usize,
}

/// State shared by the callers and the scheduler's thread.
struct State {
    queue: VecDeque<Pending>,
    cancelled: HashSet<u64>,
    stopping: bool,
    next_id: u64,
    /// Slots without a request (updated by the scheduler's thread).
    free_slots: usize,
    stats: Stats,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state holds no invariant a panic could break halfway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request queue and continuous batching over one model; see the module
/// docs. Shareable across threads.
pub struct Scheduler {
    model: Arc<Model>,
    opts: SchedulerOptions,
    budget: usize,
    /// KV bytes one position of one sequence takes.
    per_position: usize,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Start a scheduler (and its thread) on a model that takes tokens and
    /// gives logits (a whole model, not a middle shard).
    pub fn new(model: Arc<Model>, opts: SchedulerOptions) -> Result<Scheduler> {
        opts.validate()?;
        if !model.takes_tokens() || !model.gives_logits() {
            return Err(Error::invalid(
                "model",
                "the scheduler needs a model with its embedding and output head",
            ));
        }
        let per_position = model.new_cache(1).bytes_per_position();
        let whole = opts
            .slots
            .saturating_mul(opts.n_ctx)
            .saturating_mul(per_position);
        let budget = opts.kv_budget_bytes.unwrap_or(whole).min(whole);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                cancelled: HashSet::new(),
                stopping: false,
                next_id: 1,
                free_slots: opts.slots,
                stats: Stats {
                    slots: opts.slots,
                    kv_bytes_budget: budget,
                    ..Default::default()
                },
            }),
            wake: Condvar::new(),
        });
        let engine = engine::Engine::new(Arc::clone(&model), &opts, budget, Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("strata-scheduler".into())
            .spawn(move || engine.run())
            .map_err(|e| Error::invalid("scheduler", format!("cannot start its thread: {e}")))?;
        Ok(Scheduler {
            model,
            opts,
            budget,
            per_position,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn options(&self) -> &SchedulerOptions {
        &self.opts
    }

    /// Submit a request; its events arrive through the returned handle.
    pub fn submit(&self, req: Request) -> Result<Handle> {
        let (tx, rx) = mpsc::channel();
        let id = self.submit_with(req, Box::new(move |ev| tx.send(ev).is_ok()))?;
        Ok(Handle {
            id,
            rx,
            shared: Arc::clone(&self.shared),
            done: std::cell::Cell::new(false),
        })
    }

    /// Submit a request whose events are given to `sink` on the
    /// scheduler's thread.
    pub fn submit_with(&self, req: Request, sink: Sink) -> Result<RequestId> {
        let reserve = self.check(&req)?;
        let sampler = Sampler::new(req.sampler.clone())?;
        let mut st = self.shared.lock();
        if st.stopping {
            return Err(Error::SchedulerStopped);
        }
        // Requests a free slot will take at the next step do not count as
        // waiting.
        if st.queue.len() >= self.opts.max_queue + st.free_slots {
            return Err(Error::QueueFull {
                limit: self.opts.max_queue,
            });
        }
        let id = st.next_id;
        st.next_id += 1;
        st.queue.push_back(Pending {
            id,
            req,
            sampler,
            sink,
            submitted: Instant::now(),
            reserve,
        });
        st.stats.queued = st.queue.len();
        drop(st);
        self.shared.wake.notify_all();
        Ok(RequestId(id))
    }

    /// The checks made at submission; returns the KV bytes the request may
    /// come to hold.
    fn check(&self, req: &Request) -> Result<usize> {
        let n_vocab = self.model.config().n_vocab;
        if req.prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if let Some(&id) = req.prompt.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::TokenOutOfRange { id, n_vocab });
        }
        if req.prompt.len() > self.opts.n_ctx {
            return Err(Error::ContextFull {
                needed: req.prompt.len(),
                limit: self.opts.n_ctx,
            });
        }
        if req.top_logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
            return Err(Error::invalid(
                "top_logprobs",
                format!("at most {MAX_TOP_LOGPROBS}"),
            ));
        }
        let positions = req.prompt.len().saturating_add(req.max_tokens);
        let reserve =
            rounded_positions(self.opts.n_ctx, positions).saturating_mul(self.per_position);
        if reserve > self.budget {
            return Err(Error::KvBudget {
                needed: reserve,
                budget: self.budget,
            });
        }
        Ok(reserve)
    }

    /// Cancel a request: it ends with [`FinishReason::Cancelled`] before
    /// the next step (nothing happens if it already ended).
    pub fn cancel(&self, id: RequestId) {
        cancel(&self.shared, id.0);
    }

    /// The scheduler's counters and state.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Cancel every request, refuse new ones and stop the thread.
    pub fn shutdown(&self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn cancel(shared: &Shared, id: u64) {
    shared.lock().cancelled.insert(id);
    shared.wake.notify_all();
}

/// A submitted request's events.
pub struct Handle {
    id: RequestId,
    rx: mpsc::Receiver<Event>,
    shared: Arc<Shared>,
    done: std::cell::Cell<bool>,
}

impl Handle {
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The next event, waiting for it; `None` after [`Event::Done`].
    pub fn recv(&self) -> Option<Event> {
        if self.done.get() {
            return None;
        }
        self.note(self.rx.recv().ok())
    }

    /// The next event if one comes within `timeout`; `None` on timeout or
    /// after [`Event::Done`].
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        if self.done.get() {
            return None;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => self.note(Some(ev)),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => self.note(None),
        }
    }

    /// The next event if one is ready.
    pub fn try_recv(&self) -> Option<Event> {
        if self.done.get() {
            return None;
        }
        match self.rx.try_recv() {
            Ok(ev) => self.note(Some(ev)),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => self.note(None),
        }
    }

    /// Marks the handle finished after `Done` (or a scheduler that went
    /// away).
    fn note(&self, ev: Option<Event>) -> Option<Event> {
        if matches!(ev, Some(Event::Done(_)) | None) {
            self.done.set(true);
        }
        ev
    }

    /// Cancel the request (see [`Scheduler::cancel`]).
    pub fn cancel(&self) {
        cancel(&self.shared, self.id.0);
    }

    /// Wait for the end; returns how the request finished.
    pub fn wait(self) -> Finished {
        let mut last = None;
        while let Some(ev) = self.recv() {
            if let Event::Done(f) = ev {
                last = Some(f);
            }
        }
        last.unwrap_or_else(|| {
            Finished::unstarted(FinishReason::Failed("the scheduler stopped".into()), 0, 0.0)
        })
    }
}

/// KV bytes a sequence of `positions` (capped at `n_ctx`) can come to
/// allocate: the cache grows by whole chunks of positions.
fn rounded_positions(n_ctx: usize, positions: usize) -> usize {
    positions.next_multiple_of(GROW_POSITIONS).min(n_ctx)
}
