//! `strata bench`: both engines in worker processes, figures and memory in
//! the JSON, bad arguments and bad worker requests answered with errors.
#![cfg(feature = "llama-cpp")]

mod common;
use common::smollm2;
use std::process::{Command, Output};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("run strata")
}

#[test]
fn bench_vs_llama_cpp_reports_both_engines() {
    let model = smollm2();
    let m = model.to_str().unwrap();
    let out = strata(&[
        "bench",
        "-m",
        m,
        "-p",
        "24",
        "-n",
        "6",
        "-t",
        "2",
        "-r",
        "2",
        "--vs",
        "llama.cpp",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "strata bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["n_prompt"], 24);
    assert_eq!(v["n_gen"], 6);
    for engine in ["strata", "llama.cpp"] {
        let e = &v[engine];
        for key in ["pp_tokens_per_second", "tg_tokens_per_second"] {
            let x = e[key].as_f64().unwrap_or(0.0);
            assert!(x.is_finite() && x > 0.0, "{engine} {key} = {}", e[key]);
        }
        assert_eq!(e["samples"]["pp"].as_array().map(Vec::len), Some(2));
        assert_eq!(e["samples"]["tg"].as_array().map(Vec::len), Some(2));
        // Each engine's own process holds at least the mapped weights it
        // read (the model is 98 MB; the Q4_1 layers alone are ~70 MB).
        let peak = e["peak_rss_kib"].as_u64().unwrap_or(0);
        assert!(peak > 50 * 1024, "{engine} peak RSS {peak} KiB");
    }
    // The verdict is the comparison of the tokens both engines generated.
    let tokens = |engine: &str| -> Vec<u64> {
        v[engine]["greedy_tokens"]
            .as_array()
            .unwrap_or_else(|| panic!("{engine}: no greedy_tokens"))
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect()
    };
    let (ours, theirs) = (tokens("strata"), tokens("llama.cpp"));
    assert_eq!(ours.len(), 6);
    assert_eq!(theirs.len(), 6);
    assert_eq!(
        v["greedy_tokens_identical"],
        serde_json::json!(ours == theirs)
    );
    let first = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
    let want_first = if ours == theirs {
        serde_json::Value::Null
    } else {
        serde_json::json!(first)
    };
    assert_eq!(v["first_difference"], want_first);
}

#[test]
fn bench_rejects_bad_arguments() {
    let model = smollm2();
    let m = model.to_str().unwrap();
    for (args, want) in [
        (vec!["bench", "-m", m, "-p", "0"], "-p must be at least 1"),
        (vec!["bench", "-m", m, "-t", "0"], "-t must be at least 1"),
        (vec!["bench", "-m", m, "--vs", "other"], "only llama.cpp"),
        (vec!["bench", "-m", "/nonexistent.gguf"], "nonexistent"),
    ] {
        let out = strata(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn bench_worker_answers_bad_requests_with_errors() {
    use std::io::Write;
    let model = smollm2();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "bench-worker",
            "--engine",
            "strata",
            "-t",
            "1",
            "-c",
            "16",
            "-m",
        ])
        .arg(&model)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the worker");
    let mut stdin = child.stdin.take().unwrap();
    // Unknown request, bad id, too long for the context, then a good run.
    writeln!(stdin, "hello").unwrap();
    writeln!(stdin, "run 2 1 x").unwrap();
    writeln!(stdin, "run 20 1 2 3").unwrap();
    writeln!(stdin, "run 2 1 2 3").unwrap();
    writeln!(stdin, "memory").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(lines[0], "ready");
    assert!(lines[1].starts_with("err unknown request"), "{}", lines[1]);
    assert!(
        lines[2].starts_with("err run: bad token id"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("err the run needs 24 positions"),
        "{}",
        lines[3]
    );
    assert!(lines[4].starts_with("ok "), "{}", lines[4]);
    assert_eq!(lines[4].split_whitespace().count(), 5, "{}", lines[4]);
    assert!(lines[5].starts_with("memory "), "{}", lines[5]);
}
