#!/usr/bin/env bash
# workflow/run.sh SNAKEMAKE [ARGS...]: run the DAG so that a killed run restarts without manual steps.
# `make run` and `make reference` come through here. Holding our own lock (flock, released by the
# kernel when its holder dies, kill -9 included), no other run of this script is alive in this
# directory, so a Snakemake lock left in .snakemake/locks is stale and is removed; half-written
# outputs are redone (rerun-incomplete, from the default workflow profile) and training resumes
# from its progress file. The processes of a run killed a moment ago hold the lock until the kernel
# has ended them: a restart waits for them (ELT_RUN_LOCK_WAIT seconds, default 30) before refusing.
set -euo pipefail
snakemake="$1"
shift
mkdir -p .snakemake
exec 9>.snakemake/elt-run.lock
if ! flock -n 9; then
    wait_s="${ELT_RUN_LOCK_WAIT:-30}"
    echo "workflow/run.sh: waiting up to ${wait_s} s for the processes of a stopped run to exit" >&2
    if ! flock -w "$wait_s" 9; then
        echo "workflow/run.sh: another run of the pipeline holds .snakemake/elt-run.lock in this directory: wait for it to end" >&2
        exit 2
    fi
fi
if compgen -G ".snakemake/locks/*" >/dev/null; then
    echo "workflow/run.sh: removing the lock of a run that was killed (.snakemake/locks)" >&2
    rm -f .snakemake/locks/*
fi
exec "$snakemake" --rerun-incomplete "$@"
