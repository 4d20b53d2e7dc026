#!/usr/bin/env bash
# GPU check: builds air against the libtorch 2.x (CUDA) inside the machine's PyTorch, runs the
# parity tests on CUDA in fp32 and bf16, then the bf16 scoring benchmark, and prints a short
# table last.
#
# The GPU machine reaches no package registry, so the few Debian packages the build needs are
# carried: on a Debian machine with apt, `scripts/gpu-check.sh --fetch` downloads them into
# .gpu/debs/; on the GPU machine they are unpacked into a private prefix (never into /).
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(nlohmann-json3-dev libcli11-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libgtest-dev
      libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libutf8proc-dev
      libutf8proc2 libxxhash-dev libxxhash0 libtomlplusplus-dev libtomlplusplus3)
if [ "${1:-}" = "--fetch" ]; then
  mkdir -p .gpu/debs
  (cd .gpu/debs && apt-get download "${debs[@]}")
  exit 0
fi

out=${OUT:-build-gpu/out}
mkdir -p "$out"
log="$out/gpu-check.log"
exec > >(tee "$log") 2>&1

prefix=${DEPS_PREFIX:-/tmp/air-deps}
if compgen -G ".gpu/debs/*.deb" >/dev/null; then
  mkdir -p "$prefix"
  for f in .gpu/debs/*.deb; do dpkg -x "$f" "$prefix"; done
fi
python=${PYTHON:-python3}
torch_lib=$("$python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
echo "== torch $("$python" -c 'import torch; print(torch.__version__, torch.version.cuda)'), $(nvidia-smi -L | head -1)"
export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:$torch_lib:${LD_LIBRARY_PATH:-}"

# The same build as the 2.x lane of scripts/test.sh, for this GPU's architecture.
echo "== configure and build"
PYTHON="$python" AIR_BUILD_DIR=build-gpu AIR_EXTRA_PREFIX="$prefix/usr" \
  TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" bash scripts/build.sh --python-torch
build-gpu/air --version

status=0
echo "== parity on CUDA, fp32 (losses within 1e-4 of HuggingFace, plain and masked; argmax)"
AIR_TEST_DEVICE=cuda AIR_TEST_DTYPE=fp32 build-gpu/air_tests --gtest_brief=1 \
  --gtest_filter='Fixtures/ParityTest.PlainLosses*:Fixtures/ParityTest.MaskedHead*:Fixtures/ParityTest.Attention*:ReferenceModelTest.*' || status=1
echo "== parity on CUDA, bf16 (within 5e-2 of fp32)"
AIR_TEST_DEVICE=cuda build-gpu/air_tests --gtest_brief=1 --gtest_filter='Fixtures/ParityTest.Bf16*' || status=1

echo "== end to end on CUDA (bundled model and corpus)"
build-gpu/air score --model models/stories260K --data data/stories-sample.jsonl --device cuda \
  --dtype fp32 --num-heads 2 --out "$out/scores-cuda.jsonl" || status=1

if [ -z "${SKIP_BENCH:-}" ]; then
  echo "== benchmark, bf16"
  AIR=build-gpu/air BENCH_OUT="$out" bash scripts/bench.sh gpu || status=1
fi

echo "== summary"
"$python" - "$out" <<'PY'
import glob, json, os, sys
rows = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "gpu-*.json"))):
    d = json.load(open(f))
    for r in d["rows"]:
        rows.append((d["shape"], r["workload"], r["method"], r["tokens_per_s"], r["gflops"],
                     100 * r["gflops"] / r["chip_gflops"] if r["chip_gflops"] else 0, r["ratio"], r["max_score_diff"]))
print(f"{'shape':14} {'workload':16} {'method':15} {'tokens/s':>10} {'TFLOP/s':>8} {'of chip':>8} {'ratio':>6} {'max|d|':>8}")
for s, w, m, tps, gf, pct, ratio, d in rows:
    print(f"{s:14} {w:16} {m:15} {tps:10.0f} {gf/1000:8.1f} {pct:7.1f}% {ratio:6.2f} {d:8.1e}")
PY
exit $status
