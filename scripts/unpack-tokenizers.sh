#!/usr/bin/env bash
# Unpacks the vendored reference tokenizers (tests/data/tokenizers/NAME/*.xz) next to their
# archives and checks every tokenizer file there against tests/data/tokenizers/SHA256SUMS.
# Offline and safe to re-run: a file already unpacked and intact is left alone; an unpacked file
# that differs is replaced, or removed when it cannot be (it is never left in place). Each file is
# written under a temporary name, checked, then renamed, so two runs at once do no harm. The build
# runs it (CMake target `tokenizers`, which the test binary depends on).
set -euo pipefail
dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/tests/data/tokenizers"}
sums="$dir/SHA256SUMS"
say() { echo "unpack-tokenizers: $*" >&2; }
[ -f "$sums" ] || { say "$sums is missing"; exit 1; }
command -v xz >/dev/null 2>&1 || { say "xz is needed (Debian: xz-utils)"; exit 1; }

tmp=""
trap 'rm -f "$tmp"' EXIT
status=0
# An unpacked file that is not the vendored one is removed (the archive is the truth).
drop() {  # rel why
  if rm -f "$dir/$1" 2>/dev/null; then say "$1: $2; the wrong file was removed"
  else say "$1: $2, and the wrong file could not be removed: delete it by hand"; fi
  status=1
}
listed=" "
while read -r sha rel; do
  [ -n "$sha" ] || continue
  listed+="$rel "
  out="$dir/$rel"
  state=absent
  if [ -f "$out" ]; then
    if [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$sha" ]; then continue; fi
    state=changed
  fi
  if [ ! -f "$out.xz" ]; then  # a file stored as it is (tracked by git): never touched here
    if [ "$state" = changed ]; then say "$rel differs from the vendored file (sha256 $sha): restore it with git checkout -- $out"
    else say "$rel is missing and there is no $rel.xz to unpack it from"; fi
    status=1; continue
  fi
  if ! tmp=$(mktemp "$out.XXXXXX.tmp" 2>/dev/null); then
    if [ "$state" = changed ]; then drop "$rel" "differs from its archive and cannot be rewritten (folder not writable)"
    else say "$rel: cannot write in $(dirname "$out") (folder not writable)"; status=1; fi
    continue
  fi
  if ! xz -dc "$out.xz" >"$tmp" 2>/dev/null; then
    rm -f "$tmp"
    if [ "$state" = changed ]; then drop "$rel" "differs from the vendored file, and $rel.xz cannot be decompressed"
    else say "$rel.xz cannot be decompressed (truncated or damaged: git checkout -- $out.xz)"; status=1; fi
    continue
  fi
  got=$(sha256sum "$tmp" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    rm -f "$tmp"
    if [ "$state" = changed ]; then drop "$rel" "differs from the vendored file, and $rel.xz unpacks to sha256 $got, expected $sha"
    else say "$rel.xz unpacks to sha256 $got, expected $sha"; status=1; fi
    continue
  fi
  chmod 644 "$tmp"
  mv -f "$tmp" "$out"
  tmp=""
  if [ "$state" = changed ]; then say "$rel: replaced (it differed from the vendored file)"; else say "$rel"; fi
done <"$sums"
# Every archive must be checked.
for xz in "$dir"/*/*.xz; do
  [ -e "$xz" ] || continue
  rel=${xz#"$dir"/}; rel=${rel%.xz}
  case "$listed" in *" $rel "*) ;; *) say "$rel.xz has no sha256 in $sums"; status=1 ;; esac
done
exit $status
