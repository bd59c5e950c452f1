//! Shared helpers for the command-line tool's tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// SmolLM2-135M Q4_1 as `scripts/fetch-models.sh` caches it. Fails (never
/// skips) when it is missing, so a CI run without models cannot pass.
pub fn smollm2() -> PathBuf {
    let p = strata::model_cache::dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

/// The `strata` binary under test.
pub fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

/// A `strata shard serve` process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serve `file` (one thread) on `listen` (`127.0.0.1:0` for a free port);
/// returns once the server has printed its address.
pub fn serve(file: &Path, listen: &str) -> Server {
    serve_with(file, listen, &[])
}

/// [`serve`] with `extra` options for `strata shard serve`.
pub fn serve_with(file: &Path, listen: &str, extra: &[&str]) -> Server {
    let mut child = strata()
        .args(["shard", "serve", "-t", "1", "--listen", listen])
        .args(extra)
        .arg("-m")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start strata shard serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "serving layers A..B of PATH on ADDR (model DIGEST)"
    let addr = line
        .split(" on ")
        .last()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
        .to_string();
    Server { child, addr }
}
