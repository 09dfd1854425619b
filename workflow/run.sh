#!/usr/bin/env bash
# workflow/run.sh SNAKEMAKE [ARGS...]: run the DAG so that a killed run restarts without manual steps.
# `make run` and `make reference` come through here. Holding our own lock (flock, released by the
# kernel when its holder dies, kill -9 included), no other run of this script is alive in this
# directory, so a Snakemake lock left in .snakemake/locks is stale and is removed; half-written
# outputs are redone (rerun-incomplete, from the default workflow profile) and training resumes
# from its progress file.
set -euo pipefail
snakemake="$1"
shift
mkdir -p .snakemake
exec 9>.snakemake/elt-run.lock
if ! flock -n 9; then
    echo "workflow/run.sh: another run of the pipeline holds .snakemake/elt-run.lock in this directory: wait for it to end" >&2
    exit 2
fi
if compgen -G ".snakemake/locks/*" >/dev/null; then
    echo "workflow/run.sh: removing the lock of a run that was killed (.snakemake/locks)" >&2
    rm -f .snakemake/locks/*
fi
exec "$snakemake" --rerun-incomplete "$@"
