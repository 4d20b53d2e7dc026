#!/usr/bin/env bash
# How `air report` scales: writes N synthetic score records (default 1,000,000; random scores,
# lengths, baselines and 5 steps each, no corpus) and times the report of them, with its size
# and peak memory. Usage: scripts/report-scale.sh [N] [AIR]
set -euo pipefail
n=${1:-1000000}
air=${2:-build/air}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v n="$n" 'BEGIN { srand(7);
  for (i = 1; i <= n; i++) {
    t = 20 + int(rand() * 4000); lb = 0.3 + rand(); s = (rand() - 0.3) * 0.4 + 0.0001 * t / 40;
    printf "{\"id\":\"r%d\",\"line\":%d,\"line_hash\":\"%016x\",\"air_score\":%.6f,\"loss_base\":%.4f,\"loss_ref\":%.4f,\"n_tokens\":%d,\"n_prompt_tokens\":50,\"truncated\":false,\"response_length\":%d,\"mean_base_loss\":%.4f,\"mean_base_entropy\":%.4f,\"steps\":[", i, i, i * 2654435761 % 4294967296, s, lb, lb * (1 + s), t, t, lb, lb + rand();
    b = 0;
    for (k = 0; k < 5; k++) { e = b + 40 + int(rand() * 200); printf "%s{\"begin\":%d,\"end\":%d,\"n_tokens\":%d,\"loss_base\":%.3f,\"loss_ref\":%.3f,\"score\":%.4f,\"weight\":%.3f}", (k ? "," : ""), b, e, int(t / 5), lb, lb, s + (rand() - 0.5) * 0.2, 0.5 + rand(); b = e }
    printf "]}\n" } }' > "$work/scores.jsonl"
echo "report-scale: $n records, $(du -h "$work/scores.jsonl" | cut -f1) of scores" >&2
/usr/bin/time -f "report-scale: %e s wall, %M KB peak memory" "$air" report --scores "$work/scores.jsonl" \
  --top-k 1000 --out "$work/report.html" --log-level warn
echo "report-scale: report $(stat -c %s "$work/report.html") bytes" >&2
