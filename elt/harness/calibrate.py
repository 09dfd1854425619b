"""Which layout and loop count to run on this device: the per-hardware calibration the paper says is needed
and does not give.

Sampling latency of every run at every loop count it was evaluated at, per batch size, is measured here
(elt.harness.efficiency.time_sampling: interleaved repeats, warm-up; the median with its order-statistic
interval), and
joined with each (run, L)'s quality from the results (metrics.csv). Among the layouts that model the
same data with the same generator, a (run, L) is on the Pareto set when no other is both at least as
fast and at least as good, one of them strictly (on the point estimates; the intervals stand beside). For
a latency budget, the recommendation is the best-quality (run, L) whose whole latency interval fits it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from elt.errors import UserError
from elt.files import atomic_path
from elt.harness import efficiency
from elt.harness.audit import median_interval
from elt.harness.check import protocol_of
from elt.harness.schema import PAPER_PRIMARY
from elt.provenance import provenance

LEVEL = 0.95
PRIMARY = {"image": "fd_domain", "video": "fvd_domain"}  # the default audit's primary metrics (lower is better)
ALTERNATIVES = ["dataset", "generator", "batch_size"]  # rows that model the same thing on the same batch


def measure_latency(
    checkpoints: dict[str, str],
    loops: dict[str, list[int]],
    batch_sizes: list[int],
    repeats: int,
    warmup: int,
    seed: int = 0,
) -> pd.DataFrame:
    """Milliseconds to sample one batch of each (run, L), per batch size: every (run, L) of a batch size
    timed back to back in a rotating order, so the machine's drift falls on all alike."""
    if repeats < 3 or warmup < 0 or not batch_sizes or min(batch_sizes) < 1:
        raise UserError(
            f"calibration needs repeats >= 3, warmup >= 0 and batch sizes >= 1 (got {repeats}, {warmup}, "
            f"{batch_sizes}): fix --repeats, --warmup or --batch-sizes"
        )
    models = efficiency.load_models(checkpoints)
    return latency_table(efficiency.time_sampling(models, loops, batch_sizes, repeats, warmup, seed))


def latency_table(sampling: list[dict]) -> pd.DataFrame:
    """Timings (elt.harness.efficiency.time_sampling rows: seconds per repeat) -> ms to sample one batch of each
    (run, L) per batch size: the median with its order-statistic interval."""
    rows = []
    for s in sampling:
        median, low, high = median_interval([1e3 * x for x in s["seconds"]], LEVEL)
        rows.append(
            {
                "run": s["run"],
                "loops_eval": s["loops_eval"],
                "batch_size": s["batch_size"],
                "latency_ms": median,
                "latency_ms_low": low,
                "latency_ms_high": high,
                "repeats": len(s["seconds"]),
            }
        )
    return pd.DataFrame(rows)


def join_quality(
    latency: pd.DataFrame, metrics: pd.DataFrame, metric: str | None = None, primary: dict = PRIMARY
) -> pd.DataFrame:
    """Each timed (run, L) with its quality: `metric`, or each row's modality's primary metric, with its interval
    (the columns <metric>_ci_low and _ci_high, where the results have them)."""
    missing = set(zip(metrics.run, metrics.loops_eval)) - set(zip(latency.run, latency.loops_eval))
    if missing:
        run, loops = sorted(missing)[0]
        raise UserError(
            f"the timings have no latency for {run} at L = {loops} ({len(missing)} (run, L) missing): measure them "
            "(elt calibrate without --latency) or pass the timings of these results"
        )
    rows = []
    for _, m in metrics.iterrows():
        name = metric or primary[m.modality]
        if name not in m or pd.isna(m[name]):
            raise UserError(
                f"metrics have no {name!r} for {m.run} at L = {m.loops_eval}: pick --metric from its columns"
            )
        for _, t in latency[(latency.run == m.run) & (latency.loops_eval == m.loops_eval)].iterrows():
            rows.append(
                {
                    **{k: m[k] for k in ("run", "dataset", "generator", "family", "n_unique", "loops_eval")},
                    "layout": f"{m.n_unique}N x {m.loops_eval}L",
                    **{k: t[k] for k in ("batch_size", "latency_ms", "latency_ms_low", "latency_ms_high")},
                    "metric": name,
                    "quality": m[name],
                    "quality_low": m.get(f"{name}_ci_low"),
                    "quality_high": m.get(f"{name}_ci_high"),
                }
            )
    return pd.DataFrame(rows)


def pareto(table: pd.DataFrame) -> pd.Series:
    """True where no alternative (same dataset, generator and batch size) is as fast and as good, one strictly
    (lower latency and lower metric are better)."""
    on_front = pd.Series(True, index=table.index)
    for _, group in table.groupby(ALTERNATIVES):
        for i, row in group.iterrows():
            others = group.drop(index=i)
            dominated = (
                (others.latency_ms <= row.latency_ms)
                & (others.quality <= row.quality)
                & ((others.latency_ms < row.latency_ms) | (others.quality < row.quality))
            )
            on_front[i] = not dominated.any()
    return on_front


def recommend(table: pd.DataFrame, budget_ms: float) -> pd.DataFrame:
    """Per dataset, generator and batch size: the best-quality (run, L) whose latency interval fits the budget."""
    fits = table[table.latency_ms_high <= budget_ms]
    return fits.loc[fits.groupby(ALTERNATIVES).quality.idxmin()].reset_index(drop=True) if len(fits) else fits


def markdown(table: pd.DataFrame, picks: pd.DataFrame, budget_ms: float | None) -> str:
    lines = [
        "# Calibration: layouts and loop counts on this device",
        "",
        f"Latency: median of interleaved repeats with its {LEVEL:.0%} order-statistic interval; quality: the metric "
        "with its bootstrap interval from the results (lower is better). Pareto: no other layout of the same data "
        "and generator is both as fast and as good at this batch size.",
        "",
        "| dataset | generator | batch | run | layout | latency ms [interval] | metric | quality [interval] | Pareto |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.sort_values(ALTERNATIVES + ["latency_ms"]).iterrows():
        lines.append(
            f"| {r.dataset} | {r.generator} | {r.batch_size} | {r.run} | {r.layout} | {r.latency_ms:.2f} "
            f"[{r.latency_ms_low:.2f}, {r.latency_ms_high:.2f}] | {r.metric} | {r.quality:.3g}"
            f"{_interval(r.quality_low, r.quality_high)} | {'yes' if r.pareto else ''} |"
        )
    if budget_ms is not None:
        lines += ["", f"## Within {budget_ms:g} ms per batch", ""]
        if picks.empty:
            lines.append("Nothing fits this budget: every latency interval lies above it.")
        for _, r in picks.iterrows():
            lines.append(
                f"- {r.dataset}, {r.generator}, batch {r.batch_size}: **{r.run} at L = {r.loops_eval}** ({r.layout}), "
                f"{r.latency_ms:.2f} ms, {r.metric} {r.quality:.3g}"
            )
    return "\n".join(lines) + "\n"


def _interval(low, high) -> str:
    return "" if pd.isna(low) or pd.isna(high) else f" [{low:.3g}, {high:.3g}]"


def plot(table: pd.DataFrame, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(table.groupby(ALTERNATIVES))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.8), squeeze=False)
    for ax, ((dataset, generator, batch), g) in zip(axes[0], groups):
        for family, f in g.groupby("family"):
            ax.errorbar(
                f.latency_ms,
                f.quality,
                xerr=[f.latency_ms - f.latency_ms_low, f.latency_ms_high - f.latency_ms],
                fmt="o",
                label=family,
                capsize=2,
            )
        front = g[g.pareto].sort_values("latency_ms")
        ax.plot(front.latency_ms, front.quality, "k--", lw=1, label="Pareto set")
        ax.set(title=f"{dataset} {generator}, batch {batch}", xlabel="latency per batch (ms)", ylabel=g.metric.iloc[0])
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def calibrate(
    metrics_csv: str,
    out_dir: str,
    runs_dir: str | None = None,
    latency_csv: str | None = None,
    batch_sizes: tuple[int, ...] = (1, 8),
    repeats: int = 5,
    warmup: int = 1,
    budget_ms: float | None = None,
    metric: str | None = None,
) -> pd.DataFrame:
    """Measure (or read) the latencies, join them with the results' quality, and write calibration.csv,
    calibration.md, calibration.png and the latencies (latency.csv) into out_dir: all or nothing."""
    if not Path(metrics_csv).is_file():
        raise UserError(f"results {metrics_csv!r} do not exist: run the pipeline first, or pass its metrics.csv")
    metrics = pd.read_csv(metrics_csv)
    if latency_csv is not None:
        if not Path(latency_csv).is_file():
            raise UserError(f"timings {latency_csv!r} do not exist: measure them (leave out --latency)")
        latency = pd.read_csv(latency_csv)
    elif runs_dir is None:
        raise UserError("a calibration needs timings: pass --runs (the runs' folder, to measure) or --latency")
    else:
        checkpoints = {run: Path(runs_dir) / run / "checkpoint.pt" for run in sorted(set(metrics.run))}
        absent = [str(p) for p in checkpoints.values() if not p.is_file()]
        if absent:
            raise UserError(f"checkpoint {absent[0]!r} does not exist: pass the runs' folder of these results (--runs)")
        loops = {run: sorted(int(x) for x in metrics[metrics.run == run].loops_eval) for run in checkpoints}
        latency = measure_latency(
            {r: str(p) for r, p in checkpoints.items()}, loops, list(batch_sizes), repeats, warmup
        )
    primary = PAPER_PRIMARY if protocol_of(metrics) == "paper" else PRIMARY
    return write_calibration(latency, metrics, out_dir, budget_ms, metric, {"metrics": metrics_csv}, primary)


def write_calibration(
    latency: pd.DataFrame,
    metrics: pd.DataFrame,
    out_dir: str,
    budget_ms: float | None = None,
    metric: str | None = None,
    sources: dict | None = None,
    primary: dict = PRIMARY,
) -> pd.DataFrame:
    """calibration.md, .csv and .png and latency.csv in out_dir, from timings and the results' quality: all or
    nothing. Returns the calibration table."""
    table = join_quality(latency, metrics, metric, primary)
    table["pareto"] = pareto(table)
    picks = recommend(table, budget_ms) if budget_ms is not None else table.iloc[0:0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot(table, out / "calibration.png")
    with atomic_path(out / "latency.csv") as tmp:
        latency.to_csv(tmp, index=False)
    with atomic_path(out / "calibration.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out / "calibration.md") as tmp:
        Path(tmp).write_text(markdown(table, picks, budget_ms))
    with atomic_path(out / "provenance.json") as tmp:
        Path(tmp).write_text(json.dumps({**(sources or {}), "budget_ms": budget_ms, **provenance()}, indent=2))
    return table
