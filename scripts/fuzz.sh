#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UndefinedBehaviorSanitizer) into
# build-fuzz/ and runs one, or each in turn, for SECONDS, starting from tests/fuzz/seeds/TARGET.
#   scripts/fuzz.sh TARGET|all SECONDS
# TARGET: safetensors config tokenizer_json tokenizer_model corpus heads scores.
# Exits non-zero on a crash, leak or timeout; the input that caused it is kept as
# build-fuzz/crash-TARGET-*. Each run's figures go to build-fuzz/fuzz_TARGET.log.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(safetensors config tokenizer_json tokenizer_model corpus heads scores)
target=${1:?usage: scripts/fuzz.sh TARGET|all SECONDS}
seconds=${2:-60}
build=build-fuzz
if [ "$target" = all ]; then targets=("${all[@]}"); else targets=("$target"); fi
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (one of: ${all[*]})" >&2; exit 2; }
done

if [ ! -f $build/CMakeCache.txt ]; then
  generator=()
  if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
  cmake -S . -B $build "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
    -DAIR_FUZZ=ON -DAIR_BUILD_TESTS=OFF -DAIR_TCMALLOC=OFF >/dev/null
fi
cmake --build $build --parallel "$(nproc)" --target "${targets[@]/#/fuzz_}"

# libtorch keeps allocations of its own for the process's life; the sanitizers' other checks stay.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:detect_odr_violation=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  corpus=$build/corpus/$t
  mkdir -p "$corpus"
  echo "fuzz.sh: $t for ${seconds} s" >&2
  if ! $build/fuzz_$t -max_total_time="$seconds" -timeout=25 -rss_limit_mb=4096 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$build/crash-$t-" "$corpus" "tests/fuzz/seeds/$t" \
        >"$build/fuzz_$t.log" 2>&1; then
    echo "fuzz.sh: $t FAILED (see $build/fuzz_$t.log)" >&2
    tail -40 "$build/fuzz_$t.log" >&2
    status=1
  fi
  # The last status line: executions, coverage, features, corpus.
  grep -E '^#[0-9]+' "$build/fuzz_$t.log" | tail -1 >&2 || true
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$build/fuzz_$t.log" >&2 || true
done
exit $status
