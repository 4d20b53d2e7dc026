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
# Fuzz smoke: each libFuzzer target for 30 s from its seeds (the long runs: docs/RELIABILITY.md).
bash scripts/fuzz.sh all "${AIR_FUZZ_SECONDS:-30}"
