#!/usr/bin/env bash
# The test command: every Rust test of the workspace, optimised (the
# model-level tests are slow without), with llama.cpp linked as the parity
# reference; then the C ABI and its bindings (C under valgrind, C++, Python,
# Go) against the built library. Needs the models (scripts/fetch-models.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace --features llama-cpp "$@"
bindings/test-all.sh
