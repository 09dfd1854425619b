"""The audit of paper-protocol results (paper_metrics.csv): the paper's claims judged on intervals from
the saved Inception / I3D features of every (run, L) (elt.eval.paper.PaperFeatures), as the embedded
audit judges its own (elt.harness.audit), with the paper's primary metrics (ADM's FID for images,
FVD for videos); the efficiency claims measured on the profile's device (elt.harness.efficiency); and
each measured number beside the paper's reported one where the protocol is comparable: measured minus
reported, with the measured interval.

A reported number carries its rounding: the paper's FID 2.0 stands for [1.95, 2.05). The measurement is
**consistent** with it when its interval meets that band, **worse** or **better** when it lies wholly on
one side. The interval holds the sampling noise of the samples (and the seeds' when there are several):
a one-seed run says nothing about training noise, and the verdict says so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from elt.eval.paper import PaperFeatures
from elt.harness import efficiency
from elt.harness.audit import CLAIMS, Comparison, audit, comparison_name, log_interval, markdown
from elt.harness.schema import PAPER_PRIMARY

# measured column -> (the paper's column, lower is better)
REPORTED = {"fid_adm": ("paper_fid", True), "fvd": ("paper_fvd", True), "inception_score": ("paper_is", False)}
CONSISTENT, WORSE, BETTER, NOT_COMPARED = "consistent", "measured worse", "measured better", "not compared"
SOURCES = (
    "paper_metrics.csv, the paper evaluations' saved features and the efficiency timings by `elt.harness.paper_audit`"
)


def rounding(value: float) -> float:
    """Half a unit of the last decimal a reported number was written with, at least one decimal (the paper
    writes every FID, IS and FVD with one; a table read back cannot tell 60 from 60.0): 2.0 -> 0.05, 2.25 -> 0.005."""
    fraction = f"{float(value):.10f}".rstrip("0").split(".")[1]
    return 0.5 * 10.0 ** -max(1, len(fraction))


def _inception_interval(features: PaperFeatures, g: Comparison, family: str, loops: int) -> tuple | None:
    """The Inception Score of (family, L) over its seeds, with its interval under the comparison's own draws
    (the draws its FID interval comes from), or None without saved logits."""
    picks, draws = g.resamples[family]
    values, points = np.empty(picks.shape), []
    for k, run in enumerate(g.runs[family]):
        chosen = picks == k
        found = features.inception_scores(run, loops, draws[chosen])
        if found is None:
            return None
        points.append(found[0])
        values[chosen] = found[1]
    estimate = float(np.mean(points))
    return (estimate, *log_interval(estimate, values.mean(1), g.level))


def paper_numbers(table: pd.DataFrame, comparisons: dict, features: PaperFeatures) -> list[dict]:
    """Per (family, L) of each comparison and each metric the paper reports: the measurement with its interval,
    and beside a comparable paper number, measured minus reported and the verdict."""
    rows = []
    table = table.assign(comparison=table["group"].map(comparison_name))
    for name, g in sorted(comparisons.items()):
        part = table[table["comparison"] == name]
        for (family, loops), cell in part.groupby(["family", "loops_eval"]):
            loops = int(loops)
            for metric, (paper_column, lower) in REPORTED.items():
                if metric not in cell or cell[metric].isna().all():
                    continue
                if metric == "inception_score":
                    found = _inception_interval(features, g, family, loops)
                    if found is None:
                        continue
                    estimate, low, high = found
                elif metric == g.metric:
                    estimate = g.point(family, loops)
                    low, high = log_interval(estimate, g.draws(family, loops), g.level)
                else:
                    continue
                reported = cell[paper_column].dropna() if paper_column in cell else pd.Series(dtype=float)
                comparable = set(cell["comparable"])
                row = {
                    "comparison": name,
                    "family": family,
                    "loops": loops,
                    "metric": metric,
                    "seeds": sorted(int(s) for s in cell["seed"]),
                    "n_samples": int(cell["n_samples"].iloc[0]),
                    "measured": estimate,
                    "interval": [low, high],
                    "reported": None,
                    "difference": None,
                    "difference_interval": None,
                    "verdict": NOT_COMPARED,
                    "why": "; ".join(sorted(c for c in comparable if c != "yes")) or "the paper reports none here",
                }
                if "fvd_reconstruction" in cell and cell["fvd_reconstruction"].notna().any():
                    row["fvd_reconstruction"] = float(cell["fvd_reconstruction"].mean())
                if comparable == {"yes"} and len(reported):
                    value, band = float(reported.iloc[0]), rounding(float(reported.iloc[0]))
                    worse = (low > value + band) if lower else (high < value - band)
                    better = (high < value - band) if lower else (low > value + band)
                    row |= {
                        "reported": value,
                        "difference": estimate - value,
                        "difference_interval": [low - value, high - value],
                        "verdict": WORSE if worse else BETTER if better else CONSISTENT,
                        "why": f"interval [{low:.4g}, {high:.4g}] against the reported {value:g} +- {band:g} (rounding)"
                        + ("" if len(row["seeds"]) > 1 else "; one seed: training noise not included"),
                    }
                rows.append(row)
    return rows


def paper_audit(
    table: pd.DataFrame, audit_settings: dict, features: PaperFeatures, efficiency_record: dict | None = None
) -> dict:
    """The claims (elt.harness.audit's, on ADM's FID / FVD; throughput from the efficiency step instead of
    the embedded timing), the efficiency claims and the comparison with the paper's numbers."""
    settings = {**audit_settings, "primary_metric": PAPER_PRIMARY}
    comparisons = {}
    judges = {name: judge for name, judge in CLAIMS.items() if name != "throughput"}
    result = audit(table, settings, features, judges=judges, comparisons=comparisons)
    if efficiency_record is not None:
        result["claims"] += efficiency.claims(table, efficiency_record, settings)
        result["efficiency"] = {k: efficiency_record[k] for k in ("settings", "timer", "memory", "device")}
    result["paper_numbers"] = paper_numbers(table, comparisons, features)
    return result


def with_intervals(table: pd.DataFrame, result: dict) -> pd.DataFrame:
    """paper_metrics.csv with each row's interval of its primary metric from the audit (<metric>_ci_low, _ci_high:
    the columns metrics.csv has), as the calibration reads quality."""
    found = {(r["comparison"], r["family"], r["loops"], r["metric"]): r["interval"] for r in result["paper_numbers"]}
    table = table.copy()
    for metric in PAPER_PRIMARY.values():
        table[f"{metric}_ci_low"], table[f"{metric}_ci_high"] = float("nan"), float("nan")
    for i, row in table.iterrows():
        metric = PAPER_PRIMARY[row["modality"]]
        interval = found.get((comparison_name(row["group"]), row["family"], int(row["loops_eval"]), metric))
        if interval:
            table.loc[i, [f"{metric}_ci_low", f"{metric}_ci_high"]] = interval
    return table


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def paper_markdown(result: dict, provenance: dict) -> str:
    text = markdown(result, provenance, "Audit of the ELT paper's claims on paper-protocol results", SOURCES)
    lines = [
        "",
        "## Beside the paper's reported numbers",
        "",
        "Measured with its interval (sampling noise of the samples; seeds' too where there are several), and the "
        "paper's number where the protocol is comparable (paper_metrics.csv, `comparable`): **consistent** when "
        "the interval meets the reported number's rounding band, else measured worse or better.",
        "",
        "| comparison | family | L | metric | samples | seeds | measured [interval] | reported | measured - reported "
        "[interval] | verdict | why |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["paper_numbers"]:
        diff = (
            f"{r['difference']:+.3g} [{r['difference_interval'][0]:+.3g}, {r['difference_interval'][1]:+.3g}]"
            if r["difference"] is not None
            else ""
        )
        recon = f"; tokenizer's reconstruction FVD {r['fvd_reconstruction']:.3g}" if "fvd_reconstruction" in r else ""
        lines.append(
            f"| {r['comparison']} | {r['family']} | {r['loops']} | {r['metric']} | {r['n_samples']} | "
            f"{len(r['seeds'])} | {_fmt(r['measured'])} [{_fmt(r['interval'][0])}, {_fmt(r['interval'][1])}] | "
            f"{_fmt(r['reported'])} | {diff} | **{r['verdict']}** | {r['why']}{recon} |"
        )
    if "efficiency" in result:
        e = result["efficiency"]
        lines += [
            "",
            f"Efficiency measured on {e['device']}: {e['timer']}, {e['settings']['repeats']} interleaved repeats after "
            f"{e['settings']['warmup']} warm-up call(s); memory: {e['memory']}.",
        ]
    return text + "\n".join(lines) + "\n"
