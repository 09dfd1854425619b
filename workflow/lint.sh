#!/usr/bin/env bash
# Snakemake's lint of the workflow, less one advice: a conda environment or container per rule (one venv
# serves every rule here). Fails on any other lint and on a workflow Snakemake cannot parse.
# Usage: workflow/lint.sh path/to/snakemake
out=$("$1" --lint 2>&1) && exit 0
other=$(grep -E '^\s+\* ' <<<"$out" | grep -v 'Specify a conda environment or container for each rule')
if [ -z "$other" ] && grep -q '^Lints for rule' <<<"$out"; then exit 0; fi
echo "$out"
exit 1
