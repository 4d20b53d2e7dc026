#!/usr/bin/env bash
# Configures and builds air (Release).
#
#   scripts/build.sh [CMAKE_ARGS...]                  Debian's libtorch (1.13, CPU) into build/
#   scripts/build.sh --python-torch [CMAKE_ARGS...]   the libtorch inside $PYTHON's torch (2.x; the
#                                                     build GPU nodes use) into build-torch/
#
# With --python-torch: CMAKE_PREFIX_PATH comes from torch.utils.cmake_prefix_path. When that torch
# has CUDA and a CUDA toolkit is found (CUDA_HOME, CUDA_PATH, nvcc on PATH, /usr/local/cuda), air is
# compiled and linked against it for TORCH_CUDA_ARCH_LIST (default "8.0;9.0;10.0": A100, H100/H200,
# B200); AIR_CUDA=OFF builds without CUDA, for a CUDA torch on a machine without a toolkit.
# AIR_BUILD_DIR overrides the build directory; AIR_EXTRA_PREFIX adds a prefix where the other
# libraries are searched (after torch's). Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
lane=debian
if [ "${1:-}" = "--python-torch" ]; then lane=python-torch; shift; fi
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
args=(-DCMAKE_BUILD_TYPE=Release)

if [ "$lane" = debian ]; then
  dir=${AIR_BUILD_DIR:-build}
else
  dir=${AIR_BUILD_DIR:-build-torch}
  python=${PYTHON:-python3}
  info=$("$python" - <<'PY'
import os, torch
print(torch.utils.cmake_prefix_path)
print(torch.__version__)
print(torch.version.cuda or "")
print(os.path.dirname(torch.__file__))
PY
) || { echo "build.sh: '$python' cannot import torch (set PYTHON to the interpreter of your PyTorch environment)" >&2; exit 1; }
  { read -r torch_cmake; read -r torch_version; read -r torch_cuda; read -r torch_root; } <<<"$info"
  echo "build.sh: torch $torch_version (CUDA ${torch_cuda:-none}) from $python, into $dir/" >&2
  # The torch folder first, so that its lib/ is searched before a system libtorch (Debian's).
  args+=("-DCMAKE_PREFIX_PATH=$torch_root;$torch_cmake${AIR_EXTRA_PREFIX:+;$AIR_EXTRA_PREFIX}")
  if [ -n "$torch_cuda" ] && [ "${AIR_CUDA:-ON}" != OFF ]; then
    nvcc=""
    for c in "${CUDA_HOME:-}" "${CUDA_PATH:-}"; do
      if [ -n "$c" ] && [ -x "$c/bin/nvcc" ]; then nvcc="$c/bin/nvcc"; break; fi
    done
    if [ -z "$nvcc" ]; then nvcc=$(command -v nvcc || true); fi
    if [ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ]; then nvcc=/usr/local/cuda/bin/nvcc; fi
    if [ -z "$nvcc" ]; then
      echo "build.sh: torch $torch_version has CUDA $torch_cuda but no CUDA toolkit was found (set CUDA_HOME," >&2
      echo "build.sh: or put nvcc on PATH; AIR_CUDA=OFF builds without CUDA)" >&2
      exit 1
    fi
    cuda_root=$(cd "$(dirname "$nvcc")/.." && pwd)
    arch=${TORCH_CUDA_ARCH_LIST:-8.0;9.0;10.0}
    export CUDA_HOME=$cuda_root CUDACXX=$nvcc
    echo "build.sh: CUDA toolkit $cuda_root ($("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')), architectures $arch" >&2
    args+=(-DAIR_CUDA=ON "-DCMAKE_CUDA_COMPILER=$nvcc" "-DCUDAToolkit_ROOT=$cuda_root" "-DTORCH_CUDA_ARCH_LIST=$arch")
  else
    args+=(-DAIR_CUDA=OFF)
  fi
fi

if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S . -B "$dir" "${generator[@]}" "${args[@]}" "$@"
elif [ "$lane" != debian ] || [ $# -gt 0 ]; then
  cmake -S . -B "$dir" "${args[@]}" "$@"
fi
cmake --build "$dir" --parallel "$(nproc)"
