//! How generation ends, on the real SmolLM2 model (greedy, so every run is
//! the same): stop strings that straddle token boundaries (text that could
//! start one is held back, never streamed, and cut exactly), an
//! end-of-generation token, and a full context.

mod common;

use std::sync::Arc;

use strata::sampler::SamplerParams;
use strata::{GenerateParams, LoadOptions, Model, Session, SessionOptions, StopReason};

const PROMPT: &str = "The capital of France is";

fn model() -> Arc<Model> {
    Arc::new(Model::load(common::smollm2(), &LoadOptions::default()).unwrap())
}

fn params(max_tokens: usize, stop: &[&str]) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler: SamplerParams::greedy(),
        stop: stop.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The streamed events' texts and the completion.
fn generate(
    model: &Arc<Model>,
    n_ctx: usize,
    prompt: &str,
    p: &GenerateParams,
) -> (Vec<(u32, String)>, strata::Completion) {
    let mut s = Session::new(Arc::clone(model), &SessionOptions { n_ctx: Some(n_ctx) }).unwrap();
    let mut events = Vec::new();
    let done = s
        .generate(prompt, p, |ev| {
            events.push((ev.id, ev.text.clone()));
            true
        })
        .unwrap();
    (events, done)
}

#[test]
fn stop_strings_across_token_boundaries() {
    let m = model();
    let (free_events, free) = generate(&m, 512, PROMPT, &params(40, &[]));
    assert_eq!(free.stop_reason, StopReason::MaxTokens);
    let streamed: String = free_events.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        streamed, free.text,
        "without stop strings everything streams"
    );
    // Where each token's text ends in the full text.
    let mut ends = Vec::new();
    let mut at = 0;
    for (_, t) in &free_events {
        at += t.len();
        ends.push(at);
    }
    // A stop string from the middle of one token's text to the middle of a
    // later token's: take the first token with at least two bytes of text
    // after the start, from its second byte, 6 bytes long.
    let text = &free.text;
    let (i, start) = free_events
        .iter()
        .enumerate()
        .skip(2)
        .find_map(|(i, (_, t))| {
            let begin = ends[i] - t.len();
            (t.len() >= 3 && t.len() <= 6 && t.is_ascii() && text[begin..].len() > 12)
                .then_some((i, begin + 1))
        })
        .expect("a token to cut inside");
    let stop = &text[start..start + 6];
    assert!(text.is_char_boundary(start + 6));
    assert!(
        start + 6 > ends[i],
        "the stop string {stop:?} must end after token {i}"
    );
    let first = text.find(stop).unwrap();
    let (events, done) = generate(&m, 512, PROMPT, &params(40, &[stop, "never appears"]));
    assert_eq!(done.stop_reason, StopReason::StopString);
    assert_eq!(done.text, text[..first], "text ends right before {stop:?}");
    let streamed: String = events.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(streamed, done.text, "held-back text is never streamed");
    // The token holding the stop string's first bytes released only the
    // part before them: its event is shorter than its own text.
    let holder = ends.iter().position(|&e| e > first).unwrap();
    let begin = ends[holder] - free_events[holder].1.len();
    let held = &events[holder].1;
    assert!(
        held.len() <= first - begin && held.len() < free_events[holder].1.len(),
        "token {holder} streamed {held:?}, past the start of {stop:?}"
    );
    // Generation stopped at the token that completed the stop string.
    let completes = ends.iter().position(|&e| e >= first + stop.len()).unwrap();
    assert_eq!(done.tokens.len(), completes + 1);
    assert_eq!(done.tokens[..], free.tokens[..completes + 1]);
}

#[test]
fn end_of_generation_token_ends_a_chat_answer() {
    let m = model();
    let prompt = "<|im_start|>user\nWhat is 2 + 2? Answer with one number.<|im_end|>\n<|im_start|>assistant\n";
    let (events, done) = generate(&m, 512, prompt, &params(200, &[]));
    assert_eq!(
        done.stop_reason,
        StopReason::EndOfGeneration,
        "{:?}",
        done.text
    );
    let last = *done.tokens.last().unwrap();
    assert!(m.tokenizer().is_eog(last));
    assert!(done.tokens.len() < 200);
    // The end-of-generation token is reported but adds no text.
    assert_eq!(events.last().unwrap(), &(last, String::new()));
    assert!(!done.text.contains("<|im_end|>"), "{:?}", done.text);
}

#[test]
fn full_context_ends_generation() {
    let m = model();
    let n_prompt = m.tokenizer().encode(PROMPT, true, true).unwrap().len();
    let (_, free) = generate(&m, 512, PROMPT, &params(20, &[]));
    let n_ctx = n_prompt + 5;
    let (_, done) = generate(&m, n_ctx, PROMPT, &params(20, &[]));
    assert_eq!(done.stop_reason, StopReason::ContextFull);
    // Five positions are left: five generated tokens are fed back, and the
    // sixth, sampled from the last position's logits, ends the run.
    assert_eq!(done.tokens.len(), 6);
    assert_eq!(done.tokens[..], free.tokens[..6]);
}
