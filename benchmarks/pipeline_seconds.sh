#!/usr/bin/env bash
# Where a pipeline run's time goes: the profile's whole DAG from scratch in a scratch work folder
# (work/bench-<profile>; the user's work/ and results/ are not touched), then the per-rule
# job-seconds and the longest jobs from Snakemake's own log into results/job_seconds-<profile>.md.
# A speed change is judged against the committed table: run this before and after it.
#   benchmarks/pipeline_seconds.sh [PROFILE] [CORES]      (repository root, after `make setup`)
set -euo pipefail
profile=${1:-default}
cores=${2:-2}
bin=.venv/bin
scratch=work/bench-$profile
[ -x "$bin/snakemake" ] || { echo "benchmarks/pipeline_seconds.sh: no $bin/snakemake: run 'make setup' first" >&2; exit 2; }
[ -f "config/$profile.yaml" ] || { echo "benchmarks/pipeline_seconds.sh: no config/$profile.yaml: name a profile in config/" >&2; exit 2; }
rm -rf "$scratch"
mkdir -p "$scratch"
start=$(date +%s)
workflow/run.sh "$bin/snakemake" --cores "$cores" --configfile "config/$profile.yaml" \
    --config work="$scratch" results="$scratch/results" > "$scratch/snakemake.out" 2>&1 \
    || { tail -20 "$scratch/snakemake.out" >&2; exit 1; }
seconds=$(($(date +%s) - start))
log=$(ls -t .snakemake/log/*.snakemake.log | head -1)  # this run's: the newest
"$bin/elt" job-seconds "$log" --work "$scratch" --out "results/job_seconds-$profile.md" > /dev/null
printf '\nSnakemake command to exit: %d s (%d min %d s) on %d cores.\n' "$seconds" $((seconds / 60)) $((seconds % 60)) "$cores" \
    >> "results/job_seconds-$profile.md"
cat "results/job_seconds-$profile.md"
