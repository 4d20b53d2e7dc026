#!/usr/bin/env bash
# Runs every ```sh block of docs/RECIPES.md as written, in a fresh folder that sees the repo's
# data/ and a long-context copy of models/stories260K, with MODEL=models/stories260K and the air under test first on PATH; then
# checks what the comments after each block expect:
#   <!-- expect: TEXT -->       TEXT is in the block's log (stderr)
#   <!-- expect-not: TEXT -->   TEXT is not
#   <!-- expect-file: FILE N --> FILE holds N lines
# Usage: tests/recipes.sh PATH/TO/air [RECIPES.md]
set -euo pipefail
air=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
recipes=${2:-$root/docs/RECIPES.md}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ln -s "$root/data" "$work/data"
# MODEL stands for the reasoning model a recipe is written for: stories260K, told a context of
# 32,768 positions (its own 512 would reject every long trace; the recipes are of layouts).
mkdir -p "$work/models/stories260K"
cp "$root/models/stories260K/"* "$work/models/stories260K/"
jq '.max_position_embeddings = 32768' "$root/models/stories260K/config.json" >"$work/models/stories260K/config.json"
mkdir "$work/bin"
ln -s "$air" "$work/bin/air"

blocks=() expects=()
block="" in_block=0 n=-1
while IFS= read -r line; do
  if [ $in_block -eq 1 ]; then
    if [ "$line" = '```' ]; then in_block=0; blocks[$n]=$block; else block+="$line"$'\n'; fi
  elif [ "$line" = '```sh' ]; then
    in_block=1 block="" n=$((n + 1)) expects[$n]=""
  elif [[ $n -ge 0 && $line == '<!-- expect'* ]]; then
    expects[$n]+="$line"$'\n'
  fi
done < "$recipes"
[ $n -ge 0 ] || { echo "recipes: no sh block in $recipes" >&2; exit 1; }

failed=0
for i in $(seq 0 "$n"); do
  log="$work/log.$i"
  start=$SECONDS
  if ! (cd "$work" && PATH="$work/bin:$PATH" MODEL=models/stories260K bash -euo pipefail -c "${blocks[$i]}") 2> "$log"; then
    echo "recipes: block $((i + 1)) failed:" >&2; echo "${blocks[$i]}" >&2; tail -20 "$log" >&2; failed=1; continue
  fi
  echo "recipes: block $((i + 1)) of $((n + 1)) ran in $((SECONDS - start)) s" >&2
  while IFS= read -r e; do
    [ -n "$e" ] || continue
    body=${e#<!-- }; body=${body% -->}
    kind=${body%%: *}; text=${body#*: }
    case $kind in
      expect) grep -qF -- "$text" "$log" || { echo "recipes: block $((i + 1)): log lacks '$text'" >&2; failed=1; } ;;
      expect-not) if grep -qF -- "$text" "$log"; then echo "recipes: block $((i + 1)): log has '$text':" >&2; grep -F -- "$text" "$log" >&2; failed=1; fi ;;
      expect-file)
        file=${text% *}; want=${text##* }
        got=$( [ -f "$work/$file" ] && wc -l < "$work/$file" || echo missing)
        [ "$got" = "$want" ] || { echo "recipes: block $((i + 1)): $file has $got lines, expected $want" >&2; failed=1; } ;;
      *) echo "recipes: unknown check '$e'" >&2; failed=1 ;;
    esac
  done <<< "${expects[$i]}"
done
exit $failed
