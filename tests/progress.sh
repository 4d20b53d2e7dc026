#!/usr/bin/env bash
# The progress of `air probe` and `air score`: one line redrawn in place under a pseudo-terminal
# (made by script(1)), plain log lines every --progress-every seconds in a pipe, nothing with
# --quiet; and a run from a --config file whose command-line flags win, recorded in the meta.
# Usage: tests/progress.sh PATH/TO/air
set -euo pipefail
air=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# A corpus of 200 records (the sample, five times over) so that scoring takes a while.
for i in 1 2 3 4 5; do sed "s/\"id\": \"/\"id\": \"r$i-/" "$root/data/stories-sample.jsonl"; done > corpus.jsonl
total=$(grep -c . corpus.jsonl)
model="$root/models/stories260K"
fail() { echo "progress.sh: $*" >&2; exit 1; }

# 1. A terminal: carriage returns and erase-line, records/total, done.
script -qec "'$air' score --model '$model' --data corpus.jsonl --out tty.jsonl --num-heads 2 --batch-tokens 512" \
  /dev/null > tty.log 2>&1 || { cat tty.log >&2; fail "score under a pty failed"; }
grep -q $'\r\033\[K' tty.log || fail "no line redrawn in place under a terminal"
grep -q "score: $total/$total records (100.0%)" tty.log || { cat -v tty.log >&2; fail "no final records/total line"; }
grep -q "probe: 32/32 items" tty.log || { cat -v tty.log >&2; fail "no probe progress under a terminal"; }
grep -Eq "score: [0-9]+/$total records \([0-9.]+%\) \| [0-9,]+ tok/s \| [0-9]+:[0-9]{2}:[0-9]{2} \| ETA " tty.log ||
  { cat -v tty.log >&2; fail "no progress line with tokens/s, elapsed and ETA"; }

# 2. A pipe (a Slurm log): plain lines, no carriage returns.
"$air" score --model "$model" --data corpus.jsonl --out pipe.jsonl --num-heads 2 --batch-tokens 512 \
  --progress-every 0.05 2>&1 | cat > pipe.log
if grep -q $'\r' pipe.log; then fail "carriage returns in a pipe"; fi
n=$(grep -Ec "\] score: [0-9]+/$total records" pipe.log || true)
[ "$n" -ge 1 ] || { cat pipe.log >&2; fail "no plain progress line in a pipe"; }
cmp tty.jsonl pipe.jsonl || fail "the progress display changed the scores"

# 3. --quiet: no progress at all, the summary stays.
script -qec "'$air' score --model '$model' --data corpus.jsonl --out quiet.jsonl --num-heads 2 --quiet" \
  /dev/null > quiet.log 2>&1 || fail "score --quiet failed"
if grep -Eq "score: [0-9]+/|probe: [0-9]+/" quiet.log; then cat -v quiet.log >&2; fail "--quiet showed progress"; fi
grep -q "records: .* scored" quiet.log || fail "--quiet lost the summary"

# 4. --config: each command's settings under its section; the command line wins; the meta keeps
# the effective configuration.
cat > run.toml <<TOML
[score]
model = "$model"
data = "corpus.jsonl"
num-heads = 2
batch-tokens = 256
quiet = true
TOML
"$air" score --config run.toml --out cfg.jsonl --batch-tokens 512 2> cfg.log || { cat cfg.log >&2; fail "score --config failed"; }
jq -e '.config | test("batch-tokens = 512")' cfg.jsonl.meta.json > /dev/null || fail "meta lacks the effective batch-tokens"
jq -e '.config | test("num-heads = 2")' cfg.jsonl.meta.json > /dev/null || fail "meta lacks the config file's num-heads"
jq -e '.options.batch_tokens == 512' cfg.jsonl.meta.json > /dev/null || fail "the command line did not win"
cmp cfg.jsonl pipe.jsonl || fail "scores from the config file differ"
# The meta's config, saved to a file, repeats the run; strings with newlines and backslashes too.
printf '[score]\nseparator = "\\n\\n"\nstep-delimiter = "\\\\n\\\\s*\\\\n"\n' > esc.toml
"$air" score --config esc.toml --model "$model" --data corpus.jsonl --out esc.jsonl --num-heads 2 --batch-tokens 512 --quiet 2> esc.log ||
  { cat esc.log >&2; fail "score with escapes in --config failed"; }
cmp esc.jsonl pipe.jsonl || fail "TOML escapes in --config were not read as TOML"
jq -r .config esc.jsonl.meta.json > replay.toml
"$air" score --config replay.toml --out replay.jsonl 2> replay.log || { cat replay.log replay.toml >&2; fail "the meta's config does not run"; }
cmp replay.jsonl esc.jsonl || fail "the meta's config did not repeat the run"
# A setting outside a section is refused with a hint, exit 2.
printf 'model = "%s"\n' "$model" > flat.toml
set +e
"$air" score --config flat.toml --data corpus.jsonl --out flat.jsonl 2> flat.log
rc=$?
set -e
[ $rc -eq 2 ] || fail "a flat config file gave exit $rc, not 2"
grep -q "\[score\]" flat.log || { cat flat.log >&2; fail "no hint to use [score]"; }
echo "progress.sh: ok"
