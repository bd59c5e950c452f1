#!/usr/bin/env bash
# Build the library once and run every binding's tests against it:
#
#   C    bindings/c: the example, the misuse suite and the panic test, each
#        linked to the shared and to the static library, run under valgrind
#        (zero errors, zero leaks; see bindings/c/valgrind.supp for the
#        worker-thread blocks it allows); the example's greedy text must
#        equal `strata generate --temp 0` on the real model. The panic test
#        links to a second build with `--features ffi-test-panic` (in
#        $target/ffi-panic), the only one that exports its hook.
#   C++  bindings/cpp: the RAII wrapper's test program.
#   Py   bindings/python: pytest, in a venv under the target dir.
#   Go   bindings/go: go vet and go test.
#
# Installs what is missing (apt: valgrind, g++, golang-go, make; pip: pytest).
# Needs the real model (scripts/fetch-models.sh) for the greedy-text checks.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { echo "test-all: $*"; }

# ---- tools ------------------------------------------------------------------
need_apt=()
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
command -v make >/dev/null 2>&1 || need_apt+=(make)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# ---- the library, once ------------------------------------------------------
# Without the llama-cpp feature: the C library must not carry llama.cpp (the
# static one would then need the C++ runtime). Same target dir as the tests.
log "building the library and the CLI (cargo build --release --workspace)"
cargo build --release --workspace --quiet
target=${CARGO_TARGET_DIR:-$root/target}
libdir=$target/release
cli=$libdir/strata
for f in libstrata.so libstrata.a strata; do
  [ -e "$libdir/$f" ] || { log "missing $libdir/$f"; exit 1; }
done
# The same library plus the strata_test_panic hook, for test_panic.c. Its own
# target dir: building the feature into $target would replace the
# libstrata.so/.a the other suites test (and every later plain build would
# rebuild the crate again).
panic_libdir=$target/ffi-panic/release
log "building the library with the ffi-test-panic hook (into $target/ffi-panic)"
CARGO_TARGET_DIR=$target/ffi-panic cargo build --release -p strata --lib --features ffi-test-panic --quiet
if nm -D --defined-only "$libdir/libstrata.so" | grep -q strata_test_panic; then
  log "$libdir/libstrata.so exports strata_test_panic: the test hook leaked into the normal build"
  exit 1
fi

models=${STRATA_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/models}
real=${STRATA_TEST_MODEL:-$models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$real" ] || { log "$real is missing: run scripts/fetch-models.sh"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
synth() { "$cli" synth -o "$1" --layers 3 --embd 64 --heads 4 --kv-heads 2 --vocab 320 --type Q4_0 --seed "$2" >/dev/null 2>&1; }
synth "$work/a.gguf" 1
synth "$work/b.gguf" 2

passed=()

# ---- C ----------------------------------------------------------------------
log "C: compiling with -Wall -Werror against include/strata.h (shared and static)"
make -s -C bindings/c ROOT="$root" LIBDIR="$libdir" PANIC_LIBDIR="$panic_libdir" OUT="$work/c" all panic
vg() { # name, command...: run under valgrind (program output in $work/name.out/.err),
       # print its summary, fail on any error
  local name=$1; shift
  if ! valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
      --error-exitcode=1 --suppressions="$root/bindings/c/valgrind.supp" \
      --log-file="$work/$name.vg" "$@" >"$work/$name.out" 2>"$work/$name.err"; then
    cat "$work/$name.out" "$work/$name.err" "$work/$name.vg"
    log "C: $name failed under valgrind"
    exit 1
  fi
  local leaks
  leaks=$(grep -h -E 'definitely lost|indirectly lost|possibly lost|  suppressed: [0-9,]+ bytes' "$work/$name.vg" \
    | sed 's/==[0-9]*== *//' | paste -sd ';' - | sed 's/;/; /g')
  echo "  valgrind $name: $(grep -h 'ERROR SUMMARY' "$work/$name.vg" | sed 's/==[0-9]*== //; s/ (suppressed.*//'); ${leaks:-no leaks}"
}
for link in shared static; do
  mkdir -p "$work/misuse-$link"
  vg "test_misuse-$link" "$work/c/test_misuse-$link" "$work/a.gguf" "$work/b.gguf" "$work/misuse-$link"
  sed 's/^/  /' "$work/test_misuse-$link.out"
  vg "generate-$link" "$work/c/generate-$link" "$work/a.gguf" "Hello" 8
  grep -h "pipeline: 2 shards" "$work/generate-$link.err" | sed 's/^/  /'
  vg "test_panic-$link" "$work/c/test_panic-$link" "$work/a.gguf"
  sed 's/^/  /' "$work/test_panic-$link.out"
done
prompt="The capital of France is"
"$work/c/generate-shared" "$real" "$prompt" 24 >"$work/c.txt" 2>"$work/c.err" || { cat "$work/c.err"; exit 1; }
"$work/c/generate-static" "$real" "$prompt" 24 >"$work/c-static.txt" 2>/dev/null
"$cli" generate -m "$real" -p "$prompt" -n 24 --temp 0 >"$work/cli.txt" 2>/dev/null
if ! cmp -s "$work/c.txt" "$work/cli.txt" || ! cmp -s "$work/c-static.txt" "$work/cli.txt"; then
  log "C: greedy text differs from strata generate --temp 0"
  diff "$work/c.txt" "$work/cli.txt" || true
  exit 1
fi
grep -h "pipeline: 2 shards" "$work/c.err" | sed 's/^/  /'
echo "  greedy text from C (shared and static) equals 'strata generate --temp 0' on $(basename "$real")"
passed+=(C)

# ---- C++ --------------------------------------------------------------------
log "C++: strata.hpp tests"
make -s -C bindings/cpp ROOT="$root" LIBDIR="$libdir" OUT="$work/cpp" all
"$work/cpp/test" "$work/a.gguf" "$work/b.gguf"
passed+=(C++)

# ---- Python -----------------------------------------------------------------
log "Python: pytest"
venv=$target/bindings-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pytest" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check pytest
fi
STRATA_LIB=$libdir/libstrata.so STRATA_CLI=$cli STRATA_TEST_MODEL=$real \
  PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider bindings/python/tests
passed+=(Python)

# ---- Go ---------------------------------------------------------------------
log "Go: go vet, go test"
(
  cd bindings/go
  export CGO_LDFLAGS="-L$libdir -Wl,-rpath,$libdir" STRATA_CLI=$cli
  export STRATA_TEST_SYNTH=$work/a.gguf STRATA_TEST_SYNTH_OTHER=$work/b.gguf
  [ -z "$(gofmt -l .)" ] || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
  go vet ./...
  go test -count=1 ./...
)
passed+=(Go)

log "bindings: ${#passed[@]} of 4 suites passed (${passed[*]})"
