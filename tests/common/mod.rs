//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Where the fetch script caches models.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STRATA_MODELS_DIR") {
        return d.into();
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache"))
        .join("strata/models")
}

/// A real model fetched by `scripts/fetch-models.sh`. Fails (never skips)
/// when it is missing, so a CI run without models cannot pass silently.
pub fn real_model(file: &str) -> PathBuf {
    let p = models_dir().join(file);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh (CI does) or set STRATA_MODELS_DIR",
        p.display()
    );
    p
}

pub fn smollm2() -> PathBuf {
    real_model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Largest absolute difference between two equal-length slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Twenty varied prompts for parity runs.
pub const PROMPTS: &[&str] = &[
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three primary colors are",
    "Water boils at 100 degrees Celsius because",
    "<|im_start|>user\nWhat is the tallest mountain in the world?<|im_end|>\n<|im_start|>assistant\n",
    "To make a cup of tea, first",
    "In 1969, Neil Armstrong",
    "The quick brown fox",
    "Photosynthesis is the process by which",
    "1, 2, 3, 5, 8, 13,",
    "SELECT name, age FROM users WHERE",
    "My favourite programming language is Rust because",
    "Les fleurs du jardin sont",
    "The mitochondria is",
    "Q: What is 12 times 12?\nA:",
    "Dear hiring manager,\n\nI am writing to",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite a haiku about rain.<|im_end|>\n<|im_start|>assistant\n",
    "The most important invention of the 20th century was",
    "   Leading spaces and\ttabs, then numbers 3.14159 and emoji 🚀 are",
];
