#!/usr/bin/env bash
# The test command: every test of the workspace, optimised (the model-level
# tests are slow without), with llama.cpp linked as the parity reference.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace --features llama-cpp "$@"
