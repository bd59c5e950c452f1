//! The scheduler on the real SmolLM2: concurrent requests equal each run
//! alone, seeds reproduce, cancellation, the queue bound, the KV budget,
//! cached prefixes, stops, constraints and log-probabilities.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata::sampler::SamplerParams;
use strata::scheduler::{
    Constraint, Event, FinishReason, Finished, Request, Scheduler, SchedulerOptions,
};
use strata::{Error, GenerateParams, LoadOptions, Model, Numerics, Session, SessionOptions};

fn model(threads: usize) -> Arc<Model> {
    Arc::new(
        Model::load(
            common::smollm2(),
            &LoadOptions {
                n_threads: Some(threads),
                numerics: Numerics::BatchInvariant,
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

fn opts(model: &Model, slots: usize) -> SchedulerOptions {
    SchedulerOptions {
        slots,
        n_ctx: 512,
        ..SchedulerOptions::for_model(model)
    }
}

fn tokens(model: &Model, text: &str) -> Vec<u32> {
    model.tokenizer().encode(text, true, false).unwrap()
}

const PROMPTS: [&str; 8] = [
    "The capital of France is",
    "Once upon a time, there was a",
    "def add(a, b):",
    "The three primary colours are",
    "Water boils at a temperature of",
    "My favourite food is",
    "In 1492, Columbus",
    "The quick brown fox",
];

fn request(model: &Model, text: &str, max_tokens: usize, sampler: SamplerParams) -> Request {
    Request {
        max_tokens,
        sampler,
        ..Request::new(tokens(model, text))
    }
}

/// Sampling at temperature 0.8 with seed `seed`.
fn sampled(seed: u64) -> SamplerParams {
    SamplerParams {
        seed,
        ..SamplerParams::default()
    }
}

/// The tokens `Session::generate_from_tokens` gives for the same request.
fn alone(model: &Arc<Model>, text: &str, max_tokens: usize, sampler: SamplerParams) -> Vec<u32> {
    let mut s = Session::new(Arc::clone(model), &SessionOptions { n_ctx: Some(512) }).unwrap();
    let params = GenerateParams {
        max_tokens,
        sampler,
        ..Default::default()
    };
    let mut stream = s
        .generate_from_tokens(&tokens(model, text), &params)
        .unwrap();
    while let Some(t) = stream.next() {
        t.unwrap();
    }
    stream.finish().tokens
}

#[test]
fn eight_concurrent_requests_equal_each_alone() {
    let m = model(2);
    for sampler in [SamplerParams::greedy(), sampled(5)] {
        let want: Vec<Vec<u32>> = PROMPTS
            .iter()
            .map(|p| alone(&m, p, 24, sampler.clone()))
            .collect();
        // A small token bound, so prompts are chunked and join running
        // streams at different steps.
        let sched = Scheduler::new(
            Arc::clone(&m),
            SchedulerOptions {
                max_batch_tokens: 12,
                prefill_chunk: 5,
                ..opts(&m, 8)
            },
        )
        .unwrap();
        let handles: Vec<_> = PROMPTS
            .iter()
            .map(|p| sched.submit(request(&m, p, 24, sampler.clone())).unwrap())
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let f = h.wait();
            assert_eq!(
                f.tokens, want[i],
                "request {i} ({:?}) differs from its run alone",
                PROMPTS[i]
            );
            assert_eq!(f.completion_tokens, f.tokens.len());
        }
        let st = sched.stats();
        assert_eq!(st.requests_total, 8);
        assert!(st.steps_total >= 24);
    }
}

#[test]
fn more_requests_than_slots_queue_and_each_equals_its_run_alone() {
    let m = model(1);
    let want: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| alone(&m, p, 8, sampled(11)))
        .collect();
    let sched = Scheduler::new(Arc::clone(&m), opts(&m, 3)).unwrap();
    let handles: Vec<_> = PROMPTS
        .iter()
        .map(|p| sched.submit(request(&m, p, 8, sampled(11))).unwrap())
        .collect();
    for (h, w) in handles.into_iter().zip(&want) {
        assert_eq!(&h.wait().tokens, w);
    }
}

/// Events of a request, gathered.
fn collect(h: strata::scheduler::Handle) -> (Vec<strata::scheduler::TokenOut>, Finished) {
    let mut toks = Vec::new();
    loop {
        match h.recv().expect("Done is the last event") {
            Event::Token(t) => toks.push(t),
            Event::Done(f) => return (toks, f),
        }
    }
}

#[test]
fn streamed_text_and_tail_make_the_text_and_stop_strings_end_it() {
    let m = model(2);
    let sched = Scheduler::new(Arc::clone(&m), opts(&m, 2)).unwrap();
    let (toks, f) = collect(
        sched
            .submit(request(&m, PROMPTS[0], 40, SamplerParams::greedy()))
            .unwrap(),
    );
    let streamed: String = toks.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(format!("{streamed}{}", f.tail), f.text);
    assert_eq!(f.reason, FinishReason::MaxTokens);
    assert_eq!(f.reason.openai(), "length");
    // Stop at a word of that text: the text ends before it.
    let word = f
        .text
        .split_whitespace()
        .nth(3)
        .expect("a few words")
        .to_string();
    let req = Request {
        stop: vec![word.clone()],
        ..request(&m, PROMPTS[0], 40, SamplerParams::greedy())
    };
    let (toks, g) = collect(sched.submit(req).unwrap());
    assert_eq!(g.reason, FinishReason::StopString);
    assert_eq!(g.reason.openai(), "stop");
    assert!(!g.text.contains(&word), "{:?} still holds {word:?}", g.text);
    assert!(f.text.starts_with(&g.text));
    let streamed: String = toks.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(format!("{streamed}{}", g.tail), g.text);
}

#[test]
fn seeds_reproduce_and_differ() {
    let m = model(2);
    let sched = Scheduler::new(Arc::clone(&m), opts(&m, 4)).unwrap();
    let run = |seed| {
        sched
            .submit(request(&m, PROMPTS[1], 16, sampled(seed)))
            .unwrap()
            .wait()
            .tokens
    };
    let a = run(1);
    assert_eq!(a, run(1));
    let others: Vec<Vec<u32>> = (2..6).map(run).collect();
    assert!(others.iter().any(|o| *o != a), "five seeds gave one output");
}

#[test]
fn cancel_ends_a_request_and_frees_its_slot() {
    let m = model(2);
    let sched = Scheduler::new(Arc::clone(&m), opts(&m, 1)).unwrap();
    let long = sched
        .submit(Request {
            ignore_eos: true,
            ..request(&m, PROMPTS[1], 400, SamplerParams::greedy())
        })
        .unwrap();
    // Wait for its first token, then cancel.
    assert!(matches!(long.recv(), Some(Event::Token(_))));
    long.cancel();
    let f = long.wait();
    assert_eq!(f.reason, FinishReason::Cancelled);
    assert!(f.completion_tokens < 400);
    // The slot is free again: the next request runs to its end.
    let next = sched
        .submit(request(&m, PROMPTS[2], 4, SamplerParams::greedy()))
        .unwrap()
        .wait();
    assert_eq!(next.completion_tokens, 4);
    // A sink that returns false (its receiver went away) cancels too.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    sched
        .submit_with(
            Request {
                ignore_eos: true,
                ..request(&m, PROMPTS[1], 400, SamplerParams::greedy())
            },
            Box::new(move |ev| {
                let done = matches!(ev, Event::Done(_));
                s2.lock().unwrap().push(ev);
                done
            }),
        )
        .unwrap();
    for _ in 0..200 {
        if seen
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Done(_)))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one token, then Done");
    assert!(matches!(&seen[1], Event::Done(f) if f.reason == FinishReason::Cancelled));
    assert_eq!(sched.stats().running, 0);
}

#[test]
fn a_full_queue_refuses_and_a_drained_one_accepts() {
    let m = model(2);
    let sched = Scheduler::new(
        Arc::clone(&m),
        SchedulerOptions {
            max_queue: 2,
            ..opts(&m, 1)
        },
    )
    .unwrap();
    let long = || Request {
        ignore_eos: true,
        ..request(&m, PROMPTS[1], 300, SamplerParams::greedy())
    };
    // One slot and two places in the queue: the fourth is refused.
    let held: Vec<_> = (0..3).map(|_| sched.submit(long()).unwrap()).collect();
    match sched.submit(long()) {
        Err(Error::QueueFull { limit: 2 }) => {}
        other => panic!("expected QueueFull, got {:?}", other.map(|h| h.id())),
    }
    for h in &held {
        h.cancel();
    }
    for h in held {
        assert_eq!(h.wait().reason, FinishReason::Cancelled);
    }
    let ok = sched
        .submit(request(&m, PROMPTS[0], 2, SamplerParams::greedy()))
        .unwrap();
    assert_eq!(ok.wait().completion_tokens, 2);
}

#[test]
fn refusals_are_typed() {
    let m = model(1);
    let sched = Scheduler::new(Arc::clone(&m), opts(&m, 1)).unwrap();
    let err = |r: Request| sched.submit(r).map(|h| h.id()).unwrap_err();
    assert!(matches!(err(Request::new(vec![])), Error::EmptyPrompt));
    assert!(matches!(
        err(Request::new(vec![1, u32::MAX])),
        Error::TokenOutOfRange { .. }
    ));
    match err(Request::new(vec![1; 513])) {
        Error::ContextFull {
            needed: 513,
            limit: 512,
        } => {}
        e => panic!("{e}"),
    }
    let bad_temp = Request {
        sampler: SamplerParams {
            top_p: 2.0,
            ..SamplerParams::default()
        },
        ..Request::new(vec![1, 2])
    };
    assert!(matches!(err(bad_temp), Error::InvalidParameter { .. }));
    let many = Request {
        top_logprobs: Some(21),
        ..Request::new(vec![1, 2])
    };
    assert!(matches!(
        err(many),
        Error::InvalidParameter {
            name: "top_logprobs",
            ..
        }
    ));
    // Impossible options.
    assert!(Scheduler::new(
        Arc::clone(&m),
        SchedulerOptions {
            slots: 0,
            ..opts(&m, 1)
        }
    )
    .is_err());
    assert!(Scheduler::new(
        Arc::clone(&m),
        SchedulerOptions {
            max_batch_tokens: 2,
            ..opts(&m, 4)
        }
    )
    .is_err());
    sched.shutdown();
    assert!(matches!(
        err(Request::new(vec![1, 2])),
        Error::SchedulerStopped
    ));
}

#[test]
fn the_kv_budget_makes_requests_wait_or_refuses_them() {
    let m = model(2);
    let per_position = m.new_cache(1).bytes_per_position();
    // Room for 256 positions in all: one request of up to 256 at a time.
    let sched = Scheduler::new(
        Arc::clone(&m),
        SchedulerOptions {
            kv_budget_bytes: Some(256 * per_position),
            ..opts(&m, 4)
        },
    )
    .unwrap();
    // Needs more than the whole budget: refused at once.
    match sched.submit(request(&m, PROMPTS[0], 400, SamplerParams::greedy())) {
        Err(Error::KvBudget { needed, budget }) => {
            assert!(needed > budget);
            assert_eq!(budget, 256 * per_position);
        }
        other => panic!("expected KvBudget, got {:?}", other.map(|h| h.id())),
    }
    // Each fits alone, not together: they run one after the other.
    let want: Vec<Vec<u32>> = PROMPTS[..3]
        .iter()
        .map(|p| alone(&m, p, 40, SamplerParams::greedy()))
        .collect();
    let hs: Vec<_> = PROMPTS[..3]
        .iter()
        .map(|p| {
            sched
                .submit(request(&m, p, 40, SamplerParams::greedy()))
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let st = sched.stats();
    assert!(st.running <= 1, "{st:?}");
    for (h, w) in hs.into_iter().zip(&want) {
        assert_eq!(&h.wait().tokens, w);
    }
    assert!(sched.stats().kv_bytes_used <= 256 * per_position);
}

#[test]
fn a_next_turn_reuses_the_cached_prefix_and_gives_the_same_tokens() {
    let m = model(2);
    let sched = Scheduler::new(Arc::clone(&m), opts(&m, 2)).unwrap();
    let first = tokens(&m, "User: name three fruits.\nAssistant:");
    let f = sched
        .submit(Request {
            max_tokens: 12,
            ..Request::new(first.clone())
        })
        .unwrap()
        .wait();
    assert_eq!(f.cached_tokens, 0);
    let mut second = first.clone();
    second.extend_from_slice(&f.tokens);
    second.extend(
        m.tokenizer()
            .encode("\nUser: and two more.\nAssistant:", false, false)
            .unwrap(),
    );
    let g = sched
        .submit(Request {
            max_tokens: 12,
            ..Request::new(second.clone())
        })
        .unwrap()
        .wait();
    // The prompt and the generated tokens but the last one (sampled, never
    // evaluated) were in the cache.
    assert_eq!(g.cached_tokens, first.len() + f.tokens.len() - 1);
    let fresh = Scheduler::new(Arc::clone(&m), opts(&m, 1))
        .unwrap()
        .submit(Request {
            max_tokens: 12,
            ..Request::new(second)
        })
        .unwrap()
        .wait();
    assert_eq!(fresh.cached_tokens, 0);
    assert_eq!(
        g.tokens, fresh.tokens,
        "the reused prefix changed the output"
    );
    assert_eq!(sched.stats().cached_tokens_total, g.cached_tokens as u64);
}

/// Allows only tokens whose text is ASCII digits, and ends after five.
struct Digits {
    ok: Vec<bool>,
    n: usize,
}

impl Constraint for Digits {
    fn allowed(&mut self, allowed: &mut [u32]) -> Result<(), String> {
        for (t, &ok) in self.ok.iter().enumerate() {
            if ok {
                allowed[t / 32] |= 1 << (t % 32);
            }
        }
        Ok(())
    }
    fn accept(&mut self, token: u32) -> Result<(), String> {
        if !self.ok[token as usize] {
            return Err(format!("token {token} is not digits"));
        }
        self.n += 1;
        Ok(())
    }
    fn is_finished(&self) -> bool {
        self.n >= 5
    }
}

#[test]
fn a_constraint_masks_the_logits_and_ends_generation() {
    let m = model(2);
    let tok = m.tokenizer();
    let ok: Vec<bool> = (0..m.config().n_vocab as u32)
        .map(|t| {
            let b = tok.token_bytes(t, false);
            !b.is_empty() && b.iter().all(u8::is_ascii_digit)
        })
        .collect();
    let sched = Scheduler::new(Arc::clone(&m), opts(&m, 2)).unwrap();
    let f = sched
        .submit(Request {
            constraint: Some(Box::new(Digits { ok, n: 0 })),
            top_logprobs: Some(3),
            ..request(&m, "My phone number is", 50, sampled(3))
        })
        .unwrap();
    let (toks, f) = collect(f);
    assert_eq!(f.reason, FinishReason::ConstraintEnd);
    assert_eq!(f.completion_tokens, 5);
    assert!(f.text.bytes().all(|b| b.is_ascii_digit()), "{:?}", f.text);
    for t in &toks {
        let lp = t.logprob.as_ref().expect("logprobs asked for");
        assert!(lp.logprob <= 0.0);
        assert!(lp.top.len() <= 3 && !lp.top.is_empty());
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
        assert!(
            lp.top
                .iter()
                .all(|(id, _)| tok.token_bytes(*id, false).iter().all(u8::is_ascii_digit)),
            "masked tokens are not listed"
        );
    }
}

#[test]
fn context_full_ends_generation() {
    let m = model(2);
    let sched = Scheduler::new(
        Arc::clone(&m),
        SchedulerOptions {
            n_ctx: 12,
            ..opts(&m, 1)
        },
    )
    .unwrap();
    let p = tokens(&m, PROMPTS[0]);
    let f = sched
        .submit(Request {
            max_tokens: 100,
            ignore_eos: true,
            ..Request::new(p.clone())
        })
        .unwrap()
        .wait();
    assert_eq!(f.reason, FinishReason::ContextFull);
    assert_eq!(f.completion_tokens, 12 - p.len() + 1);
}
