#!/usr/bin/env bash
# Run a command while N busy loops hold the CPU (default 2: both cores of the dev machine).
#   bash scripts/with_busy_cores.sh 2 make test
# The loops are stopped however the command ends; the load average is printed before and after.
set -euo pipefail
count="$1"
shift
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
for _ in $(seq "$count"); do
  (while :; do :; done) &
  pids+=("$!")
done
echo "busy loops: ${pids[*]}; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
"$@" || status=$?
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); exit status $status"
exit "$status"
