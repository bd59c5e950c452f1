#!/usr/bin/env bash
# Shard pipeline figures for BENCHMARKS.md: generation speed of a 3-process
# loopback pipeline vs one process, the per-hop overhead, frame size, and the
# resident memory of each shard process vs a whole-model process.
#
# Usage: scripts/bench-shards.sh [MODEL] [N_TOKENS] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-${STRATA_MODELS_DIR:-$HOME/.cache/strata/models}/SmolLM2-135M-Instruct.Q4_1.gguf}
n=${2:-64}
reps=${3:-3}
bin=target/release/strata
[ -x "$bin" ] || cargo build --release -p strata-cli
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

"$bin" split -m "$model" --shards 3 -o "$dir" >/dev/null
addr=""
start() { # file log -> sets $addr once the server is ready (no subshell, so $pids is kept)
  "$bin" shard serve -m "$1" --listen 127.0.0.1:0 -t 2 > "$2" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q serving "$2" && break; sleep 0.1; done
  addr=$(sed -n 's/.* on \([^ ]*\) .*/\1/p' "$2")
}
addrs=()
for f in $(ls "$dir"/*.gguf | sort -t- -k2 -n); do start "$f" "$f.log"; addrs+=("$addr"); done
start "$model" "$dir/whole.log"; whole=$addr
route=$(IFS=,; echo "${addrs[*]}")

prompt="The history of the printing press begins in"
tps() { python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["generation_tokens_per_second"])'; }
echo "| run | local tok/s | 3-hop pipeline tok/s | ratio |"
echo "|---|---:|---:|---:|"
for r in $(seq "$reps"); do
  a=$("$bin" generate -m "$model" -p "$prompt" -n "$n" --temp 0 -t 2 --json | tps)
  b=$("$bin" generate -m "$model" -p "$prompt" -n "$n" --temp 0 --route "$route" --json | tps)
  c=$("$bin" generate -m "$model" -p "$prompt" -n "$n" --temp 0 --route "$whole" --json | tps)
  python3 -c "a,b,c=$a,$b,$c; print(f'| {$r} | {a:.1f} | {b:.1f} | {b/a:.2f} |  (1-hop loopback {c:.1f} tok/s; per-hop overhead {(1/b-1/c)/2*1e3:.2f} ms)')"
done
echo
echo "resident memory after generation (VmRSS):"
i=0
for p in "${pids[@]}"; do
  name=$([ $i -lt 3 ] && echo "shard $i (${addrs[$i]})" || echo "whole model")
  echo "  $name: $(grep VmRSS /proc/$p/status | awk '{printf "%.1f MiB", $2/1024}')"
  i=$((i+1))
done
echo "frame size per token (f32 hidden states): $((80 + 32 + 4 * $(grep -o 'embedding_length *[0-9]*' <("$bin" info "$model") | awk '{print $2}'))) bytes"
