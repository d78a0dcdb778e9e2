#!/bin/bash
# PID 1 of the processor's driver pod (the Job's pod; Spark client mode).
#
# 1. SIGTERM goes to the Python job, which stops the query after the batch in flight. Run as
#    `spark-submit processor/job.py`, SIGTERM would reach only the JVM, which stops the
#    SparkContext under the running batch while Python never sees the signal. Here Python is
#    the parent and PySpark starts the JVM with `spark-submit ... pyspark-shell`, taking the
#    master and options from PYSPARK_SUBMIT_ARGS.
# 2. A streaming query never finishes on its own: a clean exit (for instance after SIGTERM on a
#    node drain) becomes exit code 75, so the pod fails and the Job starts a new driver from
#    the checkpoint instead of marking itself complete. Evictions and drains do not count
#    against the Job's backoffLimit (podFailurePolicy ignores DisruptionTarget).
set -uo pipefail

python -m processor.job "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT

# `wait` returns early when a trapped signal arrives: keep waiting until the job has exited,
# then ask once more for its exit status.
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
done
wait "$child"
status=$?

if [ "$status" -eq 0 ]; then
  echo "driver-entrypoint: processor.job exited cleanly; exiting 75 so the Job restarts it" >&2
  exit 75
fi
exit "$status"
