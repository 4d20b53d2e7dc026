#!/usr/bin/env bash
# Everything a fresh Debian machine needs to run the test suite: packages, build, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/fetch-tokenizers.sh
bash scripts/build.sh
cd build
ctest --output-on-failure --parallel "$(nproc)"
cd ..
# The cluster path on a real one-node Slurm cluster (brought up and stopped by the script; root only).
if [ "$(id -u)" -eq 0 ]; then
  bash tests/slurm/cluster-test.sh build/air
else
  echo "test.sh: not root: the Slurm cluster test is left out (tests/slurm/cluster-test.sh)" >&2
fi
# Fuzz smoke: each libFuzzer target for 30 s from its seeds (the long runs: docs/RELIABILITY.md).
bash scripts/fuzz.sh all "${AIR_FUZZ_SECONDS:-30}"
