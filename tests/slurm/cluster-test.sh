#!/usr/bin/env bash
# The cluster path on a real Slurm: brings up a one-node cluster on this machine (munged,
# slurmctld and slurmd as root, everything in a temporary directory, stopped at the end), then
#   1. scripts/slurm/submit.sh with 4 shards on the bundled model: selected.jsonl must equal,
#      byte for byte, what one `air score` + `air select` process writes;
#   2. the same with one array task sent SIGTERM while it scores: it must stop with exit 143,
#      keeping its partial output; the same submit.sh command again must finish with the same
#      selected.jsonl, no record scored twice.
# Needs root and Debian's slurm-wlm and munge (scripts/install-deps.sh installs them).
# Usage: tests/slurm/cluster-test.sh [AIR]   (default build/air)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
air=$(cd "$(dirname "${1:-$repo/build/air}")" && pwd)/$(basename "${1:-$repo/build/air}")
[ "$(id -u)" -eq 0 ] || { echo "cluster-test: needs root (slurmd runs jobs as their user)" >&2; exit 2; }
for b in munged slurmctld slurmd sbatch scontrol; do
  command -v "$b" >/dev/null || { echo "cluster-test: $b not found (scripts/install-deps.sh)" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/air-slurm.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
  local rc=$?
  [ -n "${SLURM_CONF:-}" ] && scancel --quiet --user=root 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    echo "cluster-test: FAILED (exit $rc); daemon logs:" >&2
    tail -n 20 "$tmp"/*.log "$tmp"/out*/logs/*.log >&2 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "cluster-test: $*" >&2; exit 1; }

# munge: a private key, socket and daemon.
mkdir -p "$tmp/munge"
chmod 700 "$tmp/munge"
dd if=/dev/urandom bs=1 count=1024 of="$tmp/munge/munge.key" status=none
chmod 400 "$tmp/munge/munge.key"
munged --force --foreground --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/munge.socket" \
  --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munged.log" --seed-file="$tmp/munge/seed" \
  >>"$tmp/munged.log" 2>&1 &
pids+=($!)

# Slurm: one node (this machine), one partition, ports of its own.
host=$(hostname -s)
cpus=$(nproc)
mem=$(($(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) / 2))
port=$((20000 + RANDOM % 20000))
mkdir -p "$tmp/state" "$tmp/spool"
export SLURM_CONF="$tmp/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=airtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
KillWait=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
for _ in $(seq 50); do [ -S "$tmp/munge/munge.socket" ] && break; sleep 0.1; done
slurmctld -D -i -f "$SLURM_CONF" >>"$tmp/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >>"$tmp/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
  sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
  sleep 0.5
done
sinfo -h -o '%T' | grep -qE '^(idle|mixed|allocated)' || fail "the node did not come up: $(sinfo 2>&1)"
echo "cluster-test: cluster up ($host, $cpus CPUs, ${mem} MB)" >&2

# The corpus: the bundled GSM8K sample four times over, each copy's questions marked (1,024
# distinct records), so that a shard takes seconds.
data="$tmp/data.jsonl"
for r in 1 2 3 4; do jq -c --arg r "$r" '.question = "(" + $r + ") " + .question' "$repo/data/gsm8k-sample.jsonl"; done >"$data"
model="$repo/models/stories260K"
export AIR="$air"
export AIR_SCORE_ARGS="--threads 1 --flush-every 0.2 --window 8"
export AIR_WAIT_POLL=1
small=(--cpus-per-task=1 --mem=400M --time=00:20:00)

# The reference: one process, `air score` alone (it probes on the corpus first).
"$air" score --model "$model" --data "$data" --out "$tmp/scores.jsonl" --threads 1 2>/dev/null
"$air" select --scores "$tmp/scores.jsonl" --data "$data" --top-k 50 --out "$tmp/selected.jsonl" 2>/dev/null
[ "$(wc -l <"$tmp/selected.jsonl")" -eq 50 ] || fail "the reference selection has $(wc -l <"$tmp/selected.jsonl") lines"
heads_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["selected"])' "$1"; }

# 1. Four shards on the cluster.
"$repo/scripts/slurm/submit.sh" --model "$model" --data "$data" --out "$tmp/out1" --shards 4 --top-k 50 --wait \
  -- "${small[@]}" >/dev/null || fail "submit.sh --wait failed"
[ -f "$tmp/out1/heads.json" ] && [ -f "$tmp/out1/scores.3-of-4.jsonl.meta.json" ] || fail "missing outputs in out1"
[ "$(heads_of "$tmp/out1/heads.json")" = "$(heads_of "$tmp/scores.jsonl.heads.json")" ] ||
  fail "the cluster's probe selected $(heads_of "$tmp/out1/heads.json"), air score alone $(heads_of "$tmp/scores.jsonl.heads.json")"
cmp "$tmp/out1/selected.jsonl" "$tmp/selected.jsonl" || fail "4 shards on Slurm select differently from one process"
echo "cluster-test: 4 shards on Slurm == one process ($(wc -l <"$tmp/out1/selected.jsonl") records selected)" >&2

# 2. Task 1 stopped with SIGTERM while it scores, then the same command again.
out="$tmp/out2"
cp "$tmp/out1/heads.json" "$tmp/heads-first.json"
"$repo/scripts/slurm/submit.sh" --model "$model" --data "$data" --out "$out" --shards 4 --top-k 50 \
  -- "${small[@]}" >"$tmp/select-id" 2>/dev/null
partial="$out/scores.1-of-4.jsonl.partial"
for _ in $(seq 600); do
  [ -f "$partial" ] && [ "$(wc -l <"$partial")" -ge 20 ] && break
  sleep 0.1
done
[ -f "$partial" ] || fail "task 1 wrote no partial output"
array=$(squeue -h -n air-score -o '%A %i' | awk '$2 ~ /_1$/ {print $2}' | head -1)
[ -n "$array" ] || fail "task 1 is not running (it finished before it could be stopped: make the corpus bigger)"
scancel --signal=TERM --full "$array" || true  # (its exit status is not the signal's: checked below)
for _ in $(seq 300); do squeue -h -j "$array" 2>/dev/null | grep -q . || break; sleep 0.2; done
log=$(ls "$out"/logs/air-score-*_1.log)
grep -q "air exited 143" "$log" || fail "task 1 did not stop with exit 143: $(tail -5 "$log")"
[ -f "$partial" ] && [ -f "$out/scores.1-of-4.jsonl.partial.json" ] || fail "task 1 left no partial output to resume"
[ ! -f "$out/scores.1-of-4.jsonl" ] || fail "task 1 finished although it was stopped"
kept=$(wc -l <"$partial")
scancel "$(cat "$tmp/select-id")" 2>/dev/null || true
echo "cluster-test: task 1 stopped by SIGTERM with exit 143, $kept records kept" >&2
"$repo/scripts/slurm/submit.sh" --model "$model" --data "$data" --out "$out" --shards 4 --top-k 50 --wait \
  -- "${small[@]}" >/dev/null || fail "the resubmission failed"
cmp "$out/selected.jsonl" "$tmp/selected.jsonl" || fail "after the stop and resubmission the selection differs"
cmp "$out/heads.json" "$tmp/heads-first.json" || fail "the resubmission probed again"
resumed=$(jq '.counts.resumed' "$out/scores.1-of-4.jsonl.meta.json")
[ "$resumed" -ge "$kept" ] || fail "task 1 resumed $resumed records, but $kept were kept"
lines=$(cat "$out"/scores.*-of-4.jsonl | wc -l)
[ "$lines" -eq "$(wc -l <"$data")" ] || fail "the shards hold $lines records for $(wc -l <"$data") in the corpus"
echo "cluster-test: resubmitted: task 1 resumed $resumed records; selection identical" >&2
# 3. Paths /bin/sh must be given exactly: a quote, a tab, a newline and bytes that are not UTF-8
# in the corpus's name, a space and a leading '-' in the output folder's, given relative.
odd="$tmp/odd"
mkdir -p "$odd"
name=$'-it\'s\ta\nb\xff.jsonl'
head -n 64 "$data" >"$odd/$name"
(cd "$odd" && "$air" score --model "$model" --data "./$name" --out ref.jsonl --threads 1 2>/dev/null &&
  "$air" select --scores ref.jsonl --data "./$name" --top-k 10 --out ref-selected.jsonl 2>/dev/null) ||
  fail "the reference run on the odd path failed"
(cd "$odd" && "$repo/scripts/slurm/submit.sh" --model "$model" --data "$name" --out "-out 3" --shards 2 --top-k 10 --wait \
  -- "${small[@]}" >/dev/null) || fail "submit.sh on odd paths failed: $(cat "$odd/-out 3"/logs/*.log 2>/dev/null | tail -5)"
cmp "$odd/-out 3/selected.jsonl" "$odd/ref-selected.jsonl" || fail "odd paths: the cluster selects differently"
echo "cluster-test: odd paths (quote, tab, newline, non-UTF-8, leading '-') submitted exactly" >&2
echo "cluster-test: passed" >&2
