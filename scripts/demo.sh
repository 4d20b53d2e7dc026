#!/usr/bin/env bash
# The main job on the bundled default model and sample corpus: installs, builds, then runs the
# whole AIR pipeline (probe, score, select), prints the top samples with their most influential
# steps, and writes the HTML report (path printed last). Outputs go to build/demo/ (or $OUT_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh >/dev/null
air=build/air
model=${MODEL:-models/stories260K}
data=${DATA:-data/stories-sample.jsonl}
out=${OUT_DIR:-build/demo}
mkdir -p "$out"

"$air" inspect --model "$model"
echo
"$air" probe --model "$model" --data "$data" --out "$out/heads.json"
"$air" score --model "$model" --data "$data" --heads "$out/heads.json" --out "$out/scores.jsonl"
"$air" select --data "$data" --scores "$out/scores.jsonl" --top-ratio 0.25 --order rank \
  --out "$out/selected.jsonl" --weights-out "$out/step-weights.jsonl" --show 5
"$air" report --scores "$out/scores.jsonl" --data "$data" --heads "$out/heads.json" --top-ratio 0.25 \
  --samples 5 --out "$out/report.html"
echo
echo "outputs in $out/: heads.json, scores.jsonl (+ .meta.json), selected.jsonl, step-weights.jsonl, report.html"
echo "report: $(realpath "$out/report.html")"
