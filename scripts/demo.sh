#!/usr/bin/env bash
# The main job on the bundled default model: installs, builds, then runs air on stories260K.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh >/dev/null
air=build/air
model=models/stories260K
out=${OUT_DIR:-build/demo}
mkdir -p "$out"

echo "== air inspect --model $model"
"$air" inspect --model "$model"

echo
echo "== air loss: per-token losses, plain and with heads 1:5,3:2 uniform"
"$air" loss --model "$model" --input data/stories260K-ids.jsonl --out "$out/loss.jsonl"
"$air" loss --model "$model" --input data/stories260K-ids.jsonl --mask-heads 1:5,3:2 \
  --out "$out/loss-masked.jsonl"
python3 - "$out/loss.jsonl" "$out/loss-masked.jsonl" <<'PY' 2>/dev/null || true
import json, sys
base = [json.loads(l)["per_token_loss"] for l in open(sys.argv[1])]
ref = [json.loads(l)["per_token_loss"] for l in open(sys.argv[2])]
for i, (b, r) in enumerate(zip(base, ref)):
    mb, mr = sum(b) / len(b), sum(r) / len(r)
    print(f"sequence {i}: {len(b)} tokens, mean loss {mb:.4f} plain, {mr:.4f} masked, "
          f"relative rise {(mr - mb) / mb:+.4f}")
PY
echo "outputs in $out/"
