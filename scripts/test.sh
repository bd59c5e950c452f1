#!/usr/bin/env bash
# The test command. On a fresh machine of this project's kind it installs
# what it needs, then runs every test:
#
#   1. apt packages when missing: cmake, clang and libclang-dev (llama.cpp,
#      the parity reference behind the `llama-cpp` feature, builds with
#      cmake; its bindings need libclang), the aarch64 cross compiler and
#      qemu-user (the aarch64 tests are cross-built and run under
#      qemu-aarch64), and what bindings/test-all.sh needs (valgrind, g++,
#      Go, make; it installs those itself too).
#   2. The real models (scripts/fetch-models.sh: pip, checked by sha256).
#   3. cargo fmt --check; the library (NEON kernels included) compiled for
#      aarch64; its kernel unit tests (NEON against the scalar twins, random
#      rows and the real models' tensors) and tests/receipts_across_machines.rs
#      cross-built for it and run under qemu-aarch64 (.cargo/config.toml names the linker and the
#      runner), once with the NEON kernels and once with the scalar
#      reference: receipts made on x86-64 are remade there bit for bit.
#   4. Every Rust test of the workspace, optimised (the model-level tests
#      are slow without), with llama.cpp linked as the parity reference;
#      it also regenerates include/strata.h and fails on any difference.
#   5. bindings/test-all.sh: the C example and misuse suite under valgrind,
#      the panic-boundary test, and the C++, Python (pytest in a venv under
#      target/) and Go bindings' tests.
#   6. server/tests/openai: `strata serve` end to end, driven by the official
#      `openai` Python client (pytest in the venv target/openai-venv, the
#      versions pinned in server/tests/openai/requirements.txt).
#
# Arguments are passed to `cargo test` (e.g. `scripts/test.sh --test frames`).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "test: $*"; }

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_apt+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null 2>&1 || need_apt+=(qemu-user)
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing ${need_apt[*]}: install them (apt-get install ${need_apt[*]}) or run as root"
    exit 1
  fi
  log "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

log "fetching the models"
scripts/fetch-models.sh all >/dev/null

log "formatting"
cargo fmt --all -- --check

log "the library (NEON kernels included) compiles for aarch64"
if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
  || timeout 600 rustup target add aarch64-unknown-linux-gnu; then
  cargo check --release --target aarch64-unknown-linux-gnu --lib
  log "the NEON kernels against their scalar twins on aarch64 (qemu-aarch64)"
  cargo test --release --target aarch64-unknown-linux-gnu --lib kernels::
  log "receipts on aarch64 (qemu-aarch64): the NEON kernels, then the scalar reference"
  STRATA_ISA=neon cargo test --release --target aarch64-unknown-linux-gnu \
    --test receipts_across_machines
  STRATA_FORCE_SCALAR=1 cargo test --release --target aarch64-unknown-linux-gnu \
    --test receipts_across_machines
else
  # The target's standard library comes from rustup's servers, not a
  # package registry; without them the check cannot run here.
  log "SKIPPED the aarch64 check and the aarch64 receipts: rustup could not install the target"
fi

log "Rust tests"
cargo test --release --workspace --features llama-cpp "$@"

log "the C ABI and its bindings"
bindings/test-all.sh

log "strata serve through the openai client"
# bindings/test-all.sh has just built the workspace (this is then a no-op);
# the suite starts target/release/strata serve itself.
cargo build --release --workspace --quiet
target=${CARGO_TARGET_DIR:-$PWD/target}
[ -x "$target/release/strata" ] || { log "missing $target/release/strata"; exit 1; }
venv=$target/openai-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r server/tests/openai/requirements.txt
models=${STRATA_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/models}
STRATA_BIN=$target/release/strata \
  STRATA_TEST_MODEL=${STRATA_TEST_MODEL:-$models/SmolLM2-135M-Instruct.Q4_1.gguf} \
  PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider server/tests/openai
