//! Shard execution on SmolLM2-135M: three shards (ranges of the full file,
//! and shard files written by `split`) give the same greedy tokens and
//! bit-identical final logits as the whole model; outputs are identical for
//! 1 and 2 threads and for any split of the prompt into forward calls.

mod common;

use std::ops::Range;
use std::sync::Arc;

use strata::shard::{self, Digest, Frame, NodeLimits, ShardNode};
use strata::{LoadOptions, Model, Numerics, Session, SessionOptions};

fn node(path: &std::path::Path, layers: Option<Range<usize>>, threads: usize) -> ShardNode {
    let m = Model::load(
        path,
        &LoadOptions {
            n_threads: Some(threads),
            layers,
            numerics: Numerics::BatchInvariant,
        },
    )
    .unwrap();
    ShardNode::new(
        Arc::new(m),
        NodeLimits {
            max_sessions: 4,
            n_ctx: 256,
        },
    )
    .unwrap()
}

/// Run `input` through every node; returns each hop's output frame.
fn through(nodes: &[ShardNode], input: Frame) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut f = input;
    for n in nodes {
        // Frames travel encoded, as they would on the wire.
        let wire = f.encode();
        f = n.forward(&Frame::decode(&wire).unwrap()).unwrap().frame;
        out.push(f.clone());
    }
    out
}

/// Greedy generation through a pipeline: tokens and the last logits.
fn pipeline_greedy(
    nodes: &[ShardNode],
    digest: Digest,
    prompt: &[u32],
    n: usize,
) -> (Vec<u32>, Vec<f32>) {
    let mut frame = Frame::tokens(digest, 1, 0, prompt);
    let mut pos = prompt.len() as u64;
    let mut tokens = Vec::new();
    loop {
        let logits = through(nodes, frame).pop().unwrap().values().unwrap();
        let t = strata::sampler::argmax(&logits);
        tokens.push(t);
        if tokens.len() == n {
            return (tokens, logits);
        }
        frame = Frame::tokens(digest, 1, pos, &[t]);
        pos += 1;
    }
}

/// The whole model in one process, in the nodes' numerics mode
/// (`BatchInvariant`), so that pipeline and whole model are compared within
/// one mode.
fn whole_greedy(path: &std::path::Path, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let m = Arc::new(
        Model::load(
            path,
            &LoadOptions {
                n_threads: Some(2),
                layers: None,
                numerics: Numerics::BatchInvariant,
            },
        )
        .unwrap(),
    );
    let mut s = Session::new(m, &SessionOptions { n_ctx: Some(256) }).unwrap();
    let mut logits = s.feed(prompt).unwrap();
    let mut tokens = Vec::new();
    loop {
        let t = strata::sampler::argmax(&logits);
        tokens.push(t);
        if tokens.len() == n {
            return (tokens, logits);
        }
        logits = s.feed(&[t]).unwrap();
    }
}

fn prompt(path: &std::path::Path) -> Vec<u32> {
    let m = Model::load(
        path,
        &LoadOptions {
            n_threads: Some(1),
            layers: Some(0..1),
            ..Default::default()
        },
    )
    .unwrap();
    m.tokenizer()
        .encode("The history of the printing press begins", true, true)
        .unwrap()
}

#[test]
fn three_shards_from_ranges_and_from_files_match_the_whole_model() {
    let path = common::smollm2();
    let p = prompt(&path);
    let (want_tokens, want_logits) = whole_greedy(&path, &p, 16);

    let ranged: Vec<ShardNode> = [0..10, 10..20, 20..30]
        .into_iter()
        .map(|r| node(&path, Some(r), 2))
        .collect();
    let digest = ranged[0].digest();
    assert!(ranged.iter().all(|n| n.digest() == digest));
    let (tokens, logits) = pipeline_greedy(&ranged, digest, &p, 16);
    assert_eq!(tokens, want_tokens);
    assert!(
        logits
            .iter()
            .zip(&want_logits)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "final logits differ"
    );

    let dir = std::env::temp_dir().join(format!("strata-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = strata::gguf::GgufFile::open(&path).unwrap();
    let files = shard::split(&file, &shard::even_ranges(30, 3).unwrap(), &dir, "smollm2").unwrap();
    let from_files: Vec<ShardNode> = files.iter().map(|f| node(f, None, 2)).collect();
    for (f, n) in files.iter().zip(&from_files) {
        assert_eq!(n.digest(), digest, "shard files carry the parent digest");
        let sf = strata::gguf::GgufFile::open(f).unwrap();
        strata::shard::ShardInfo::from_gguf(&sf)
            .unwrap()
            .unwrap()
            .verify_tensors(&sf)
            .unwrap();
        let (part, whole) = (
            std::fs::metadata(f).unwrap().len(),
            std::fs::metadata(&path).unwrap().len(),
        );
        eprintln!("{}: {part} bytes of the whole model's {whole}", f.display());
        assert!(part < whole * 3 / 5);
    }
    let (tokens, logits) = pipeline_greedy(&from_files, digest, &p, 16);
    assert_eq!(tokens, want_tokens);
    assert!(logits
        .iter()
        .zip(&want_logits)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    // A range outside a shard file is refused.
    assert!(Model::load(
        &files[1],
        &LoadOptions {
            n_threads: Some(1),
            layers: Some(0..10),
            ..Default::default()
        }
    )
    .is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Concatenated payloads of each hop's outputs, for a prompt fed in chunks.
fn hop_bytes(
    nodes: &[ShardNode],
    digest: Digest,
    session: u64,
    prompt: &[u32],
    chunk: usize,
) -> Vec<Vec<u8>> {
    let mut hops = vec![Vec::new(); nodes.len()];
    for (i, c) in prompt.chunks(chunk).enumerate() {
        let frames = through(nodes, Frame::tokens(digest, session, (i * chunk) as u64, c));
        for (h, f) in hops.iter_mut().zip(frames) {
            if f.kind == strata::shard::FrameKind::Logits {
                h.clear(); // only the last token's logits are compared
            }
            h.extend_from_slice(&f.payload);
        }
    }
    hops
}

#[test]
fn outputs_are_identical_across_threads_and_prompt_splits() {
    let path = common::smollm2();
    let p: Vec<u32> = {
        let m = Model::load(
            &path,
            &LoadOptions {
                n_threads: Some(1),
                layers: Some(0..1),
                ..Default::default()
            },
        )
        .unwrap();
        m.tokenizer()
            .encode("Determinism lets redundant nodes verify each other by comparing digests of their outputs.", true, true)
            .unwrap()
    };
    let build = |threads| -> Vec<ShardNode> {
        [0..15, 15..30]
            .into_iter()
            .map(|r| node(&path, Some(r), threads))
            .collect()
    };
    let (one, two) = (build(1), build(2));
    let digest = one[0].digest();
    let reference = hop_bytes(&two, digest, 1, &p, p.len());
    let digests = |h: &Vec<Vec<u8>>| h.iter().map(|b| Digest::of(b)).collect::<Vec<_>>();
    for (name, nodes, chunk) in [
        ("1 thread", &one, p.len()),
        ("token by token", &two, 1),
        ("chunks of 7", &two, 7),
    ] {
        let got = hop_bytes(nodes, digest, 100 + chunk as u64, &p, chunk);
        assert_eq!(digests(&got), digests(&reference), "{name}");
    }
    eprintln!(
        "{} prompt tokens: hop digests {:?}",
        p.len(),
        digests(&reference)
    );
}

#[test]
fn many_sessions_from_several_threads_match_serial_runs() {
    let path = common::smollm2();
    let node = Arc::new(node(&path, Some(0..30), 2));
    let digest = node.digest();
    let tok = node.model().tokenizer();
    let prompts: Vec<Vec<u32>> = common::PROMPTS[..4]
        .iter()
        .map(|p| tok.encode(p, true, true).unwrap())
        .collect();
    // Serial: each prompt in its own session, then 4 greedy steps.
    let run = |node: &ShardNode, session: u64, p: &[u32]| -> Vec<Digest> {
        let mut out = Vec::new();
        let mut f = Frame::tokens(digest, session, 0, p);
        let mut pos = p.len() as u64;
        for _ in 0..4 {
            let r = node.forward(&f).unwrap();
            out.push(r.digest);
            let t = strata::sampler::argmax(&r.frame.values().unwrap());
            f = Frame::tokens(digest, session, pos, &[t]);
            pos += 1;
        }
        node.close(session).unwrap();
        out
    };
    let serial: Vec<Vec<Digest>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| run(&node, i as u64, p))
        .collect();
    let parallel: Vec<Vec<Digest>> = std::thread::scope(|s| {
        let hs: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let node = Arc::clone(&node);
                s.spawn(move || run(&node, 100 + i as u64, p))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(serial, parallel);
    assert_eq!(node.n_sessions(), 0);
}

#[test]
fn session_limits_and_bad_frames_leave_other_sessions_intact() {
    let path = common::smollm2();
    let m = Model::load(
        &path,
        &LoadOptions {
            n_threads: Some(1),
            layers: Some(0..10),
            ..Default::default()
        },
    )
    .unwrap();
    let node = ShardNode::new(
        Arc::new(m),
        NodeLimits {
            max_sessions: 2,
            n_ctx: 8,
        },
    )
    .unwrap();
    let d = node.digest();
    let first = node.forward(&Frame::tokens(d, 1, 0, &[1, 2, 3])).unwrap();
    node.forward(&Frame::tokens(d, 2, 0, &[1])).unwrap();
    assert!(matches!(
        node.forward(&Frame::tokens(d, 3, 0, &[1])),
        Err(strata::Error::TooManySessions { limit: 2 })
    ));
    assert!(matches!(
        node.forward(&Frame::tokens(d, 1, 3, &[1; 6])),
        Err(strata::Error::ContextFull { .. })
    ));
    assert!(matches!(
        node.forward(&Frame::tokens(d, 1, 9, &[1])),
        Err(strata::Error::FrameWrongPosition { .. })
    ));
    assert!(matches!(
        node.forward(&Frame::tokens(d, 1, 3, &[60_000])),
        Err(strata::Error::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        node.forward(&Frame::tokens(Digest::of(b"x"), 1, 0, &[1])),
        Err(strata::Error::FrameWrongModel { .. })
    ));
    // Session 1 still holds its 3 positions and replays to the same bits.
    assert_eq!(node.position(1), 3);
    assert_eq!(
        node.forward(&Frame::tokens(d, 1, 0, &[1, 2, 3])).unwrap(),
        first
    );
    node.truncate(1, 1).unwrap();
    assert_eq!(node.position(1), 1);
    assert!(matches!(
        node.close(9),
        Err(strata::Error::UnknownSession(9))
    ));
}

#[test]
fn batched_frames_of_several_sessions_equal_each_alone_and_bad_frames_fail_alone() {
    let path = common::smollm2();
    let nodes = [node(&path, Some(0..12), 2), node(&path, Some(12..30), 2)];
    let digest = nodes[0].digest();
    let tok = Model::load(
        &path,
        &LoadOptions {
            n_threads: Some(1),
            layers: Some(0..1),
            ..Default::default()
        },
    )
    .unwrap();
    let prompts: Vec<Vec<u32>> = ["The cat", "Once upon a time there", "1, 2, 3,"]
        .iter()
        .map(|t| tok.tokenizer().encode(t, true, false).unwrap())
        .collect();
    // Alone: each prompt through a fresh pair of nodes, then 4 greedy steps.
    let alone: Vec<(Vec<u32>, Vec<f32>)> = prompts
        .iter()
        .map(|p| {
            let fresh = [node(&path, Some(0..12), 1), node(&path, Some(12..30), 1)];
            pipeline_greedy(&fresh, digest, p, 5)
        })
        .collect();
    // Batched: sessions 10, 11, 12 share every hop's forward call.
    let mut frames: Vec<Frame> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Frame::tokens(digest, 10 + i as u64, 0, p))
        .collect();
    let mut tokens = vec![Vec::new(); prompts.len()];
    let mut last = vec![Vec::new(); prompts.len()];
    for _ in 0..5 {
        for n in &nodes {
            frames = n
                .forward_batch(&frames)
                .into_iter()
                .map(|r| r.unwrap().frame)
                .collect();
        }
        for (i, f) in frames.iter_mut().enumerate() {
            let logits = f.values().unwrap();
            let t = strata::sampler::argmax(&logits);
            tokens[i].push(t);
            last[i] = logits;
            *f = Frame::tokens(digest, 10 + i as u64, f.position + 1, &[t]);
        }
    }
    for (i, (t, l)) in alone.iter().enumerate() {
        assert_eq!(&tokens[i], t, "session {i}: tokens");
        assert_eq!(
            common::bit_differences(&last[i], l),
            0,
            "session {i}: logits"
        );
    }
    // A frame of another model, a second frame of one session, and a gap
    // fail alone; the good frame in the same batch runs.
    let good = Frame::tokens(digest, 20, 0, &prompts[0]);
    let out = nodes[0].forward_batch(&[
        Frame::tokens(Digest::of(b"other"), 21, 0, &[1]),
        good.clone(),
        Frame::tokens(digest, 20, 0, &[1]),
        Frame::tokens(digest, 22, 5, &[1]),
    ]);
    assert!(matches!(out[0], Err(strata::Error::FrameWrongModel { .. })));
    assert!(out[1].is_ok());
    assert!(matches!(
        out[2],
        Err(strata::Error::InvalidParameter { name: "frames", .. })
    ));
    assert!(matches!(
        out[3],
        Err(strata::Error::FrameWrongPosition { .. })
    ));
    assert_eq!(nodes[0].position(20), prompts[0].len());
}

/// A synthetic mixture-of-experts model (`qwen3moe`, 6 layers of 20
/// experts, 4 used) split into three shard files: the pipeline gives the
/// whole model's greedy tokens and final logits, the files carry the
/// parent's digest and only their own layers' experts.
#[test]
fn three_shards_of_a_mixture_of_experts_model_match_the_whole_model() {
    let dir = std::env::temp_dir().join(format!("strata-moe-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("qwen3moe.gguf");
    let mut spec = strata::synth::SynthSpec::tiny_arch("qwen3moe", strata::quant::GgmlType::Q8_0);
    spec.n_layer = 6;
    strata::synth::synth_model(&spec, None)
        .unwrap()
        .write_file(&path)
        .unwrap();
    let p = [256u32, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114];
    let (want_tokens, want_logits) = whole_greedy(&path, &p, 12);
    let file = strata::gguf::GgufFile::open(&path).unwrap();
    let files = shard::split(&file, &shard::even_ranges(6, 3).unwrap(), &dir, "moe").unwrap();
    let nodes: Vec<ShardNode> = files.iter().map(|f| node(f, None, 2)).collect();
    let digest = nodes[0].digest();
    for (i, (f, n)) in files.iter().zip(&nodes).enumerate() {
        assert_eq!(n.digest(), digest);
        let sf = strata::gguf::GgufFile::open(f).unwrap();
        let has = |l: usize| sf.tensor(&format!("blk.{l}.ffn_up_exps.weight")).is_some();
        assert!(
            (0..6).all(|l| has(l) == (l / 2 == i)),
            "shard {i}'s experts"
        );
    }
    let (tokens, logits) = pipeline_greedy(&nodes, digest, &p, 12);
    assert_eq!(tokens, want_tokens);
    assert!(logits
        .iter()
        .zip(&want_logits)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let _ = std::fs::remove_dir_all(&dir);
}
