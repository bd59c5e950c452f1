//! The shard pipeline as separate processes on loopback: three
//! `strata shard serve` processes and a client give the same tokens as
//! `strata generate`; killing the middle process mid-generation and starting
//! a replacement, the client replays the session into it and finishes with
//! the same tokens.

mod common;
use common::{serve, serve_with, smollm2, strata, Server};
use std::path::{Path, PathBuf};

use strata::shard::transport::Pipeline;

fn split(dir: &Path) -> Vec<PathBuf> {
    let out = strata()
        .args(["split", "--shards", "3", "-o"])
        .arg(dir)
        .arg("-m")
        .arg(smollm2())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| {
        let s = p.to_string_lossy().to_string();
        s.split(".layers-")
            .nth(1)
            .and_then(|r| r.split('-').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap()
    });
    files
}

fn tokens_of(json: &[u8]) -> Vec<u32> {
    let v: serde_json::Value = serde_json::from_slice(json).expect("JSON");
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

const PROMPT: &str = "The three most important inventions in history are";

fn local_generate(n: usize) -> Vec<u32> {
    let out = strata()
        .args([
            "generate",
            "-p",
            PROMPT,
            "-n",
            &n.to_string(),
            "--temp",
            "0",
            "-t",
            "2",
            "--json",
            "-m",
        ])
        .arg(smollm2())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokens_of(&out.stdout)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn three_serve_processes_and_a_client_match_generate() {
    let dir = tmpdir("procs");
    let files = split(&dir);
    let servers: Vec<Server> = files.iter().map(|f| serve(f, "127.0.0.1:0")).collect();
    let route = servers
        .iter()
        .map(|s| s.addr.clone())
        .collect::<Vec<_>>()
        .join(",");
    let out = strata()
        .args([
            "generate", "-p", PROMPT, "-n", "24", "--temp", "0", "--json", "--route", &route, "-m",
        ])
        .arg(smollm2())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tokens_of(&out.stdout), local_generate(24));
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killing_the_middle_node_and_replaying_gives_the_same_tokens() {
    let dir = tmpdir("replay");
    let files = split(&dir);
    let mut servers: Vec<Server> = files.iter().map(|f| serve(f, "127.0.0.1:0")).collect();
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    let model = strata::Model::load(
        &files[0],
        &strata::LoadOptions {
            n_threads: Some(1),
            layers: None,
            ..Default::default()
        },
    )
    .unwrap();
    let prompt = model.tokenizer().encode(PROMPT, true, true).unwrap();
    // Kill at generated token 11: the prompt must not end generation first.
    let mut p = Pipeline::connect(&addrs, 42).unwrap();
    let mut logits = p.forward_tokens(0, &prompt).unwrap();
    let mut tokens = Vec::new();
    for i in 0..24 {
        let t = strata::sampler::argmax(&logits);
        tokens.push(t);
        if model.tokenizer().is_eog(t) {
            break;
        }
        if i == 11 {
            // Mid-generation: the middle node dies; a replacement (a fresh
            // process, empty caches) comes up at the same address.
            let old = servers.remove(1);
            let addr = old.addr.clone();
            drop(old);
            servers.insert(1, serve(&files[1], &addr));
        }
        if i < 23 {
            logits = p.forward_tokens((prompt.len() + i) as u64, &[t]).unwrap();
        }
    }
    assert_eq!(p.replays, 1, "the client replayed the session once");
    assert_eq!(tokens, local_generate(24));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `shard serve --timeout` closes a silent connection, `--max-connections`
/// refuses one connection too many, and impossible values are refused.
#[test]
fn serve_limits_from_the_command_line() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    for (flag, value) in [
        ("--max-connections", "0"),
        ("--timeout", "0"),
        ("--timeout", "-1"),
        ("--timeout", "inf"),
    ] {
        let out = strata()
            .args([
                "shard",
                "serve",
                "--listen",
                "127.0.0.1:0",
                flag,
                value,
                "-m",
            ])
            .arg(smollm2())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
    let server = serve_with(
        &smollm2(),
        "127.0.0.1:0",
        &["--timeout", "0.3", "--max-connections", "1"],
    );
    // The one allowed connection stays silent: the server closes it after
    // the timeout (a read sees the end of the stream, not our own timeout).
    let mut silent = TcpStream::connect(&server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // Meanwhile a second connection is over the bound: refused and closed.
    let mut extra = TcpStream::connect(&server.addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reply = Vec::new();
    extra.read_to_end(&mut reply).unwrap();
    assert!(
        String::from_utf8_lossy(&reply).contains("too many connections"),
        "{reply:?}"
    );
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).unwrap();
    assert_eq!(n, 0, "the silent connection got bytes");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}
