//! Speculative decoding by prompt lookup: in the batch-invariant mode a
//! generation with drafts is bit-identical to plain decoding — the same
//! tokens, the same logits before every step, the same session state
//! afterwards — greedy and seeded with penalties, on both real models and
//! on a synthetic one at every draft length, at the token and context
//! limits and with stop strings; and the drafts are really accepted.

mod common;

use std::sync::Arc;

use strata::draft::DraftModel;
use strata::gguf::GgufFile;
use strata::quant::GgmlType;
use strata::sampler::SamplerParams;
use strata::synth::{synth_model, SynthSpec};
use strata::{
    Completion, Draft, GenerateParams, LoadOptions, Lookup, Model, Numerics, Session,
    SessionOptions,
};

/// A passage to copy: drafts from it pay.
const PASSAGE: &str = "The quick brown fox jumps over the lazy dog near the river bank, while the \
farmer watches from his old wooden porch and drinks a cup of hot coffee. Every morning he counts \
his sheep, feeds the chickens and repairs the fence that the storm broke last winter.";

/// SmolLM2 (an instruct model) is asked to repeat the passage.
fn smollm2_copy() -> String {
    format!(
        "<|im_start|>user\n{PASSAGE}\n\nRepeat the text above exactly.<|im_end|>\n<|im_start|>assistant\n"
    )
}

/// Gemma 3 270M (a base model) continues a list of copies.
fn gemma3_copy() -> String {
    format!("Original: {PASSAGE}\nCopy: {PASSAGE}\nCopy:")
}

/// What a generation did: its completion, a digest of the logits it
/// sampled each token from, and the session's tokens afterwards.
struct Run {
    completion: Completion,
    logits: Vec<blake3::Hash>,
    held: Vec<u32>,
}

fn run(model: &Arc<Model>, prompt: &[u32], params: &GenerateParams, n_ctx: usize) -> Run {
    let mut session =
        Session::new(Arc::clone(model), &SessionOptions { n_ctx: Some(n_ctx) }).unwrap();
    let mut logits = Vec::new();
    let mut stream = session.generate_from_tokens(prompt, params).unwrap();
    loop {
        let bytes: Vec<u8> = stream
            .logits()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        match stream.next() {
            Some(ev) => {
                ev.unwrap();
                logits.push(blake3::hash(&bytes));
            }
            None => break,
        }
    }
    let completion = stream.finish();
    Run {
        completion,
        logits,
        held: session.tokens().to_vec(),
    }
}

/// Plain decoding and decoding with `draft` give the same bits; returns
/// the speculative run.
fn same_as_plain(
    model: &Arc<Model>,
    prompt: &[u32],
    params: &GenerateParams,
    draft: Draft,
    n_ctx: usize,
) -> Run {
    let plain = run(model, prompt, params, n_ctx);
    let spec = run(
        model,
        prompt,
        &GenerateParams {
            draft: draft.clone(),
            ..params.clone()
        },
        n_ctx,
    );
    let (p, s) = (&plain.completion, &spec.completion);
    assert_eq!(p.tokens, s.tokens, "tokens ({draft:?})");
    assert_eq!(p.text, s.text, "text ({draft:?})");
    assert_eq!(p.stop_reason, s.stop_reason, "stop reason ({draft:?})");
    assert_eq!(
        plain.logits, spec.logits,
        "logits before each step ({draft:?})"
    );
    assert_eq!(plain.held, spec.held, "session afterwards ({draft:?})");
    assert_eq!(p.timings.draft, Default::default());
    let d = s.timings.draft;
    assert!(d.accepted <= d.drafted && d.passes <= d.drafted, "{d:?}");
    spec
}

fn real(path: std::path::PathBuf) -> Arc<Model> {
    common::load(&path, Numerics::BatchInvariant)
}

fn hot(seed: u64) -> SamplerParams {
    SamplerParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.1,
        seed,
        ..SamplerParams::default()
    }
}

fn check_real(path: std::path::PathBuf, text: &str) {
    let model = real(path);
    let prompt = model.tokenizer().encode(text, true, true).unwrap();
    let greedy = GenerateParams {
        max_tokens: 48,
        sampler: SamplerParams::greedy(),
        ..Default::default()
    };
    let s = same_as_plain(&model, &prompt, &greedy, Draft::lookup(8), 512);
    let d = s.completion.timings.draft;
    eprintln!("greedy: {d:?} {:?}", s.completion.text);
    // The model copies the passage: most drafts hold.
    assert!(d.accepted >= 16, "{d:?}");
    for seed in [1, 2] {
        let p = GenerateParams {
            sampler: hot(seed),
            ..greedy.clone()
        };
        let s = same_as_plain(&model, &prompt, &p, Draft::lookup(6), 512);
        eprintln!("seed {seed}: {:?}", s.completion.timings.draft);
    }
}

#[test]
fn lookup_decoding_is_plain_decoding_on_smollm2() {
    check_real(common::smollm2(), &smollm2_copy());
}

#[test]
fn lookup_decoding_is_plain_decoding_on_gemma3() {
    check_real(common::gemma3(), &gemma3_copy());
}

#[test]
fn every_draft_length_and_limit_on_a_synthetic_model() {
    for threads in [1, 2] {
        let model = common::tiny_model(GgmlType::Q4_0, threads, Numerics::BatchInvariant);
        // A repetitive prompt, so that n-grams recur and drafts are made.
        let prompt: Vec<u32> = [1, 40, 41, 42, 43, 40, 41, 42, 43, 40, 41]
            .into_iter()
            .collect();
        let mut accepted = 0;
        for max_draft in [1, 2, 3, 4, 5, 8, 16] {
            for (max_tokens, n_ctx) in [(40, 256), (7, 256), (1, 256), (40, 30), (40, 13)] {
                let params = GenerateParams {
                    max_tokens,
                    sampler: if max_draft % 2 == 0 {
                        SamplerParams::greedy()
                    } else {
                        SamplerParams {
                            temperature: 1.5,
                            ..hot(max_draft as u64)
                        }
                    },
                    ..Default::default()
                };
                for min_ngram in [1, 2] {
                    let draft = Draft::Lookup(Lookup {
                        max_draft,
                        min_ngram,
                        max_ngram: 3,
                    });
                    let s = same_as_plain(&model, &prompt, &params, draft, n_ctx);
                    accepted += s.completion.timings.draft.accepted;
                    assert!(s.completion.tokens.len() <= max_tokens);
                }
                // A draft model of the same shape and vocabulary, other
                // weights (seed 2): its drafts are mostly rejected.
                for threads_draft in [1, 2] {
                    let draft = Draft::Model(DraftModel {
                        model: synth_tiny(2, threads_draft),
                        max_draft,
                    });
                    let s = same_as_plain(&model, &prompt, &params, draft, n_ctx);
                    assert!(s.completion.tokens.len() <= max_tokens);
                }
            }
        }
        assert!(accepted > 0, "no draft was ever accepted");
    }
}

#[test]
fn stop_strings_end_a_speculative_generation_where_plain_decoding_ends() {
    let model = real(common::smollm2());
    let prompt = model
        .tokenizer()
        .encode(&smollm2_copy(), true, true)
        .unwrap();
    for stop in ["river", "coffee", "sheep"] {
        let params = GenerateParams {
            max_tokens: 64,
            sampler: SamplerParams::greedy(),
            stop: vec![stop.to_string()],
            ..Default::default()
        };
        let s = same_as_plain(&model, &prompt, &params, Draft::lookup(8), 512);
        eprintln!(
            "stop {stop:?}: {:?} {:?}",
            s.completion.stop_reason, s.completion.timings.draft
        );
    }
}

#[test]
fn a_next_turn_after_a_speculative_one_sees_plain_state() {
    let model = common::tiny_model(GgmlType::Q8_0, 2, Numerics::BatchInvariant);
    let turn = |draft: Draft| {
        let mut session =
            Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(256) }).unwrap();
        let params = GenerateParams {
            max_tokens: 20,
            sampler: SamplerParams::greedy(),
            draft,
            ..Default::default()
        };
        let prompt = [1, 40, 41, 42, 40, 41, 42, 40, 41];
        let a = session.generate_from_tokens(&prompt, &params).unwrap();
        // Dropped halfway: the drafts it fed must not stay in the session.
        let first: Vec<u32> = a.take(5).map(|e| e.unwrap().id).collect();
        let held = session.tokens().to_vec();
        let b = session
            .generate_from_tokens(&[42, 40], &params)
            .unwrap()
            .finish();
        (first, held, b.tokens, session.tokens().to_vec())
    };
    assert_eq!(turn(Draft::None), turn(Draft::lookup(4)));
}

/// The tiny synthetic Llama model of `common::tiny_model` (Q4_0), with
/// seed `seed`.
fn synth_tiny(seed: u64, threads: usize) -> Arc<Model> {
    let spec = SynthSpec {
        seed,
        ..SynthSpec::tiny(GgmlType::Q4_0)
    };
    from_bytes(synth_model(&spec, None).unwrap().to_bytes(), threads)
}

fn from_bytes(bytes: Vec<u8>, threads: usize) -> Arc<Model> {
    let file = Arc::new(GgufFile::from_bytes(bytes).unwrap());
    let opts = LoadOptions {
        n_threads: Some(threads),
        layers: None,
        numerics: Numerics::BatchInvariant,
    };
    Arc::new(Model::from_file(file, &opts).unwrap())
}

#[test]
fn draft_model_decoding_is_plain_decoding_on_smollm2() {
    let target = real(common::smollm2());
    // The same weights in llama.cpp's numerics, on one thread: a draft that
    // mostly agrees but is not the target's arithmetic.
    let draft_model = Arc::new(
        Model::load(
            common::smollm2(),
            &LoadOptions {
                n_threads: Some(1),
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let prompt = target
        .tokenizer()
        .encode(common::PROMPTS[1], true, true)
        .unwrap();
    for (sampler, max_draft) in [(SamplerParams::greedy(), 6), (hot(3), 4)] {
        let params = GenerateParams {
            max_tokens: 32,
            sampler,
            ..Default::default()
        };
        let draft = Draft::Model(DraftModel {
            model: Arc::clone(&draft_model),
            max_draft,
        });
        let s = same_as_plain(&target, &prompt, &params, draft, 512);
        let d = s.completion.timings.draft;
        eprintln!("draft model, max {max_draft}: {d:?}");
        // Greedy: the draft agrees almost always; sampled: where the draw
        // lands on the draft's greedy pick.
        let least = if max_draft == 6 { 16 } else { 1 };
        assert!(d.accepted >= least, "{d:?}");
    }
    // A random-weight model with SmolLM2's vocabulary: drafts are rejected,
    // the output is still plain decoding's.
    let file = GgufFile::open(common::smollm2()).unwrap();
    let spec = SynthSpec {
        n_layer: 1,
        ..SynthSpec::tiny(GgmlType::Q8_0)
    };
    let random = from_bytes(synth_model(&spec, Some(&file)).unwrap().to_bytes(), 1);
    let params = GenerateParams {
        max_tokens: 16,
        sampler: SamplerParams::greedy(),
        ..Default::default()
    };
    let draft = Draft::Model(DraftModel {
        model: random,
        max_draft: 4,
    });
    same_as_plain(&target, &prompt, &params, draft, 512);
}

#[test]
fn a_draft_model_with_another_vocabulary_or_without_a_head_is_refused() {
    let target = real(common::smollm2());
    let mut session =
        Session::new(Arc::clone(&target), &SessionOptions { n_ctx: Some(64) }).unwrap();
    let tiny = synth_tiny(1, 1);
    let bytes = synth_model(&SynthSpec::tiny(GgmlType::Q4_0), None)
        .unwrap()
        .to_bytes();
    let shard = Arc::new(
        Model::from_file(
            Arc::new(GgufFile::from_bytes(bytes).unwrap()),
            &LoadOptions {
                layers: Some(0..1),
                ..Default::default()
            },
        )
        .unwrap(),
    );
    for (model, max_draft) in [(tiny, 4), (Arc::clone(&shard), 4), (synth_tiny(1, 1), 0)] {
        let params = GenerateParams {
            draft: Draft::Model(DraftModel { model, max_draft }),
            ..Default::default()
        };
        let e = session.generate_from_tokens(&[1, 2, 3], &params).err();
        assert!(
            matches!(e, Some(strata::Error::InvalidParameter { .. })),
            "{e:?}"
        );
        assert_eq!(session.position(), 0);
    }
}

#[test]
fn impossible_draft_settings_are_refused() {
    let model = common::tiny_model(GgmlType::Q4_0, 1, Numerics::BatchInvariant);
    let mut session = Session::new(model, &SessionOptions { n_ctx: Some(64) }).unwrap();
    for draft in [
        Draft::lookup(0),
        Draft::lookup(65),
        Draft::Lookup(Lookup {
            max_draft: 4,
            min_ngram: 3,
            max_ngram: 2,
        }),
    ] {
        let params = GenerateParams {
            draft: draft.clone(),
            ..Default::default()
        };
        let e = session.generate_from_tokens(&[1, 2, 3], &params).err();
        assert!(
            matches!(e, Some(strata::Error::InvalidParameter { .. })),
            "{draft:?}: {e:?}"
        );
        assert_eq!(session.position(), 0);
    }
}
