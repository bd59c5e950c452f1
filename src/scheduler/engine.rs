//! The scheduler's thread: slots, admission, one batched forward per step,
//! sampling and the end of requests.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use super::logprob::logprob;
use super::{
    Constraint, Event, FinishReason, Finished, Pending, SchedulerOptions, Shared, Sink, TokenOut,
};
use crate::kv_cache::KvCache;
use crate::model::{BatchItem, Input, Logits, Model, Output};
use crate::sampler::Sampler;
use crate::stop::StopText;
use crate::tokenizer::StreamDecoder;
use crate::Error;

/// A sequence's cache, the tokens it holds, and the request using it.
struct Slot {
    cache: KvCache,
    /// The token ids at the cache's positions.
    history: Vec<u32>,
    run: Option<Running>,
}

impl Slot {
    /// Bytes this slot may come to hold: its allocation, or a running
    /// request's reservation if that is more.
    fn footprint(&self) -> usize {
        let reserve = self.run.as_ref().map_or(0, |r| r.reserve);
        self.cache.allocated_bytes().max(reserve)
    }
}

/// A request in a slot.
struct Running {
    id: u64,
    sink: Sink,
    sampler: Sampler,
    decoder: StreamDecoder,
    stop: StopText,
    constraint: Option<Box<dyn Constraint>>,
    prompt: Vec<u32>,
    max_tokens: usize,
    top_logprobs: Option<usize>,
    ignore_eos: bool,
    /// Prompt tokens in the cache (found there or evaluated).
    fed: usize,
    cached: usize,
    /// The last sampled token, to be evaluated at the next step.
    next: Option<u32>,
    tokens: Vec<u32>,
    text: String,
    submitted: Instant,
    first_token_ms: Option<f64>,
    reserve: usize,
    /// The constraint's mask of allowed tokens (allocated on first use).
    mask: Vec<u32>,
}

/// One sequence's part of a step.
enum Part {
    Decode(u32),
    Prompt { end: usize, last: bool },
}

pub(super) struct Engine {
    model: Arc<Model>,
    slots: Vec<Slot>,
    n_ctx: usize,
    max_batch_tokens: usize,
    prefill_chunk: usize,
    budget: usize,
    shared: Arc<Shared>,
    /// Tokens generated in this step, added to the counters at its end.
    generated: u64,
}

impl Engine {
    pub(super) fn new(
        model: Arc<Model>,
        opts: &SchedulerOptions,
        budget: usize,
        shared: Arc<Shared>,
    ) -> Engine {
        let slots = (0..opts.slots)
            .map(|_| Slot {
                cache: model.new_cache(opts.n_ctx),
                history: Vec::new(),
                run: None,
            })
            .collect();
        Engine {
            model,
            slots,
            n_ctx: opts.n_ctx,
            max_batch_tokens: opts.max_batch_tokens,
            prefill_chunk: opts.prefill_chunk,
            budget,
            shared,
            generated: 0,
        }
    }

    /// The thread's loop: until shutdown, take in requests and run steps.
    pub(super) fn run(mut self) {
        while self.prepare() {
            let step = catch_unwind(AssertUnwindSafe(|| self.step()));
            if step.is_err() {
                // A bug (or a panicking sink): end the requests of this
                // step's slots, whose caches may be half-written, and go on.
                for i in 0..self.slots.len() {
                    if self.slots[i].run.is_some() {
                        self.reset_slot(i);
                        self.finish(i, FinishReason::Failed("internal error".into()));
                    }
                }
            }
            self.publish();
        }
    }

    /// Apply cancellations, admit queued requests into free slots, and
    /// wait while there is nothing to do. Returns `false` at shutdown,
    /// after ending every request.
    fn prepare(&mut self) -> bool {
        let shared = Arc::clone(&self.shared);
        let mut st = shared.lock();
        let mut dropped: Vec<(Pending, FinishReason)> = Vec::new();
        let mut cancelled_slots = Vec::new();
        let stopping = loop {
            let cancelled = std::mem::take(&mut st.cancelled);
            if st.stopping {
                dropped.extend(st.queue.drain(..).map(|p| (p, FinishReason::Cancelled)));
                cancelled_slots
                    .extend((0..self.slots.len()).filter(|&i| self.slots[i].run.is_some()));
                break true;
            }
            if !cancelled.is_empty() {
                let mut kept = std::collections::VecDeque::new();
                for p in st.queue.drain(..) {
                    if cancelled.contains(&p.id) {
                        dropped.push((p, FinishReason::Cancelled));
                    } else {
                        kept.push_back(p);
                    }
                }
                st.queue = kept;
                for (i, s) in self.slots.iter().enumerate() {
                    if s.run.as_ref().is_some_and(|r| cancelled.contains(&r.id)) {
                        cancelled_slots.push(i);
                    }
                }
            }
            while let Some(p) = st.queue.pop_front() {
                if p.req.max_tokens == 0 {
                    dropped.push((p, FinishReason::MaxTokens));
                    continue;
                }
                match self.place(p) {
                    Ok(()) => {}
                    Err(p) => {
                        // No slot, or not within the budget now: it waits,
                        // and so do the ones behind it (first come, first
                        // served).
                        st.queue.push_front(p);
                        break;
                    }
                }
            }
            let running = self.slots.iter().any(|s| s.run.is_some());
            if running || !dropped.is_empty() || !cancelled_slots.is_empty() {
                break false;
            }
            st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        };
        st.free_slots = self.slots.iter().filter(|s| s.run.is_none()).count();
        st.stats.queued = st.queue.len();
        drop(st);
        for i in cancelled_slots {
            self.finish(i, FinishReason::Cancelled);
        }
        for (p, reason) in dropped {
            finish_pending(p, reason);
        }
        self.publish();
        !stopping
    }

    /// Put a request into the free slot whose cache shares the longest
    /// prefix with its prompt, if the KV budget allows; gives it back if
    /// not.
    fn place(&mut self, p: Pending) -> Result<(), Pending> {
        let free = (0..self.slots.len()).filter(|&i| self.slots[i].run.is_none());
        let Some(i) = free.max_by_key(|&i| {
            let s = &self.slots[i];
            (
                common_prefix(&s.history, &p.req.prompt),
                std::cmp::Reverse(s.cache.allocated_bytes()),
            )
        }) else {
            return Err(p);
        };
        // Within the budget: the other slots' footprints plus this one's.
        // Idle slots' cached prefixes are given up, largest first, if that
        // makes it fit.
        let need = |e: &Engine| {
            let others: usize = (0..e.slots.len())
                .filter(|&j| j != i)
                .map(|j| e.slots[j].footprint())
                .sum();
            others + e.slots[i].cache.allocated_bytes().max(p.reserve)
        };
        while need(self) > self.budget {
            let idle = (0..self.slots.len())
                .filter(|&j| {
                    self.slots[j].run.is_none() && self.slots[j].cache.allocated_bytes() > 0
                })
                .max_by_key(|&j| (j != i, self.slots[j].cache.allocated_bytes()));
            match idle {
                Some(j) => self.reset_slot(j),
                None => return Err(p),
            }
        }
        let s = &mut self.slots[i];
        let keep = common_prefix(&s.history, &p.req.prompt).min(p.req.prompt.len() - 1);
        s.cache.truncate(keep);
        s.history.truncate(keep);
        let tok = self.model.tokenizer();
        let req = p.req;
        s.run = Some(Running {
            id: p.id,
            sink: p.sink,
            sampler: p.sampler,
            decoder: StreamDecoder::new(tok),
            stop: StopText::new(&req.stop),
            constraint: req.constraint,
            prompt: req.prompt,
            max_tokens: req.max_tokens,
            top_logprobs: req.top_logprobs,
            ignore_eos: req.ignore_eos,
            fed: keep,
            cached: keep,
            next: None,
            tokens: Vec::new(),
            text: String::new(),
            submitted: p.submitted,
            first_token_ms: None,
            reserve: p.reserve,
            mask: Vec::new(),
        });
        Ok(())
    }

    /// One step: a decode token from every running sequence, then prompt
    /// chunks within the token bound, in one forward call.
    fn step(&mut self) {
        let mut plan: Vec<(usize, Part)> = Vec::new();
        let mut room = self.max_batch_tokens;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(t) = s.run.as_ref().and_then(|r| r.next) {
                plan.push((i, Part::Decode(t)));
                room -= 1;
            }
        }
        // Prompts in order of arrival.
        let mut prefill: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                self.slots[i]
                    .run
                    .as_ref()
                    .is_some_and(|r| r.next.is_none() && r.fed < r.prompt.len())
            })
            .collect();
        prefill.sort_by_key(|&i| self.slots[i].run.as_ref().map_or(0, |r| r.id));
        for i in prefill {
            if room == 0 {
                break;
            }
            let r = self.slots[i].run.as_ref().expect("a running slot");
            let n = self.prefill_chunk.min(r.prompt.len() - r.fed).min(room);
            room -= n;
            let end = r.fed + n;
            plan.push((
                i,
                Part::Prompt {
                    end,
                    last: end == r.prompt.len(),
                },
            ));
        }
        if plan.is_empty() {
            return;
        }
        let outputs = {
            let decode: Vec<[u32; 1]> = plan
                .iter()
                .map(|(_, p)| match p {
                    Part::Decode(t) => [*t],
                    Part::Prompt { .. } => [0],
                })
                .collect();
            let mut slots: Vec<Option<&mut Slot>> = self.slots.iter_mut().map(Some).collect();
            let mut items: Vec<BatchItem<'_>> = Vec::with_capacity(plan.len());
            for ((i, part), tok) in plan.iter().zip(&decode) {
                let Slot { cache, run, .. } = slots[*i].take().expect("one part per slot");
                let r = run.as_ref().expect("a running slot");
                let pos = cache.len();
                let (input, logits) = match part {
                    Part::Decode(_) => (&tok[..], Logits::Last),
                    Part::Prompt { end, last } => (
                        &r.prompt[r.fed..*end],
                        if *last { Logits::Last } else { Logits::None },
                    ),
                };
                items.push(BatchItem {
                    cache,
                    input: Input::Tokens(input),
                    pos,
                    logits,
                });
            }
            self.model.forward_batch(&mut items)
        };
        let outputs = match outputs {
            Ok(o) => o,
            Err(e) => {
                // The checks run before anything is computed, so no cache
                // changed: end the request at fault, the others run again.
                let (index, e) = match e {
                    Error::BatchItem { index, source } => (index, *source),
                    e => (0, e),
                };
                let i = plan[index.min(plan.len() - 1)].0;
                self.finish(i, FinishReason::Failed(e.to_string()));
                return;
            }
        };
        let mut sampled: Vec<(usize, Vec<f32>)> = Vec::new();
        for ((i, part), out) in plan.into_iter().zip(outputs) {
            let s = &mut self.slots[i];
            let r = s.run.as_mut().expect("a running slot");
            match part {
                Part::Decode(t) => {
                    s.history.push(t);
                    r.next = None;
                }
                Part::Prompt { end, .. } => {
                    s.history.extend_from_slice(&r.prompt[r.fed..end]);
                    r.fed = end;
                }
            }
            if let Output::Logits(l) = out {
                if !l.is_empty() {
                    sampled.push((i, l));
                }
            }
        }
        self.sample_all(sampled);
        let mut st = self.shared.lock();
        st.stats.steps_total += 1;
        st.stats.generated_tokens_total += std::mem::take(&mut self.generated);
    }

    /// Sample the next token of every slot in `sampled` (slot, logits):
    /// masks, draws and log-probabilities on the model's threads, one
    /// sequence per task; then the tokens are handed out in slot order.
    fn sample_all(&mut self, sampled: Vec<(usize, Vec<f32>)>) {
        use rayon::prelude::*;
        let mut runs: Vec<(usize, &mut Running, Vec<f32>)> = Vec::with_capacity(sampled.len());
        let mut logits: Vec<Option<Vec<f32>>> = self.slots.iter().map(|_| None).collect();
        for (i, l) in sampled {
            logits[i] = Some(l);
        }
        for (i, (s, l)) in self.slots.iter_mut().zip(logits).enumerate() {
            if let (Some(r), Some(l)) = (s.run.as_mut(), l) {
                runs.push((i, r, l));
            }
        }
        let picks: Vec<(usize, Result<Pick, FinishReason>)> = self.model.install(|| {
            runs.into_par_iter()
                .map(|(i, r, l)| (i, pick(r, l)))
                .collect()
        });
        for (i, p) in picks {
            match p {
                Ok(p) => self.emit(i, p),
                Err(reason) => self.finish(i, reason),
            }
        }
    }

    /// Hand out slot `i`'s sampled token and decide whether it goes on.
    fn emit(&mut self, i: usize, p: Pick) {
        let n_ctx = self.n_ctx;
        let s = &mut self.slots[i];
        let r = s.run.as_mut().expect("a running slot");
        let id = p.id;
        r.tokens.push(id);
        if r.first_token_ms.is_none() {
            r.first_token_ms = Some(r.submitted.elapsed().as_secs_f64() * 1e3);
        }
        let tok = self.model.tokenizer();
        let eog = tok.is_eog(id) && !r.ignore_eos;
        let (text, stopped) = if eog {
            (String::new(), false)
        } else {
            r.stop.push(&r.decoder.push(id))
        };
        r.text.push_str(&text);
        let alive = (r.sink)(Event::Token(TokenOut {
            id,
            text,
            logprob: p.logprob,
        }));
        let constraint_done = r.constraint.as_ref().is_some_and(|c| c.is_finished());
        let end = if !alive {
            Some(FinishReason::Cancelled)
        } else if eog {
            Some(FinishReason::EndOfGeneration)
        } else if stopped {
            Some(FinishReason::StopString)
        } else if r.tokens.len() >= r.max_tokens {
            Some(FinishReason::MaxTokens)
        } else if constraint_done {
            Some(FinishReason::ConstraintEnd)
        } else if s.cache.len() >= n_ctx {
            Some(FinishReason::ContextFull)
        } else {
            r.next = Some(id);
            None
        };
        self.generated += 1;
        if let Some(reason) = end {
            self.finish(i, reason);
        }
    }

    /// End slot `i`'s request; its tokens stay in the cache for a later
    /// prompt that starts with them.
    fn finish(&mut self, i: usize, reason: FinishReason) {
        let Some(mut r) = self.slots[i].run.take() else {
            return;
        };
        let tail = if reason == FinishReason::StopString {
            String::new()
        } else {
            let mut t = r.stop.finish();
            t.push_str(&r.decoder.finish());
            t
        };
        r.text.push_str(&tail);
        let total_ms = r.submitted.elapsed().as_secs_f64() * 1e3;
        let ttft = r.first_token_ms;
        // The counters and the slot count change before the request's end
        // is announced, so that a caller who saw `Done` never sees it
        // still running.
        let running = self.slots.iter().filter(|s| s.run.is_some()).count();
        {
            let mut st = self.shared.lock();
            st.free_slots = self.slots.len() - running;
            let stats = &mut st.stats;
            stats.running = running;
            stats.generated_tokens_total += std::mem::take(&mut self.generated);
            stats.requests_total += 1;
            stats.prompt_tokens_total += r.prompt.len() as u64;
            stats.cached_tokens_total += r.cached as u64;
            if let Some(t) = ttft {
                stats.ttft_ms_sum += t;
                stats.ttft_count += 1;
            }
        }
        (r.sink)(Event::Done(Finished {
            reason,
            prompt_tokens: r.prompt.len(),
            cached_tokens: r.cached,
            completion_tokens: r.tokens.len(),
            text: r.text,
            tail,
            tokens: r.tokens,
            time_to_first_token_ms: ttft.unwrap_or(0.0),
            total_ms,
        }));
    }

    /// Forget slot `i`'s cache (and free its memory).
    fn reset_slot(&mut self, i: usize) {
        self.slots[i].cache.clear();
        self.slots[i].history.clear();
    }

    /// The state the callers see.
    fn publish(&self) {
        let mut st = self.shared.lock();
        st.free_slots = self.slots.iter().filter(|s| s.run.is_none()).count();
        st.stats.running = self.slots.len() - st.free_slots;
        st.stats.queued = st.queue.len();
        st.stats.kv_bytes_used = self.slots.iter().map(|s| s.cache.allocated_bytes()).sum();
    }
}

/// End a request that never got a slot.
fn finish_pending(mut p: Pending, reason: FinishReason) {
    let ms = p.submitted.elapsed().as_secs_f64() * 1e3;
    let f = Finished::unstarted(reason, p.req.prompt.len(), ms);
    (p.sink)(Event::Done(f));
}

/// Length of the common prefix of two token sequences.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A sampled token and its log-probabilities.
struct Pick {
    id: u32,
    logprob: Option<super::Logprob>,
}

/// Mask `logits` with the request's constraint, draw its next token and
/// tell the constraint; the work of one sequence that runs in parallel
/// with the others'.
fn pick(r: &mut Running, mut logits: Vec<f32>) -> Result<Pick, FinishReason> {
    let failed = |e: String| FinishReason::Failed(format!("constraint: {e}"));
    if let Some(c) = r.constraint.as_mut() {
        r.mask.clear();
        r.mask.resize(logits.len().div_ceil(32), 0);
        c.allowed(&mut r.mask).map_err(failed)?;
        let mut any = false;
        for (t, l) in logits.iter_mut().enumerate() {
            if r.mask[t / 32] >> (t % 32) & 1 == 0 {
                *l = f32::NEG_INFINITY;
            } else {
                any = true;
            }
        }
        if !any {
            return Err(failed("no token is allowed".into()));
        }
    }
    let id = r.sampler.sample(&logits);
    r.sampler.accept(id);
    let lp = r.top_logprobs.map(|k| logprob(&logits, id, k));
    if let Some(c) = r.constraint.as_mut() {
        c.accept(id).map_err(failed)?;
    }
    Ok(Pick { id, logprob: lp })
}
