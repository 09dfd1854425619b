"""Where a pipeline run's time went, from Snakemake's own log: job-seconds per rule and per part of the
grid, and the training speed of the machine during the run."""

from __future__ import annotations

import json
import os
import platform
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

from elt.errors import UserError
from elt.harness.grid import group_of
from elt.provenance import git_commit

_STAMP = r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]"
_START = re.compile(_STAMP + r"\n(?:local)?rule (\w+):\n((?:    .*\n?)*)")
_FINISH = re.compile(_STAMP + r"\nFinished jobid: (\d+) \(Rule: (\w+)\)")


def job_seconds(log_text: str) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """From a Snakemake log (.snakemake/log/*.snakemake.log): (per rule: jobs, job-seconds, share),
    (per job: rule, wildcards, start, seconds; longest first), and the wall time from the first job's
    start to the last job's end. Snakemake stamps whole seconds."""

    def parse(stamp):
        return datetime.strptime(" ".join(stamp.split()), "%a %b %d %H:%M:%S %Y")

    started = {}
    for m in _START.finditer(log_text):
        job, wildcards = re.search(r"    jobid: (\d+)", m.group(3)), re.search(r"    wildcards: (.*)", m.group(3))
        if job:
            started[int(job.group(1))] = (m.group(2), wildcards.group(1) if wildcards else "", parse(m.group(1)))
    finished = {int(m.group(2)): parse(m.group(1)) for m in _FINISH.finditer(log_text)}
    rows = [
        {"rule": rule, "wildcards": wildcards, "start": start, "seconds": (finished[job] - start).total_seconds()}
        for job, (rule, wildcards, start) in started.items()
        if job in finished and rule != "all"
    ]
    if not rows:
        raise UserError(
            "the log holds no finished job: pass a Snakemake log of a run that executed jobs (.snakemake/log/)"
        )
    jobs = pd.DataFrame(rows)
    wall = (max(finished.values()) - jobs["start"].min()).total_seconds()
    return (
        _tally(jobs, "rule"),
        jobs.sort_values("seconds", ascending=False, kind="stable").reset_index(drop=True),
        wall,
    )


def job_seconds_by_part(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per part of the grid (a grid group's runs, evaluations and throughput timing; a dataset's
    reference and classifier, shared by the groups on it; the whole grid's aggregation): jobs and
    job-seconds, what leaving that part out of a profile would save."""

    def part(wildcards: str) -> str:
        fields = dict(item.split("=", 1) for item in wildcards.split(", ") if "=" in item)
        if "run" in fields or "group" in fields:  # run and group names both start with the grid group
            return "group " + group_of(fields.get("run") or fields["group"])
        return f"dataset {fields['dataset']}" if "dataset" in fields else "whole grid"

    return _tally(jobs.assign(part=jobs["wildcards"].map(part)), "part")


def _tally(jobs: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per value of `key`: jobs, job-seconds and share, most job-seconds first."""
    table = jobs.groupby(key)["seconds"].agg(jobs="count", job_seconds="sum")
    table["share"] = table["job_seconds"] / table["job_seconds"].sum()
    return table.sort_values("job_seconds", ascending=False).reset_index()


def training_speeds(work: str | Path) -> list[tuple[str, float]]:
    """(run, training steps/s) of every finished run under a work folder (its runs/*/train.json): this
    machine's speed during a pipeline run, which varies by 2x between days here; the job-seconds of two
    runs compare only in proportion to it."""
    speeds = []
    for record in sorted(Path(work).glob("runs/*/train.json")):
        value = json.loads(record.read_text()).get("steps_per_second")
        if value:
            speeds.append((record.parent.name, float(value)))
    return speeds


def _tally_markdown(table: pd.DataFrame, key: str) -> str:
    return f"| {key} | jobs | job-seconds | share |\n|---|---|---|---|\n" + "".join(
        f"| {r[key]} | {r.jobs} | {r.job_seconds:,.0f} | {r.share:.0%} |\n" for _, r in table.iterrows()
    )


def markdown(log: Path, longest: int, work: str | None = None) -> str:
    """`elt job-seconds`: per rule, per part of the grid, the longest jobs, and with `work` (the run's work
    folder) the machine's training speed during the run."""
    table, jobs, wall = job_seconds(log.read_text())
    first_start = jobs["start"].min()
    text = (
        f"# Job-seconds per rule\n\nFrom `{log}` (commit {git_commit()}, host {platform.node()}, "
        f"{os.cpu_count()} CPUs): "
        f"{int(table['jobs'].sum())} jobs, {table['job_seconds'].sum():.0f} job-seconds, "
        f"{wall:.0f} s from the first start to the last finish.\n\n"
        + _tally_markdown(table, "rule")
        + "\nPer part of the grid (what leaving it out of the profile would save):\n\n"
        + _tally_markdown(job_seconds_by_part(jobs), "part")
        + "\nLongest jobs:\n\n| rule | wildcards | started after | seconds |\n|---|---|---|---|\n"
        + "".join(
            f"| {r.rule} | {r.wildcards} | {(r.start - first_start).total_seconds():.0f} s | {r.seconds:.0f} |\n"
            for r in jobs.head(longest).itertuples()
        )
    )
    if work:
        speeds = training_speeds(work)
        if not speeds:
            raise UserError(f"no finished training run under {work!r} (runs/*/train.json): pass the run's work folder")
        text += (
            "\nMachine speed during the run: training steps/s of each run (its train.json). This machine's speed "
            "varies by up to 2x between days: compare job-seconds of two runs in proportion to these.\n\n"
            "| run | steps/s |\n|---|---|\n" + "".join(f"| {run} | {value:.2f} |\n" for run, value in speeds)
        )
    return text
