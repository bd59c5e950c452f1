//! Model-level tests on tiny synthetic models: no download needed.

mod common;

use std::sync::Arc;

use strata::gguf::GgufFile;
use strata::model::{Input, Logits, Output};
use strata::quant::GgmlType;
use strata::synth::{synth_model, SynthSpec};
use strata::{Error, GenerateParams, LoadOptions, Model, Numerics, Session, SessionOptions};

fn tiny(ty: GgmlType, threads: usize) -> Arc<Model> {
    // Batch invariance is what these tests check.
    common::tiny_model(ty, threads, Numerics::BatchInvariant)
}

fn session(m: &Arc<Model>) -> Session {
    Session::new(Arc::clone(m), &SessionOptions { n_ctx: Some(64) }).unwrap()
}

const PROMPT: &[u32] = &[
    256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33,
];

#[test]
fn batch_and_token_by_token_give_identical_bits() {
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q5_0,
    ] {
        let m = tiny(ty, 2);
        let mut a = session(&m);
        let all = a.feed_all(PROMPT).unwrap();
        let mut b = session(&m);
        let n_vocab = m.config().n_vocab;
        for (i, &t) in PROMPT.iter().enumerate() {
            let l = b.feed(&[t]).unwrap();
            assert_eq!(l, all[i * n_vocab..(i + 1) * n_vocab], "{ty}: position {i}");
        }
        assert!(all.iter().all(|x| x.is_finite()), "{ty}: non-finite logits");
    }
}

#[test]
fn thread_count_does_not_change_bits() {
    let one = tiny(GgmlType::Q4_1, 1);
    let two = tiny(GgmlType::Q4_1, 2);
    assert_eq!(
        session(&one).feed_all(PROMPT).unwrap(),
        session(&two).feed_all(PROMPT).unwrap()
    );
}

#[test]
fn rollback_then_replay_matches() {
    let m = tiny(GgmlType::Q4_0, 2);
    let mut s = session(&m);
    let first = s.feed(PROMPT).unwrap();
    s.feed(&[65, 66, 67]).unwrap();
    s.truncate(PROMPT.len() - 1);
    let again = s.feed(&PROMPT[PROMPT.len() - 1..]).unwrap();
    assert_eq!(first, again);
    assert_eq!(s.tokens(), PROMPT);
}

#[test]
fn shard_chain_equals_whole_model() {
    let w = synth_model(&SynthSpec::tiny(GgmlType::Q8_0), None).unwrap();
    let file = Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap());
    let load = |layers| {
        Model::from_file(
            Arc::clone(&file),
            &LoadOptions {
                n_threads: Some(2),
                layers,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let whole = load(None);
    let (a, b) = (load(Some(0..1)), load(Some(1..2)));
    assert!(a.takes_tokens() && !a.gives_logits() && !b.takes_tokens() && b.gives_logits());
    let mut cw = whole.new_cache(64);
    let (mut ca, mut cb) = (a.new_cache(64), b.new_cache(64));
    let Output::Logits(expect) = whole
        .forward(&mut cw, Input::Tokens(PROMPT), 0, Logits::All)
        .unwrap()
    else {
        panic!()
    };
    let Output::Hidden(h) = a
        .forward(&mut ca, Input::Tokens(PROMPT), 0, Logits::All)
        .unwrap()
    else {
        panic!()
    };
    let Output::Logits(got) = b
        .forward(&mut cb, Input::Hidden(&h), 0, Logits::All)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(expect, got);
}

#[test]
fn clear_errors_for_bad_input() {
    let m = tiny(GgmlType::Q4_0, 1);
    let mut s = session(&m);
    assert!(matches!(s.feed(&[]), Err(Error::EmptyPrompt)));
    assert!(matches!(
        s.feed(&[100_000]),
        Err(Error::TokenOutOfRange { id: 100_000, .. })
    ));
    let long: Vec<u32> = (0..65).map(|i| i % 200).collect();
    assert!(matches!(
        s.feed(&long),
        Err(Error::ContextFull {
            needed: 65,
            limit: 64
        })
    ));
    // The session is still usable after errors.
    s.feed(PROMPT).unwrap();
    assert!(Session::new(Arc::clone(&m), &SessionOptions { n_ctx: Some(0) }).is_err());
    let bad_range = Model::from_file(
        Arc::new(
            GgufFile::from_bytes(
                synth_model(&SynthSpec::tiny(GgmlType::Q4_0), None)
                    .unwrap()
                    .to_bytes(),
            )
            .unwrap(),
        ),
        &LoadOptions {
            n_threads: Some(1),
            layers: Some(1..5),
            ..Default::default()
        },
    );
    assert!(matches!(bad_range, Err(Error::InvalidParameter { .. })));
}

#[test]
fn unknown_architecture_is_named() {
    let mut w = synth_model(&SynthSpec::tiny(GgmlType::Q4_0), None).unwrap();
    w.set(
        "general.architecture",
        strata::gguf::Value::String("mamba9".into()),
    );
    let file = Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap());
    match Model::from_file(file, &LoadOptions::default()) {
        Err(Error::UnknownArchitecture { name, supported }) => {
            assert_eq!(name, "mamba9");
            assert!(supported.contains("llama"));
        }
        other => panic!("expected UnknownArchitecture, got {other:?}"),
    }
}

#[test]
fn generation_respects_budget_and_seed() {
    let m = tiny(GgmlType::Q4_0, 2);
    let mut params = GenerateParams {
        max_tokens: 12,
        ..Default::default()
    };
    params.sampler.seed = 7;
    let run = |p: &GenerateParams| session(&m).generate("Hello", p, |_| true).unwrap();
    let a = run(&params);
    let b = run(&params);
    assert_eq!(a.tokens, b.tokens, "same seed, same tokens");
    assert!(a.tokens.len() <= 12);
    let mut seen = 0;
    let c = session(&m)
        .generate("Hello", &params, |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
    assert_eq!(c.tokens.len(), 3);
    assert_eq!(c.stop_reason, strata::StopReason::Callback);
}
