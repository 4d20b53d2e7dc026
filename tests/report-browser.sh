#!/usr/bin/env bash
# The report of the bundled demo (probe, score, report on models/stories260K and
# data/stories-sample.jsonl) opened in headless Chromium: fails on any console message of the
# page, checks in the DOM Chromium built that every plot holds marks, and writes a screenshot.
# Usage: tests/report-browser.sh PATH/TO/air [SCREENSHOT.png]
# Exit 77 (skipped) when Chromium is not installed (scripts/install-deps.sh installs it).
set -euo pipefail
air=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
shot=${2:-}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then echo "report-browser.sh: no chromium installed; skipped" >&2; exit 77; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "report-browser.sh: $*" >&2; exit 1; }
model="$root/models/stories260K"
data="$root/data/stories-sample.jsonl"
"$air" probe --model "$model" --data "$data" --out "$work/heads.json" --quiet 2> "$work/air.log"
"$air" score --model "$model" --data "$data" --heads "$work/heads.json" --out "$work/scores.jsonl" --quiet 2>> "$work/air.log"
"$air" report --scores "$work/scores.jsonl" --data "$data" --heads "$work/heads.json" --top-ratio 0.25 --samples 5 \
  --out "$work/report.html" 2>> "$work/air.log" || { cat "$work/air.log" >&2; fail "air report failed"; }

flags=(--headless=new --no-sandbox --disable-gpu --no-first-run --disable-extensions --user-data-dir="$work/profile"
       --enable-logging=stderr --v=0)
url="file://$work/report.html"
timeout 120 "$browser" "${flags[@]}" --dump-dom "$url" > "$work/dom.html" 2> "$work/console.log" ||
  { tail -20 "$work/console.log" >&2; fail "chromium could not load the report"; }
# Console messages of the page (errors, warnings, logs) are all unexpected: the report has no script.
if grep -E "CONSOLE|Uncaught|Refused to" "$work/console.log" >&2; then fail "console messages above"; fi
plots=$(grep -o '<svg class="plot' "$work/dom.html" | wc -l)
[ "$plots" -ge 5 ] || fail "the DOM holds $plots plots, expected at least 5 (histogram, 3 scatter plots, head map)"
# Each plot's SVG element holds drawn marks (bars, cells, points, head cells).
empty=$(awk 'BEGIN{RS="</svg>"} /<svg class="plot"/ { s=substr($0, index($0, "<svg class=\"plot\"")); if (s !~ /<(rect|circle) [^>]*(class="(bar|cell|pt-dot)"|fill="rgb)/) n++ } END{print n+0}' "$work/dom.html")
[ "$empty" -eq 0 ] || fail "$empty plots have no marks"
grep -q 'class="step"' "$work/dom.html" || fail "no shaded steps in the records shown"
size=$(stat -c %s "$work/report.html")
out_png=${shot:-$work/report.png}
timeout 120 "$browser" "${flags[@]}" --hide-scrollbars --window-size=1200,2800 --screenshot="$out_png" "$url" \
  2> "$work/shot.log" || { tail -20 "$work/shot.log" >&2; fail "chromium could not take the screenshot"; }
png=$(stat -c %s "$out_png")
[ "$png" -gt 20000 ] || fail "the screenshot is $png bytes: blank?"
echo "report-browser.sh: ok: $plots plots drawn, no console message; report $size bytes; screenshot $out_png ($png bytes)"
