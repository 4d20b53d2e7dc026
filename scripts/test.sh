#!/usr/bin/env bash
# Everything a fresh Debian machine needs to run the test suite: packages, builds, tests.
#
#   scripts/test.sh                  both lanes: Debian's libtorch 1.13 (build/), then PyTorch 2.x with
#                                    CUDA (build-torch/); the Slurm cluster test and the fuzz smoke once
#   scripts/test.sh --debian         the Debian lane, the Slurm cluster test and the fuzz smoke
#   scripts/test.sh --python-torch   the 2.x lane alone
#
# The 2.x lane builds as GPU nodes do: a virtual environment (AIR_TORCH_VENV, default .venv-torch)
# gets torch from PyPI at the version and sha256 hashes of scripts/torch/requirements.txt
# (--require-hashes), air is built against it with CUDA (scripts/build.sh --python-torch: the
# machine's CUDA toolkit, TORCH_CUDA_ARCH_LIST default 8.0;9.0;10.0), and the whole ctest suite
# runs on the CPU. PYTHON names the interpreter that makes the environment (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
lanes=(debian python-torch)
case "${1:-}" in
  "") ;;
  --debian) lanes=(debian) ;;
  --python-torch) lanes=(python-torch) ;;
  *) echo "test.sh: unknown argument '$1' (expected --debian or --python-torch)" >&2; exit 2 ;;
esac
bash scripts/install-deps.sh

lane_seconds=()
run_ctest() {  # build dir
  (cd "$1" && ctest --output-on-failure --parallel "$(nproc)")
}

for lane in "${lanes[@]}"; do
  start=$SECONDS
  if [ "$lane" = debian ]; then
    echo "== test.sh: the Debian lane (libtorch 1.13, CPU) in build/" >&2
    bash scripts/build.sh
    run_ctest build
    # The cluster path on a real one-node Slurm cluster (brought up and stopped by the script; root only).
    if [ "$(id -u)" -eq 0 ]; then
      bash tests/slurm/cluster-test.sh build/air
    else
      echo "test.sh: not root: the Slurm cluster test is left out (tests/slurm/cluster-test.sh)" >&2
    fi
    # Fuzz smoke: each libFuzzer target for 30 s from its seeds (the long runs: docs/RELIABILITY.md).
    bash scripts/fuzz.sh all "${AIR_FUZZ_SECONDS:-30}"
  else
    echo "== test.sh: the PyTorch 2.x lane (CUDA build, tests on the CPU) in build-torch/" >&2
    venv=${AIR_TORCH_VENV:-.venv-torch}
    req=scripts/torch/requirements.txt
    stamp="$venv/.air-requirements.sha256"
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
      "${PYTHON:-python3}" -m venv "$venv"
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$req"
      echo "$want" >"$stamp"
    fi
    PYTHON="$venv/bin/python" bash scripts/build.sh --python-torch
    # The binary must be the CUDA build, linked against libtorch_cuda. (ldd's output is read whole
    # first: under pipefail, `ldd | grep -q` fails whenever grep's early exit kills ldd with SIGPIPE.)
    libs=$(ldd build-torch/air)
    if ! grep -q 'libtorch_cuda\.so' <<<"$libs"; then
      echo "test.sh: build-torch/air does not link libtorch_cuda.so" >&2; exit 1
    fi
    build-torch/air --version
    run_ctest build-torch
  fi
  lane_seconds+=("$lane $((SECONDS - start)) s")
done
echo "test.sh: passed: ${lane_seconds[*]}" >&2
