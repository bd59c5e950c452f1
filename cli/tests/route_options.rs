//! `strata generate --route` with the options of a local run: the local
//! model must be the one the nodes serve, `--stop` and `-c` end generation
//! as they do locally, and `-t` (which only the nodes could honour) is
//! refused.

mod common;
use common::{serve, smollm2, strata};
use std::path::PathBuf;
use std::process::Output;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const PROMPT: &str = "The three most important inventions in history are";

/// `strata generate --json` of PROMPT, greedy, locally or through `route`.
fn generate(route: Option<&str>, extra: &[&str]) -> Output {
    let mut c = strata();
    c.args(["generate", "-p", PROMPT, "--temp", "0", "--json", "-m"])
        .arg(smollm2())
        .args(extra);
    match route {
        Some(r) => c.args(["--route", r]),
        None => c.args(["-t", "2"]),
    };
    c.output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_local_model_other_than_the_nodes_is_refused() {
    let dir = tmpdir("route-digest");
    let other = dir.join("other.gguf");
    let out = strata()
        .args(["synth", "--layers", "2", "--tokenizer-from"])
        .arg(smollm2())
        .arg("-o")
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let node = serve(&other, "127.0.0.1:0");
    let out = generate(Some(&node.addr), &["-n", "4"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is not the model the nodes serve"),
        "{stderr}"
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stop_and_context_end_a_routed_generation_as_a_local_one() {
    let node = serve(&smollm2(), "127.0.0.1:0");
    let route = node.addr.clone();
    let free = json(&generate(None, &["-n", "24"]));
    let free_text = free["text"].as_str().unwrap().to_string();
    // A stop string from the middle of the greedy text.
    let words: Vec<&str> = free_text.split_whitespace().collect();
    assert!(words.len() >= 6, "{free_text:?}");
    let stop = words[4].to_string();
    for extra in [
        vec!["-n", "24", "--stop", stop.as_str()],
        // Context: the prompt and a few generated tokens.
        vec!["-n", "24", "-c", "16"],
    ] {
        let local = json(&generate(None, &extra));
        let routed = json(&generate(Some(&route), &extra));
        for k in ["tokens", "text", "stop_reason"] {
            assert_eq!(routed[k], local[k], "{extra:?}: {k}");
        }
        let want = if extra.contains(&"--stop") {
            "StopString"
        } else {
            "ContextFull"
        };
        assert_eq!(local["stop_reason"], want, "{extra:?}");
    }
    // Threads belong to the nodes.
    let out = generate(Some(&route), &["-n", "4", "-t", "2"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--route"),
        "{}",
        text(&out.stderr)
    );
}
