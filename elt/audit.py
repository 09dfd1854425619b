"""The paper's claims, restated at this suite's scale, each with measured evidence, a confidence
interval and a verdict: holds, fails or inconclusive. Thresholds come from the profile's `audit`
section and are printed in the report. Quality is the primary metric (lower is better) with its
bootstrap interval; a verdict is "fails" only when the interval rules the claim out.
"""
from __future__ import annotations

import pandas as pd

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"


class Group:
    """The rows of one comparison group (generator, width, N x L_max, seed), by family."""

    def __init__(self, name: str, rows: pd.DataFrame, metric: str):
        self.name, self.rows, self.metric = name, rows, metric
        self.l_max = int(rows["loops_train"].max())

    def row(self, family: str, loops: int | None = None):
        part = self.rows[self.rows["family"] == family]
        if loops is not None:
            part = part[part["loops_eval"] == loops]
        return None if part.empty else part.iloc[0]

    def quality(self, row) -> dict:
        m = self.metric
        return {"value": float(row[m]), "ci": [float(row[f"{m}_ci_low"]), float(row[f"{m}_ci_high"])]}


def _claim(claim, group, statement, evidence, verdict, reason):
    return {"claim": claim, "group": group.name, "metric": group.metric, "statement": statement, "evidence": evidence,
            "verdict": verdict, "reason": reason}


def _missing(claim, group, statement, families):
    return _claim(claim, group, statement, {}, INCONCLUSIVE, f"not measured: the grid lacks {' or '.join(families)}")


def iso_compute_parity(g: Group, s: dict) -> dict:
    statement = "ELT N x L matches the unshared N*L-layer baseline at equal inference compute with fewer parameters"
    elt, base = g.row("elt", g.l_max), g.row("unshared")
    if elt is None or base is None:
        return _missing("iso_compute_parity", g, statement, ["elt", "unshared"])
    m, tol = g.metric, s["parity_tolerance"]
    evidence = {
        "parameter_ratio": base["unique_params"] / elt["unique_params"],
        "flop_ratio": elt["gflops_per_sample"] / base["gflops_per_sample"],
        "quality_ratio": elt[m] / base[m], "elt": g.quality(elt), "unshared": g.quality(base),
    }
    if elt[m] <= base[m] * (1 + tol):
        verdict, reason = HOLDS, f"ELT's {m} is within {tol:.0%} of the baseline's (or better)"
    elif elt[f"{m}_ci_low"] > base[f"{m}_ci_high"] * (1 + tol):
        verdict, reason = FAILS, f"ELT's whole interval lies above the baseline's by more than {tol:.0%}"
    else:
        verdict, reason = INCONCLUSIVE, "the intervals do not separate the estimate from the tolerance"
    return _claim("iso_compute_parity", g, statement, evidence, verdict, reason)


def _ratios(g: Group, family: str, loops: list[int]):
    ref = g.row(family, g.l_max)
    out = {}
    for loop in loops:
        r = g.row(family, loop)
        if r is not None:
            out[loop] = {"ratio": r[g.metric] / ref[g.metric], "ci_ratio": [r[f"{g.metric}_ci_low"] / ref[f"{g.metric}_ci_high"],
                                                                         r[f"{g.metric}_ci_high"] / ref[f"{g.metric}_ci_low"]]}
    return out


def anytime(g: Group, s: dict, l_min: int) -> dict:
    statement = f"ELT works at every loop count in [L_min, L_max): quality within {s['anytime_max_ratio']}x of L_max"
    if g.row("elt", g.l_max) is None:
        return _missing("anytime_elt", g, statement, ["elt"])
    ratios = _ratios(g, "elt", list(range(l_min, g.l_max)))
    if not ratios:
        return _claim("anytime_elt", g, statement, {}, INCONCLUSIVE, "L_max = L_min: no intermediate exits")
    worst = max(ratios, key=lambda loop: ratios[loop]["ratio"])
    limit = s["anytime_max_ratio"]
    if ratios[worst]["ratio"] <= limit:
        verdict, reason = HOLDS, f"worst exit L={worst} is {ratios[worst]['ratio']:.2f}x its L_max distance"
    elif ratios[worst]["ci_ratio"][0] > limit:
        verdict, reason = FAILS, f"at L={worst} even the interval's best case is above {limit}x"
    else:
        verdict, reason = INCONCLUSIVE, f"L={worst} at {ratios[worst]['ratio']:.2f}x, interval straddles {limit}x"
    return _claim("anytime_elt", g, statement, {"ratio_to_l_max": ratios, "elt_at_l_max": g.quality(g.row("elt", g.l_max))}, verdict, reason)


def vanilla_collapse(g: Group, s: dict) -> dict:
    limit = s["collapse_min_ratio"]
    statement = f"vanilla looped (no ILSD) collapses off its training depth: at least {limit}x worse at every L < L_max"
    if g.row("looped", g.l_max) is None:
        return _missing("vanilla_collapse", g, statement, ["looped"])
    ratios = _ratios(g, "looped", list(range(1, g.l_max)))
    if not ratios:
        return _claim("vanilla_collapse", g, statement, {}, INCONCLUSIVE, "L_max = 1: nothing below it")
    mildest = min(ratios, key=lambda loop: ratios[loop]["ratio"])
    if ratios[mildest]["ratio"] >= limit:
        verdict, reason = HOLDS, f"mildest drop, at L={mildest}, is {ratios[mildest]['ratio']:.2f}x"
    elif ratios[mildest]["ci_ratio"][1] < limit:
        verdict, reason = FAILS, f"at L={mildest} even the interval's worst case is below {limit}x"
    else:
        verdict, reason = INCONCLUSIVE, f"L={mildest} at {ratios[mildest]['ratio']:.2f}x, interval straddles {limit}x"
    return _claim("vanilla_collapse", g, statement, {"ratio_to_l_max": ratios}, verdict, reason)


def looping_helps(g: Group, s: dict) -> dict:
    statement = "at fixed parameters, looping helps: ELT N x L beats the shallow N-layer model"
    elt, shallow = g.row("elt", g.l_max), g.row("shallow")
    if elt is None or shallow is None:
        return _missing("looping_helps", g, statement, ["elt", "shallow"])
    m = g.metric
    evidence = {"quality_ratio": elt[m] / shallow[m], "elt": g.quality(elt), "shallow": g.quality(shallow),
                "flop_ratio": elt["gflops_per_sample"] / shallow["gflops_per_sample"]}
    if elt[f"{m}_ci_high"] < shallow[f"{m}_ci_low"]:
        verdict, reason = HOLDS, "ELT's interval lies wholly below (better than) the shallow model's"
    elif elt[f"{m}_ci_low"] > shallow[f"{m}_ci_high"]:
        verdict, reason = FAILS, "ELT's interval lies wholly above (worse than) the shallow model's"
    else:
        verdict, reason = INCONCLUSIVE, "the intervals overlap"
    return _claim("looping_helps", g, statement, evidence, verdict, reason)


def extrapolation(g: Group, s: dict) -> dict:
    tol = s["parity_tolerance"]
    statement = f"ELT tolerates modestly more loops than trained: the first L > L_max within {tol:.0%} of L_max"
    elt_rows = g.rows[g.rows["family"] == "elt"]
    beyond = sorted(int(l) for l in elt_rows["loops_eval"] if l > g.l_max)  # the grid's extra loop counts
    if g.row("elt", g.l_max) is None or not beyond:
        return _missing("extrapolation", g, statement, ["elt at L > L_max"])
    ratios = _ratios(g, "elt", beyond)
    vanilla = _ratios(g, "looped", beyond) if g.row("looped", g.l_max) is not None else {}
    first = beyond[0]
    if first not in ratios:
        return _missing("extrapolation", g, statement, [f"elt at L={first}"])
    if ratios[first]["ratio"] <= 1 + tol:
        verdict, reason = HOLDS, f"L={first} is {ratios[first]['ratio']:.2f}x its L_max distance"
    elif ratios[first]["ci_ratio"][0] > 1 + tol:
        verdict, reason = FAILS, f"at L={first} even the interval's best case is beyond {1 + tol:.2f}x"
    else:
        verdict, reason = INCONCLUSIVE, f"L={first} at {ratios[first]['ratio']:.2f}x, interval straddles {1 + tol:.2f}x"
    return _claim("extrapolation", g, statement, {"elt_ratio_to_l_max": ratios, "vanilla_ratio_to_l_max": vanilla}, verdict, reason)


def throughput(g: Group, s: dict) -> dict:
    tol = s["throughput_tolerance"]
    statement = (f"ELT samples at least as fast as the unshared baseline at iso compute (within {tol:.0%}; the paper "
                 "reports up to 3.5x on TPU v6e and no gain at its smallest scale)")
    elt, base = g.row("elt", g.l_max), g.row("unshared")
    if elt is None or base is None:
        return _missing("throughput", g, statement, ["elt", "unshared"])
    ratio = elt["samples_per_second"] / base["samples_per_second"]
    evidence = {"throughput_ratio": ratio, "elt_samples_per_second": elt["samples_per_second"],
                "unshared_samples_per_second": base["samples_per_second"], "interval": "single timing on this machine; no interval"}
    verdict = HOLDS if ratio >= 1 - tol else FAILS
    return _claim("throughput", g, statement, evidence, verdict, f"ELT/unshared samples per second = {ratio:.2f}")


def audit(df: pd.DataFrame, settings: dict, l_min: int = 1) -> dict:
    """settings["primary_metric"]: {modality: metric}, e.g. {image: fd_domain, video: fvd_domain}."""
    metrics = settings["primary_metric"]
    claims = []
    for name, rows in df.groupby("group"):
        g = Group(name, rows, metrics[rows["modality"].iloc[0]])
        claims += [iso_compute_parity(g, settings), anytime(g, settings, l_min), vanilla_collapse(g, settings),
                   looping_helps(g, settings), extrapolation(g, settings), throughput(g, settings)]
    return {"primary_metric": metrics, "settings": settings, "claims": claims}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        if set(value) == {"value", "ci"}:
            return f"{value['value']:.3g} [{value['ci'][0]:.3g}, {value['ci'][1]:.3g}]"
        if set(value) == {"ratio", "ci_ratio"}:
            return f"{value['ratio']:.2f}x [{value['ci_ratio'][0]:.2f}, {value['ci_ratio'][1]:.2f}]"
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def markdown(result: dict, provenance: dict) -> str:
    s = result["settings"]
    lines = [
        "# Audit of the ELT paper's claims at this suite's scale", "",
        "Primary metric per modality: " + ", ".join(f"**{v}** ({k})" for k, v in result["primary_metric"].items())
        + " (lower is better), with 95% bootstrap intervals in brackets.",
        f"Thresholds: parity tolerance {s['parity_tolerance']:.0%}, any-time ratio <= {s['anytime_max_ratio']}, "
        f"collapse ratio >= {s['collapse_min_ratio']}, throughput tolerance {s['throughput_tolerance']:.0%}. "
        "A ratio is the metric at that setting over its reference; its interval pairs the two intervals' ends.", "",
        f"Commit {provenance.get('git_commit', '?')}; generated from metrics.csv by `elt.audit`.", "",
        "| group | metric | claim | verdict | evidence | why |", "|---|---|---|---|---|---|",
    ]
    for c in result["claims"]:
        lines.append(f"| {c['group']} | {c['metric']} | {c['statement']} | **{c['verdict']}** | {_fmt(c['evidence'])} | {c['reason']} |")
    counts = pd.Series([c["verdict"] for c in result["claims"]]).value_counts().to_dict()
    lines += ["", "Verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), ""]
    return "\n".join(lines)
