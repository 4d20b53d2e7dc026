#!/usr/bin/env bash
# Installs the Debian packages air builds and runs with. Safe to re-run.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config curl ca-certificates
  libtorch-dev
  libopenblas0-openmp
  libtcmalloc-minimal4
  libpcre2-dev
  libutf8proc-dev
  libxxhash-dev
  nlohmann-json3-dev
  libcli11-dev
  libspdlog-dev
  libgtest-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present" >&2
else
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# libtorch's own CPU kernels run on OpenMP (libgomp). OpenBLAS built for OpenMP shares that
# thread pool; the pthreads build keeps a second pool whose threads spin between calls and,
# on few cores, take the CPU from torch's (a model's forward alternates between the two all
# the time). Make the OpenMP build the system BLAS/LAPACK even where another is installed
# (AIR_KEEP_BLAS=1 leaves the system's choice alone).
[ "${AIR_KEEP_BLAS:-0}" = 1 ] && exit 0
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  want=/usr/lib/$arch/openblas-openmp/$lib
  if [ -e "$want" ] && [ "$(readlink -f "/usr/lib/$arch/$lib")" != "$(readlink -f "$want")" ]; then
    echo "install-deps: $lib -> $want" >&2
    $sudo update-alternatives --set "$lib-$arch" "$want" >/dev/null
  fi
done
