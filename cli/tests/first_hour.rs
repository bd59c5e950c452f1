//! What a new user meets first: help on every command, `split` into a
//! directory that does not exist yet, warnings for kernel-level variables
//! the library does not know, errors that name the file that is not GGUF,
//! and the default model hashed once rather than on every run.

mod common;
use common::smollm2;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn strata() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.env_remove("STRATA_ISA").env_remove("STRATA_FORCE_SCALAR");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tiny random model of 4 layers.
fn tiny(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.gguf");
    let out = strata()
        .args(["synth", "--layers", "4", "-o"])
        .arg(&p)
        .output()
        .unwrap();
    ok(&out);
    p
}

const COMMANDS: &[&[&str]] = &[
    &[],
    &["generate"],
    &["chat"],
    &["info"],
    &["bench"],
    &["bench-worker"],
    &["split"],
    &["plan"],
    &["shard"],
    &["shard", "serve"],
    &["synth"],
    &["serve"],
    &["verify"],
    &["perplexity"],
];

#[test]
fn help_on_every_command_prints_usage_and_exits_0() {
    for cmd in COMMANDS {
        let mut ways: Vec<Vec<&str>> = ["--help", "-h"]
            .iter()
            .map(|h| cmd.iter().copied().chain([*h]).collect())
            .collect();
        // `strata help COMMAND`, and help after other options.
        ways.push(std::iter::once("help").chain(cmd.iter().copied()).collect());
        if cmd == &["generate"] {
            ways.push(vec!["generate", "-p", "hi", "--json", "--help"]);
        }
        for args in ways {
            let out = strata().args(&args).output().unwrap();
            let stdout = text(&out.stdout);
            assert!(
                out.status.success(),
                "strata {args:?}: {}{}",
                stdout,
                text(&out.stderr)
            );
            assert!(
                stdout.to_lowercase().contains("usage"),
                "strata {args:?}: {stdout}"
            );
        }
    }
}

#[test]
fn top_level_help_lists_the_commands_and_help_shows_defaults() {
    let out = strata().arg("--help").output().unwrap();
    ok(&out);
    let top = text(&out.stdout);
    for c in [
        "generate",
        "chat",
        "info",
        "bench",
        "split",
        "plan",
        "shard serve",
        "synth",
    ] {
        assert!(top.contains(&format!("\n  {c} ")), "{c} not listed:\n{top}");
    }
    let help = |args: &[&str]| text(&strata().args(args).output().unwrap().stdout);
    assert!(help(&["generate", "--help"]).contains("(default: 128)"));
    assert!(help(&["shard", "serve", "--help"]).contains("(default: 127.0.0.1:7070)"));
    let plan = help(&["plan", "--help"]);
    assert!(
        plan.contains("SPEED:") && plan.contains("bandwidth"),
        "{plan}"
    );
    // A value that looks like help is a value: this prompt is "--help".
    let out = strata()
        .args(["generate", "-m", "/nonexistent.gguf", "-p", "--help"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent.gguf"));
}

#[test]
fn split_creates_a_missing_output_directory() {
    let dir = tmpdir("split-mkdir");
    let model = tiny(&dir);
    let out_dir = dir.join("not").join("yet");
    let out = strata()
        .args(["split", "--shards", "2", "-m"])
        .arg(&model)
        .arg("-o")
        .arg(&out_dir)
        .output()
        .unwrap();
    ok(&out);
    let n = std::fs::read_dir(&out_dir).unwrap().count();
    assert_eq!(n, 2, "two shard files in {}", out_dir.display());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_kernel_level_variables_warn_once_and_are_ignored() {
    let dir = tmpdir("isa-warn");
    let model = tiny(&dir);
    let run = |var: &str, value: &str| {
        let out = strata()
            .args([
                "generate", "-p", "hello", "-n", "3", "--temp", "0", "-t", "1", "-m",
            ])
            .arg(&model)
            .env(var, value)
            .output()
            .unwrap();
        ok(&out);
        text(&out.stderr)
    };
    let stderr = run("STRATA_ISA", "sse9");
    assert_eq!(
        stderr
            .matches("STRATA_ISA=\"sse9\" is not a kernel level")
            .count(),
        1,
        "{stderr}"
    );
    let stderr = run("STRATA_FORCE_SCALAR", "maybe");
    assert_eq!(
        stderr.matches("STRATA_FORCE_SCALAR=").count(),
        1,
        "{stderr}"
    );
    // Documented values say nothing.
    for (var, value) in [("STRATA_ISA", "scalar"), ("STRATA_FORCE_SCALAR", "0")] {
        let stderr = run(var, value);
        assert!(!stderr.contains(var), "{var}={value}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_that_is_not_gguf_is_named_in_the_error() {
    let dir = tmpdir("not-gguf");
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "these are not weights\n").unwrap();
    let out = strata().arg("info").arg(&notes).output().unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("'{}' is not a GGUF file", notes.display())),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The default model is hashed by the fetch script once; later runs trust
/// the stamp while the file's size and modification time are unchanged.
/// With no `bash` on PATH, a run that needs the script fails, so success
/// shows that the script was not run.
#[test]
fn the_default_model_is_hashed_once() {
    let dir = tmpdir("default-model");
    let cached = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::copy(smollm2(), &cached).unwrap();
    let no_path = dir.join("empty-bin");
    std::fs::create_dir_all(&no_path).unwrap();
    let plan = |path: Option<&Path>| {
        let mut c = strata();
        c.args(["plan", "--node", "a:1G:1", "--json"])
            .env("STRATA_MODELS_DIR", &dir);
        if let Some(p) = path {
            c.env("PATH", p);
        }
        c.output().unwrap()
    };
    // First run: the script checks the checksum, and the stamp is written.
    ok(&plan(None));
    assert!(dir
        .join("SmolLM2-135M-Instruct.Q4_1.gguf.sha256-ok")
        .exists());
    // Second run: no script needed.
    ok(&plan(Some(&no_path)));
    // A changed file is checked again.
    let f = std::fs::File::options().write(true).open(&cached).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(10))
        .unwrap();
    drop(f);
    let out = plan(Some(&no_path));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("could not run bash"),
        "{}",
        text(&out.stderr)
    );
    ok(&plan(None));
    ok(&plan(Some(&no_path)));
    let _ = std::fs::remove_dir_all(&dir);
}
