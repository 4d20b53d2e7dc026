#!/usr/bin/env bash
# Runs the scoring benchmarks of docs/PERFORMANCE.md and prints their tables.
# Usage: scripts/bench.sh [quick|cpu|bf16|moe|memory|gpu] [extra air bench score flags...]
#   quick: the small shape only (a minute); cpu: the fp32 CPU table (about half an hour on 2
#   cores); bf16: the CPU in bf16, with both methods in fp32 beside it and the ranking against
#   air fp32 (about 20 minutes); memory: one 32k-token sample on the 0.5B shape, air only (peak
#   RSS); moe: the Qwen3-MoE-like shape (8 experts, top-2); gpu: bf16 on cuda, the 0.5B, 1.5B
#   and 7B shapes, with the GPU's peak memory; lanes: the small and 0.5B shapes in bf16 and fp32 with
#   each build, Debian's libtorch 1.13 (build/air) and PyTorch 2.x (build-torch/air), one after
#   the other, and a table of both (about 25 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-quick}
shift || true
air=${AIR:-build/air}
lengths=${LENGTHS_FROM:-data/gsm8k-sample.jsonl}
out=${BENCH_OUT:-build/bench}
mkdir -p "$out"
run() { echo "\$ air bench score $*"; "$air" bench score "$@" || echo "(failed: exit $?)"; echo; }
# run, and the GPU memory in use at its peak (nvidia-smi every 100 ms: what the process held,
# the caching allocator's reserve and the CUDA context included).
gpu_run() {
  if ! command -v nvidia-smi >/dev/null 2>&1; then run "$@"; return; fi
  local samples
  samples=$(mktemp)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$samples" 2>/dev/null &
  local sampler=$!
  run "$@"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  echo "peak GPU memory in use (nvidia-smi): $(sort -n "$samples" | tail -1) MiB"
  echo
  rm -f "$samples"
}

case "$mode" in
  quick)
    run --shape small --samples 64 --lengths-from "$lengths" "$@"
    ;;
  cpu)
    run --shape small --samples 256 --lengths-from "$lengths" --dtype fp32 --json "$out/small-short.json" "$@"
    run --shape small --workload long --lengths 1024 4096 16384 --dtype fp32 --json "$out/small-long.json" "$@"
    run --shape qwen2.5-0.5b --samples 256 --lengths-from "$lengths" --dtype fp32 --json "$out/05b-short.json" "$@"
    run --shape qwen2.5-0.5b --workload long --lengths 4096 --dtype fp32 --json "$out/05b-4k.json" "$@"
    ;;
  bf16)
    run --shape small --samples 256 --lengths-from "$lengths" --dtype bf16 --json "$out/bf16-small-short.json" "$@"
    run --shape qwen2.5-0.5b --samples 64 --lengths-from "$lengths" --dtype bf16 --json "$out/bf16-05b-short.json" "$@"
    run --shape qwen2.5-0.5b --workload long --lengths 4096 --dtype bf16 --json "$out/bf16-05b-4k.json" "$@"
    ;;
  moe)
    run --shape qwen3-moe-small --samples 256 --lengths-from "$lengths" --dtype fp32 --json "$out/moe-short.json" "$@"
    run --shape qwen3-moe-small --workload long --lengths 4096 --dtype fp32 --json "$out/moe-4k.json" "$@"
    ;;
  memory)
    run --shape qwen2.5-0.5b --workload long --lengths 32768 --no-baseline --rounds 1 --dtype fp32 --json "$out/05b-32k.json" "$@"
    ;;
  memory-bf16)
    run --shape qwen2.5-0.5b --workload long --lengths 32768 --no-baseline --rounds 1 --dtype bf16 --json "$out/bf16-05b-32k.json" "$@"
    ;;
  gpu)
    gpu_run --shape qwen2.5-0.5b --samples 256 --lengths-from "$lengths" --device cuda --dtype bf16 --json "$out/gpu-05b-short.json" "$@"
    gpu_run --shape qwen2.5-0.5b --workload long --lengths 4096 --device cuda --dtype bf16 --json "$out/gpu-05b-4k.json" "$@"
    gpu_run --shape qwen2.5-1.5b --workload long --lengths 4096 --device cuda --dtype bf16 --json "$out/gpu-15b-4k.json" "$@"
    # Qwen2.5-7B's shape, its 15 GB of random weights drawn on the GPU: at 4k with the
    # straightforward method beside it, at 32k alone (its [28, 32k, 32k] probabilities would
    # not fit).
    gpu_run --shape qwen2.5-7b --workload long --lengths 4096 --device cuda --dtype bf16 --json "$out/gpu-7b-4k.json" "$@"
    gpu_run --shape qwen2.5-7b --workload long --lengths 32768 --no-baseline --device cuda --dtype bf16 --json "$out/gpu-7b-32k.json" "$@"
    ;;
  lanes)
    for lane in debian:${AIR_DEBIAN:-build/air} torch:${AIR_TORCH:-build-torch/air}; do
      air=${lane#*:}
      "$air" --version
      run --shape small --samples 128 --lengths-from "$lengths" --dtype bf16 --json "$out/lanes-${lane%%:*}-small.json" "$@"
      run --shape qwen2.5-0.5b --samples 24 --lengths-from "$lengths" --dtype bf16 --json "$out/lanes-${lane%%:*}-05b.json" "$@"
    done
    python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = {}
for lane in ("debian", "torch"):
    for shape in ("small", "05b"):
        f = os.path.join(out, f"lanes-{lane}-{shape}.json")
        if not os.path.exists(f):
            continue
        d = json.load(open(f))
        for r in d["rows"]:
            rows[(d["shape"], r["dtype"], r["method"], lane)] = r["tokens_per_s"]
print(f"{'shape':14} {'dtype':5} {'method':15} {'1.13 tok/s':>11} {'2.x tok/s':>10} {'2.x / 1.13':>10}")
for (shape, dtype, method) in sorted({k[:3] for k in rows}):
    a, b = rows.get((shape, dtype, method, "debian")), rows.get((shape, dtype, method, "torch"))
    fa = f"{a:11.1f}" if a else f"{'-':>11}"
    fb = f"{b:10.1f}" if b else f"{'-':>10}"
    ratio = f"{b / a:10.2f}" if a and b else f"{'-':>10}"
    print(f"{shape:14} {dtype:5} {method:15} {fa} {fb} {ratio}")
for lane in ("debian", "torch"):
    for shape in ("small", "qwen2.5-0.5b"):
        sf = rows.get((shape, "fp32", "straightforward", lane))
        ab = rows.get((shape, "bf16", "air", lane))
        if sf and ab:
            print(f"{lane:6} {shape:14} air bf16 over straightforward fp32 (same build): {ab / sf:.2f}x")
PY
    ;;
  *) echo "usage: scripts/bench.sh [quick|cpu|bf16|moe|memory|memory-bf16|gpu|lanes]" >&2; exit 2 ;;
esac
