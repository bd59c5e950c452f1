//! Receipts across machines: receipts made on x86-64 and committed under
//! `tests/golden/receipts/` are remade here, on whatever machine runs the
//! test, and must come out byte for byte the same; the committed receipts
//! must also verify here. `scripts/test.sh` runs this binary on x86-64 at
//! every kernel level ([`golden_receipts_hold_at_every_kernel_level`]) and,
//! cross-built for `aarch64-unknown-linux-gnu`, under `qemu-aarch64` with
//! the NEON kernels and again with the scalar reference.
//!
//! The models are tiny synthetic ones (qemu is slow), one per weight type
//! with a row kernel (the NEON kernels cover Q4_0, Q4_1, Q5_0, Q5_1 and
//! Q8_0; the K-quants run the scalar reference on aarch64 and the
//! hand-written AVX2/AVX-512 kernels on x86-64) and one per architecture
//! family beyond Llama's block.
//!
//! Regenerating the golden files (only when `NUMERICS_VERSION` or the
//! synthetic models change on purpose): on x86-64,
//! `STRATA_BLESS_RECEIPTS=1 cargo test --release --test receipts_across_machines`.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use strata::gguf::GgufFile;
use strata::kernels::{row_dot, Isa};
use strata::quant::GgmlType;
use strata::receipt::{logits_digest, verify, Receipt, Verification, VerifyOptions};
use strata::sampler::SamplerParams;
use strata::synth::{synth_model, SynthSpec};
use strata::{GenerateParams, LoadOptions, Model, Numerics, Session, SessionOptions};

const BLESS: &str = "STRATA_BLESS_RECEIPTS";
/// Set in a child run: check the golden receipts at this process's level.
const LEVEL_CHILD: &str = "STRATA_TEST_GOLDEN_LEVEL_CHILD";

const PROMPT: &[u32] = &[256, 40, 41, 42, 43, 100, 101, 7, 9, 200, 33, 34];
const GENERATED: usize = 16;

/// The synthetic models: (name, spec).
fn cases() -> Vec<(String, SynthSpec)> {
    let mut out = Vec::new();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        out.push((format!("llama-{ty}"), spec("llama", ty)));
    }
    out.push(("gemma3-Q5_0".into(), spec("gemma3", GgmlType::Q5_0)));
    out.push(("qwen2-Q8_0".into(), spec("qwen2", GgmlType::Q8_0)));
    out
}

/// [`SynthSpec::tiny_arch`], 256 wide for the K-quants (whole blocks per row).
fn spec(arch: &str, ty: GgmlType) -> SynthSpec {
    let mut s = SynthSpec::tiny_arch(arch, ty);
    if ty.block_size() > s.n_embd {
        s.n_embd = 256;
        s.n_ff = 512;
    }
    s
}

fn load(spec: &SynthSpec) -> Arc<Model> {
    let w = synth_model(spec, None).unwrap();
    let file = Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap());
    let opts = LoadOptions {
        n_threads: Some(2),
        layers: None,
        numerics: Numerics::BatchInvariant,
    };
    Arc::new(Model::from_file(file, &opts).unwrap())
}

/// Seeded sampling hot enough that every draw depends on the logits' low
/// bits' neighbourhood (the synthetic models' logits are steep).
fn sampler() -> SamplerParams {
    SamplerParams {
        temperature: 6.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.1,
        seed: 1234,
        ..SamplerParams::default()
    }
}

fn session(model: &Arc<Model>) -> Session {
    Session::new(Arc::clone(model), &SessionOptions { n_ctx: Some(128) }).unwrap()
}

/// The receipt of the fixed generation (prompt in one batch, then token by
/// token), and the digest of every prompt position's logits (the batched
/// pass's outputs, which a receipt commits to only through the cache).
fn make(model: &Arc<Model>) -> (Receipt, String) {
    let p = GenerateParams {
        max_tokens: GENERATED,
        sampler: sampler(),
        ..GenerateParams::default()
    };
    let (_, r) = session(model)
        .generate_tokens_with_receipt(PROMPT, &p, |_| true)
        .unwrap();
    let all = session(model).feed_all(PROMPT).unwrap();
    (r, logits_digest(&all).to_hex())
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/receipts")
}

/// The golden receipt `name` and its prompt-logits digest (files
/// `NAME.json` and `NAME.prompt`).
fn golden(name: &str) -> (String, String) {
    let dir = golden_dir();
    let read = |ext: &str| {
        let p = dir.join(format!("{name}.{ext}"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (made on x86-64 with {BLESS}=1, see this file's header)",
                p.display()
            )
        })
    };
    (read("json"), read("prompt").trim().to_string())
}

/// What differs between the receipt made here and the golden one, naming
/// the first generated token and commitment that differ.
fn describe(here: &Receipt, want: &Receipt) -> String {
    let mut s = String::new();
    if here.model != want.model {
        let _ = write!(
            s,
            "model digest {} != {} (the synthetic model changed: re-bless); ",
            here.model, want.model
        );
    }
    if here.numerics_version != want.numerics_version {
        let _ = write!(
            s,
            "numerics version {} != {}; ",
            here.numerics_version, want.numerics_version
        );
    }
    if let Some(j) = (0..here.commitments.len().min(want.commitments.len()))
        .find(|&j| here.commitments[j] != want.commitments[j])
    {
        let _ = write!(
            s,
            "first differing commitment: generated token {j} (position {}); ",
            here.logits_position(j)
        );
    }
    if let Some(j) =
        (0..here.tokens.len().min(want.tokens.len())).find(|&j| here.tokens[j] != want.tokens[j])
    {
        let _ = write!(
            s,
            "first differing token: {j} ({} here, {} golden); ",
            here.tokens[j], want.tokens[j]
        );
    }
    s
}

/// The kernel level each weight type runs at in this process.
fn levels() -> String {
    [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_K]
        .iter()
        .map(|&ty| format!("{ty}: {}", row_dot(ty).unwrap().isa))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Remake every golden receipt at this process's kernel level: identical
/// bytes and prompt logits, and the golden receipt verifies here. Panics
/// naming every case that differs.
fn check_all() -> usize {
    let mut failures = Vec::new();
    let cases = cases();
    for (name, spec) in &cases {
        let model = load(spec);
        let (here, prompt_digest) = make(&model);
        let (json, want_prompt) = golden(name);
        let want = Receipt::from_json(&json)
            .unwrap_or_else(|e| panic!("{name}: the golden receipt is malformed: {e}"));
        if here != want {
            failures.push(format!(
                "{name}: receipt differs: {}",
                describe(&here, &want)
            ));
        }
        if prompt_digest != want_prompt {
            failures.push(format!(
                "{name}: prompt logits digest {prompt_digest} != golden {want_prompt}"
            ));
        }
        match verify(&model, &want, &VerifyOptions::default()).unwrap() {
            Verification::Holds(h) => assert_eq!(h.fingerprint, want.fingerprint()),
            other => failures.push(format!(
                "{name}: the golden receipt does not verify here: {other:?}"
            )),
        }
        // The comparison is live: a golden receipt with one commitment
        // flipped is caught.
        let mut forged = want.clone();
        forged.commitments[GENERATED / 2].0[0] ^= 1;
        let forged = Receipt::from_bytes(&forged.to_bytes()).unwrap();
        match verify(&model, &forged, &VerifyOptions::default()).unwrap() {
            Verification::Differs(d) => assert_eq!(d.index, GENERATED / 2, "{name}"),
            other => panic!("{name}: a flipped commitment was not caught: {other:?}"),
        }
        eprintln!(
            "{name}: {} identical to the golden receipt",
            here.fingerprint()
        );
    }
    assert!(
        failures.is_empty(),
        "{} on {} ({}):\n{}",
        failures.len(),
        std::env::consts::ARCH,
        levels(),
        failures.join("\n")
    );
    cases.len()
}

fn bless() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "golden receipts are made on x86-64"
    );
    let dir = golden_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, spec) in cases() {
        let (r, prompt_digest) = make(&load(&spec));
        std::fs::write(dir.join(format!("{name}.json")), r.to_json() + "\n").unwrap();
        std::fs::write(dir.join(format!("{name}.prompt")), prompt_digest + "\n").unwrap();
    }
}

/// At this process's kernel level (the machine's fastest unless
/// `STRATA_ISA` / `STRATA_FORCE_SCALAR` pin another): the golden receipts
/// are remade exactly and verify.
#[test]
fn golden_receipts_are_remade_exactly_and_verify() {
    if std::env::var_os(BLESS).is_some() {
        bless();
    }
    // Nothing in the golden directory is left unchecked.
    let names: Vec<String> = cases().into_iter().map(|(n, _)| n).collect();
    let mut files: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want: Vec<String> = names
        .iter()
        .flat_map(|n| [format!("{n}.json"), format!("{n}.prompt")])
        .collect();
    want.sort();
    assert_eq!(files, want, "golden files and cases disagree");
    // On aarch64 the NEON kernels run unless the scalar reference is
    // forced: a run meant to test NEON cannot fall back to scalar unseen.
    #[cfg(target_arch = "aarch64")]
    {
        let force = std::env::var("STRATA_FORCE_SCALAR").is_ok_and(|v| v == "1");
        let want = if force { Isa::Scalar } else { Isa::Neon };
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
        ] {
            assert_eq!(row_dot(ty).unwrap().isa, want, "{ty}");
        }
    }
    let n = check_all();
    eprintln!(
        "{n} golden receipts remade exactly on {} ({})",
        std::env::consts::ARCH,
        levels()
    );
}

/// Every kernel level this machine has, and the scalar reference, remake
/// the golden receipts (a child process per level: the level is read once
/// per process). On aarch64 under qemu a child cannot be started, so
/// `scripts/test.sh` runs the binary once per level there instead.
#[test]
fn golden_receipts_hold_at_every_kernel_level() {
    if std::env::var_os(LEVEL_CHILD).is_some() {
        println!("\nCHECKED {} {}", check_all(), levels());
        return;
    }
    if cfg!(not(target_arch = "x86_64")) {
        eprintln!("one level per process here: scripts/test.sh runs each");
        return;
    }
    let mut vars: Vec<Vec<(&str, &str)>> = vec![vec![("STRATA_FORCE_SCALAR", "1")]];
    for isa in Isa::ALL.iter().filter(|i| i.is_available()) {
        vars.push(vec![("STRATA_ISA", isa.name())]);
    }
    for v in &vars {
        let out = common::rerun_test("golden_receipts_hold_at_every_kernel_level", LEVEL_CHILD, v);
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("CHECKED "))
            .unwrap_or_else(|| panic!("{v:?}: the child checked nothing: {out}"));
        assert!(
            line.starts_with(&format!("{} ", cases().len())),
            "{v:?}: {line}"
        );
        eprintln!("{v:?}: {line}");
    }
}
