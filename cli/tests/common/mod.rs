//! Shared helpers for the command-line tool's tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// SmolLM2-135M Q4_1 as `scripts/fetch-models.sh` caches it. Fails (never
/// skips) when it is missing, so a CI run without models cannot pass.
pub fn smollm2() -> PathBuf {
    let dir = std::env::var_os("STRATA_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/strata/models")
        });
    let p = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}
