//! `strata verify`'s exit codes, end to end on a synthetic model: a receipt
//! written by `strata generate --receipt` holds (exit 0, one line); with a
//! generated token changed it differs (exit 1, naming the index and the
//! position); a truncated or garbage file, a missing file and a receipt of
//! another model are refused (exit 2).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use strata::quant::GgmlType;
use strata::receipt::Receipt;
use strata::synth::{synth_model, SynthSpec};

/// A scratch directory for this test, emptied first.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-verify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_model(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let spec = SynthSpec {
        seed,
        ..SynthSpec::tiny(GgmlType::Q4_0)
    };
    let p = dir.join(name);
    std::fs::write(&p, synth_model(&spec, None).unwrap().to_bytes()).unwrap();
    p
}

fn verify(model: &Path, receipt: &Path, json: bool) -> Output {
    let mut c = common::strata();
    c.args(["verify", "-t", "2", "-m"]).arg(model).arg(receipt);
    if json {
        c.arg("--json");
    }
    c.output().expect("run strata verify")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("strata verify exited by a signal")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn verify_exits_0_1_2() {
    let dir = scratch("codes");
    let model = write_model(&dir, "a.gguf", 1);
    let other = write_model(&dir, "b.gguf", 2);
    let honest = dir.join("honest.json");
    let g = common::strata()
        .args(["generate", "-m"])
        .arg(&model)
        .args([
            "-p",
            "hello world",
            "-n",
            "12",
            "--temp",
            "6",
            "--seed",
            "3",
        ])
        .args(["-t", "2", "--receipt"])
        .arg(&honest)
        .output()
        .unwrap();
    assert!(
        g.status.success(),
        "generate: {}",
        String::from_utf8_lossy(&g.stderr)
    );
    let r = Receipt::parse(&std::fs::read(&honest).unwrap()).unwrap();
    assert_eq!(r.tokens.len(), 12);

    // 0: it holds, in one line; the binary form too.
    let o = verify(&model, &honest, false);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let line = stdout(&o);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with("holds: 12 generated tokens"), "{line}");
    assert!(line.contains(&r.fingerprint().to_hex()), "{line}");
    let bin = dir.join("honest.receipt");
    std::fs::write(&bin, r.to_bytes()).unwrap();
    assert_eq!(code(&verify(&model, &bin, false)), 0);

    // 1: a changed generated token, re-encoded as a forger would (root and
    // fingerprint fixed up), is found at its index and position.
    let j = 4;
    let mut bad = r.clone();
    bad.tokens[j] = (bad.tokens[j] + 1) % 320;
    let bad = Receipt::from_bytes(&bad.to_bytes()).unwrap();
    let bad_file = dir.join("bad.json");
    std::fs::write(&bad_file, bad.to_json()).unwrap();
    let position = r.logits_position(j);
    let o = verify(&model, &bad_file, false);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!(
            "generated token {j} (logits of position {position})"
        )),
        "{}",
        stdout(&o)
    );
    let o = verify(&model, &bad_file, true);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "differs");
    assert_eq!(v["index"], j);
    assert_eq!(v["position"], position);
    assert_eq!(v["reason"], "token");

    // 2: malformed files, a missing file, another model's receipt.
    let bytes = r.to_bytes();
    for (name, content) in [
        ("truncated.receipt", bytes[..bytes.len() - 5].to_vec()),
        ("garbage.receipt", b"not a receipt at all".to_vec()),
        ("empty.receipt", Vec::new()),
        ("truncated.json", r.to_json().as_bytes()[..40].to_vec()),
    ] {
        let f = dir.join(name);
        std::fs::write(&f, content).unwrap();
        let o = verify(&model, &f, false);
        assert_eq!(code(&o), 2, "{name}: {}", stdout(&o));
        assert!(
            stdout(&o).starts_with("malformed: "),
            "{name}: {}",
            stdout(&o)
        );
    }
    let o = verify(&model, &dir.join("missing.json"), false);
    assert_eq!(code(&o), 2);
    let o = verify(&other, &honest, false);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(stdout(&o).starts_with("inconsistent: "), "{}", stdout(&o));
    let o = verify(&other, &honest, true);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "inconsistent");
    let _ = std::fs::remove_dir_all(&dir);
}
