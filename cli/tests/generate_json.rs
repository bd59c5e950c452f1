//! `strata generate --json` end to end: the binary's greedy token ids equal
//! llama.cpp's greedy decode of the same prompt (feature `llama-cpp`).
#![cfg(feature = "llama-cpp")]

mod common;
use common::smollm2;
use std::process::Command;

/// `strata generate -m MODEL ARGS.. --json`, which must succeed, parsed.
fn generate_json(model: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["generate", "-m"])
        .arg(model)
        .args(args)
        .arg("--json")
        .output()
        .expect("run strata");
    assert!(
        out.status.success(),
        "strata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn generate_json_matches_llama_cpp_greedy() {
    let model = smollm2();
    let v = generate_json(
        &model,
        &[
            "-p",
            "The capital of France is",
            "-n",
            "32",
            "--temp",
            "0",
            "-t",
            "2",
        ],
    );
    let ids = |k: &str| -> Vec<u32> {
        v[k].as_array()
            .unwrap_or_else(|| panic!("{k} missing"))
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let (prompt, tokens) = (ids("prompt_tokens"), ids("tokens"));
    for k in [
        "prompt_ms",
        "prompt_tokens_per_second",
        "generation_ms",
        "generation_tokens_per_second",
    ] {
        assert!(v["timings"][k].is_number(), "timings.{k} missing");
    }
    assert!(v["text"].as_str().is_some_and(|t| !t.is_empty()));
    let reference = strata::reference::Reference::load(&model, Default::default()).unwrap();
    assert_eq!(
        prompt,
        reference.tokenize("The capital of France is", true, true)
    );
    let (expected, _, _) = reference.greedy(&prompt, 32).unwrap();
    assert_eq!(
        tokens, expected,
        "strata generate's greedy ids differ from llama.cpp's"
    );
    eprintln!(
        "strata generate --json: {} tokens identical to llama.cpp: {:?}",
        tokens.len(),
        v["text"]
    );
}

#[test]
fn bad_arguments_fail_cleanly() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["generate", "-m", "/nonexistent.gguf", "-p", "x"][..],
        &["generate", "-m", "/dev/null", "-p", "x"],
        &["generate", "-p", "x", "--top-p", "2"],
        &["generate", "-p"],
        &["frobnicate"],
        &["info", "/nonexistent.gguf"],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("strata: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

/// `strata generate -f FILE --lookup N` gives the tokens of plain decoding
/// in the same (batch-invariant) mode, with drafts accepted on a copy task.
#[test]
fn lookup_generation_from_a_file_equals_plain_decoding() {
    let model = smollm2();
    let dir = std::env::temp_dir().join(format!("strata-lookup-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prompt = dir.join("prompt.txt");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../benches/prompts/copy-chatml.txt"
        ),
        &prompt,
    )
    .unwrap();
    let prompt_arg = prompt.to_str().unwrap();
    let run = |extra: &[&str]| {
        let base = ["-f", prompt_arg, "-n", "40", "--temp", "0", "-t", "2"];
        generate_json(&model, &[&base[..], extra].concat())
    };
    // A receipt puts plain decoding in the batch-invariant mode too.
    let receipt = dir.join("r.json");
    let plain = run(&["--receipt", receipt.to_str().unwrap()]);
    let spec = run(&["--lookup", "8"]);
    assert_eq!(plain["tokens"], spec["tokens"]);
    assert_eq!(plain["timings"]["drafted_tokens"], 0);
    let accepted = spec["timings"]["accepted_tokens"].as_u64().unwrap();
    assert!(accepted >= 10, "{}", spec["timings"]);
    let both = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["generate", "-p", "x", "-f"])
        .arg(&prompt)
        .output()
        .unwrap();
    assert!(!both.status.success());
    std::fs::remove_dir_all(&dir).ok();
}
