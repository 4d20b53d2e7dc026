#!/usr/bin/env bash
# Unpacks the vendored reference tokenizers (tests/data/tokenizers/NAME/*.xz) next to their
# archives and checks every tokenizer file there against tests/data/tokenizers/SHA256SUMS.
# Offline, safe to re-run (files already unpacked and intact are left alone) and safe to run twice
# at once (each file is written under a temporary name, checked, then renamed). The build runs it
# (CMake target `tokenizers`, which the test binary depends on).
set -euo pipefail
dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/tests/data/tokenizers"}
sums="$dir/SHA256SUMS"
[ -f "$sums" ] || { echo "unpack-tokenizers: $sums is missing" >&2; exit 1; }
command -v xz >/dev/null 2>&1 || { echo "unpack-tokenizers: xz is needed (Debian: xz-utils)" >&2; exit 1; }

status=0
while read -r sha rel; do
  [ -n "$sha" ] || continue
  out="$dir/$rel"
  if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$sha" ]; then continue; fi
  if [ ! -f "$out.xz" ]; then
    echo "unpack-tokenizers: $rel: absent or not the vendored file (sha256 $sha expected), and no $rel.xz to unpack" >&2
    status=1; continue
  fi
  tmp=$(mktemp "$out.XXXXXX.tmp")
  if ! xz -dc "$out.xz" >"$tmp"; then
    echo "unpack-tokenizers: $rel.xz: cannot be decompressed" >&2
    rm -f "$tmp"; status=1; continue
  fi
  got=$(sha256sum "$tmp" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "unpack-tokenizers: $rel.xz unpacks to sha256 $got, expected $sha" >&2
    rm -f "$tmp"; status=1; continue
  fi
  chmod 644 "$tmp"
  mv -f "$tmp" "$out"
  echo "unpack-tokenizers: $rel" >&2
done <"$sums"
exit $status
