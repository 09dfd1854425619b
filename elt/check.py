"""Regression checks against a committed reference, with tolerances from measured seed noise.

A reference (results/reference/<profile>.json) holds, per (run, loop count, metric), the value of
the baseline seed and a tolerance of k standard deviations across training seeds (per row, and no
less than k times the metric's median relative spread over all rows, so three seeds do not give
a near-zero tolerance by chance). `elt check` fails on a move beyond tolerance in the metric's bad
direction, or on a run, loop count or metric that vanished.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .errors import UserError
from .report import QUALITY

SEED = re.compile(r"-s(\d+)$")


def read_metrics(path: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"metrics file {path!r} cannot be read ({type(err).__name__}): run the pipeline first") from None
    missing = {"run", "loops_eval"} - set(df.columns)
    if missing:
        raise UserError(f"metrics file {path!r} lacks the column(s) {', '.join(sorted(missing))}: is it a results/metrics.csv?")
    return df


def build_reference(metric_files: list[str], baseline_seed: int, k: float, profile: str, provenance: dict) -> dict:
    df = pd.concat([read_metrics(f) for f in metric_files], ignore_index=True)
    df["stem"] = df["run"].str.replace(SEED, "", regex=True)
    df["seed_of_run"] = df["run"].str.extract(SEED, expand=False).astype(int)
    seeds = sorted(df["seed_of_run"].unique())
    if len(seeds) < 2:
        raise UserError(f"the metrics hold one seed ({seeds[0]}): tolerances need seed noise, so run the grid with seeds: [0, 1, 2]")
    # A metric applies to one modality (fid to images, fvd to videos): rows without it are skipped.
    measured = [m for m in QUALITY if m in df.columns and df[m].notna().any()]
    spread, relative = {}, {}
    for metric in measured:
        grouped = df.groupby(["stem", "loops_eval"])[metric]
        spread[metric] = grouped.std(ddof=1)
        relative[metric] = float(np.nanmedian(spread[metric] / grouped.mean().abs()))
    entries = {}
    for row in df[df["seed_of_run"] == baseline_seed].itertuples():
        per_metric = {}
        for metric in measured:
            value, std = float(getattr(row, metric)), float(spread[metric][(row.stem, row.loops_eval)])
            if np.isnan(value):
                continue
            if np.isnan(std):
                raise UserError(f"{row.run} at L={row.loops_eval} has {metric} for one seed only: every seed must cover the same grid")
            per_metric[metric] = {"value": value, "seed_std": std, "tolerance": k * max(std, relative[metric] * abs(value))}
        entries.setdefault(row.run, {})[str(row.loops_eval)] = per_metric
    if not entries:
        raise UserError(f"no run with seed {baseline_seed} in the metrics: pass --baseline-seed with one of {seeds}")
    return {"profile": profile, "directions": {m: QUALITY[m] for m in measured}, "k": k, "seeds": [int(s) for s in seeds], "baseline_seed": baseline_seed,
            "median_relative_seed_std": relative, "entries": entries, "provenance": provenance}


def check(reference: dict, df: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """-> (table of every comparison, passed)."""
    rows = []
    for run, by_loops in reference["entries"].items():
        for loops, per_metric in by_loops.items():
            match = df[(df["run"] == run) & (df["loops_eval"] == int(loops))]
            for metric, ref in per_metric.items():
                measured = float(match[metric].iloc[0]) if len(match) and metric in match and pd.notna(match[metric].iloc[0]) else None
                if measured is None:
                    status = "MISSING"
                else:
                    lower_is_better = reference["directions"][metric] == "lower"
                    delta = measured - ref["value"] if lower_is_better else ref["value"] - measured
                    status = "REGRESSED" if delta > ref["tolerance"] else "ok"
                rows.append({"run": run, "loops": int(loops), "metric": metric, "reference": ref["value"],
                             "tolerance": ref["tolerance"], "measured": measured, "status": status})
    table = pd.DataFrame(rows)
    return table, bool(len(table)) and (table["status"] == "ok").all()
