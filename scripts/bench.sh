#!/usr/bin/env bash
# Runs the scoring benchmarks of docs/PERFORMANCE.md and prints their tables.
# Usage: scripts/bench.sh [quick|cpu|bf16|moe|memory|gpu] [extra air bench score flags...]
#   quick: the small shape only (a minute); cpu: the fp32 CPU table (about half an hour on 2
#   cores); bf16: the CPU in bf16, with both methods in fp32 beside it and the ranking against
#   air fp32 (about 20 minutes); memory: one 32k-token sample on the 0.5B shape, air only (peak
#   RSS); moe: the Qwen3-MoE-like shape (8 experts, top-2); gpu: bf16 on cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-quick}
shift || true
air=${AIR:-build/air}
lengths=${LENGTHS_FROM:-data/gsm8k-sample.jsonl}
out=${BENCH_OUT:-build/bench}
mkdir -p "$out"
run() { echo "\$ air bench score $*"; "$air" bench score "$@" || echo "(failed: exit $?)"; echo; }

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
    run --shape qwen2.5-0.5b --samples 256 --lengths-from "$lengths" --device cuda --dtype bf16 --json "$out/gpu-05b-short.json" "$@"
    run --shape qwen2.5-0.5b --workload long --lengths 4096 --device cuda --dtype bf16 --json "$out/gpu-05b-4k.json" "$@"
    run --shape qwen2.5-1.5b --workload long --lengths 4096 --device cuda --dtype bf16 --json "$out/gpu-15b-4k.json" "$@"
    ;;
  *) echo "usage: scripts/bench.sh [quick|cpu|bf16|moe|memory|memory-bf16|gpu]" >&2; exit 2 ;;
esac
