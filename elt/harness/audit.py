"""The paper's claims, restated at this suite's scale, each judged on a confidence interval of its
own statistic: **holds** when the whole interval lies inside the claim's region, **fails** when it
lies wholly outside, **inconclusive** otherwise, and **not measured** when the grid lacks what the
claim needs. Thresholds come from the profile's `audit` section and are printed in the report.

A claim's statistic is a ratio of the primary metric (a Frechet distance; lower is better) between
two settings, or the worst such ratio over loop counts. Its interval comes from one joint bootstrap
per comparison (a group over all its training seeds): each round resamples the seeds of every
family (hierarchical: training noise enters the interval), then the samples of each drawn run, with
one draw shared by all loop counts of a run (they are paired: same labels and noise, elt.sample).
Intervals are percentiles of the log statistic, shifted by the bootstrap's bias (resampled sets
repeat samples, which inflates a Frechet distance). Results of one training seed hold no training
noise of their own: each run then borrows its seed spread from the regression reference of the same
profile (TrainingNoise), or every verdict says that training noise is not included. Throughput is
judged on the interleaved timings of its own step (elt.sample.time_throughput): the median of
per-repeat speed ratios, with the distribution-free order-statistic interval of a median. One line
goes beyond the paper: whether a loop schedule or early-exit rule of the profile's loop_plans lies
below ELT's fixed-L frontier. Where the data set has an exact checker of its classes' rules
(elt.data.shapes), the share of samples that keep their rule is listed beside the verdicts as evidence
(rule_evidence); the verdicts stay on the primary metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import stats

from elt.errors import UserError
from elt.files import read_json
from elt.harness.check import FORMAT as REFERENCE_FORMAT
from elt.harness.check import SEED
from elt.harness.schema import PLAN_FIELDS, ruled

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "fails", "inconclusive", "not measured"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED)
BOOTSTRAP_METHOD = (
    "hierarchical bootstrap (seeds, then samples; one sample draw per run shared by its loop counts), "
    "bias-shifted percentile interval of the log statistic"
)
THROUGHPUT_METHOD = "median of per-repeat speed ratios of interleaved timings, order-statistic (binomial) interval"


class TrainingNoise:
    """Each run's training noise, borrowed from a regression reference (elt.harness.check) that holds the
    primary metric of the same runs at several seeds. A bootstrap round draws, per run, a Gaussian deviation
    of the log metric whose covariance across the run's loop counts is the seeds' sample covariance (the
    centred per-seed log vectors combined with standard-normal weights, over sqrt(seeds - 1)), and scales
    the run's resampled distances by its exponential. The reference's seed spread holds sampling noise as
    well: the interval is wider than it needs to be by that much. A loop plan takes its run's deviation at
    L_max."""

    def __init__(self, reference: dict, source: str):
        self.source = source
        self.seeds = sorted(int(s) for s in reference["seeds"])
        self.entries = {SEED.sub("", run): by_loops for run, by_loops in reference["entries"].items()}

    def deviations(self, run: str, metric: str) -> dict[int, np.ndarray] | None:
        """{loops: centred log metric per reference seed} of a run, or None when the reference lacks it."""
        by_loops = self.entries.get(SEED.sub("", run))
        if not by_loops:
            return None
        found = {}
        for loops, per_metric in by_loops.items():
            per_seed = (per_metric.get(metric) or {}).get("seeds") or {}
            values = np.array([per_seed.get(str(seed), np.nan) for seed in self.seeds], dtype=float)
            if len(values) < 2 or not np.all(values > 0):
                return None
            found[int(loops)] = np.log(values) - np.log(values).mean()
        return found

    def describe(self) -> str:
        return (
            f"training noise borrowed from {self.source} (seeds {self.seeds}): per run, a Gaussian deviation of the "
            "log metric with the seeds' covariance across loop counts"
        )


def training_noise(reference_path: str | list) -> TrainingNoise | None:
    """The TrainingNoise of a per-seed regression reference file (the pipeline's input: a path, or [] for none)."""
    if not reference_path:
        return None
    reference = read_json(str(reference_path), "reference", "build one with 'make reference' or set reference: null")
    # a reference whose spread is sampling noise (a one-seed paper reference) holds no training noise to borrow
    seeds = reference.get("noise", {"kind": "seeds"})["kind"] == "seeds"
    return (
        TrainingNoise(reference, str(reference_path)) if reference.get("format") == REFERENCE_FORMAT and seeds else None
    )


NO_TRAINING_NOISE = "training noise not included (one seed and no regression reference of the profile)"
OWN_SEEDS = "training noise from the results' own seeds"


class FeatureSource(Protocol):
    """The features evaluations measured, with their reference statistics (elt.eval.metrics.FrechetFeatures):
    a (run, L)'s distance and its distances under resamplings of its samples. loops: a str names a loop plan."""

    def frechet(self, run: str, loops: int | str, metric: str, draws: np.ndarray) -> tuple[float, np.ndarray]: ...


@dataclass(frozen=True)
class Context:
    """What a claim may need beyond its comparison: the grid's L_min and the group's throughput timings."""

    l_min: int
    timings: list[dict]


@dataclass
class Statistic:
    """A claim's statistic: its estimate and its bootstrap draws (or, for throughput, its interval)."""

    estimate: float
    low: float
    high: float
    units: int  # what more of would narrow the interval: samples per run, seeds, or timing repeats
    unit_name: str

    def judge(self, threshold: float, at_most: bool) -> tuple[str, str | None]:
        """(verdict, how much data would decide it) for the region statistic <= threshold (at_most) or >= threshold."""
        inside, outside = (
            (self.high <= threshold, self.low > threshold)
            if at_most
            else (self.low >= threshold, self.high < threshold)
        )
        if inside or outside:
            return (HOLDS if inside else FAILS), None
        distance = abs(math.log(self.estimate / threshold)) if self.estimate > 0 else 0.0
        bound = self.high if self.estimate < threshold else self.low  # the end that crosses the threshold
        half_width = abs(math.log(bound / self.estimate)) if self.estimate > 0 and bound > 0 else math.inf
        if distance == 0 or not math.isfinite(half_width):
            return INCONCLUSIVE, f"the estimate sits on the threshold: no {self.unit_name} count decides it"
        needed = math.ceil(self.units * (half_width / distance) ** 2)  # widths shrink as 1/sqrt(count)
        return INCONCLUSIVE, f"about {needed} {self.unit_name} (now {self.units}) would decide it at this estimate"

    @property
    def resolution(self) -> float:
        """The relative half-width of the interval: effects smaller than this around a threshold stay undecided."""
        if self.estimate <= 0 or self.low <= 0:
            return math.inf
        return math.exp(max(math.log(self.high / self.estimate), math.log(self.estimate / self.low))) - 1


def log_interval(estimate: float, draws: np.ndarray, level: float) -> tuple[float, float]:
    logs = np.log(np.maximum(draws, 1e-300))
    shifted = logs - (logs.mean() - math.log(max(estimate, 1e-300)))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(shifted, [tail, 100 - tail])
    return float(math.exp(low)), float(math.exp(high))


def median_interval(values: list[float], level: float) -> tuple[float, float, float]:
    """(median, low, high): the widest-inward order statistics whose binomial coverage of the median is >= level."""
    x, n = np.sort(np.asarray(values, dtype=float)), len(values)
    low, high = x[0], x[-1]
    for j in range(1, n // 2):
        if 1 - 2 * stats.binom.cdf(j, n, 0.5) < level:  # coverage of [x(j+1), x(n-j)]
            break
        low, high = x[j], x[n - 1 - j]
    return float(np.median(x)), float(low), float(high)


def paired_speed(pairs: list[tuple[list[float], list[float]]], level: float) -> Statistic:
    """How much faster the first of each pair of interleaved timings (seconds per repeat) runs than the second:
    the median of the per-repeat ratios second / first, with its order-statistic interval."""
    ratios = [b / a for first, second in pairs for a, b in zip(first, second)]
    median, low, high = median_interval(ratios, level)
    return Statistic(median, low, high, len(ratios), "timing repeats")


class Comparison:
    """One comparison (a group over its training seeds): point estimates of the primary metric and their
    joint bootstrap draws, at fixed loop counts (rows of metrics.csv, loops an int) and at loop plans
    (rows of loop_plans.csv, loops the plan's file name). A plan's samples are paired with its run's
    fixed-L samples: one draw."""

    def __init__(
        self,
        name: str,
        rows: pd.DataFrame,
        metric: str,
        features: FeatureSource,
        settings: dict,
        plans: pd.DataFrame | None = None,
        noise: TrainingNoise | None = None,
    ):
        self.name, self.rows, self.metric, self.features = name, rows, metric, features
        self.plans = plans if plans is not None else pd.DataFrame(columns=PLAN_FIELDS)
        self.level = settings["level"]
        self.l_max = int(rows["loops_train"].max())
        self.seeds = sorted(int(s) for s in rows["seed"].unique())
        self.runs = {
            family: sorted(part["run"].unique(), key=lambda r: int(part[part["run"] == r]["seed"].iloc[0]))
            for family, part in rows.groupby("family")
        }
        self.n_samples = int(rows["n_samples"].min())
        rng, rounds = np.random.default_rng(settings["bootstrap_seed"]), settings["bootstrap_rounds"]
        self.resamples = {}  # family -> (seed picks (rounds, seeds), sample draws (rounds, seeds, n))
        for family, runs in sorted(self.runs.items()):
            counts = set(rows[rows["family"] == family]["n_samples"].astype(int))
            if len(counts) != 1:
                raise UserError(
                    f"group {name!r}: runs of family {family} have different sample counts {sorted(counts)}: "
                    "evaluate them alike"
                )
            n = counts.pop()
            plan_counts = set(self.plans[self.plans["family"] == family]["n_samples"].astype(int))
            if plan_counts - {n}:
                raise UserError(
                    f"group {name!r}: loop plans of family {family} have {sorted(plan_counts)} samples, its fixed loop "
                    f"counts {n}: sample them alike"
                )
            self.resamples[family] = (
                rng.integers(0, len(runs), (rounds, len(runs))),
                rng.integers(0, n, (rounds, len(runs), n)),
            )
        self._draws = {}
        self.factors, self.training_noise = self._training_noise(noise, settings)

    def _training_noise(self, noise: TrainingNoise | None, settings: dict) -> tuple[dict, str]:
        """({family: {loops: (rounds,) factor}} scaling a one-seed comparison's draws by borrowed training noise,
        and what the intervals include)."""
        if len(self.seeds) > 1:
            return {}, OWN_SEEDS
        if noise is None:
            return {}, NO_TRAINING_NOISE
        deviations = {family: noise.deviations(runs[0], self.metric) for family, runs in self.runs.items()}
        if missing := sorted(family for family, found in deviations.items() if found is None):
            return {}, f"training noise not included ({noise.source} lacks {', '.join(missing)} of {self.name})"
        # its own stream, so that the sampling draws are those of an audit without training noise
        rng, rounds = np.random.default_rng([settings["bootstrap_seed"], 1]), settings["bootstrap_rounds"]
        factors = {}
        for family, found in sorted(deviations.items()):
            weights = rng.normal(size=(rounds, len(noise.seeds))) / math.sqrt(len(noise.seeds) - 1)
            factors[family] = {loops: np.exp(weights @ d) for loops, d in found.items()}
        return factors, noise.describe()

    def _factor(self, family: str, loops: int | str) -> np.ndarray | float:
        if family not in self.factors:
            return 1.0
        by_loops = self.factors[family]
        return by_loops.get(loops, by_loops.get(self.l_max, 1.0))  # a loop plan: its run's factor at L_max

    def has(self, family: str, loops: int | None = None) -> bool:
        part = self.rows[self.rows["family"] == family]
        return not part.empty and (loops is None or (part["loops_eval"] == loops).any())

    def loops_of(self, family: str) -> list[int]:
        return sorted(int(l) for l in self.rows[self.rows["family"] == family]["loops_eval"].unique())

    def _at(self, family: str, loops: int | None) -> int:
        return self.loops_of(family)[0] if loops is None else loops  # unlooped baselines have one depth

    def _table(self, loops: int | str) -> tuple[pd.DataFrame, str]:
        return (self.plans, "plan_name") if isinstance(loops, str) else (self.rows, "loops_eval")

    def point(self, family: str, loops: int | str | None = None) -> float:
        loops = self._at(family, loops)
        table, column = self._table(loops)
        part = table[(table["family"] == family) & (table[column] == loops)]
        return float(part[self.metric].mean())  # mean over seeds

    def draws(self, family: str, loops: int | str | None = None) -> np.ndarray:
        loops = self._at(family, loops)
        if (family, loops) not in self._draws:
            picks, samples = self.resamples[family]
            values = np.empty(picks.shape)
            for k, run in enumerate(self.runs[family]):
                chosen = picks == k
                distance, values[chosen] = self.features.frechet(run, loops, self.metric, samples[chosen])
                self._check(run, loops, distance)
            self._draws[(family, loops)] = values.mean(1) * self._factor(family, loops)
        return self._draws[(family, loops)]

    def _check(self, run: str, loops: int | str, recomputed: float) -> None:
        table, column = self._table(loops)
        recorded = float(table[(table["run"] == run) & (table[column] == loops)][self.metric].iloc[0])
        if not math.isclose(recomputed, recorded, rel_tol=1e-4, abs_tol=1e-6):
            where, source = (
                (f"plan {loops}", "loop_plans.csv") if isinstance(loops, str) else (f"L={loops}", "metrics.csv")
            )
            raise UserError(
                f"the saved features of {run} at {where} give {self.metric} {recomputed:.6g}, {source} says "
                f"{recorded:.6g}: they come from different evaluations; rerun the pipeline"
            )

    def statistic(self, estimate: float, draws: np.ndarray) -> Statistic:
        low, high = log_interval(estimate, draws, self.level)
        several = len(self.seeds) > 1 or bool(self.factors)  # with training noise in it, seeds narrow the interval
        return Statistic(
            estimate,
            low,
            high,
            len(self.seeds) if several else self.n_samples,
            "seeds" if several else "samples per (run, L)",
        )

    def ratio(self, num: tuple[str, int | None], den: tuple[str, int | None]) -> Statistic:
        return self.statistic(self.point(*num) / self.point(*den), self.draws(*num) / self.draws(*den))

    def extreme_ratio(self, family: str, loops: list[int], worst) -> tuple[Statistic, int, dict]:
        """worst = max or min: the extreme over loop counts of metric(L) / metric(L_max), with each ratio."""
        ratios = {l: self.point(family, l) / self.point(family, self.l_max) for l in loops}
        draws = np.stack([self.draws(family, l) / self.draws(family, self.l_max) for l in loops])
        at = worst(ratios, key=ratios.get)
        combined = draws.max(0) if worst is max else draws.min(0)
        each = {l: self.ratio((family, l), (family, self.l_max)) for l in loops}
        return self.statistic(ratios[at], combined), at, {l: _interval(s) for l, s in each.items()}


def _interval(s: Statistic) -> dict:
    return {"estimate": s.estimate, "interval": [s.low, s.high]}


def _claim(
    g: Comparison,
    claim: str,
    statement: str,
    statistic: str,
    region: str,
    stat: Statistic | None,
    verdict: str,
    reason: str,
    to_decide: str | None = None,
    evidence: dict | None = None,
) -> dict:
    return {
        "claim": claim,
        "comparison": g.name,
        "metric": g.metric,
        "seeds": g.seeds,
        "statement": statement,
        "statistic": statistic,
        "region": region,
        "estimate": stat.estimate if stat else None,
        "interval": [stat.low, stat.high] if stat else None,
        "resolution": stat.resolution if stat else None,
        "verdict": verdict,
        "reason": reason,
        "to_decide": to_decide,
        "training_noise": g.training_noise if claim != "throughput" else "not applicable: timings",
        "evidence": evidence or {},
    }


def _judged(g, claim, statement, statistic, stat: Statistic, threshold: float, at_most: bool, evidence: dict) -> dict:
    verdict, to_decide = stat.judge(threshold, at_most)
    region = f"{'<=' if at_most else '>='} {threshold:.3g}"
    where = {HOLDS: "inside", FAILS: "wholly outside", INCONCLUSIVE: "across the edge of"}[verdict]
    reason = f"interval [{stat.low:.3g}, {stat.high:.3g}] lies {where} the region {region}"
    return _claim(g, claim, statement, statistic, region, stat, verdict, reason, to_decide, evidence)


def _not_measured(g, claim, statement, statistic, needs: str) -> dict:
    return _claim(g, claim, statement, statistic, "", None, NOT_MEASURED, f"the grid lacks {needs}")


def iso_compute_parity(g: Comparison, s: dict, context: Context) -> dict:
    statement = "ELT N x L matches the unshared N*L-layer baseline at equal inference compute with fewer parameters"
    statistic = f"{g.metric} of ELT at L_max / unshared"
    if not (g.has("elt", g.l_max) and g.has("unshared")):
        return _not_measured(g, "iso_compute_parity", statement, statistic, "elt or unshared")
    elt, base = (
        g.rows[(g.rows["family"] == "elt") & (g.rows["loops_eval"] == g.l_max)].iloc[0],
        g.rows[g.rows["family"] == "unshared"].iloc[0],
    )
    evidence = {
        "parameter_ratio": base["unique_params"] / elt["unique_params"],
        "flop_ratio": elt["gflops_per_sample"] / base["gflops_per_sample"],
        "elt": g.point("elt", g.l_max),
        "unshared": g.point("unshared"),
    }
    return _judged(
        g,
        "iso_compute_parity",
        statement,
        statistic,
        g.ratio(("elt", g.l_max), ("unshared", None)),
        1 + s["parity_tolerance"],
        True,
        evidence,
    )


def anytime(g: Comparison, s: dict, context: Context) -> dict:
    l_min = context.l_min
    limit = s["anytime_max_ratio"]
    statement = f"ELT works at every loop count in [L_min, L_max): quality within {limit}x of L_max"
    statistic = f"worst over L in [L_min, L_max) of {g.metric}(L) / {g.metric}(L_max), ELT"
    loops = [l for l in range(l_min, g.l_max) if g.has("elt", l)]
    if not g.has("elt", g.l_max) or not loops:
        return _not_measured(g, "anytime_elt", statement, statistic, "elt at L_max and at some L < L_max")
    stat, at, each = g.extreme_ratio("elt", loops, max)
    return _judged(g, "anytime_elt", statement, statistic, stat, limit, True, {"worst_at": at, "ratio_to_l_max": each})


def vanilla_collapse(g: Comparison, s: dict, context: Context) -> dict:
    limit = s["collapse_min_ratio"]
    statement = f"vanilla looped (no ILSD) collapses off its training depth: at least {limit}x worse at every L < L_max"
    statistic = f"mildest over L < L_max of {g.metric}(L) / {g.metric}(L_max), vanilla looped"
    loops = [l for l in range(1, g.l_max) if g.has("looped", l)]
    if not g.has("looped", g.l_max) or not loops:
        return _not_measured(g, "vanilla_collapse", statement, statistic, "looped at L_max and at some L < L_max")
    stat, at, each = g.extreme_ratio("looped", loops, min)
    return _judged(
        g, "vanilla_collapse", statement, statistic, stat, limit, False, {"mildest_at": at, "ratio_to_l_max": each}
    )


def looping_helps(g: Comparison, s: dict, context: Context) -> dict:
    statement = "at fixed parameters, looping helps: ELT N x L beats the shallow N-layer model"
    statistic = f"{g.metric} of ELT at L_max / shallow"
    if not (g.has("elt", g.l_max) and g.has("shallow")):
        return _not_measured(g, "looping_helps", statement, statistic, "elt or shallow")
    evidence = {"elt": g.point("elt", g.l_max), "shallow": g.point("shallow")}
    return _judged(
        g, "looping_helps", statement, statistic, g.ratio(("elt", g.l_max), ("shallow", None)), 1.0, True, evidence
    )


def extrapolation(g: Comparison, s: dict, context: Context) -> dict:
    tol = s["parity_tolerance"]
    statement = f"ELT tolerates modestly more loops than trained: the first L > L_max within {tol:.0%} of L_max"
    statistic = f"{g.metric} of ELT at the first L > L_max / at L_max"
    beyond = [l for l in g.loops_of("elt") if l > g.l_max]
    if not g.has("elt", g.l_max) or not beyond:
        return _not_measured(g, "extrapolation", statement, statistic, "elt at L > L_max")
    vanilla = {
        l: _interval(g.ratio(("looped", l), ("looped", g.l_max)))
        for l in beyond
        if g.has("looped", l) and g.has("looped", g.l_max)
    }
    return _judged(
        g,
        "extrapolation",
        statement,
        f"{statistic} (L={beyond[0]})",
        g.ratio(("elt", beyond[0]), ("elt", g.l_max)),
        1 + tol,
        True,
        {"at": beyond[0], "vanilla_ratio_to_l_max": vanilla},
    )


def throughput(g: Comparison, s: dict, context: Context) -> dict:
    timings = context.timings
    tol = s["throughput_tolerance"]
    statement = (
        f"ELT samples at least as fast as the unshared baseline at iso compute (within {tol:.0%}; the paper "
        "reports up to 3.5x on TPU v6e and no gain at its smallest scale)"
    )
    statistic = "samples/s of ELT at L_max / unshared, paired interleaved repeats"
    if not timings:
        return _not_measured(g, "throughput", statement, statistic, "elt or unshared (no throughput timing)")
    stat = paired_speed(
        [(t["settings"]["elt"]["seconds"], t["settings"]["unshared"]["seconds"]) for t in timings], g.level
    )
    first = timings[0]
    evidence = {
        "repeats": stat.units,
        "batch_size": first["batch_size"],
        "threads": first["threads"],
        "elt_samples_per_second": float(
            np.median([v for t in timings for v in t["settings"]["elt"]["samples_per_second"]])
        ),
        "unshared_samples_per_second": float(
            np.median([v for t in timings for v in t["settings"]["unshared"]["samples_per_second"]])
        ),
        "device": first.get("device", "?"),
    }
    return _judged(g, "throughput", statement, statistic, stat, 1 - tol, False, evidence)


def loop_plans(g: Comparison, s: dict, context: Context) -> dict:
    statement = (
        "beyond the paper: some loop schedule or early-exit rule beats fixed L at no more compute, i.e. a lower "
        "distance than every fixed L of ELT whose GFLOPs per sample are at most the plan's"
    )
    statistic = (
        f"best over loop plans of {g.metric}(plan) / min over fixed L with GFLOPs <= the plan's of {g.metric}(L), ELT"
    )
    plans = g.plans[g.plans["family"] == "elt"]
    if plans.empty or not g.has("elt"):
        return _not_measured(g, "loop_plans", statement, statistic, "loop plans of elt (the profile's loop_plans)")
    fixed_cost = g.rows[g.rows["family"] == "elt"].groupby("loops_eval")["gflops_per_sample"].mean()
    ratios, draws, each = {}, {}, {}
    for name, part in plans.groupby("plan_name"):
        cost = float(part["gflops_per_sample"].mean())  # early exit: the loops run differ between seeds
        affordable = [int(l) for l, c in fixed_cost.items() if c <= cost * (1 + 1e-9)]
        if not affordable:  # cheaper than L=1 cannot happen (a plan runs >= 1 loop per step); kept out, not judged
            each[part["plan"].iloc[0]] = {"gflops_per_sample": cost, "note": "cheaper than every fixed L"}
            continue
        frontier_at = min(affordable, key=lambda l: g.point("elt", l))  # the best fixed L at no more compute
        ratios[name] = g.point("elt", name) / g.point("elt", frontier_at)
        draws[name] = g.draws("elt", name) / np.min(np.stack([g.draws("elt", l) for l in affordable]), 0)
        each[part["plan"].iloc[0]] = {
            **_interval(g.statistic(ratios[name], draws[name])),
            "gflops_per_sample": cost,
            "fixed_l_compared": frontier_at,
            "loops_used_mean": float(part["loops_used_mean"].mean()),
        }
    if not ratios:
        return _not_measured(g, "loop_plans", statement, statistic, "a loop plan at least as costly as L=1")
    best = min(ratios, key=ratios.get)
    # The best plan is chosen on these data: its interval is that of the per-round best, which pays for the choice.
    stat = g.statistic(ratios[best], np.min(np.stack(list(draws.values())), 0))
    evidence = {"best": plans[plans["plan_name"] == best]["plan"].iloc[0], "plans": each}
    return _judged(g, "loop_plans", statement, statistic, stat, 1.0, True, evidence)


# The claims in the order the report lists them: name -> judge(comparison, audit settings, context). The
# audit computes exactly these; a judge names its claim with the same key.
CLAIMS = {
    "iso_compute_parity": iso_compute_parity,
    "anytime_elt": anytime,
    "vanilla_collapse": vanilla_collapse,
    "looping_helps": looping_helps,
    "extrapolation": extrapolation,
    "throughput": throughput,
    "loop_plans": loop_plans,
}


def comparison_name(group: str) -> str:
    """A grid group over its seeds: 'masked-XS-2x3-s0' -> 'masked-XS-2x3'."""
    return SEED.sub("", group)


def audit(
    df: pd.DataFrame,
    settings: dict,
    features: FeatureSource,
    timings: dict[str, dict] | None = None,
    l_min: int = 1,
    plans: pd.DataFrame | None = None,
    noise: TrainingNoise | None = None,
    judges: dict | None = None,
    comparisons: dict | None = None,
) -> dict:
    """settings: the profile's `audit` section; timings: {grid group (with seed): time_throughput record};
    plans: loop_plans.csv (elt.harness.report.plan_table); noise: the seed spread one-seed results borrow;
    judges: the claims to judge (default CLAIMS); comparisons: receives {name: Comparison} (their draws)."""
    metrics, timings = settings["primary_metric"], timings or {}
    claims, power = [], []
    df = df.assign(comparison=df["group"].map(comparison_name))
    plans = plans if plans is not None else pd.DataFrame(columns=PLAN_FIELDS)
    plans = plans.assign(comparison=plans["group"].map(comparison_name))
    for name, rows in df.groupby("comparison"):
        g = Comparison(
            name,
            rows,
            metrics[rows["modality"].iloc[0]],
            features,
            settings,
            plans[plans["comparison"] == name],
            noise,
        )
        if comparisons is not None:
            comparisons[name] = g
        context = Context(l_min, [timings[group] for group in sorted(rows["group"].unique()) if group in timings])
        found = [judge(g, settings, context) for judge in (judges or CLAIMS).values()]
        claims += found
        power.append(
            {
                "comparison": name,
                "seeds": g.seeds,
                "samples_per_run": g.n_samples,
                "training_noise": g.training_noise,
                "resolution": {c["claim"]: c["resolution"] for c in found if c["resolution"] is not None},
            }
        )
    interval = {
        "method": BOOTSTRAP_METHOD,
        "throughput": THROUGHPUT_METHOD,
        "level": settings["level"],
        "rounds": settings["bootstrap_rounds"],
        "seed": settings["bootstrap_seed"],
        "training_noise": sorted({p["training_noise"] for p in power}),
    }
    return {
        "primary_metric": metrics,
        "settings": settings,
        "interval": interval,
        "claims": claims,
        "power": power,
        "rule_share": rule_evidence(df, settings["level"]),
    }


def rule_evidence(df: pd.DataFrame, level: float) -> list[dict]:
    """The share of samples that keep their class's rule, per (comparison, family, L), where metrics.csv has one
    (data sets with a rule checker). One seed: the row's bootstrap interval over its samples; several: a Student
    t interval of the mean over the seeds (training noise in it)."""
    out = []
    for (name, family, loops), part in ruled(df).groupby(["comparison", "family", "loops_eval"]):
        values = part["rule_share"].to_numpy(float)
        if len(values) == 1:
            low, high, over = part["rule_share_ci_low"].iloc[0], part["rule_share_ci_high"].iloc[0], "samples"
        else:
            half = stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
            low, high, over = values.mean() - half, values.mean() + half, "seeds"
        out.append(
            {
                "comparison": name,
                "family": family,
                "loops_eval": int(loops),
                "depth": int(part["depth"].iloc[0]),
                "rule_share": float(values.mean()),
                "interval": [float(low), float(high)],
                "over": over,
            }
        )
    return out


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        if set(value) == {"estimate", "interval"}:
            return f"{value['estimate']:.2f}x [{value['interval'][0]:.2f}, {value['interval'][1]:.2f}]"
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items() if v != {})
    if isinstance(value, list):
        return "[" + ", ".join(map(_fmt, value)) + "]"
    return str(value)


EMBEDDED_SOURCES = "metrics.csv, the evaluations' saved features and the throughput timings by `elt.harness.audit`"


def markdown(
    result: dict,
    provenance: dict,
    title: str = "Audit of the ELT paper's claims at this suite's scale",
    sources: str = EMBEDDED_SOURCES,
) -> str:
    s, iv = result["settings"], result["interval"]
    lines = [
        f"# {title}",
        "",
        "Primary metric per modality: "
        + ", ".join(f"**{v}** ({k})" for k, v in result["primary_metric"].items())
        + " (lower is better).",
        f"Thresholds: parity tolerance {s['parity_tolerance']:.0%}, any-time ratio <= {s['anytime_max_ratio']}, "
        f"collapse ratio >= {s['collapse_min_ratio']}, throughput tolerance {s['throughput_tolerance']:.0%}.",
        f"Each claim is judged on the {iv['level']:.0%} interval of its own statistic: **holds** when the whole "
        "interval "
        "lies inside the claim's region, **fails** when it lies wholly outside, **inconclusive** otherwise; "
        "**not measured** when the grid lacks what the claim needs.",
        f"Intervals: {iv['method']}, {iv['rounds']} rounds, seed {iv['seed']}; throughput: {iv['throughput']}.",
        f"Training noise: {'; '.join(iv['training_noise'])}.",
        "",
        f"Commit {provenance.get('git_commit', '?')}; generated from {sources}.",
        "",
        "| comparison | claim | statistic | estimate [interval] | region | verdict | why | to decide |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result["claims"]:
        value = f"{c['estimate']:.3g} [{c['interval'][0]:.3g}, {c['interval'][1]:.3g}]" if c["interval"] else ""
        caveat = f"; {c['training_noise']}" if c["training_noise"].startswith("training noise not") else ""
        lines.append(
            f"| {c['comparison']} | {c['statement']} | {c['statistic']} | {value} | {c['region']} | **{c['verdict']}** "
            f"| {c['reason']}{caveat}{'; ' + _fmt(c['evidence']) if c['evidence'] else ''} | {c['to_decide'] or ''} |"
        )
    counts = pd.Series([c["verdict"] for c in result["claims"]]).value_counts().to_dict()
    lines += [
        "",
        "Verdicts: " + ", ".join(f"{k} {counts[k]}" for k in VERDICTS if k in counts),
        "",
        "## Power: the smallest effect each interval could decide",
        "",
        "Relative half-width of each claim's interval: a true value closer than this to the threshold stays "
        "inconclusive at this many seeds and samples.",
        "",
        "| comparison | seeds | samples per (run, L) | " + " | ".join(CLAIMS) + " |",
        "|---|---|---|" + "---|" * len(CLAIMS),
    ]
    for p in result["power"]:
        cells = [f"±{p['resolution'][c]:.0%}" if c in p["resolution"] else "" for c in CLAIMS]
        lines.append(f"| {p['comparison']} | {len(p['seeds'])} | {p['samples_per_run']} | " + " | ".join(cells) + " |")
    if result.get("rule_share"):
        lines += [
            "",
            "## Evidence from the data set's rule",
            "",
            "The share of samples that keep their class's rule (elt.data.shapes, an exact checker; higher is better), "
            "with its interval over the samples of one seed or over the seeds. Beside the verdicts, not in them.",
            "",
            "| comparison | family | L | depth | rule share [interval] | interval over |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['comparison']} | {r['family']} | {r['loops_eval']} | {r['depth']} | {r['rule_share']:.3f} "
            f"[{r['interval'][0]:.3f}, {r['interval'][1]:.3f}] | {r['over']} |"
            for r in result["rule_share"]
        ]
    return "\n".join(lines + [""])
