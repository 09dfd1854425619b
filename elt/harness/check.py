"""Regression checks against a committed reference, with tolerances from measured seed noise.

A reference (results/reference/<profile>.json) holds, per (run, loop count, metric), the value of
every training seed of a multi-seed run of the grid. `elt check` runs two tests and fails on either:

- per row: a move from the seeds' mean beyond k predictive standard deviations (a new seed's
  deviation from a mean of n seeds: sqrt(1 + 1/n) seed deviations) in the metric's bad direction,
  or a run, loop count or metric that vanished. The seed deviation is the row's own, floored at
  the metric's root-mean-square relative spread so that three seeds cannot give a near-zero
  tolerance by chance; k holds the family-wise false-alarm rate over the rows (Bonferroni, Student's
  t) unless given;
- aggregate: per metric (and for all metrics combined, weighted by the inverse square of each
  metric's typical relative seed deviation), over every run and over each grid group, the mean log
  ratio of measured to the seeds' (geometric) mean, signed so that positive is worse. Loop counts of one run share
  its training noise, so each run is averaged first; runs are taken as independent, and the
  standard error comes from the seed spread of those run means (Welch-Satterthwaite degrees of
  freedom). One-sided t tests, Holm's correction over all of them at the reference's false-alarm
  rate. A small shift that touches many rows is invisible to each row alone but not to their mean.

The reference also records what each test can see (the smallest uniform shift flagged with 90%
probability) and a leave-one-seed-out validation of both tests (false alarms and power), and
what the runs were made with, so a check of an identical set-up lists every number that moved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from elt.errors import UserError
from elt.files import read_json
from elt.harness.grid import group_of
from elt.harness.schema import QUALITY

SEED = re.compile(r"-s(\d+)$")
POWER = 0.9  # a test "can detect" a shift it flags with this probability
FORMAT = 2  # reference layout: per-seed values (format 1 held only the baseline value and its spread)
# Profile keys that name where a run writes, which seeds it covers, how it is audited or which loop plans
# it also samples (into loop_plans.csv): none decides a number of metrics.csv.
VOLATILE_CONFIG = ("results", "reference", "seeds", "audit", "loop_plans")


def read_metrics(path: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(
            f"metrics file {path!r} cannot be read ({type(err).__name__}): run the pipeline first"
        ) from None
    missing = {"run", "loops_eval"} - set(df.columns)
    if missing:
        raise UserError(
            f"metrics file {path!r} lacks the column(s) {', '.join(sorted(missing))}: is it a results/metrics.csv?"
        )
    return df


def seed_table(df: pd.DataFrame) -> pd.DataFrame:
    """metrics.csv rows of several seeds -> long table (stem, loops, metric, seed, value)."""
    seeds = df["run"].str.extract(SEED, expand=False)
    if seeds.isna().any():
        raise UserError(
            f"run name {df['run'][seeds.isna()].iloc[0]!r} does not end in -s<seed>: is it a results/metrics.csv?"
        )
    # A metric applies to one modality (fid to images, fvd to videos): rows without it are dropped.
    measured = [m for m in QUALITY if m in df.columns and df[m].notna().any()]
    wide = df.assign(
        stem=df["run"].str.replace(SEED, "", regex=True), seed=seeds.astype(int), loops=df["loops_eval"].astype(int)
    )
    table = wide.melt(id_vars=["stem", "loops", "seed"], value_vars=measured, var_name="metric").dropna(
        subset=["value"]
    )
    return table.astype({"value": float}).reset_index(drop=True)


def table_of(reference: dict) -> pd.DataFrame:
    """A reference's per-seed values back as a long seed table (what reference_from_table takes)."""
    rows = [
        {"stem": SEED.sub("", run), "loops": int(loops), "seed": int(seed), "metric": metric, "value": value}
        for run, by_loops in reference["entries"].items()
        for loops, per_metric in by_loops.items()
        for metric, ref in per_metric.items()
        for seed, value in ref["seeds"].items()
    ]
    return pd.DataFrame(rows, columns=["stem", "loops", "metric", "seed", "value"])


def reference_from_table(table: pd.DataFrame, baseline_seed: int, k: float | None, false_alarm_rate: float) -> dict:
    """The tolerances and tests of a reference built from a long seed table (see seed_table). k=None:
    the normal quantile that holds the per-row test's family-wise false-alarm rate (Bonferroni over rows)."""
    seeds = sorted(int(s) for s in table["seed"].unique())
    if len(seeds) < 2:
        raise UserError(
            f"the metrics hold one seed ({seeds[0]}): tolerances need seed noise, so run the grid with seeds: [0, 1, 2]"
        )
    if baseline_seed not in seeds:
        raise UserError(f"no run with seed {baseline_seed} in the metrics: pass --baseline-seed with one of {seeds}")
    if not 0 < false_alarm_rate < 1:
        raise UserError(f"false-alarm rate {false_alarm_rate} is not in (0, 1): pass e.g. --false-alarm-rate 0.01")
    by_row = table.pivot_table(index=["stem", "loops", "metric"], columns="seed", values="value", aggfunc="first")
    incomplete = by_row[by_row.isna().any(axis=1)]
    if len(incomplete):
        stem, loops, metric = incomplete.index[0]
        raise UserError(f"{stem} at L={loops} has {metric} for some seeds only: every seed must cover the same grid")
    spread, mean = by_row.std(axis=1, ddof=1), by_row.mean(axis=1)
    # the metric's typical relative seed deviation: root mean square over rows (a median of few-seed
    # deviations sits well below the truth)
    relative = np.sqrt(((spread / mean.abs()).replace(np.inf, np.nan) ** 2).groupby(level="metric").mean()).fillna(0.0)
    if k is None:
        # Bonferroni over rows; Student's t since the deviations come from few seeds (rows of one run
        # share its noise, so the degrees of freedom are counted per run)
        runs = by_row.index.get_level_values("stem").nunique()
        k = float(stats.t.isf(false_alarm_rate / len(by_row), runs * (len(seeds) - 1)))
    # a new seed against the mean of len(seeds) seeds: its deviation has variance (1 + 1/n) seed variances
    predictive = np.sqrt(1 + 1 / len(seeds))
    entries = {}
    for (stem, loops, metric), values in by_row.iterrows():
        center, std = float(mean[(stem, loops, metric)]), float(spread[(stem, loops, metric)])
        entries.setdefault(f"{stem}-s{baseline_seed}", {}).setdefault(str(loops), {})[metric] = {
            "value": float(values[baseline_seed]),
            "mean": center,
            "seed_std": std,
            "tolerance": k * predictive * max(std, float(relative[metric]) * abs(center)),
            "seeds": {str(s): float(values[s]) for s in seeds},
        }
    metrics = sorted(relative.index)
    reference = {
        "format": FORMAT,
        "directions": {m: QUALITY[m] for m in metrics},
        "k": k,
        "seeds": seeds,
        "baseline_seed": baseline_seed,
        "false_alarm_rate": false_alarm_rate,
        "rms_relative_seed_std": {m: float(relative[m]) for m in metrics},
        "entries": entries,
    }
    reference["detectable_shift"] = detectable_shifts(reference)
    return reference


def protocol_of(df: pd.DataFrame) -> str:
    """embedded (metrics.csv) or paper (paper_metrics.csv, whose rows say so)."""
    return "paper" if "protocol" in df.columns and (df["protocol"] == "paper").all() else "embedded"


SEED_NOISE = {"kind": "seeds", "statement": "training seeds: each seed's values, so the tolerances hold training noise"}


def sampling_noise(replicates: int, samples: int) -> dict:
    return {
        "kind": "sampling",
        "replicates": replicates,
        "statement": f"sampling noise only: {replicates} bootstrap replicates of each row's {samples} samples stand "
        "in for seeds (one training seed). Training noise is not in the tolerances: a change that retrains the "
        "models moves its numbers by training noise too, which this reference cannot tell from a regression; "
        "build it from several seeds where they are affordable",
    }


def sampling_table(df: pd.DataFrame, replicates: int, seed: int = 0) -> pd.DataFrame:
    """A one-seed paper results table -> a long table (see seed_table) whose 'seeds' are bootstrap replicates
    of each row's samples, resampled from the saved features (elt.eval.paper.PaperFeatures): the paper's
    Frechet metrics and the Inception Score, each replicate set scaled so its mean is the measured value
    (resampling repeats samples, which biases a Frechet distance upward)."""
    from elt.eval.paper import PaperFeatures

    if replicates < 3:
        raise UserError(f"--replicates {replicates}: a sampling-noise reference needs at least 3 (e.g. 20)")
    features = PaperFeatures.of_table(df, "the paper results")
    rng, rows = np.random.default_rng(seed), []
    for _, row in df.iterrows():
        run, loops = row["run"], int(row["loops_eval"])
        draws = rng.integers(0, int(row["n_samples"]), (replicates, int(row["n_samples"])))
        found = {}
        for metric in ("fid_adm", "fid_clean", "fvd"):
            if pd.notna(row.get(metric)) and features.has(run, loops, metric):
                found[metric] = features.frechet(run, loops, metric, draws)
        scores = features.inception_scores(run, loops, draws)
        if scores is not None:
            found["inception_score"] = scores
        for metric, (point, values) in found.items():
            values = values * (point / values.mean())
            stem = SEED.sub("", run)
            rows += [
                {"stem": stem, "loops": loops, "seed": r, "metric": metric, "value": float(v)}
                for r, v in enumerate(values)
            ]
    return pd.DataFrame(rows, columns=["stem", "loops", "metric", "seed", "value"])


def build_reference(
    metric_files: list[str],
    baseline_seed: int,
    k: float | None,
    profile: str,
    provenance: dict,
    false_alarm_rate: float = 0.01,
    record: dict | None = None,
    replicates: int = 20,
) -> dict:
    """A reference from several seeds' results; paper results of one seed take their sampling noise from
    `replicates` bootstrap replicates of their saved features instead, and say so."""
    df = pd.concat([read_metrics(f) for f in metric_files], ignore_index=True)
    protocol, noise = protocol_of(df), SEED_NOISE
    seeds = df["run"].str.extract(SEED, expand=False)
    if protocol == "paper" and seeds.nunique() == 1 and seeds.notna().all():
        table = sampling_table(df, replicates)
        reference = reference_from_table(table, 0, k, false_alarm_rate)
        reference["entries"] = {  # the replicates' entries under the run's own name, its measured value as value
            run: {
                str(int(row["loops_eval"])): {
                    metric: {**entry, "value": float(row[metric])}
                    for metric, entry in reference["entries"][f"{SEED.sub('', run)}-s0"][
                        str(int(row["loops_eval"]))
                    ].items()
                }
                for _, row in rows.iterrows()
            }
            for run, rows in df.groupby("run")
        }
        noise = sampling_noise(replicates, int(df["n_samples"].min()))
    else:
        table = seed_table(df)
        reference = reference_from_table(table, baseline_seed, k, false_alarm_rate)
    return {
        "profile": profile,
        "protocol": protocol,
        "noise": noise,
        **reference,
        "validation": validate(table, k, false_alarm_rate),
        "record": record or {},
        "provenance": provenance,
    }


# --- the two tests ------------------------------------------------------------------------------
class _Measured:
    """Lookup of a metrics table's numbers by (run, loop count, metric); None where absent."""

    def __init__(self, df: pd.DataFrame):
        self.rows = {
            (run, int(loops)): row
            for (run, loops), row in df.drop_duplicates(["run", "loops_eval"])
            .set_index(["run", "loops_eval"])
            .iterrows()
        }

    def __call__(self, run: str, loops: str, metric: str) -> float | None:
        row = self.rows.get((run, int(loops)))
        if row is None or metric not in row or pd.isna(row[metric]):
            return None
        return float(row[metric])


def per_row_test(reference: dict, df: pd.DataFrame) -> pd.DataFrame:
    measured_value = _Measured(df)
    rows = []
    for run, by_loops in reference["entries"].items():
        for loops, per_metric in by_loops.items():
            for metric, ref in per_metric.items():
                measured = measured_value(run, loops, metric)
                if measured is None:
                    status = "MISSING"
                else:
                    worse_by = (
                        measured - ref["mean"] if reference["directions"][metric] == "lower" else ref["mean"] - measured
                    )
                    status = "REGRESSED" if worse_by > ref["tolerance"] else "ok"
                rows.append(
                    {
                        "run": run,
                        "loops": int(loops),
                        "metric": metric,
                        "seed_mean": ref["mean"],
                        "tolerance": ref["tolerance"],
                        "measured": measured,
                        "status": status,
                    }
                )
    return pd.DataFrame(rows, columns=["run", "loops", "metric", "seed_mean", "tolerance", "measured", "status"])


def _signed_log(values, direction: str):
    """log of a metric, signed so that larger is worse."""
    return np.log(values) * (1.0 if direction == "lower" else -1.0)


def _relative_change(signed_log_shift, direction: str):
    """A signed log shift as the relative change it makes the wrong way: +5% on a lower-is-better
    metric, -5% (reported as 5%) on a higher-is-better one. The combined test reports the
    lower-is-better form, which a uniform shift reaches first (log(1 + s) <= -log(1 - s))."""
    return np.expm1(signed_log_shift) if direction != "higher" else -np.expm1(-np.asarray(signed_log_shift))


COMBINED = "combined"  # every metric at once: a uniform shift moves them all


def _run_statistics(reference: dict, df: pd.DataFrame) -> pd.DataFrame:
    """Per (metric, run): the run's mean signed log ratio to the seed mean, and the seed variance of
    that mean. Also per run, COMBINED: every metric's log ratios weighted by the inverse square of the
    metric's typical relative seed deviation, so that the quiet metrics count most."""
    seeds = [str(s) for s in reference["seeds"]]
    measured_value = _Measured(df)
    rows = []

    def add(metric, run, ratios, per_seed, weights):
        weights = np.asarray(weights) / np.sum(weights)
        rows.append(
            {
                "metric": metric,
                "group": group_of(run),
                "run": run,
                "log_ratio": float(weights @ np.asarray(ratios)),
                "seed_var": float((weights @ np.asarray(per_seed)).var(ddof=1)),
                "rows": len(ratios),
            }
        )

    for run, by_loops in reference["entries"].items():
        combined, metrics_of_run = ([], [], []), 0
        for metric, direction in reference["directions"].items():
            ratios, per_seed = [], []
            for loops, per_metric in by_loops.items():
                ref = per_metric.get(metric)
                measured = measured_value(run, loops, metric) if ref else None
                seed_values = np.array([ref["seeds"][s] for s in seeds]) if ref else None
                # log ratios need positive numbers (KID can dip below 0); the per-row test still sees such rows
                if measured is None or measured <= 0 or (seed_values <= 0).any():
                    continue
                logs = _signed_log(seed_values, direction)
                ratios.append(_signed_log(measured, direction) - logs.mean())
                per_seed.append(logs)
            if not ratios:
                continue
            add(metric, run, ratios, per_seed, np.ones(len(ratios)))
            metrics_of_run += 1
            typical = reference["rms_relative_seed_std"][metric]
            if typical > 0:
                for store, values in zip(combined, (ratios, per_seed, [typical**-2] * len(ratios))):
                    store.extend(values)
        if metrics_of_run > 1 and combined[0]:
            add(COMBINED, run, *combined)
    return pd.DataFrame(rows, columns=["metric", "group", "run", "log_ratio", "seed_var", "rows"])


def _scopes(runs: pd.DataFrame):
    """Every run of a metric, and each group whose runs are not already all of them."""
    yield "all", runs
    for group, sub in runs.groupby("group"):
        if len(sub) < len(runs):
            yield group, sub


def _holm(p_values: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down rejections: family-wise false-alarm rate alpha under any dependence."""
    reject = np.zeros(len(p_values), bool)
    for rank, i in enumerate(np.argsort(p_values)):
        if not p_values[i] <= alpha / (len(p_values) - rank):
            break
        reject[i] = True
    return reject


AGGREGATE_COLUMNS = ["metric", "scope", "runs", "rows", "shift", "se", "dof", "p", "detectable", "status"]


def aggregate_test(reference: dict, df: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, scope): mean shift, its standard error, t, p, detectable shift, status."""
    n_seeds = len(reference["seeds"])
    tests = []
    for metric, runs in _run_statistics(reference, df).groupby("metric"):
        direction = reference["directions"].get(metric, "lower")  # combined: see _relative_change
        for scope, sub in _scopes(runs):
            var_sum = sub["seed_var"].sum()
            se = np.sqrt(var_sum * (1 + 1 / n_seeds)) / len(sub)  # a new seed around the mean of n_seeds seeds
            dof = var_sum**2 / (sub["seed_var"] ** 2 / (n_seeds - 1)).sum() if var_sum > 0 else np.nan
            shift = sub["log_ratio"].mean()
            tests.append(
                {
                    "metric": metric,
                    "scope": scope,
                    "runs": len(sub),
                    "rows": int(sub["rows"].sum()),
                    "direction": direction,
                    "shift": float(_relative_change(shift, direction)),
                    "se": float(se),
                    "dof": float(dof),
                    "p": float(stats.t.sf(shift / se, dof)) if var_sum > 0 else np.nan,
                }
            )
    table = pd.DataFrame(tests, columns=[*AGGREGATE_COLUMNS[:8], "direction"])
    alpha = reference["false_alarm_rate"]
    testable = table["p"].notna().to_numpy()
    reject = np.zeros(len(table), bool)
    reject[testable] = _holm(table["p"].to_numpy()[testable], alpha)
    # what each test can see: the uniform shift flagged with probability POWER at the Bonferroni level
    # (Holm rejects at least what Bonferroni rejects, so this errs on the side of claiming less)
    level = alpha / max(int(testable.sum()), 1)
    detectable_log = table["se"] * (stats.t.isf(level, table["dof"]) + stats.t.ppf(POWER, table["dof"]))
    table["detectable"] = [
        float(_relative_change(d, direction)) for d, direction in zip(detectable_log, table["direction"])
    ]
    table = table.drop(columns="direction")
    table["status"] = np.where(~testable, "untestable", np.where(reject, "REGRESSED", "ok"))
    return table


def detectable_shifts(reference: dict) -> dict:
    """The smallest uniform relative shift each test flags: per row (when the run equals the seed mean
    moved by it), and per aggregate test (with probability POWER, given the seed spread)."""
    baseline = pd.DataFrame(
        [
            {"run": run, "loops_eval": int(loops), **{m: ref["mean"] for m, ref in per_metric.items()}}
            for run, by_loops in reference["entries"].items()
            for loops, per_metric in by_loops.items()
        ]
    )
    per_row = {}
    for metric in reference["directions"]:
        relative = [
            ref["tolerance"] / abs(ref["mean"])
            for by_loops in reference["entries"].values()
            for per_metric in by_loops.values()
            for m, ref in per_metric.items()
            if m == metric and ref["mean"]
        ]
        smallest = min(relative) if relative else None
        # a higher-is-better metric cannot fall by 100% or more: no uniform shift flags a row then
        impossible = smallest is None or (reference["directions"][metric] == "higher" and smallest >= 1)
        per_row[metric] = None if impossible else float(smallest)
    aggregate = {
        f"{t.metric}/{t.scope}": (None if np.isnan(t.detectable) else float(t.detectable))
        for t in aggregate_test(reference, baseline).itertuples()
    }
    return {"per_row": per_row, "aggregate": aggregate, "power": POWER}


@dataclass
class CheckResult:
    rows: pd.DataFrame  # the per-row test
    aggregate: pd.DataFrame  # the aggregate tests

    @property
    def rows_passed(self) -> bool:
        return bool(len(self.rows)) and bool((self.rows["status"] == "ok").all())

    @property
    def aggregate_passed(self) -> bool:
        return not (self.aggregate["status"] == "REGRESSED").any()

    @property
    def passed(self) -> bool:
        return self.rows_passed and self.aggregate_passed

    @property
    def bad_rows(self) -> pd.DataFrame:
        return self.rows[self.rows["status"] != "ok"]

    @property
    def bad_tests(self) -> pd.DataFrame:
        return self.aggregate[self.aggregate["status"] == "REGRESSED"]


def flagged_tests(result: CheckResult) -> list[str]:
    """The aggregate tests that flagged, as metric/scope."""
    return [f"{t.metric}/{t.scope}" for t in result.bad_tests.itertuples()]


def check(reference: dict, df: pd.DataFrame) -> CheckResult:
    if reference.get("format") == FORMAT:
        return CheckResult(per_row_test(reference, df), aggregate_test(reference, df))
    if "format" in reference or not reference.get("entries"):
        raise UserError("the reference is not one 'elt reference' writes: rebuild it with 'make reference'")
    # A reference of the first layout holds the baseline seed's values and their tolerances but no
    # per-seed values: its own per-row test only, and no aggregate test, until it is rebuilt.
    legacy = {
        **reference,
        "entries": {
            run: {
                loops: {m: {**ref, "mean": ref["value"]} for m, ref in per_metric.items()}
                for loops, per_metric in by_loops.items()
            }
            for run, by_loops in reference["entries"].items()
        },
    }
    return CheckResult(per_row_test(legacy, df), pd.DataFrame(columns=AGGREGATE_COLUMNS))


def shifted(df: pd.DataFrame, shift: float, metrics=None) -> pd.DataFrame:
    """The same results made worse by a relative `shift` in every quality metric (or those given)."""
    out = df.copy()
    for metric, direction in QUALITY.items():
        if metric in out and (metrics is None or metric in metrics):
            out[metric] = out[metric] * (1 + shift if direction == "lower" else 1 - shift)
    return out


# --- exact reproduction -------------------------------------------------------------------------
def run_record(provenance: dict) -> dict:
    """What decides the numbers of a run of the grid: its config (less where it writes and which seeds; threads
    per job are in it), device, machine, library versions and the CPU kernels (elt.cpu_kernels.describe)."""
    config = {k: v for k, v in (provenance.get("config") or {}).items() if k not in VOLATILE_CONFIG}
    cpu = {k: v for k, v in (provenance.get("cpu") or {}).items() if k != "threads"}  # this process's, not the jobs'
    return {
        "config": config,
        "seeds": (provenance.get("config") or {}).get("seeds"),
        "device": provenance.get("device"),
        "machine": provenance.get("machine"),
        "versions": provenance.get("versions"),
        "cpu": cpu,
    }


def record_differences(reference_record: dict, measured: dict) -> list[str]:
    """Why a measured run is not an exact repeat of the reference's set-up ([] when it is): the record's keys,
    and for the CPU each setting that differs (cpu_model, cpu_kernels, capability, pinned, blas, onednn)."""
    if not reference_record:
        return ["the reference records no set-up"]
    differences = [
        key for key in ("config", "device", "machine", "versions") if reference_record.get(key) != measured.get(key)
    ]
    ours, theirs = reference_record.get("cpu"), measured.get("cpu") or {}
    if not ours:
        differences.append("cpu (the reference records no CPU kernels: rebuild it)")
    else:
        differences += [key for key in sorted(set(ours) | set(theirs)) if ours.get(key) != theirs.get(key)]
    if not set(measured.get("seeds") or []) <= set(reference_record.get("seeds") or []):
        differences.append("seeds")
    return differences


def bit_level_comparison(reference: dict, df: pd.DataFrame, measured: dict) -> str:
    """Whether the numbers should repeat the reference's to the bit, and how many do not. Bits repeat when
    everything that decides them matches; pinned CPU kernels make the CPU model not matter."""
    record = run_record(measured)
    differences = record_differences(reference.get("record", {}), record)
    pinned = record["cpu"].get("cpu_kernels", "native") != "native"
    if differences == ["cpu_model"] and pinned:
        reference_cpu = reference["record"]["cpu"]["cpu_model"]
        setup = (
            f"Same set-up as the reference on another CPU model ({record['cpu']['cpu_model']} vs {reference_cpu}); "
            f"kernels pinned at {record['cpu']['cpu_kernels']}, so the numbers should repeat bit for bit"
        )
    elif differences:
        return (
            f"Not an exact repeat of the reference's set-up (differs in: {', '.join(differences)}): no bit-level "
            "comparison"
        )
    else:
        setup = "Same set-up as the reference (config, seeds, device, machine, versions, CPU model and kernels)"
    changed = changed_numbers(reference, df)
    show = dict(index=False, float_format=lambda v: f"{v:.4g}")
    return f"{setup}: {len(changed)} number(s) differ at all" + (
        " (information, not a failure)\n" + changed.to_string(**show) if len(changed) else ": bit-identical"
    )


def changed_numbers(reference: dict, df: pd.DataFrame) -> pd.DataFrame:
    """Every number of the baseline seed's rows that differs at all from the reference."""
    measured_value = _Measured(df)
    rows = [
        {"run": run, "loops": int(loops), "metric": metric, "reference": ref["value"], "measured": measured}
        for run, by_loops in reference["entries"].items()
        for loops, per_metric in by_loops.items()
        for metric, ref in per_metric.items()
        if (measured := measured_value(run, loops, metric)) is not None and measured != ref["value"]
    ]
    return pd.DataFrame(rows, columns=["run", "loops", "metric", "reference", "measured"])


# --- validation from the reference's own seeds ----------------------------------------------------
def validate(table: pd.DataFrame, k: float | None, false_alarm_rate: float, planted_shift: float = 0.05) -> list[dict]:
    """Leave each seed out, build a reference from the others, and check the left-out seed: as it is
    (any flag is a false alarm), with each metric moved by its own detectable shift alone (every
    metric for the combined test; must be flagged), and with every metric moved by `planted_shift`
    (a uniform regression)."""
    seeds = sorted(int(s) for s in table["seed"].unique())
    if len(seeds) < 3:
        return []
    results = []
    for left_out in seeds:
        rest = table[table["seed"] != left_out]
        baseline = min(s for s in seeds if s != left_out)
        reference = reference_from_table(rest, baseline, k, false_alarm_rate)
        # the left-out seed's rows, named as the reference's baseline runs
        own = (
            table[table["seed"] == left_out]
            .pivot_table(index=["stem", "loops"], columns="metric", values="value")
            .reset_index()
        )
        frame = own.assign(run=own["stem"] + f"-s{baseline}", loops_eval=own["loops"])
        clean = check(reference, frame)
        by_metric = {}
        for test, shift in reference["detectable_shift"]["aggregate"].items():
            metric, scope = test.split("/")
            if scope == "all" and shift is not None:
                planted = check(reference, shifted(frame, shift, None if metric == COMBINED else [metric]))
                by_metric[metric] = {
                    "shift": shift,
                    "flagged": not planted.passed,
                    "aggregate_flagged": flagged_tests(planted),
                }
        uniform = check(reference, shifted(frame, planted_shift))
        results.append(
            {
                "left_out_seed": left_out,
                "reference_seeds": [s for s in seeds if s != left_out],
                "clean": {"rows_flagged": len(clean.bad_rows), "aggregate_flagged": flagged_tests(clean)},
                "detectable_shift_planted": by_metric,
                "uniform_shift": {
                    "shift": planted_shift,
                    "rows_flagged": len(uniform.bad_rows),
                    "aggregate_flagged": flagged_tests(uniform),
                    "flagged": not uniform.passed,
                },
            }
        )
    return results


def report(reference: dict, df: pd.DataFrame, result: CheckResult, reference_path: str, measured: dict | None) -> str:
    """What `elt check` prints: the per-row and aggregate tables with how they were tested, a bit-level
    comparison when `measured` (the run's provenance) repeats the reference's set-up, and a verdict line."""
    show = dict(index=False, float_format=lambda v: f"{v:.4g}")
    lines = [f"Tolerances from {reference['noise']['statement']}"] if "noise" in reference else []
    if reference.get("format") != FORMAT:
        lines += [
            result.rows.rename(columns={"seed_mean": "reference"}).to_string(**show),
            f"Per-row test only, against a reference without per-seed values (the baseline seed's value, tolerance "
            f"{reference['k']:g} seed deviations): rebuild it with 'make reference' for the calibrated per-row and "
            "aggregate tests",
        ]
    else:
        per_row = ", ".join(
            f"{m} {'none' if s is None else format(s, '.1%')}"
            for m, s in reference["detectable_shift"]["per_row"].items()
        )
        lines += [
            f"Per-row test: each (run, L, metric) against the seed mean, tolerance {reference['k']:.2f} predictive "
            "seed standard deviations",
            result.rows.to_string(**show),
            f"\nAggregate test: mean log ratio to the seed mean per metric and group, one-sided t test, Holm at a "
            f"false-alarm rate of {reference['false_alarm_rate']:g}; shift > 0 is worse; detectable = the uniform "
            f"shift flagged with {reference['detectable_shift']['power']:.0%} probability",
            result.aggregate.to_string(**show),
            f"\nThe per-row test flags a uniform shift from: {per_row}",
        ]
        if measured:
            lines.append(bit_level_comparison(reference, df, measured))
    bad_rows, bad_tests = result.bad_rows, result.bad_tests
    lines.append(
        f"{'PASSED' if result.passed else 'FAILED'}: per-row test {len(result.rows) - len(bad_rows)} ok, "
        f"{len(bad_rows)} regressed or missing"
        + (f" ({', '.join(sorted(set(bad_rows['metric'])))})" if len(bad_rows) else "")
        + f"; aggregate test {len(result.aggregate) - len(bad_tests)} ok, {len(bad_tests)} regressed"
        + (
            " (" + ", ".join(f"{t.metric}/{t.scope} {t.shift:+.1%}" for t in bad_tests.itertuples()) + ")"
            if len(bad_tests)
            else ""
        )
        + f"; against {reference_path}"
    )
    return "\n".join(lines)


def validation_summary(reference: dict) -> str:
    """One line per left-out seed of a new reference's validation: false alarms, and planted shifts found."""
    lines = []
    for run in reference["validation"]:
        clean, uniform = run["clean"], run["uniform_shift"]
        missed = [m for m, planted in run["detectable_shift_planted"].items() if not planted["flagged"]]
        lines.append(
            f"leave seed {run['left_out_seed']} out: clean {clean['rows_flagged']} row(s) and "
            f"{len(clean['aggregate_flagged'])} aggregate test(s) flagged; each metric at its detectable shift: "
            f"{'all flagged' if not missed else 'missed ' + ', '.join(missed)}; "
            f"uniform {uniform['shift']:.0%}: {'flagged' if uniform['flagged'] else 'NOT flagged'} "
            f"({uniform['rows_flagged']} rows, aggregate {', '.join(uniform['aggregate_flagged']) or 'none'})"
        )
    return "\n".join(lines)


def provenance_beside(metrics_file: str) -> str | None:
    """The provenance.json the pipeline writes beside its metrics.csv, if there is one."""
    path = Path(metrics_file).with_name("provenance.json")
    return str(path) if path.is_file() else None


def check_files(reference_path: str, metrics_path: str, provenance_path: str | None = None) -> tuple[str, CheckResult]:
    """`elt check` and the pipeline's check: (report, result) of a metrics.csv against a reference file. With a
    per-seed reference, the run's provenance (given, else beside the metrics) adds the bit-level comparison."""
    reference = read_json(reference_path, "reference", "build one with 'elt reference' or fix the path")
    df = read_metrics(metrics_path)
    made_by, measured_by = reference.get("protocol", "embedded"), protocol_of(df)
    if made_by != measured_by:
        raise UserError(
            f"reference {reference_path!r} was made from {made_by}-protocol results and {metrics_path!r} holds "
            f"{measured_by}-protocol ones: check against a reference of the same protocol (elt reference on "
            f"{'paper_metrics.csv' if measured_by == 'paper' else 'metrics.csv'})"
        )
    result = check(reference, df)
    measured = None
    if reference.get("format") == FORMAT:
        path = provenance_path or provenance_beside(metrics_path)
        if path:
            measured = read_json(path, "provenance", "pass the provenance.json the pipeline wrote beside the metrics")
    return report(reference, df, result, reference_path, measured), result
