//! Receipts: honest generations verify exactly in one batched pass (1 or 2
//! threads, prompt fed at once or token by token, any chunking, both real
//! models, every kernel level); altered receipts are rejected at the right
//! position with the right reason; malformed files are errors, never
//! panics; a shard's outputs are re-checked batched.

mod common;

use std::sync::Arc;

use strata::gguf::GgufFile;
use strata::kernels::Isa;
use strata::quant::GgmlType;
use strata::receipt::{
    self, check_shard, logits_digest, merkle, verify, DivergenceReason, FrameClaim, Inconsistency,
    Receipt, ReceiptBuilder, ShardCheck, Verification, VerifyOptions,
};
use strata::sampler::{Sampler, SamplerParams};
use strata::shard::{Digest, Frame, NodeLimits, ShardNode};
use strata::synth::{synth_model, SynthSpec};
use strata::{Error, GenerateParams, LoadOptions, Model, Numerics, Session, SessionOptions};

const BI: Numerics = Numerics::BatchInvariant;

/// The synthetic model's file bytes; `tamper` changes one weight.
fn tiny_bytes(tamper: bool) -> Vec<u8> {
    let w = synth_model(&SynthSpec::tiny(GgmlType::Q4_0), None).unwrap();
    let mut bytes = w.to_bytes();
    if tamper {
        let f = GgufFile::from_bytes(bytes.clone()).unwrap();
        let t = f.tensor("blk.0.ffn_down.weight").unwrap();
        // Byte 2 of a Q4_0 block is its first pair of 4-bit weights (bytes
        // 0-1 are the f16 scale): flip one weight.
        let at = (f.data_offset() + t.offset) as usize + 2;
        bytes[at] ^= 0x01;
    }
    bytes
}

fn tiny_with(tamper: bool, threads: usize, numerics: Numerics) -> Arc<Model> {
    let file = Arc::new(GgufFile::from_bytes(tiny_bytes(tamper)).unwrap());
    let opts = LoadOptions {
        n_threads: Some(threads),
        layers: None,
        numerics,
    };
    Arc::new(Model::from_file(file, &opts).unwrap())
}

fn tiny(threads: usize) -> Arc<Model> {
    tiny_with(false, threads, BI)
}

/// A sampler that makes every token depend on the seed and temperature
/// (the synthetic model's best logit leads by ~20, so it needs heat).
fn hot(seed: u64, temperature: f32) -> SamplerParams {
    SamplerParams {
        temperature,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.1,
        seed,
        ..SamplerParams::default()
    }
}

const PROMPT: &[u32] = &[1, 40, 41, 42, 43, 100, 101, 7, 9, 200, 33, 34];

fn params(sampler: SamplerParams, n: usize) -> GenerateParams {
    GenerateParams {
        max_tokens: n,
        sampler,
        ..GenerateParams::default()
    }
}

fn session(model: &Arc<Model>) -> Session {
    Session::new(Arc::clone(model), &SessionOptions { n_ctx: Some(256) }).unwrap()
}

fn generate(model: &Arc<Model>, sampler: SamplerParams, n: usize) -> Receipt {
    let (c, r) = session(model)
        .generate_tokens_with_receipt(PROMPT, &params(sampler, n), |_| true)
        .unwrap();
    assert_eq!(c.tokens, r.tokens);
    assert_eq!(r.prompt, PROMPT);
    r
}

fn check(model: &Model, r: &Receipt) -> Verification {
    verify(model, r, &VerifyOptions::default()).unwrap()
}

fn assert_holds(v: &Verification, r: &Receipt) {
    match v {
        Verification::Holds(h) => {
            assert_eq!(h.tokens, r.tokens.len());
            assert_eq!(h.fingerprint, r.fingerprint());
        }
        other => panic!("expected the receipt to hold, got {other:?}"),
    }
}

/// The divergence `v` reports: (index, position, reason).
fn divergence(v: Verification) -> (usize, usize, DivergenceReason) {
    match v {
        Verification::Differs(d) => (d.index, d.position, d.reason),
        other => panic!("expected a divergence, got {other:?}"),
    }
}

/// Re-encode after an edit, as a forger would (root and fingerprint fixed up).
fn reencoded(r: &Receipt) -> Receipt {
    Receipt::from_bytes(&r.to_bytes()).unwrap()
}

#[test]
fn honest_receipts_verify_with_1_and_2_threads() {
    let one = tiny(1);
    let two = tiny(2);
    let r1 = generate(&one, hot(7, 6.0), 24);
    let r2 = generate(&two, hot(7, 6.0), 24);
    // The synthetic model's logits are steep: at this temperature the
    // draws vary, so the seed and temperature matter to every token.
    let mut distinct = r1.tokens.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > 8, "{:?}", r1.tokens);
    assert_eq!(
        r1.to_bytes(),
        r2.to_bytes(),
        "1 and 2 threads give other receipts"
    );
    for m in [&one, &two] {
        assert_holds(&check(m, &r1), &r1);
    }
    // Any chunking of the batched pass gives the same verdict.
    for max_chunk in [1, 3, 7, 512] {
        let v = verify(
            &two,
            &r1,
            &VerifyOptions {
                max_chunk,
                ..VerifyOptions::default()
            },
        )
        .unwrap();
        assert_holds(&v, &r1);
    }
    // Greedy receipts too.
    let g = generate(&one, SamplerParams::greedy(), 16);
    assert_holds(&check(&two, &g), &g);
}

#[test]
fn a_receipt_built_token_by_token_equals_the_batched_one() {
    let model = tiny(2);
    let batched = generate(&model, hot(3, 6.0), 20);
    // The prompt fed one token at a time, every draw by hand.
    let mut s = session(&model);
    let sp = hot(3, 6.0);
    let mut b = ReceiptBuilder::new(&model, PROMPT, &sp).unwrap();
    let mut logits = Vec::new();
    for &t in PROMPT {
        logits = s.feed(&[t]).unwrap();
    }
    let mut sampler = Sampler::new(sp).unwrap();
    for i in 0..batched.tokens.len() {
        let t = sampler.sample(&logits);
        sampler.accept(t);
        b.push(&logits, t);
        if i + 1 < batched.tokens.len() {
            logits = s.feed(&[t]).unwrap();
        }
    }
    let by_token = b.finish();
    assert_eq!(by_token, batched);
    assert_holds(&check(&model, &by_token), &by_token);
}

#[test]
fn a_receipt_covers_what_the_session_held_before() {
    let model = tiny(1);
    let whole = generate(&model, hot(11, 6.0), 12);
    let mut s = session(&model);
    s.feed(&PROMPT[..5]).unwrap();
    let (_, r) = s
        .generate_tokens_with_receipt(&PROMPT[5..], &params(hot(11, 6.0), 12), |_| true)
        .unwrap();
    assert_eq!(r, whole);
}

#[test]
fn a_changed_generated_token_is_found_at_its_index() {
    let model = tiny(2);
    let honest = generate(&model, hot(7, 6.0), 24);
    let j = 5;
    let mut r = honest.clone();
    r.tokens[j] = (r.tokens[j] + 1) % 320;
    let (index, position, reason) = divergence(check(&model, &reencoded(&r)));
    assert_eq!((index, position), (j, PROMPT.len() - 1 + j));
    assert_eq!(
        reason,
        DivergenceReason::Token {
            recorded: r.tokens[j],
            replayed: honest.tokens[j]
        }
    );
}

#[test]
fn a_changed_prompt_token_changes_the_first_commitment() {
    let model = tiny(2);
    let mut r = generate(&model, hot(7, 6.0), 16);
    r.prompt[3] = 250;
    let (index, position, reason) = divergence(check(&model, &reencoded(&r)));
    assert_eq!((index, position), (0, PROMPT.len() - 1));
    assert!(
        matches!(reason, DivergenceReason::Commitment { .. }),
        "{reason:?}"
    );
}

/// Where two token lists first differ.
fn first_difference(a: &[u32], b: &[u32]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .expect("the lists differ")
}

#[test]
fn another_seed_or_temperature_is_found_where_the_draws_part() {
    let model = tiny(2);
    let honest = generate(&model, hot(7, 6.0), 24);
    for claimed in [hot(8, 6.0), hot(7, 4.0)] {
        // What the claimed settings really give: the replay must stop where
        // it first parts from the honest tokens, naming its own token.
        let real = generate(&model, claimed.clone(), 24);
        let d = first_difference(&honest.tokens, &real.tokens);
        let mut r = honest.clone();
        r.sampler = claimed.clone();
        let (index, position, reason) = divergence(check(&model, &reencoded(&r)));
        assert_eq!((index, position), (d, PROMPT.len() - 1 + d), "{claimed:?}");
        assert_eq!(
            reason,
            DivergenceReason::Token {
                recorded: honest.tokens[d],
                replayed: real.tokens[d]
            },
            "{claimed:?}"
        );
    }
}

#[test]
fn a_flipped_commitment_bit_is_found_and_a_flipped_file_bit_is_malformed() {
    let model = tiny(1);
    let honest = generate(&model, hot(5, 6.0), 16);
    let mut r = honest.clone();
    r.commitments[3].0[7] ^= 0x10;
    let (index, _, reason) = divergence(check(&model, &reencoded(&r)));
    assert_eq!(index, 3);
    assert_eq!(
        reason,
        DivergenceReason::Commitment {
            recorded: r.commitments[3],
            recomputed: honest.commitments[3]
        }
    );
    // In the file, without fixing the root up, every single bit flip is
    // refused before any model runs.
    let bytes = honest.to_bytes();
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[byte] ^= 1 << bit;
            match Receipt::from_bytes(&b) {
                Err(Error::ReceiptMalformed { .. }) => {}
                other => panic!("bit {bit} of byte {byte}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_receipt_of_another_model_is_refused() {
    let model = tiny(2);
    let other = tiny_with(true, 2, BI);
    assert_ne!(model.digest(), other.digest());
    let r = generate(&other, hot(7, 6.0), 16);
    assert_holds(&check(&other, &r), &r);
    assert_eq!(
        check(&model, &r),
        Verification::Inconsistent(Inconsistency::ModelDigest {
            receipt: other.digest(),
            model: model.digest()
        })
    );
    // Claiming this model's digest does not help: the logits differ.
    let mut forged = r.clone();
    forged.model = model.digest();
    let (index, _, reason) = divergence(check(&model, &reencoded(&forged)));
    assert_eq!(index, 0);
    assert!(matches!(reason, DivergenceReason::Commitment { .. }));
}

#[test]
fn inconsistent_receipts_and_modes_are_refused() {
    let model = tiny(1);
    let honest = generate(&model, hot(7, 6.0), 8);
    let mut r = honest.clone();
    r.numerics_version = receipt::NUMERICS_VERSION + 1;
    assert!(matches!(
        check(&model, &reencoded(&r)),
        Verification::Inconsistent(Inconsistency::NumericsVersion { .. })
    ));
    let mut r = honest.clone();
    r.tokenizer.0[0] ^= 1;
    assert!(matches!(
        check(&model, &reencoded(&r)),
        Verification::Inconsistent(Inconsistency::TokenizerDigest { .. })
    ));
    let mut r = honest.clone();
    r.tokens[2] = 320;
    assert_eq!(
        check(&model, &reencoded(&r)),
        Verification::Inconsistent(Inconsistency::TokenOutOfRange {
            index: PROMPT.len() + 2,
            id: 320,
            n_vocab: 320
        })
    );
    let mut r = honest.clone();
    r.sampler.top_p = 2.0;
    assert!(matches!(
        check(&model, &reencoded(&r)),
        Verification::Inconsistent(Inconsistency::Sampler(_))
    ));
    let v = verify(
        &model,
        &honest,
        &VerifyOptions {
            max_positions: 4,
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(
        v,
        Verification::Inconsistent(Inconsistency::TooManyPositions { .. })
    ));
    // llama.cpp's numerics: neither made nor checked.
    let llama = tiny_with(false, 1, Numerics::LlamaCpp);
    let e = session(&llama)
        .generate_tokens_with_receipt(PROMPT, &params(hot(7, 6.0), 4), |_| true)
        .unwrap_err();
    assert!(matches!(e, Error::NeedsBatchInvariant { .. }), "{e}");
    let e = verify(&llama, &honest, &VerifyOptions::default()).unwrap_err();
    assert!(matches!(e, Error::NeedsBatchInvariant { .. }), "{e}");
}

#[test]
fn json_round_trips_and_verifies() {
    let model = tiny(1);
    let mut r = generate(&model, hot(9, 6.0), 10);
    let text = r.to_json();
    assert_eq!(Receipt::from_json(&text).unwrap(), r);
    assert_eq!(Receipt::parse(text.as_bytes()).unwrap(), r);
    assert_eq!(Receipt::parse(&r.to_bytes()).unwrap(), r);
    assert_holds(
        &receipt::verify_bytes(&model, text.as_bytes(), &VerifyOptions::default()).unwrap(),
        &r,
    );
    // A chat template's identity round-trips in both forms.
    r.chat_template = Some(receipt::chat_template_digest("{{ messages }}"));
    assert_eq!(Receipt::from_json(&r.to_json()).unwrap(), r);
    assert_eq!(Receipt::from_bytes(&r.to_bytes()).unwrap(), r);
    // Changing a field without fixing the fingerprint is refused.
    let seed = format!("\"seed\":{}", r.sampler.seed);
    let edited = r.to_json().replace(&seed, "\"seed\":1234");
    assert_ne!(edited, r.to_json());
    assert!(matches!(
        Receipt::from_json(&edited),
        Err(Error::ReceiptMalformed {
            field: "fingerprint",
            ..
        })
    ));
}

#[test]
fn merkle_proofs_lead_to_the_root() {
    let model = tiny(1);
    let r = generate(&model, hot(2, 6.0), 13);
    let leaves = r.leaves();
    let root = r.root();
    for (i, l) in leaves.iter().enumerate() {
        assert_eq!(
            *l,
            merkle::leaf(r.logits_position(i) as u64, r.tokens[i], &r.commitments[i])
        );
        let p = merkle::proof(&leaves, i).unwrap();
        assert!(merkle::check_proof(l, i, leaves.len(), &p, &root));
    }
}

#[test]
fn malformed_receipts_are_errors_never_panics() {
    let model = tiny(1);
    let r = generate(&model, hot(7, 6.0), 6);
    let bytes = r.to_bytes();
    let malformed = |b: &[u8]| match Receipt::parse(b) {
        Err(Error::ReceiptMalformed { field, .. }) => field,
        other => panic!("{} bytes: {other:?}", b.len()),
    };
    // Truncated anywhere.
    for n in 0..bytes.len() {
        malformed(&bytes[..n]);
    }
    // One byte too many.
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(malformed(&long), "length");
    // Wrong magic, version, flags, commitment kind.
    for (at, field) in [
        (0, "magic"),
        (4, "version"),
        (6, "flags"),
        (12, "commitment kind"),
    ] {
        let mut b = bytes.clone();
        b[at] ^= 0x40;
        assert_eq!(malformed(&b), field, "byte {at}");
    }
    // Huge counts: refused from the header, before any allocation.
    for at in [152, 156] {
        let mut b = bytes.clone();
        b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(malformed(&b), "token counts");
        b[at..at + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert_eq!(malformed(&b), "length");
    }
    let mut b = bytes.clone();
    b[152..156].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(malformed(&b), "prompt count");
    // Garbage of many lengths, and garbage after a valid header.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for n in [0, 1, 3, 4, 100, 159, 160, 161, 1000, 5000] {
        let g: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        malformed(&g);
        let mut h = bytes[..160].to_vec();
        h.extend_from_slice(&g);
        malformed(&h);
    }
    // JSON: truncated anywhere, values of the wrong kind, extra keys,
    // deep nesting.
    let text = r.to_json();
    for n in 1..text.len() {
        malformed(&text.as_bytes()[..n]);
    }
    for bad in [
        "{}",
        "{\"format\":1}",
        "[1,2,3]",
        "{\"format\":\"strata-receipt\",\"format\":\"x\"}",
        "{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
        "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        "{\"format\":\"\\ud800\"}",
    ] {
        malformed(bad.as_bytes());
    }
    let extra = text.replacen('{', "{\"extra\":0,", 1);
    malformed(extra.as_bytes());
    let wrong = text.replacen("\"tokens\":[", "\"tokens\":[\"x\",", 1);
    malformed(wrong.as_bytes());
    assert!(verify(&model, &r, &VerifyOptions::default())
        .unwrap()
        .holds());
}

/// A receipt's logits pinned to the digest recorded for this numerics
/// version: a change of any summation order must fail here, and then
/// `NUMERICS_VERSION` is bumped and this digest updated together.
#[test]
fn numerics_version_pins_the_bits() {
    let model = tiny(2);
    let r = generate(&model, SamplerParams::greedy(), 8);
    let pins: &[(u32, &str)] = &[(
        1,
        "aa822adcbb9bfc60686259a859b20192d74d786afb5615d1f0a2dbb73aaebde4",
    )];
    let want = pins
        .iter()
        .find(|(v, _)| *v == receipt::NUMERICS_VERSION)
        .map(|(_, d)| *d)
        .expect("a digest recorded for this NUMERICS_VERSION");
    assert_eq!(
        r.root().to_hex(),
        want,
        "the logits changed: bump NUMERICS_VERSION and record the new digest"
    );
}

/// The real models: a receipt made decoding token by token is verified by
/// the batched pass, and a changed token is found.
#[test]
fn real_models_verify_their_receipts() {
    for path in [common::smollm2(), common::gemma3()] {
        let model = Arc::new(
            Model::load(
                &path,
                &LoadOptions {
                    n_threads: Some(2),
                    layers: None,
                    numerics: BI,
                },
            )
            .unwrap(),
        );
        let mut s = session(&model);
        let p = GenerateParams {
            max_tokens: 24,
            sampler: SamplerParams {
                seed: 5,
                ..SamplerParams::default()
            },
            ..GenerateParams::default()
        };
        let (c, r) = s
            .generate_with_receipt("The capital of France is", &p, |_| true)
            .unwrap();
        assert_eq!(c.tokens, r.tokens);
        assert_holds(&check(&model, &r), &r);
        let mut bad = r.clone();
        let j = r.tokens.len() / 2;
        bad.tokens[j] = (bad.tokens[j] + 1) % model.config().n_vocab as u32;
        let (index, _, reason) = divergence(check(&model, &reencoded(&bad)));
        assert_eq!(index, j, "{}", path.display());
        assert!(matches!(reason, DivergenceReason::Token { .. }));
        eprintln!(
            "{}: {} tokens verified, fingerprint {}",
            path.display(),
            r.tokens.len(),
            r.fingerprint()
        );
    }
}

/// A node's outputs, recomputed batched on a fresh node, match its
/// claimed digests; a wrong digest is found at its index, a frame of
/// another model is refused.
#[test]
fn shard_outputs_are_checked_batched() {
    let file = Arc::new(GgufFile::from_bytes(tiny_bytes(false)).unwrap());
    let half = |layers| {
        Arc::new(
            Model::from_file(
                Arc::clone(&file),
                &LoadOptions {
                    n_threads: Some(2),
                    layers: Some(layers),
                    numerics: BI,
                },
            )
            .unwrap(),
        )
    };
    let (first, second) = (half(0..1), half(1..2));
    let digest = first.digest();
    // The "remote" nodes: two sessions interleaved, a prompt chunk then
    // single tokens, through both halves.
    let node_a = ShardNode::new(Arc::clone(&first), NodeLimits::default()).unwrap();
    let node_b = ShardNode::new(Arc::clone(&second), NodeLimits::default()).unwrap();
    let mut claims_a = Vec::new();
    let mut claims_b = Vec::new();
    let inputs: Vec<(u64, u64, Vec<u32>)> = vec![
        (1, 0, PROMPT.to_vec()),
        (2, 0, PROMPT[..5].to_vec()),
        (1, PROMPT.len() as u64, vec![17]),
        (2, 5, vec![3, 4, 5]),
        (1, PROMPT.len() as u64 + 1, vec![18]),
    ];
    for (session, pos, ids) in &inputs {
        let f = Frame::tokens(digest, *session, *pos, ids);
        let out = node_a.forward(&f).unwrap();
        claims_a.push(FrameClaim {
            input: f,
            output_digest: out.digest,
        });
        let out_b = node_b.forward(&out.frame).unwrap();
        claims_b.push(FrameClaim {
            input: out.frame,
            output_digest: out_b.digest,
        });
    }
    assert_eq!(
        check_shard(Arc::clone(&first), &claims_a, 256).unwrap(),
        ShardCheck::Holds { frames: 5 }
    );
    assert_eq!(
        check_shard(Arc::clone(&second), &claims_b, 256).unwrap(),
        ShardCheck::Holds { frames: 5 }
    );
    // The last shard's digest is the receipt's commitment of those logits.
    let mut wrong = claims_b.clone();
    wrong[3].output_digest.0[0] ^= 1;
    wrong[4].output_digest.0[0] ^= 1;
    match check_shard(Arc::clone(&second), &wrong, 256).unwrap() {
        ShardCheck::Differs {
            index,
            session,
            position,
            recomputed,
            ..
        } => {
            assert_eq!((index, session, position), (3, 2, 5));
            assert_eq!(recomputed, claims_b[3].output_digest);
        }
        other => panic!("{other:?}"),
    }
    let mut foreign = claims_a.clone();
    foreign[2].input = Frame::tokens(Digest([0; 32]), 1, PROMPT.len() as u64, &[17]);
    assert!(matches!(
        check_shard(Arc::clone(&first), &foreign, 256).unwrap(),
        ShardCheck::Refused { index: 2, .. }
    ));
    // Commitments and logits frames agree on the digest.
    let mut s = session(&tiny(1));
    let l = s.feed(PROMPT).unwrap();
    let whole = ShardNode::new(tiny(1), NodeLimits::default()).unwrap();
    let f = Frame::tokens(whole.digest(), 9, 0, PROMPT);
    assert_eq!(whole.forward(&f).unwrap().digest, logits_digest(&l));
}

/// Set in a child run: print this level's receipt fingerprints.
const LEVEL_CHILD: &str = "STRATA_TEST_RECEIPT_LEVEL_CHILD";

/// One line per model: the fingerprint of a seeded receipt made at this
/// process's kernel level.
fn receipt_fingerprints() -> String {
    let mut out = String::new();
    for path in [common::smollm2(), common::gemma3()] {
        let model = Arc::new(
            Model::load(
                &path,
                &LoadOptions {
                    n_threads: Some(2),
                    layers: None,
                    numerics: BI,
                },
            )
            .unwrap(),
        );
        let p = GenerateParams {
            max_tokens: 12,
            sampler: SamplerParams {
                seed: 21,
                ..SamplerParams::default()
            },
            ..GenerateParams::default()
        };
        let (_, r) = session(&model)
            .generate_with_receipt("Water boils at 100 degrees Celsius because", &p, |_| true)
            .unwrap();
        assert!(check(&model, &r).holds());
        out.push_str(&format!("{} {}\n", path.display(), r.fingerprint()));
    }
    let t = generate(&tiny(2), hot(4, 6.0), 12);
    out.push_str(&format!("tiny {}\n", t.fingerprint()));
    out
}

/// Receipts are identical under the scalar reference and every kernel
/// level this machine has (each level in a child process of its own: the
/// level is read once per process).
#[test]
fn receipts_are_identical_at_every_kernel_level() {
    if std::env::var_os(LEVEL_CHILD).is_some() {
        println!();
        for line in receipt_fingerprints().lines() {
            println!("RECEIPT {line}");
        }
        return;
    }
    let child = |vars: &[(&str, &str)]| -> String {
        let stdout = common::rerun_test(
            "receipts_are_identical_at_every_kernel_level",
            LEVEL_CHILD,
            vars,
        );
        let lines: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("RECEIPT "))
            .collect();
        assert_eq!(lines.len(), 3, "{vars:?}: {stdout}");
        lines.join("\n")
    };
    let scalar = child(&[("STRATA_FORCE_SCALAR", "1")]);
    eprintln!("scalar reference:\n{scalar}");
    let mut checked = vec!["STRATA_FORCE_SCALAR=1".to_string()];
    for isa in Isa::ALL.iter().filter(|i| i.is_available()) {
        let got = child(&[("STRATA_ISA", isa.name())]);
        assert_eq!(
            got,
            scalar,
            "STRATA_ISA={} gives other receipts",
            isa.name()
        );
        checked.push(format!("STRATA_ISA={}", isa.name()));
    }
    assert_eq!(child(&[]), scalar, "the default level gives other receipts");
    eprintln!("identical receipts under {}, default", checked.join(", "));
}
