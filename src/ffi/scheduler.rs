//! The scheduler: many requests on one model at once (a request queue and
//! continuous batching, see `crate::scheduler`), without HTTP. A request
//! goes in as token ids with its parameters; its tokens come out one event
//! at a time through `strata_scheduler_poll`.
//!
//! Inside, every request's events arrive in a mailbox of its own (a queue
//! with a condition variable, filled on the scheduler's thread); the handle
//! keeps a map of request id → mailbox. A poll takes the mailbox out of the
//! map, waits on it with the map unlocked, and puts it back, so polls of
//! different requests from different threads never wait for each other.
//! (A mailbox rather than a std channel: a channel's blocking receive gives
//! the caller's thread Rust runtime state that a C program's main thread
//! never frees.) The map holds only requests whose last event has
//! not been polled yet, and never more than the scheduler itself can hold
//! (its slots plus its queue).

use std::collections::HashMap;
use std::collections::VecDeque;
use std::ffi::c_char;
use std::mem::size_of;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::args::{self, Out, OutBuf, OutStruct, SizedStruct};
use super::boundary::{fail, FfiResult};
use super::generate::strata_str;
use super::model::{strata_model, STRATA_TOKEN_NONE};
use super::sampler::strata_sampler_params;
use super::status::strata_status::{self, *};
use crate::sampler::SamplerParams;
use crate::scheduler::{
    Event, FinishReason, Finished, Request, RequestId, Scheduler, SchedulerOptions,
    MAX_TOP_LOGPROBS,
};

/// Most alternatives a token's event lists (strata_request_params.top_logprobs
/// may be 0 to this).
pub const STRATA_MAX_TOP_LOGPROBS: usize = 20;

const _: () = assert!(STRATA_MAX_TOP_LOGPROBS == MAX_TOP_LOGPROBS);

/// How to run a scheduler. Set struct_size to sizeof(strata_scheduler_options);
/// every other field may be 0 for its default (NULL options: all defaults).
/// strata_scheduler_get_options tells the values a scheduler runs with.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct strata_scheduler_options {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// Sequences decoded together, each with its own KV cache; 1 to 1024.
    /// 0 = 4.
    pub slots: u32,
    /// Positions (prompt + generated tokens) per sequence; 0 = the model's
    /// training context, capped at 4096.
    pub n_ctx: u32,
    /// Requests that may wait for a slot; more are refused with
    /// STRATA_QUEUE_FULL. 0 = 64.
    pub max_queue: u32,
    /// Most tokens one step evaluates (a token of every running sequence
    /// plus prompt chunks); at least `slots`. 0 = 512.
    pub max_batch_tokens: u32,
    /// Most prompt tokens one sequence evaluates per step. 0 = 256.
    pub prefill_chunk: u32,
    /// Most bytes of KV cache all slots may hold together; 0 = enough for
    /// every slot's whole context.
    pub kv_budget_bytes: u64,
}

impl Default for strata_scheduler_options {
    fn default() -> Self {
        strata_scheduler_options {
            struct_size: size_of::<Self>() as u32,
            slots: 0,
            n_ctx: 0,
            max_queue: 0,
            max_batch_tokens: 0,
            prefill_chunk: 0,
            kv_budget_bytes: 0,
        }
    }
}

unsafe impl SizedStruct for strata_scheduler_options {
    const NAME: &'static str = "strata_scheduler_options";
    const MIN_SIZE: usize = size_of::<Self>();
}

impl strata_scheduler_options {
    /// The library's options: each 0 field takes `defaults`' value.
    fn resolve(&self, defaults: SchedulerOptions) -> FfiResult<SchedulerOptions> {
        let pick = |v: u32, d: usize| if v == 0 { d } else { v as usize };
        let kv_budget_bytes = match self.kv_budget_bytes {
            0 => defaults.kv_budget_bytes,
            b => Some(usize::try_from(b).map_err(|_| {
                fail(
                    STRATA_INVALID_ARGUMENT,
                    format!("kv_budget_bytes {b} does not fit in this machine's address space"),
                )
            })?),
        };
        Ok(SchedulerOptions {
            slots: pick(self.slots, defaults.slots),
            n_ctx: pick(self.n_ctx, defaults.n_ctx),
            max_queue: pick(self.max_queue, defaults.max_queue),
            max_batch_tokens: pick(self.max_batch_tokens, defaults.max_batch_tokens),
            prefill_chunk: pick(self.prefill_chunk, defaults.prefill_chunk),
            kv_budget_bytes,
        })
    }

    fn of(o: &SchedulerOptions, budget: usize) -> strata_scheduler_options {
        let c = |v: usize| v.min(u32::MAX as usize) as u32;
        strata_scheduler_options {
            struct_size: size_of::<Self>() as u32,
            slots: c(o.slots),
            n_ctx: c(o.n_ctx),
            max_queue: c(o.max_queue),
            max_batch_tokens: c(o.max_batch_tokens),
            prefill_chunk: c(o.prefill_chunk),
            kv_budget_bytes: budget as u64,
        }
    }
}

/// What one request generates. Set struct_size to sizeof(strata_request_params)
/// and start from strata_request_params_default(); NULL params mean the
/// defaults (128 tokens, the default sampler, no stop strings, no logprobs).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct strata_request_params {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// Most tokens to generate (the context may end generation sooner);
    /// 0 ends the request at once (STRATA_FINISH_MAX_TOKENS). Default 128.
    pub max_tokens: u32,
    /// Sampling parameters, with their seed; NULL =
    /// strata_sampler_params_default(). Read during the call only.
    pub sampler: *const strata_sampler_params,
    /// Stop strings (`n_stop` of them, UTF-8; NULL when 0): generation ends
    /// when the text contains one (STRATA_FINISH_STOP_STRING), and the text
    /// delivered ends before it. Read during the call only.
    pub stop: *const strata_str,
    /// Number of stop strings.
    pub n_stop: usize,
    /// Non-zero: every token event carries the token's log-probability
    /// (strata_request_event.logprob) and `top_logprobs` alternatives.
    /// Default 0.
    pub logprobs: u32,
    /// How many of the most likely alternatives each token event lists,
    /// 0 to STRATA_MAX_TOP_LOGPROBS (needs `logprobs`). Default 0.
    pub top_logprobs: u32,
    /// Non-zero: keep generating past end-of-generation tokens (for
    /// benchmarks). Default 0.
    pub ignore_eos: u32,
}

impl Default for strata_request_params {
    fn default() -> Self {
        strata_request_params {
            struct_size: size_of::<Self>() as u32,
            max_tokens: 128,
            sampler: std::ptr::null(),
            stop: std::ptr::null(),
            n_stop: 0,
            logprobs: 0,
            top_logprobs: 0,
            ignore_eos: 0,
        }
    }
}

unsafe impl SizedStruct for strata_request_params {
    const NAME: &'static str = "strata_request_params";
    const MIN_SIZE: usize = size_of::<Self>();
}

/// The request `params` (NULL: the defaults) asks for, prompt `prompt`.
unsafe fn request(prompt: &[u32], params: *const strata_request_params) -> FfiResult<Request> {
    let p = args::read_struct_or_default(params, "params")?;
    let sampler = if p.sampler.is_null() {
        SamplerParams::default()
    } else {
        args::read_struct(p.sampler, "params->sampler")?.to_params()?
    };
    let mut stop = Vec::new();
    for (i, s) in args::in_slice(p.stop, p.n_stop, "params->stop")?
        .iter()
        .enumerate()
    {
        stop.push(args::text(s.data, s.len, &format!("params->stop[{i}]"))?.to_string());
    }
    if p.top_logprobs as usize > STRATA_MAX_TOP_LOGPROBS {
        return Err(fail(
            STRATA_INVALID_ARGUMENT,
            format!(
                "params->top_logprobs is {}; at most {STRATA_MAX_TOP_LOGPROBS}",
                p.top_logprobs
            ),
        ));
    }
    if p.logprobs == 0 && p.top_logprobs > 0 {
        return Err(fail(
            STRATA_INVALID_ARGUMENT,
            "params->top_logprobs needs params->logprobs set",
        ));
    }
    let mut req = Request::new(prompt.to_vec());
    req.max_tokens = p.max_tokens as usize;
    req.sampler = sampler;
    req.stop = stop;
    req.top_logprobs = (p.logprobs != 0).then_some(p.top_logprobs as usize);
    req.ignore_eos = p.ignore_eos != 0;
    Ok(req)
}

/// What a request event is (strata_request_event.kind).
pub type strata_event_kind = u32;
/// A generated token.
pub const STRATA_EVENT_TOKEN: strata_event_kind = 1;
/// The end of the request: always its last event.
pub const STRATA_EVENT_DONE: strata_event_kind = 2;

/// Why a request ended (strata_request_event.finish_reason).
pub type strata_finish_reason = u32;
/// Not the last event (a token event).
pub const STRATA_FINISH_NONE: strata_finish_reason = 0;
/// The model produced an end-of-generation token.
pub const STRATA_FINISH_EOG: strata_finish_reason = 1;
/// A stop string appeared (the text delivered ends before it).
pub const STRATA_FINISH_STOP_STRING: strata_finish_reason = 2;
/// max_tokens tokens were generated.
pub const STRATA_FINISH_MAX_TOKENS: strata_finish_reason = 3;
/// The sequence's context (strata_scheduler_options.n_ctx) is full.
pub const STRATA_FINISH_CONTEXT_FULL: strata_finish_reason = 4;
/// A constraint on the output is complete (not reachable from this header
/// today).
pub const STRATA_FINISH_CONSTRAINT_END: strata_finish_reason = 5;
/// strata_scheduler_cancel (or strata_scheduler_free) ended it.
pub const STRATA_FINISH_CANCELLED: strata_finish_reason = 6;
/// Something failed (other requests go on). The poll that
/// returns this event also leaves the reason as the thread's last error
/// (strata_last_error), although it returns STRATA_OK.
pub const STRATA_FINISH_FAILED: strata_finish_reason = 7;

fn finish_reason(r: &FinishReason) -> strata_finish_reason {
    match r {
        FinishReason::EndOfGeneration => STRATA_FINISH_EOG,
        FinishReason::StopString => STRATA_FINISH_STOP_STRING,
        FinishReason::MaxTokens => STRATA_FINISH_MAX_TOKENS,
        FinishReason::ContextFull => STRATA_FINISH_CONTEXT_FULL,
        FinishReason::ConstraintEnd => STRATA_FINISH_CONSTRAINT_END,
        FinishReason::Cancelled => STRATA_FINISH_CANCELLED,
        FinishReason::Failed(_) => STRATA_FINISH_FAILED,
    }
}

/// One event of a request, filled by strata_scheduler_poll. Set struct_size
/// to sizeof(strata_request_event). The event's text goes to the buffer
/// given to the poll; the texts of a request's events, in order, make its
/// whole generated text.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct strata_request_event {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// STRATA_EVENT_TOKEN or STRATA_EVENT_DONE.
    pub kind: strata_event_kind,
    /// The token generated (a token event); STRATA_TOKEN_NONE for the last
    /// event.
    pub token: u32,
    /// Non-zero when `logprob` and the `top_*` fields are set (a token event
    /// of a request with params->logprobs).
    pub has_logprob: u32,
    /// Natural log of the token's probability (softmax of the logits the
    /// sampler saw, at temperature 1).
    pub logprob: f32,
    /// How many entries of top_tokens / top_logprobs are set (the request's
    /// top_logprobs).
    pub n_top: u32,
    /// The most likely tokens at this position, best first.
    pub top_tokens: [u32; STRATA_MAX_TOP_LOGPROBS],
    /// Their log-probabilities.
    pub top_logprobs: [f32; STRATA_MAX_TOP_LOGPROBS],
    /// A STRATA_FINISH_* value: STRATA_FINISH_NONE for a token event, why
    /// the request ended for the last event.
    pub finish_reason: strata_finish_reason,
    /// Tokens of the prompt (the last event; 0 before).
    pub prompt_tokens: u64,
    /// Prompt tokens found in a slot's cache and not evaluated again (the
    /// last event).
    pub cached_tokens: u64,
    /// Tokens generated, an end-of-generation token that ended it included
    /// (the last event).
    pub completion_tokens: u64,
    /// Milliseconds from submission to the first token; 0 if none came
    /// (the last event).
    pub time_to_first_token_ms: f64,
    /// Milliseconds from submission to the end (the last event).
    pub total_ms: f64,
}

impl Default for strata_request_event {
    fn default() -> Self {
        strata_request_event {
            struct_size: size_of::<Self>() as u32,
            kind: 0,
            token: STRATA_TOKEN_NONE,
            has_logprob: 0,
            logprob: 0.0,
            n_top: 0,
            top_tokens: [0; STRATA_MAX_TOP_LOGPROBS],
            top_logprobs: [0.0; STRATA_MAX_TOP_LOGPROBS],
            finish_reason: STRATA_FINISH_NONE,
            prompt_tokens: 0,
            cached_tokens: 0,
            completion_tokens: 0,
            time_to_first_token_ms: 0.0,
            total_ms: 0.0,
        }
    }
}

unsafe impl SizedStruct for strata_request_event {
    const NAME: &'static str = "strata_request_event";
    const MIN_SIZE: usize = size_of::<Self>();
}

/// The C form of an event, and its text.
fn event_to_c(ev: &Event) -> (strata_request_event, &str) {
    let mut c = strata_request_event::default();
    match ev {
        Event::Token(t) => {
            c.kind = STRATA_EVENT_TOKEN;
            c.token = t.id;
            if let Some(lp) = &t.logprob {
                c.has_logprob = 1;
                c.logprob = lp.logprob;
                let n = lp.top.len().min(STRATA_MAX_TOP_LOGPROBS);
                c.n_top = n as u32;
                for (k, &(id, l)) in lp.top[..n].iter().enumerate() {
                    c.top_tokens[k] = id;
                    c.top_logprobs[k] = l;
                }
            }
            (c, &t.text)
        }
        Event::Done(f) => {
            c.kind = STRATA_EVENT_DONE;
            c.finish_reason = finish_reason(&f.reason);
            c.prompt_tokens = f.prompt_tokens as u64;
            c.cached_tokens = f.cached_tokens as u64;
            c.completion_tokens = f.completion_tokens as u64;
            c.time_to_first_token_ms = f.time_to_first_token_ms;
            c.total_ms = f.total_ms;
            (c, &f.tail)
        }
    }
}

/// A scheduler's counters since it started, and its state now
/// (strata_scheduler_get_stats). Set struct_size to sizeof(strata_scheduler_stats).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct strata_scheduler_stats {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// Slots (sequences decoded together).
    pub slots: u32,
    /// Requests in a slot now.
    pub running: u32,
    /// Requests waiting for a slot now.
    pub queued: u32,
    /// Requests that have ended.
    pub requests_total: u64,
    /// Prompt tokens of the requests that have ended.
    pub prompt_tokens_total: u64,
    /// Of those, tokens found in a slot's cache (not evaluated again).
    pub cached_tokens_total: u64,
    /// Tokens generated.
    pub generated_tokens_total: u64,
    /// Sum of the requests' times to first token, in milliseconds.
    pub ttft_ms_sum: f64,
    /// Requests that produced a first token (ttft_ms_sum / ttft_count is
    /// the mean time to first token).
    pub ttft_count: u64,
    /// KV cache bytes the slots hold now.
    pub kv_bytes_used: u64,
    /// Most KV cache bytes the slots may hold together.
    pub kv_bytes_budget: u64,
    /// Forward steps run.
    pub steps_total: u64,
}

unsafe impl SizedStruct for strata_scheduler_stats {
    const NAME: &'static str = "strata_scheduler_stats";
    const MIN_SIZE: usize = size_of::<Self>();
}

/// A request's events, from the scheduler's thread to its polls.
#[derive(Default)]
struct Mailbox {
    state: Mutex<Mail>,
    ready: Condvar,
}

#[derive(Default)]
struct Mail {
    events: VecDeque<Event>,
    /// The scheduler dropped the request's sink: no event will follow.
    closed: bool,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Mail> {
        // Pushes and pops only: a panic elsewhere leaves it consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next event, waiting up to `timeout` for it; `Err(true)` when
    /// no event will ever come, `Err(false)` on timeout.
    fn next(&self, timeout: Duration) -> Result<Event, bool> {
        // No deadline if it lies past what the clock can represent.
        let deadline = Instant::now().checked_add(timeout);
        let mut m = self.lock();
        loop {
            if let Some(ev) = m.events.pop_front() {
                return Ok(ev);
            }
            if m.closed {
                return Err(true);
            }
            m = match deadline {
                None => self.ready.wait(m).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(false);
                    }
                    self.ready
                        .wait_timeout(m, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// The scheduler's side of a mailbox: it delivers events and, when the
/// scheduler drops it, closes the mailbox.
struct Sender(Arc<Mailbox>);

impl Sender {
    fn send(&self, ev: Event) {
        self.0.lock().events.push_back(ev);
        self.0.ready.notify_all();
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

/// A request whose last event has not been polled yet.
type Entry = Arc<Mailbox>;

/// A request's entry: there, or out with the thread polling it.
enum Slot {
    Here(Entry),
    Polled,
}

/// Many requests at once on one model: a request queue and continuous
/// batching, run by a thread of its own. Thread-safe: any number of threads
/// may submit, poll, cancel and read stats at once; a request's events are
/// polled by one thread at a time (a second poll of the same request while
/// one waits returns STRATA_BUSY), and polls of different requests never
/// wait for each other. Keeps its model alive.
pub struct strata_scheduler {
    sched: Scheduler,
    /// Requests until their last event is polled (at most `limit`).
    requests: Mutex<HashMap<u64, Slot>>,
    limit: usize,
    budget: usize,
}

impl strata_scheduler {
    unsafe fn get<'a>(p: *const strata_scheduler) -> FfiResult<&'a strata_scheduler> {
        args::nonnull(p, "scheduler")
    }

    fn map(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        // Every change to the map is a single insert or remove: a panic
        // elsewhere leaves it consistent.
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unknown(id: u64) -> crate::ffi::boundary::Failure {
    fail(
        STRATA_NOT_FOUND,
        format!(
            "no request {id} in this scheduler (never submitted, or its last event was already polled)"
        ),
    )
}

/// Puts a request's entry back into the map when the poll that took it
/// ends, however it ends (a panic included).
struct Taken<'a> {
    s: &'a strata_scheduler,
    id: u64,
    entry: Option<Entry>,
}

impl Taken<'_> {
    /// The request is over: drop its entry.
    fn forget(mut self) {
        self.entry = None;
        self.s.map().remove(&self.id);
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            self.s.map().insert(self.id, Slot::Here(e));
        }
    }
}

/// Fill `*options` with the defaults (every field 0). Set
/// options->struct_size first.
#[no_mangle]
pub unsafe extern "C" fn strata_scheduler_options_default(
    options: *mut strata_scheduler_options,
) -> strata_status {
    ffi_guard!({
        OutStruct::new(options, "options")?.write(strata_scheduler_options::default());
        Ok(())
    })
}

/// Fill `*params` with the defaults (128 tokens, the default sampler, no
/// stop strings, no logprobs). Set params->struct_size first.
#[no_mangle]
pub unsafe extern "C" fn strata_request_params_default(
    params: *mut strata_request_params,
) -> strata_status {
    ffi_guard!({
        OutStruct::new(params, "params")?.write(strata_request_params::default());
        Ok(())
    })
}

/// Start a scheduler on a model that holds both the token embedding and
/// the output head (STRATA_WRONG_SHARD otherwise). STRATA_INVALID_ARGUMENT
/// names an impossible option (slots above 1024, max_batch_tokens below
/// slots, n_ctx above 2^24). The KV caches grow as requests need them.
/// Free it with strata_scheduler_free.
#[no_mangle]
pub unsafe extern "C" fn strata_scheduler_new(
    model: *const strata_model,
    options: *const strata_scheduler_options,
    scheduler: *mut *mut strata_scheduler,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        let o = args::read_struct_or_default(options, "options")?;
        let out = Out::new(scheduler, "scheduler")?;
        if !m.takes_tokens() || !m.gives_logits() {
            return Err(fail(
                STRATA_WRONG_SHARD,
                format!(
                    "the model holds layers {}..{} of {} without the {}; a scheduler needs both ends",
                    m.layers().start,
                    m.layers().end,
                    m.config().n_layer,
                    if m.takes_tokens() { "output head" } else { "token embedding" }
                ),
            ));
        }
        let opts = o.resolve(SchedulerOptions::for_model(m))?;
        let sched = Scheduler::new(Arc::clone(m), opts)?;
        let limit = sched.options().slots + sched.options().max_queue;
        let budget = sched.stats().kv_bytes_budget;
        log_debug!(
            "scheduler started: {} slots of {} positions, queue {}",
            sched.options().slots,
            sched.options().n_ctx,
            sched.options().max_queue
        );
        out.write(Box::into_raw(Box::new(strata_scheduler {
            sched,
            requests: Mutex::new(HashMap::new()),
            limit,
            budget,
        })));
        Ok(())
    })
}

/// Free a scheduler (NULL is accepted): every request still running or
/// queued is cancelled, the scheduler's thread is joined, and the events
/// nobody polled are dropped. No other call on the scheduler may run
/// during or after it.
#[no_mangle]
pub unsafe extern "C" fn strata_scheduler_free(scheduler: *mut strata_scheduler) {
    ffi_guard!(@value (), {
        if !scheduler.is_null() {
            let s = Box::from_raw(scheduler);
            s.sched.shutdown();
            drop(s);
        }
    })
}

/// The options the scheduler runs with, defaults filled in
/// (kv_budget_bytes: the budget in force).
#[no_mangle]
pub unsafe extern "C" fn strata_scheduler_get_options(
    scheduler: *const strata_scheduler,
    options: *mut strata_scheduler_options,
) -> strata_status {
    ffi_guard!({
        let s = strata_scheduler::get(scheduler)?;
        let out = OutStruct::new(options, "options")?;
        out.write(strata_scheduler_options::of(s.sched.options(), s.budget));
        Ok(())
    })
}

/// Submit a request: generate after the `n_prompt` token ids of `prompt`
/// (the caller tokenizes and applies any chat template), as `params` says
/// (NULL: the defaults); `*request_id` receives its id, for
/// strata_scheduler_poll and strata_scheduler_cancel. It waits in the queue
/// until a slot is free. Refusals (nothing is submitted):
/// STRATA_EMPTY_INPUT (no tokens), STRATA_TOKEN_OUT_OF_RANGE,
/// STRATA_CONTEXT_FULL (the prompt is longer than n_ctx),
/// STRATA_KV_BUDGET (the prompt plus max_tokens can never fit the KV
/// budget), STRATA_QUEUE_FULL (slots + max_queue requests are submitted
/// and their last events not yet polled; retry later),
/// STRATA_INVALID_ARGUMENT (bad sampler values, top_logprobs),
/// STRATA_STOPPED (the scheduler has stopped).
#[no_mangle]
pub unsafe extern "C" fn strata_scheduler_submit(
    scheduler: *const strata_scheduler,
    prompt: *const u32,
    n_prompt: usize,
    params: *const strata_request_params,
    request_id: *mut u64,
) -> strata_status {
    ffi_guard!({
        let s = strata_scheduler::get(scheduler)?;
        let prompt = args::in_slice(prompt, n_prompt, "prompt")?;
        let req = request(prompt, params)?;
        let out = Out::new(request_id, "request_id")?;
        // The map stays locked from the count to the insert so that the
        // bound holds; submitting does not wait for anything.
        let mut map = s.map();
        if map.len() >= s.limit {
            return Err(fail(
                STRATA_QUEUE_FULL,
                format!(
                    "{} requests are submitted and their last events not yet polled \
                     (at most slots + max_queue = {})",
                    map.len(),
                    s.limit
                ),
            ));
        }
        let mailbox = Arc::new(Mailbox::default());
        let tx = Sender(Arc::clone(&mailbox));
        let RequestId(id) = s.sched.submit_with(
            req,
            Box::new(move |ev| {
                tx.send(ev);
                true
            }),
        )?;
        map.insert(id, Slot::Here(mailbox));
        drop(map);
        out.write(id);
        Ok(())
    })
}

/// The next event of request `request_id`, waiting up to `timeout_ms`
/// milliseconds for it (0: only an event that is already there). On
/// STRATA_OK `*event` (struct_size set) receives it and its text goes to
/// `text` (room for `text_cap` bytes; NUL-terminated, `*text_len` receives
/// the length without the NUL): for a token event the text the token
/// completes (often empty while a multi-byte character or a possible stop
/// string is pending), for the last event (STRATA_EVENT_DONE) the text held
/// back until the end. After the last event the request is forgotten: a
/// later poll or cancel of its id returns STRATA_NOT_FOUND.
///
/// Other results: STRATA_TIMEOUT (no event within timeout_ms; nothing
/// written), STRATA_BUFFER_TOO_SMALL (`*text_len` receives the length
/// needed, without the NUL; the event is kept and the next poll returns it
/// again), STRATA_NOT_FOUND (no such request), STRATA_BUSY (another thread
/// is polling this request).
#[no_mangle]
pub unsafe extern "C" fn strata_scheduler_poll(
    scheduler: *const strata_scheduler,
    request_id: u64,
    timeout_ms: u32,
    event: *mut strata_request_event,
    text: *mut c_char,
    text_cap: usize,
    text_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let s = strata_scheduler::get(scheduler)?;
        let ev_out = OutStruct::new(event, "event")?;
        let mut text_out = OutBuf::new(text, text_cap, text_len, "text")?;
        let entry = {
            let mut map = s.map();
            match map.get_mut(&request_id) {
                None => return Err(unknown(request_id)),
                Some(slot) => match std::mem::replace(slot, Slot::Polled) {
                    Slot::Here(e) => e,
                    Slot::Polled => {
                        return Err(fail(
                            STRATA_BUSY,
                            format!("request {request_id} is being polled by another thread"),
                        ))
                    }
                },
            }
        };
        let taken = Taken {
            s,
            id: request_id,
            entry: Some(entry),
        };
        let mailbox = Arc::clone(taken.entry.as_ref().expect("just taken"));
        let ev = match mailbox.next(Duration::from_millis(timeout_ms as u64)) {
            Ok(ev) => ev,
            Err(false) => {
                return Err(fail(
                    STRATA_TIMEOUT,
                    format!("no event of request {request_id} within {timeout_ms} ms"),
                ))
            }
            // The scheduler dropped the request without a last event (it
            // should not): end the request here.
            Err(true) => Event::Done(Finished {
                reason: FinishReason::Failed("the scheduler stopped".into()),
                prompt_tokens: 0,
                cached_tokens: 0,
                completion_tokens: 0,
                text: String::new(),
                tail: String::new(),
                tokens: Vec::new(),
                time_to_first_token_ms: 0.0,
                total_ms: 0.0,
            }),
        };
        let (c, t) = event_to_c(&ev);
        if let Err(f) = text_out.reserve_text(t.len()) {
            // Kept for the next poll, in front of what came since.
            mailbox.lock().events.push_front(ev);
            return Err(f);
        }
        text_out.fill_text(t.as_bytes())?;
        ev_out.write(c);
        if let Event::Done(f) = &ev {
            taken.forget();
            if let FinishReason::Failed(why) = &f.reason {
                log_warn!("request {request_id} failed: {why}");
                super::error::set(&format!("request {request_id} failed: {why}"));
            }
        }
        Ok(())
    })
}

/// Cancel request `request_id`: it ends before the scheduler's next step,
/// and its last event says STRATA_FINISH_CANCELLED (unless it had already
/// ended otherwise). Poll it to its last event as usual.
/// STRATA_NOT_FOUND for an id that is not (or no longer) known.
#[no_mangle]
pub unsafe extern "C" fn strata_scheduler_cancel(
    scheduler: *const strata_scheduler,
    request_id: u64,
) -> strata_status {
    ffi_guard!({
        let s = strata_scheduler::get(scheduler)?;
        if !s.map().contains_key(&request_id) {
            return Err(unknown(request_id));
        }
        s.sched.cancel(RequestId(request_id));
        Ok(())
    })
}

/// The scheduler's counters and state (`*stats`, struct_size set).
#[no_mangle]
pub unsafe extern "C" fn strata_scheduler_get_stats(
    scheduler: *const strata_scheduler,
    stats: *mut strata_scheduler_stats,
) -> strata_status {
    ffi_guard!({
        let s = strata_scheduler::get(scheduler)?;
        let out = OutStruct::new(stats, "stats")?;
        let st = s.sched.stats();
        let c = |v: usize| v.min(u32::MAX as usize) as u32;
        out.write(strata_scheduler_stats {
            struct_size: 0,
            slots: c(st.slots),
            running: c(st.running),
            queued: c(st.queued),
            requests_total: st.requests_total,
            prompt_tokens_total: st.prompt_tokens_total,
            cached_tokens_total: st.cached_tokens_total,
            generated_tokens_total: st.generated_tokens_total,
            ttft_ms_sum: st.ttft_ms_sum,
            ttft_count: st.ttft_count,
            kv_bytes_used: st.kv_bytes_used as u64,
            kv_bytes_budget: st.kv_bytes_budget as u64,
            steps_total: st.steps_total,
        });
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::ptr;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::ffi::generate::{strata_generate_options, strata_generate_tokens};
    use crate::ffi::model::STRATA_NUMERICS_BATCH_INVARIANT;
    use crate::ffi::model::{strata_load_options, strata_model_free, strata_model_load};
    use crate::ffi::sampler::strata_sampler_params_greedy;
    use crate::ffi::session::{strata_session_free, strata_session_new};

    fn ok(st: strata_status) {
        assert_eq!(st, STRATA_OK, "{}", crate::ffi::error::get());
    }

    struct Model(*mut strata_model);
    // SAFETY: the header promises a strata_model may be used from any thread.
    unsafe impl Send for Model {}
    unsafe impl Sync for Model {}
    impl Drop for Model {
        fn drop(&mut self) {
            unsafe { strata_model_free(self.0) }
        }
    }

    struct Sched(*mut strata_scheduler);
    // SAFETY: the header promises a strata_scheduler may be used from any thread.
    unsafe impl Send for Sched {}
    unsafe impl Sync for Sched {}
    impl Drop for Sched {
        fn drop(&mut self) {
            unsafe { strata_scheduler_free(self.0) }
        }
    }

    /// The real SmolLM2, batch-invariant (a request's tokens then do not
    /// depend on the batch it ran in).
    fn smollm2() -> Model {
        let path = crate::model_cache::dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            path.exists(),
            "{} is missing: run scripts/fetch-models.sh",
            path.display()
        );
        let c = CString::new(path.to_str().unwrap()).unwrap();
        let o = strata_load_options {
            numerics: STRATA_NUMERICS_BATCH_INVARIANT,
            n_threads: 2,
            ..Default::default()
        };
        let mut m = ptr::null_mut();
        ok(unsafe { strata_model_load(c.as_ptr(), &o, &mut m) });
        Model(m)
    }

    fn prompt(m: &Model, text: &str) -> Vec<u32> {
        let model = unsafe { &(*m.0).model };
        model.tokenizer().encode(text, true, true).unwrap()
    }

    /// The n_ctx a scheduler or session on `m` gets by default.
    fn model_ctx(m: &Model) -> u32 {
        let model = unsafe { &(*m.0).model };
        model.config().n_ctx_train.clamp(1, 4096) as u32
    }

    fn scheduler(m: &Model, o: &strata_scheduler_options) -> Sched {
        let mut s = ptr::null_mut();
        ok(unsafe { strata_scheduler_new(m.0, o, &mut s) });
        Sched(s)
    }

    fn greedy() -> strata_sampler_params {
        let mut p = strata_sampler_params::default();
        ok(unsafe { strata_sampler_params_greedy(&mut p) });
        p
    }

    fn submit(s: &Sched, prompt: &[u32], p: &strata_request_params) -> FfiResult<u64> {
        let mut id = u64::MAX;
        match unsafe { strata_scheduler_submit(s.0, prompt.as_ptr(), prompt.len(), p, &mut id) } {
            STRATA_OK => Ok(id),
            st => {
                assert_eq!(id, u64::MAX, "written on failure");
                Err(fail(st, crate::ffi::error::get()))
            }
        }
    }

    /// One poll: the status, the event and its text.
    fn poll(s: &Sched, id: u64, ms: u32) -> (strata_status, strata_request_event, String) {
        let mut ev = strata_request_event::default();
        let mut buf = [0 as c_char; 256];
        let mut n = 0usize;
        let st = unsafe {
            strata_scheduler_poll(s.0, id, ms, &mut ev, buf.as_mut_ptr(), buf.len(), &mut n)
        };
        let text = if st == STRATA_OK {
            let b: Vec<u8> = buf[..n].iter().map(|&c| c as u8).collect();
            assert_eq!(buf[n], 0, "NUL-terminated");
            String::from_utf8(b).unwrap()
        } else {
            String::new()
        };
        (st, ev, text)
    }

    /// Every event of a request to its end: the tokens, the text, the last event.
    fn drain(s: &Sched, id: u64) -> (Vec<u32>, String, strata_request_event) {
        let mut tokens = Vec::new();
        let mut text = String::new();
        loop {
            let (st, ev, t) = poll(s, id, 60_000);
            ok(st);
            text.push_str(&t);
            if ev.kind == STRATA_EVENT_DONE {
                assert_eq!(ev.token, STRATA_TOKEN_NONE);
                return (tokens, text, ev);
            }
            assert_eq!(
                (ev.kind, ev.finish_reason),
                (STRATA_EVENT_TOKEN, STRATA_FINISH_NONE)
            );
            tokens.push(ev.token);
        }
    }

    /// The greedy tokens a session generates after `prompt`.
    fn session_greedy(m: &Model, prompt: &[u32], n: u32) -> Vec<u32> {
        unsafe extern "C" fn collect(
            ud: *mut std::ffi::c_void,
            token: u32,
            _t: *const c_char,
            _n: usize,
        ) -> bool {
            (*(ud as *mut Vec<u32>)).push(token);
            true
        }
        let mut out: Vec<u32> = Vec::new();
        let sp = greedy();
        let g = strata_generate_options {
            max_tokens: n,
            sampler: &sp,
            on_token: Some(collect),
            user_data: &mut out as *mut Vec<u32> as *mut _,
            ..Default::default()
        };
        unsafe {
            let mut s = ptr::null_mut();
            ok(strata_session_new(m.0, ptr::null(), &mut s));
            ok(strata_generate_tokens(
                s,
                prompt.as_ptr(),
                prompt.len(),
                &g,
                ptr::null_mut(),
            ));
            strata_session_free(s);
        }
        out
    }

    #[test]
    fn concurrent_greedy_requests_equal_a_session_and_end_with_their_counts() {
        let m = smollm2();
        let s = scheduler(
            &m,
            &strata_scheduler_options {
                slots: 2,
                ..Default::default()
            },
        );
        let mut o = strata_scheduler_options::default();
        ok(unsafe { strata_scheduler_get_options(s.0, &mut o) });
        assert_eq!(
            (
                o.slots,
                o.n_ctx,
                o.max_queue,
                o.max_batch_tokens,
                o.prefill_chunk
            ),
            (2, model_ctx(&m), 64, 512, 256)
        );
        assert!(o.kv_budget_bytes > 0);

        let sp = greedy();
        let p = strata_request_params {
            max_tokens: 12,
            sampler: &sp,
            ..Default::default()
        };
        let prompts = [
            "The capital of France is",
            "Once upon a time",
            "1, 2, 3, 4,",
        ];
        let ids: Vec<(u64, Vec<u32>)> = prompts
            .iter()
            .map(|t| {
                let pr = prompt(&m, t);
                (submit(&s, &pr, &p).unwrap(), pr)
            })
            .collect();
        // Three requests, two slots: one waits. Each is polled on its own thread.
        let s = &s;
        let got: Vec<_> = std::thread::scope(|sc| {
            let hs: Vec<_> = ids
                .iter()
                .map(|(id, _)| sc.spawn(move || drain(s, *id)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let model = unsafe { &(*m.0).model };
        for ((id, pr), (tokens, text, done)) in ids.iter().zip(got) {
            assert_eq!(tokens, session_greedy(&m, pr, 12), "request {id}");
            assert_eq!(text, model.tokenizer().decode(&tokens, false));
            assert!(matches!(
                done.finish_reason,
                STRATA_FINISH_MAX_TOKENS | STRATA_FINISH_EOG
            ));
            assert_eq!(done.prompt_tokens, pr.len() as u64);
            assert_eq!(done.completion_tokens, tokens.len() as u64);
            assert!(
                done.time_to_first_token_ms > 0.0 && done.total_ms >= done.time_to_first_token_ms
            );
            // Forgotten after its last event.
            assert_eq!(poll(s, *id, 0).0, STRATA_NOT_FOUND);
            assert_eq!(
                unsafe { strata_scheduler_cancel(s.0, *id) },
                STRATA_NOT_FOUND
            );
        }
        let mut st = strata_scheduler_stats {
            struct_size: size_of::<strata_scheduler_stats>() as u32,
            ..Default::default()
        };
        ok(unsafe { strata_scheduler_get_stats(s.0, &mut st) });
        assert_eq!(
            (st.slots, st.running, st.queued, st.requests_total),
            (2, 0, 0, 3)
        );
        assert_eq!(st.ttft_count, 3);
        assert!(
            st.generated_tokens_total >= 3
                && st.steps_total > 0
                && st.kv_bytes_used <= st.kv_bytes_budget
        );
    }

    #[test]
    fn stop_strings_logprobs_and_a_small_text_buffer() {
        let m = smollm2();
        let s = scheduler(&m, &strata_scheduler_options::default());
        let sp = greedy();
        let pr = prompt(&m, "The capital of France is");
        // The greedy text without a stop, then with a stop string taken from it.
        let p = strata_request_params {
            max_tokens: 16,
            sampler: &sp,
            ..Default::default()
        };
        let id = submit(&s, &pr, &p).unwrap();
        let (_, full, _) = drain(&s, id);
        let cut = full
            .split_whitespace()
            .nth(2)
            .expect("three words")
            .to_string();
        let stop = [strata_str {
            data: cut.as_ptr() as *const c_char,
            len: cut.len(),
        }];
        let p = strata_request_params {
            max_tokens: 16,
            sampler: &sp,
            stop: stop.as_ptr(),
            n_stop: 1,
            logprobs: 1,
            top_logprobs: 3,
            ..Default::default()
        };
        let id = submit(&s, &pr, &p).unwrap();
        // A buffer of 0 bytes: the length needed, and the event is kept.
        let mut text = String::new();
        loop {
            let mut ev = strata_request_event::default();
            let mut n = 0usize;
            let st = unsafe {
                strata_scheduler_poll(s.0, id, 60_000, &mut ev, ptr::null_mut(), 0, &mut n)
            };
            assert_eq!(st, STRATA_BUFFER_TOO_SMALL);
            let mut buf = vec![0 as c_char; n + 1];
            let mut n2 = 0usize;
            ok(unsafe {
                strata_scheduler_poll(s.0, id, 0, &mut ev, buf.as_mut_ptr(), buf.len(), &mut n2)
            });
            assert_eq!(n2, n);
            text.extend(buf[..n].iter().map(|&c| c as u8 as char));
            if ev.kind == STRATA_EVENT_DONE {
                assert_eq!(ev.finish_reason, STRATA_FINISH_STOP_STRING);
                assert_eq!(ev.has_logprob, 0);
                break;
            }
            assert_eq!((ev.has_logprob, ev.n_top), (1, 3));
            // Greedy: the token is the most likely one.
            assert_eq!(ev.top_tokens[0], ev.token);
            assert!(
                ev.logprob <= 0.0
                    && ev.top_logprobs[0] >= ev.top_logprobs[1]
                    && ev.top_logprobs[1] >= ev.top_logprobs[2]
            );
        }
        assert_eq!(text, full[..full.find(&cut).unwrap()]);
    }

    #[test]
    fn refusals_are_typed_and_change_nothing() {
        let m = smollm2();
        let mut out = ptr::null_mut();
        let bad = |o: strata_scheduler_options| {
            let mut out = ptr::null_mut();
            let st = unsafe { strata_scheduler_new(m.0, &o, &mut out) };
            assert!(out.is_null());
            st
        };
        assert_eq!(
            bad(strata_scheduler_options {
                slots: 2000,
                ..Default::default()
            }),
            STRATA_INVALID_ARGUMENT
        );
        assert_eq!(
            bad(strata_scheduler_options {
                slots: 8,
                max_batch_tokens: 4,
                ..Default::default()
            }),
            STRATA_INVALID_ARGUMENT
        );
        assert_eq!(
            bad(strata_scheduler_options {
                struct_size: 8,
                ..Default::default()
            }),
            STRATA_STRUCT_SIZE
        );
        assert_eq!(
            unsafe { strata_scheduler_new(ptr::null(), ptr::null(), &mut out) },
            STRATA_NULL_POINTER
        );
        assert_eq!(
            unsafe { strata_scheduler_new(m.0, ptr::null(), ptr::null_mut()) },
            STRATA_NULL_POINTER
        );
        assert!(out.is_null());

        let s = scheduler(
            &m,
            &strata_scheduler_options {
                slots: 1,
                n_ctx: 64,
                max_queue: 1,
                ..Default::default()
            },
        );
        let pr = prompt(&m, "Hello there");
        let code = |r: FfiResult<u64>| r.map_err(|f| f.status).err();
        let p = strata_request_params::default();
        assert_eq!(code(submit(&s, &[], &p)), Some(STRATA_EMPTY_INPUT));
        assert_eq!(
            code(submit(&s, &[1, 49152], &p)),
            Some(STRATA_TOKEN_OUT_OF_RANGE)
        );
        assert_eq!(code(submit(&s, &[1; 65], &p)), Some(STRATA_CONTEXT_FULL));
        let many = strata_request_params {
            logprobs: 1,
            top_logprobs: 21,
            ..Default::default()
        };
        assert_eq!(code(submit(&s, &pr, &many)), Some(STRATA_INVALID_ARGUMENT));
        let nolog = strata_request_params {
            top_logprobs: 2,
            ..Default::default()
        };
        assert_eq!(code(submit(&s, &pr, &nolog)), Some(STRATA_INVALID_ARGUMENT));
        let mut sp = greedy();
        sp.top_p = 2.0;
        let badsp = strata_request_params {
            sampler: &sp,
            ..Default::default()
        };
        assert_eq!(code(submit(&s, &pr, &badsp)), Some(STRATA_INVALID_ARGUMENT));
        let badutf = [strata_str {
            data: b"\xff".as_ptr() as *const c_char,
            len: 1,
        }];
        let badstop = strata_request_params {
            stop: badutf.as_ptr(),
            n_stop: 1,
            ..Default::default()
        };
        assert_eq!(code(submit(&s, &pr, &badstop)), Some(STRATA_INVALID_UTF8));
        let mut id = 0u64;
        assert_eq!(
            unsafe {
                strata_scheduler_submit(s.0, pr.as_ptr(), pr.len(), ptr::null(), ptr::null_mut())
            },
            STRATA_NULL_POINTER
        );
        assert_eq!(
            unsafe {
                strata_scheduler_submit(ptr::null(), pr.as_ptr(), pr.len(), ptr::null(), &mut id)
            },
            STRATA_NULL_POINTER
        );
        assert_eq!(
            unsafe { strata_scheduler_submit(s.0, ptr::null(), 3, ptr::null(), &mut id) },
            STRATA_NULL_POINTER
        );

        // One slot, a queue of one: two long requests are taken, a third is not.
        let long = strata_request_params {
            max_tokens: 60,
            ignore_eos: 1,
            ..Default::default()
        };
        let a = submit(&s, &pr, &long).unwrap();
        let b = submit(&s, &pr, &long).unwrap();
        assert_eq!(code(submit(&s, &pr, &long)), Some(STRATA_QUEUE_FULL));
        // Polling: unknown ids, NULL out-parameters, a timeout.
        assert_eq!(poll(&s, 987654, 0).0, STRATA_NOT_FOUND);
        let mut ev = strata_request_event::default();
        let mut n = 0usize;
        let mut buf = [0 as c_char; 64];
        assert_eq!(
            unsafe {
                strata_scheduler_poll(s.0, a, 0, ptr::null_mut(), buf.as_mut_ptr(), 64, &mut n)
            },
            STRATA_NULL_POINTER
        );
        assert_eq!(
            unsafe {
                strata_scheduler_poll(s.0, a, 0, &mut ev, buf.as_mut_ptr(), 64, ptr::null_mut())
            },
            STRATA_NULL_POINTER
        );
        assert_eq!(
            unsafe {
                strata_scheduler_poll(ptr::null(), a, 0, &mut ev, buf.as_mut_ptr(), 64, &mut n)
            },
            STRATA_NULL_POINTER
        );
        ev.struct_size = 3;
        assert_eq!(
            unsafe { strata_scheduler_poll(s.0, a, 0, &mut ev, buf.as_mut_ptr(), 64, &mut n) },
            STRATA_STRUCT_SIZE
        );
        // b waits behind a: no event within 1 ms.
        assert_eq!(poll(&s, b, 1).0, STRATA_TIMEOUT);
        // Cancel both: each ends cancelled (b without a token).
        ok(unsafe { strata_scheduler_cancel(s.0, b) });
        ok(unsafe { strata_scheduler_cancel(s.0, a) });
        let (_, _, da) = drain(&s, a);
        let (tb, _, db) = drain(&s, b);
        assert_eq!(
            (da.finish_reason, db.finish_reason),
            (STRATA_FINISH_CANCELLED, STRATA_FINISH_CANCELLED)
        );
        assert!(tb.is_empty() && db.completion_tokens == 0);
        assert!(da.completion_tokens < 60);
        assert_eq!(unsafe { strata_scheduler_cancel(s.0, a) }, STRATA_NOT_FOUND);
        assert_eq!(
            unsafe { strata_scheduler_cancel(ptr::null(), a) },
            STRATA_NULL_POINTER
        );
        // The queue is free again.
        let c = submit(
            &s,
            &pr,
            &strata_request_params {
                max_tokens: 2,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(drain(&s, c).0.len(), 2);

        // A budget no request fits.
        let tiny = scheduler(
            &m,
            &strata_scheduler_options {
                kv_budget_bytes: 1,
                ..Default::default()
            },
        );
        assert_eq!(code(submit(&tiny, &pr, &p)), Some(STRATA_KV_BUDGET));
        let mut st = strata_scheduler_stats::default();
        assert_eq!(
            unsafe { strata_scheduler_get_stats(tiny.0, ptr::null_mut()) },
            STRATA_NULL_POINTER
        );
        st.struct_size = 0;
        assert_eq!(
            unsafe { strata_scheduler_get_stats(tiny.0, &mut st) },
            STRATA_STRUCT_SIZE
        );
        unsafe { strata_scheduler_free(ptr::null_mut()) };
    }

    #[test]
    fn a_waiting_poll_blocks_neither_other_requests_nor_cancel() {
        let m = smollm2();
        let s = scheduler(
            &m,
            &strata_scheduler_options {
                slots: 1,
                n_ctx: 512,
                ..Default::default()
            },
        );
        let pr = prompt(&m, "Tell me a story.");
        let long = strata_request_params {
            max_tokens: 400,
            ignore_eos: 1,
            ..Default::default()
        };
        let a = submit(&s, &pr, &long).unwrap();
        // b waits for a's slot: its poll waits until a ends, which only the
        // cancel below makes happen.
        let b = submit(
            &s,
            &pr,
            &strata_request_params {
                max_tokens: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let waiting = AtomicBool::new(false);
        let returned = AtomicBool::new(false);
        let s = &s;
        std::thread::scope(|sc| {
            let t = sc.spawn(|| {
                waiting.store(true, Ordering::SeqCst);
                let r = poll(s, b, 120_000);
                returned.store(true, Ordering::SeqCst);
                r
            });
            while !waiting.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(50));
            // The same request from a second thread: busy, not blocked.
            if !returned.load(Ordering::SeqCst) {
                assert_eq!(poll(s, b, 0).0, STRATA_BUSY);
            }
            // a's events come while b's poll waits.
            for _ in 0..3 {
                let (st, ev, _) = poll(s, a, 60_000);
                ok(st);
                assert_eq!(ev.kind, STRATA_EVENT_TOKEN);
            }
            assert!(
                !returned.load(Ordering::SeqCst),
                "b got an event while a runs"
            );
            let mut st = strata_scheduler_stats {
                struct_size: size_of::<strata_scheduler_stats>() as u32,
                ..Default::default()
            };
            ok(unsafe { strata_scheduler_get_stats(s.0, &mut st) });
            assert_eq!((st.running, st.queued), (1, 1));
            ok(unsafe { strata_scheduler_cancel(s.0, a) });
            let (_, _, done) = drain(s, a);
            assert_eq!(done.finish_reason, STRATA_FINISH_CANCELLED);
            let (st, ev, _) = t.join().unwrap();
            ok(st);
            assert_eq!(ev.kind, STRATA_EVENT_TOKEN);
        });
        let (_, _, done) = drain(s, b);
        assert!(matches!(
            done.finish_reason,
            STRATA_FINISH_MAX_TOKENS | STRATA_FINISH_EOG
        ));
        assert_eq!(done.completion_tokens, 1);
    }

    #[test]
    fn freeing_with_requests_in_flight_cancels_them() {
        let m = smollm2();
        let s = scheduler(
            &m,
            &strata_scheduler_options {
                slots: 2,
                ..Default::default()
            },
        );
        let pr = prompt(&m, "Once upon a time");
        let long = strata_request_params {
            max_tokens: 500,
            ignore_eos: 1,
            ..Default::default()
        };
        let ids: Vec<u64> = (0..4).map(|_| submit(&s, &pr, &long).unwrap()).collect();
        let (st, _, _) = poll(&s, ids[0], 60_000);
        ok(st);
        let t = std::time::Instant::now();
        drop(s);
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "free waited for the requests to finish"
        );
    }
}
