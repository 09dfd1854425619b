#!/usr/bin/env bash
# submit.sh JOBSCRIPT: start the job as a detached process (its own session, like a batch job on a
# node) and print its job id. Job state lives in $ELT_LOCAL_CLUSTER_SPOOL (default .snakemake/local-cluster).
set -euo pipefail
spool="${ELT_LOCAL_CLUSTER_SPOOL:-.snakemake/local-cluster}"
mkdir -p "$spool"
job_dir="$(mktemp -d "$spool/job.XXXXXXXX")"
id="$(basename "$job_dir")"
cp "$1" "$job_dir/jobscript.sh"   # Snakemake may remove its copy before the job starts
# the job's exit status is written last, atomically: status.sh reads a finished job from it
setsid bash -c 'bash "$1/jobscript.sh" >"$1/log" 2>&1; echo $? >"$1/exit.tmp"; mv "$1/exit.tmp" "$1/exit"' job "$job_dir" \
    </dev/null >/dev/null 2>&1 &
echo $! >"$job_dir/pid"
echo "$id"
