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
  zlib1g-dev
  jq xz-utils python3-venv
  python3-jinja2                  # the tests' reference renders of models' own chat templates
  nlohmann-json3-dev
  libcli11-dev
  libspdlog-dev
  libgtest-dev
  clang libclang-rt-14-dev
  slurm-wlm munge
  libtomlplusplus-dev
  chromium fonts-dejavu-core
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

# The air executable finds Debian's OpenMP OpenBLAS through its RPATH (see CMakeLists.txt), so
# the system's BLAS alternatives are left as they are.
