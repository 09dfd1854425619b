#!/usr/bin/env bash
# cancel.sh JOBID...: stop each job's whole process group (the job runs in its own session).
spool="${ELT_LOCAL_CLUSTER_SPOOL:-.snakemake/local-cluster}"
for id in "$@"; do
    pid="$(cat "$spool/$id/pid" 2>/dev/null)" && kill -TERM -- "-$pid" 2>/dev/null
done
exit 0
