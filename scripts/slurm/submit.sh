#!/usr/bin/env bash
# Scores a corpus on a Slurm cluster and selects from it: the probe once, N score shards as a job
# array after it, and the selection after every shard has ended well.
#
#   scripts/slurm/submit.sh --model DIR --data FILE --out DIR --shards N (--top-k K | --top-ratio R)
#                           [--gpus-per-task G] [--wait] [-- EXTRA SBATCH ARGS]
#
# Writes OUT/heads.json (job air-probe), OUT/scores.I-of-N.jsonl and .meta.json (job array
# air-score, task I = shard I/N) and OUT/selected.jsonl (job air-select); logs go to
# OUT/logs/air-probe-JOB.log, OUT/logs/air-score-JOB_TASK.log and OUT/logs/air-select-JOB.log.
# Submitting the same command again continues: the probe is skipped when OUT/heads.json exists,
# each shard resumes from what it wrote (a finished shard is only re-checked), and the selection
# runs again.
#
# Defaults, each overridden by the same option among the EXTRA SBATCH ARGS:
#   --time 04:00:00 (the probe and the selection 01:00:00), --mem 16G, --cpus-per-task 4 on CPU;
#   with --gpus-per-task G: --gres=gpu:G, and air runs on cuda (G > 1: the model's layers split
#   over the G GPUs).
# Environment: AIR (the air binary; default the repo's build/air), AIR_PROBE_ARGS,
# AIR_SCORE_ARGS and AIR_SELECT_ARGS (extra flags of `air probe` / `air score` / `air select`,
# split on spaces). The probe reads the corpus (--data), as `air score` without --heads does, so
# the cluster selects what one process selects; flags that change how records are read
# (--template, --format, fields) belong in both AIR_PROBE_ARGS and AIR_SCORE_ARGS.
# --wait blocks until the selection ends; exit status 0 when it completed, 1 when any job failed
# (their logs are named).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
air=${AIR:-$repo/build/air}

usage() {
  sed -n '5,6p' "$0" | sed 's/^# *//' >&2
  exit 2
}
die() {
  echo "submit.sh: $*" >&2
  exit 2
}

model="" data="" out="" shards="" top_k="" top_ratio="" gpus="" wait=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=${2:?--model needs a value}; shift 2 ;;
    --data) data=${2:?--data needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --shards) shards=${2:?--shards needs a value}; shift 2 ;;
    --top-k) top_k=${2:?--top-k needs a value}; shift 2 ;;
    --top-ratio) top_ratio=${2:?--top-ratio needs a value}; shift 2 ;;
    --gpus-per-task) gpus=${2:?--gpus-per-task needs a value}; shift 2 ;;
    --wait) wait=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) usage ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ -n "$model" ] && [ -n "$data" ] && [ -n "$out" ] && [ -n "$shards" ] || usage
[ -n "$top_k" ] && [ -n "$top_ratio" ] && die "give --top-k or --top-ratio, not both"
[ -z "$top_k" ] && [ -z "$top_ratio" ] && die "give --top-k K or --top-ratio R"
[[ "$shards" =~ ^[1-9][0-9]*$ ]] || die "--shards: expected a positive integer, got '$shards'"
[ -z "$gpus" ] || [[ "$gpus" =~ ^[1-9][0-9]*$ ]] || die "--gpus-per-task: expected a positive integer, got '$gpus'"
[ -x "$air" ] || die "no air binary at $air (build it with scripts/build.sh, or set AIR)"
[ -d "$model" ] || die "--model $model: not a directory"
[ -f "$data" ] || die "--data $data: not a file"
command -v sbatch >/dev/null || die "sbatch not found: this runs on a Slurm login node"

# Jobs run elsewhere: every path absolute (so none begins with '-'; any byte but NUL kept).
abs() {
  local dir base
  dir=$(dirname -- "$1" && echo .) && dir=${dir%$'\n.'}
  base=$(basename -- "$1" && echo .) && base=${base%$'\n.'}
  (cd -- "$dir" && printf '%s/%s' "$(pwd -P)" "$base")
}
absdir() { (cd -- "$1" && pwd -P); }
mkdir -p -- "$out/logs"
model=$(absdir "$model") data=$(abs "$data") out=$(absdir "$out") air=$(abs "$air")

resources=(--mem=16G)
device=cpu
if [ -n "$gpus" ]; then
  resources+=(--gres="gpu:$gpus")
  device=cuda
  if [ "$gpus" -gt 1 ]; then
    device=$(seq -s, -f 'cuda:%g' 0 $((gpus - 1)))
  fi
else
  resources+=(--cpus-per-task=4)
fi
# Words for /bin/sh (sbatch --wrap): each in single quotes, a quote as '\'' (POSIX, any bytes).
q() {
  local a
  for a in "$@"; do printf "'%s' " "${a//\'/\'\\\'\'}"; done
}

read -r -a probe_extra <<<"${AIR_PROBE_ARGS:-}"

# The probe, unless an earlier submission wrote its heads.
dependency=()
if [ -f "$out/heads.json" ]; then
  echo "submit.sh: $out/heads.json exists: no probe" >&2
else
  probe=$(sbatch --parsable --job-name=air-probe --output="$out/logs/air-probe-%j.log" --time=01:00:00 \
    "${resources[@]}" "${extra[@]}" \
    --wrap="exec $(q "$air" probe --model "$model" --data "$data" --out "$out/heads.json" --device "$device" "${probe_extra[@]}")")
  probe=${probe%%;*}
  dependency=(--dependency="afterok:$probe")
  echo "submit.sh: probe job $probe" >&2
fi

array=$(sbatch --parsable --array="0-$((shards - 1))" --job-name=air-score \
  --output="$out/logs/air-score-%A_%a.log" --time=04:00:00 "${resources[@]}" "${dependency[@]}" "${extra[@]}" \
  "$here/air-score.sbatch" "$air" "$model" "$data" "$out" "$shards" "$device")
array=${array%%;*}
echo "submit.sh: score array job $array (tasks 0-$((shards - 1)))" >&2

scores=()
for ((i = 0; i < shards; i++)); do scores+=("$out/scores.$i-of-$shards.jsonl"); done
read -r -a select_extra <<<"${AIR_SELECT_ARGS:-}"
pick=(--top-k "$top_k")
[ -n "$top_ratio" ] && pick=(--top-ratio "$top_ratio")
select=$(sbatch --parsable --job-name=air-select --output="$out/logs/air-select-%j.log" --time=01:00:00 \
  --mem=16G --cpus-per-task=1 --dependency="afterok:$array" "${extra[@]}" \
  --wrap="exec $(q "$air" select --scores "${scores[@]}" --data "$data" "${pick[@]}" --out "$out/selected.jsonl" "${select_extra[@]}")")
select=${select%%;*}
echo "submit.sh: select job $select -> $out/selected.jsonl" >&2
echo "$select"

[ "$wait" = 1 ] || exit 0

# The state of a job (or of each task of an array) while Slurm still knows it.
state() { scontrol show job -o "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 | sort -u | tr '\n' ' '; }
reason() { scontrol show job -o "$1" 2>/dev/null | grep -o 'Reason=[A-Za-z_]*' | head -1 | cut -d= -f2; }
while :; do
  s=$(state "$select")
  case "$s" in
    "COMPLETED ") echo "submit.sh: done: $out/selected.jsonl" >&2; exit 0 ;;
    *FAILED*|*CANCELLED*|*TIMEOUT*|*NODE_FAIL*|*OUT_OF_MEMORY*|*BOOT_FAIL*|*DEADLINE*)
      echo "submit.sh: the selection ended $s(log: $out/logs/air-select-$select.log)" >&2; exit 1 ;;
  esac
  if [ "$(reason "$select")" = DependencyNeverSatisfied ]; then
    echo "submit.sh: a job before the selection failed: $(state "$array")(logs: $out/logs/air-score-${array}_*.log" \
      "${probe:+, $out/logs/air-probe-$probe.log}); the same command continues where it stopped" >&2
    scancel "$select" 2>/dev/null || true
    exit 1
  fi
  [ -n "$s" ] || { echo "submit.sh: job $select is no longer known to Slurm" >&2; exit 1; }
  sleep "${AIR_WAIT_POLL:-5}"
done
