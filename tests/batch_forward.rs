//! `Model::forward_batch`: several sequences in one pass. In the
//! batch-invariant mode a sequence's logits are bit-identical whether it
//! runs alone or batched with any others, in any order, batch size,
//! chunking and thread count; in llama.cpp's mode a batch of one equals
//! `forward`.

mod common;

use std::sync::Arc;

use strata::kv_cache::KvCache;
use strata::{BatchItem, Error, Input, LoadOptions, Logits, Model, Numerics, Output};

fn load(path: &std::path::Path, threads: usize, numerics: Numerics) -> Arc<Model> {
    Arc::new(
        Model::load(
            path,
            &LoadOptions {
                n_threads: Some(threads),
                numerics,
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

/// A small deterministic generator (xorshift), for batch compositions.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Per sequence, the logits of every position, computed alone: the whole
/// sequence in one forward call.
fn alone(model: &Model, seqs: &[Vec<u32>]) -> Vec<Vec<f32>> {
    seqs.iter()
        .map(|s| {
            let mut c = model.new_cache(256);
            match model
                .forward(&mut c, Input::Tokens(s), 0, Logits::All)
                .unwrap()
            {
                Output::Logits(l) => l,
                Output::Hidden(_) => unreachable!(),
            }
        })
        .collect()
}

/// The sequences evaluated in random batches: each step picks a random
/// subset of the unfinished sequences, in random order, each with a
/// random chunk of its next tokens. Returns every position's logits.
fn batched(model: &Model, seqs: &[Vec<u32>], rng: &mut Rng) -> Vec<Vec<f32>> {
    let n_vocab = model.config().n_vocab;
    let mut caches: Vec<KvCache> = seqs.iter().map(|_| model.new_cache(256)).collect();
    let mut got: Vec<Vec<f32>> = seqs.iter().map(|_| Vec::new()).collect();
    let mut done = vec![0usize; seqs.len()];
    while done.iter().zip(seqs).any(|(d, s)| *d < s.len()) {
        let mut pick: Vec<usize> = (0..seqs.len())
            .filter(|&i| done[i] < seqs[i].len())
            .collect();
        // A random order, and a random subset (at least one).
        for i in (1..pick.len()).rev() {
            pick.swap(i, rng.below(i + 1));
        }
        pick.truncate(1 + rng.below(pick.len()));
        let chunks: Vec<usize> = pick
            .iter()
            .map(|&i| {
                let left = seqs[i].len() - done[i];
                // Often a single token (a decode step), sometimes a chunk.
                if rng.below(3) == 0 {
                    1 + rng.below(left)
                } else {
                    1
                }
            })
            .collect();
        let mut refs: Vec<Option<&mut KvCache>> = caches.iter_mut().map(Some).collect();
        let mut items: Vec<BatchItem> = pick
            .iter()
            .zip(&chunks)
            .map(|(&i, &n)| {
                let cache = refs[i].take().unwrap();
                let pos = cache.len();
                BatchItem {
                    cache,
                    input: Input::Tokens(&seqs[i][done[i]..done[i] + n]),
                    pos,
                    logits: Logits::All,
                }
            })
            .collect();
        let out = model.forward_batch(&mut items).unwrap();
        for ((&i, &n), o) in pick.iter().zip(&chunks).zip(out) {
            let Output::Logits(l) = o else { unreachable!() };
            assert_eq!(l.len(), n * n_vocab);
            got[i].extend_from_slice(&l);
            done[i] += n;
        }
    }
    got
}

fn prompts(model: &Model) -> Vec<Vec<u32>> {
    let texts = [
        "The capital of France is",
        "Once upon a time, in a land far away, there lived a dragon who",
        "def fibonacci(n):",
        "Water boils at",
        "1, 2, 3, 4, 5,",
        "A node is paid for tokens served per second per machine, and it serves many users",
    ];
    texts
        .iter()
        .map(|t| model.tokenizer().encode(t, true, false).unwrap())
        .collect()
}

fn check_model(path: &std::path::Path) {
    let reference = load(path, 2, Numerics::BatchInvariant);
    let seqs = prompts(&reference);
    let want = alone(&reference, &seqs);
    for (threads, seed) in [(1, 1u64), (2, 7), (3, 99), (2, 1234)] {
        let model = load(path, threads, Numerics::BatchInvariant);
        let got = batched(&model, &seqs, &mut Rng(seed));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                common::bit_differences(g, w),
                0,
                "{}: sequence {i}, {threads} threads, composition seed {seed}: \
                 batched logits differ from the sequence alone",
                path.display()
            );
        }
    }
}

#[test]
fn smollm2_batched_sequences_equal_each_alone_bit_for_bit() {
    check_model(&common::smollm2());
}

#[test]
fn gemma3_batched_sequences_equal_each_alone_bit_for_bit() {
    check_model(&common::gemma3());
}

#[test]
fn a_batch_of_one_is_forward_in_both_modes() {
    for numerics in [Numerics::LlamaCpp, Numerics::BatchInvariant] {
        let model = load(&common::smollm2(), 2, numerics);
        let seq = &prompts(&model)[1];
        let mut a = model.new_cache(64);
        let want = model
            .forward(&mut a, Input::Tokens(seq), 0, Logits::All)
            .unwrap();
        let mut b = model.new_cache(64);
        let got = model
            .forward_batch(&mut [BatchItem {
                cache: &mut b,
                input: Input::Tokens(seq),
                pos: 0,
                logits: Logits::All,
            }])
            .unwrap();
        assert_eq!(got, vec![want]);
        assert_eq!(a.keys(3), b.keys(3));
    }
}

#[test]
fn a_bad_item_is_named_and_no_cache_changes() {
    let model = load(&common::smollm2(), 2, Numerics::BatchInvariant);
    let seqs = prompts(&model);
    let mut a = model.new_cache(64);
    let mut b = model.new_cache(4);
    model
        .forward(&mut a, Input::Tokens(&seqs[0]), 0, Logits::Last)
        .unwrap();
    let held = a.len();
    let keys = a.keys(0).to_vec();
    let err = model
        .forward_batch(&mut [
            BatchItem {
                cache: &mut a,
                input: Input::Tokens(&[42]),
                pos: held,
                logits: Logits::Last,
            },
            BatchItem {
                cache: &mut b,
                input: Input::Tokens(&seqs[1]),
                pos: 0,
                logits: Logits::Last,
            },
        ])
        .unwrap_err();
    match err {
        Error::BatchItem { index: 1, source } => {
            assert!(
                matches!(*source, Error::ContextFull { limit: 4, .. }),
                "{source}"
            )
        }
        e => panic!("expected item 1's context error, got {e}"),
    }
    assert_eq!(a.len(), held);
    assert_eq!(a.keys(0), &keys[..]);
    let err = model
        .forward_batch(&mut [BatchItem {
            cache: &mut b,
            input: Input::Tokens(&[u32::MAX]),
            pos: 0,
            logits: Logits::Last,
        }])
        .unwrap_err();
    assert!(matches!(err, Error::TokenOutOfRange { .. }), "{err}");
    // A cache made for another model is refused, not indexed out of bounds.
    let gemma = load(&common::gemma3(), 1, Numerics::BatchInvariant);
    let mut foreign = gemma.new_cache(16);
    let err = model
        .forward(&mut foreign, Input::Tokens(&[1, 2]), 0, Logits::Last)
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidParameter { name: "cache", .. }),
        "{err}"
    );
}

#[test]
fn logits_none_skips_the_head_and_changes_nothing_else() {
    let model = load(&common::smollm2(), 2, Numerics::BatchInvariant);
    let seq = &prompts(&model)[1];
    let (head, rest) = seq.split_at(5);
    let mut a = model.new_cache(64);
    let out = model
        .forward(&mut a, Input::Tokens(head), 0, Logits::None)
        .unwrap();
    assert_eq!(out, Output::Logits(Vec::new()));
    let l1 = model
        .forward(&mut a, Input::Tokens(rest), head.len(), Logits::Last)
        .unwrap();
    let mut b = model.new_cache(64);
    let l2 = model
        .forward(&mut b, Input::Tokens(seq), 0, Logits::Last)
        .unwrap();
    let (Output::Logits(x), Output::Logits(y)) = (l1, l2) else {
        unreachable!()
    };
    assert_eq!(common::bit_differences(&x, &y), 0);
}
