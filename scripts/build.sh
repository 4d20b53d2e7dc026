#!/usr/bin/env bash
# Configures and builds air (Release).
#
#   scripts/build.sh [CMAKE_ARGS...]                  Debian's libtorch (1.13, CPU) into build/
#   scripts/build.sh --python-torch [CMAKE_ARGS...]   the libtorch inside $PYTHON's torch (2.x; the
#                                                     build GPU nodes use) into build-torch/
#
# With --python-torch: CMAKE_PREFIX_PATH comes from torch.utils.cmake_prefix_path. A torch with CUDA
# needs a CUDA toolkit of the same major version to configure against (its CMake files ask for
# one): CUDA_HOME or CUDA_PATH when set (then it must hold bin/nvcc), else nvcc on PATH, else
# /usr/local/cuda. air's own CUDA code is compiled for TORCH_CUDA_ARCH_LIST (default
# "8.0;9.0;10.0": A100, H100/H200, B200; PyTorch's spellings, e.g. "9.0+PTX" or "8.0 9.0");
# AIR_CUDA=OFF leaves air's CUDA code out (the toolkit is still needed by torch's CMake files).
# A build directory configured for another torch is configured afresh.
# AIR_BUILD_DIR overrides the build directory; AIR_EXTRA_PREFIX adds a prefix where the other
# libraries are searched (after torch's). Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
lane=debian
cmake_args=()
for a in "$@"; do
  if [ "$a" = "--python-torch" ]; then lane=python-torch; else cmake_args+=("$a"); fi
done
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
args=(-DCMAKE_BUILD_TYPE=Release)
fail() { echo "build.sh: $*" >&2; exit 1; }

if [ "$lane" = debian ]; then
  dir=${AIR_BUILD_DIR:-build}
else
  dir=${AIR_BUILD_DIR:-build-torch}
  python=${PYTHON:-python3}
  info=$("$python" - 2>/dev/null <<'PY'
import os, torch
print(torch.utils.cmake_prefix_path)
print(torch.__version__)
print(torch.version.cuda or "")
print(os.path.dirname(torch.__file__))
PY
) || fail "'$python' cannot import torch (set PYTHON to the interpreter of your PyTorch environment)"
  { read -r torch_cmake; read -r torch_version; read -r torch_cuda; read -r torch_root; } <<<"$info"
  echo "build.sh: torch $torch_version (CUDA ${torch_cuda:-none}) from $python, into $dir/" >&2
  # A directory configured for another torch keeps that torch in its cache: start it afresh.
  if [ -f "$dir/CMakeCache.txt" ]; then
    old=$(sed -n 's/^Torch_DIR:[A-Z]*=//p' "$dir/CMakeCache.txt")
    if [ -n "$old" ] && [ "$(realpath -m "$old")" != "$(realpath -m "$torch_cmake/Torch")" ]; then
      echo "build.sh: $dir/ was configured for the torch in $old; configuring it afresh" >&2
      rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
    fi
  fi
  # The torch folder first, so that its lib/ is searched before a system libtorch (Debian's).
  args+=("-DCMAKE_PREFIX_PATH=$torch_root;$torch_cmake${AIR_EXTRA_PREFIX:+;$AIR_EXTRA_PREFIX}")
  if [ -n "$torch_cuda" ]; then
    nvcc=""
    for var in CUDA_HOME CUDA_PATH; do
      c=${!var:-}
      [ -n "$c" ] || continue
      [ -x "$c/bin/nvcc" ] || fail "$var=$c, but $c/bin/nvcc does not exist (point $var at a CUDA toolkit, or unset it)"
      nvcc="$c/bin/nvcc"; break
    done
    if [ -z "$nvcc" ]; then nvcc=$(command -v nvcc || true); fi
    if [ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ]; then nvcc=/usr/local/cuda/bin/nvcc; fi
    [ -n "$nvcc" ] || fail "torch $torch_version has CUDA $torch_cuda, and its CMake files need a CUDA toolkit: none was found (set CUDA_HOME, e.g. after 'module load cuda', or put nvcc on PATH)"
    cuda_root=$(cd "$(dirname "$nvcc")/.." && pwd)
    nvcc_version=$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
    [ "${nvcc_version%%.*}" = "${torch_cuda%%.*}" ] ||
      fail "the CUDA toolkit $cuda_root is $nvcc_version, torch was built with CUDA $torch_cuda: use a toolkit of the same major version (set CUDA_HOME)"
    export CUDA_HOME=$cuda_root CUDA_PATH=$cuda_root CUDACXX=$nvcc
    args+=("-DCMAKE_CUDA_COMPILER=$nvcc" "-DCUDAToolkit_ROOT=$cuda_root" "-DCUDA_TOOLKIT_ROOT_DIR=$cuda_root")
    case "$(echo "${AIR_CUDA:-ON}" | tr '[:upper:]' '[:lower:]')" in
      off|0|false|no|n)
        echo "build.sh: CUDA toolkit $cuda_root ($nvcc_version); air's CUDA code left out (AIR_CUDA=${AIR_CUDA})" >&2
        args+=(-DAIR_CUDA=OFF) ;;
      *)
        arch=${TORCH_CUDA_ARCH_LIST:-8.0;9.0;10.0}
        echo "build.sh: CUDA toolkit $cuda_root ($nvcc_version), TORCH_CUDA_ARCH_LIST $arch" >&2
        args+=(-DAIR_CUDA=ON "-DTORCH_CUDA_ARCH_LIST=$arch") ;;
    esac
  else
    args+=(-DAIR_CUDA=OFF)
  fi
fi

if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S . -B "$dir" "${generator[@]}" "${args[@]}" "${cmake_args[@]}"
elif [ "$lane" != debian ] || [ ${#cmake_args[@]} -gt 0 ]; then
  cmake -S . -B "$dir" "${args[@]}" "${cmake_args[@]}"
fi
cmake --build "$dir" --parallel "$(nproc)"
