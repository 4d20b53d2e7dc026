#!/usr/bin/env bash
# Writes every command's outputs on the bundled corpus and the GSM8K sample into OUT_DIR, with
# the run-dependent fields (times, paths) taken out of the metas, so that two builds can be
# compared byte for byte: bash scripts/golden.sh build/air before/ && ... && diff -r before/ after/
set -euo pipefail
air=$(realpath "$1")
out=$(realpath -m "$2")
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
cd "$out"
model="$root/models/stories260K"
head -n 64 "$root/data/gsm8k-sample.jsonl" > gsm8k.jsonl
cp "$root/data/stories-sample.jsonl" stories.jsonl
for c in stories gsm8k; do
  delim='\n\s*\n'; [ $c = gsm8k ] && delim='\n'
  "$air" probe --model "$model" --data $c.jsonl --out $c.heads.json --num-heads 3 --threads 1 2> $c.probe.log
  "$air" score --model "$model" --data $c.jsonl --heads $c.heads.json --out $c.scores.jsonl \
         --emit-token-scores --step-delimiter "$delim" --threads 1 2> $c.score.log
  "$air" score --model "$model" --data $c.jsonl --out $c.auto.jsonl --threads 1 2> $c.auto.log
  "$air" select --data $c.jsonl --scores $c.scores.jsonl --top-k 10 --annotate \
         --weights-out $c.weights.jsonl --out $c.selected.jsonl 2> $c.select.log
  "$air" select --data $c.jsonl --scores $c.auto.jsonl --top-ratio 0.5 --dedupe --order rank \
         --out $c.auto-selected.jsonl 2> $c.auto-select.log
  "$air" render --model "$model" --data $c.jsonl --tokens --out $c.rendered.jsonl 2> $c.render.log
done
# Times and this run's paths are not outputs to compare.
for m in *.meta.json; do
  jq -S 'del(.wall_seconds, .runs)' "$m" > "$m.cmp" && mv "$m.cmp" "$m"
done
rm -f ./*.log
