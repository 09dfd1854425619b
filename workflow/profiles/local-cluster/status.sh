#!/usr/bin/env bash
# status.sh JOBID: print running, success or failed (the generic-cluster status protocol).
set -euo pipefail
job_dir="${ELT_LOCAL_CLUSTER_SPOOL:-.snakemake/local-cluster}/$1"
alive() {  # a process that exists and is not a zombie (where no init reaps detached jobs)
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null)" && [[ "$state" != Z* ]]
}
# Look at the process before the exit file: the job writes its exit file before its process ends, so
# once the process is gone the file is final. (Reading the file first raced a job that finished
# between the two looks: no file yet, then no process, so a finished job read as failed.)
if [[ -f "$job_dir/pid" ]] && alive "$(cat "$job_dir/pid")"; then
    running=1
else
    running=0
fi
if [[ -f "$job_dir/exit" ]]; then
    [[ "$(cat "$job_dir/exit")" == 0 ]] && echo success || echo failed
elif [[ $running == 1 ]]; then
    echo running
else
    echo failed   # gone without an exit status: killed, as a node failure or preemption would
fi
