"""From per-(run, loop count) evaluations to the results table, headline metrics and plots.

metrics.csv has one row per (run, loop count); every plot is saved with the tidy CSV it was drawn
from, so a figure can be checked or redrawn without rerunning anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

from elt.eval.accounting import describe
from elt.files import atomic_path, write_json
from elt.harness.audit import comparison_name
from elt.harness.grid import group_name
from elt.harness.schema import (
    COLUMNS,
    EVALUATION_FIELDS,
    FAMILY_STYLE,
    PLAN_COLUMNS,
    RULE_FIELDS,
    ruled,
    with_rule_fields,
)
from elt.runs import load_checkpoint
from elt.sample import clip_strip, load_samples


def aggregate(eval_files: list[str], checkpoints: dict[str, str]) -> pd.DataFrame:
    evals = [json.loads(Path(f).read_text()) for f in eval_files]
    described = {}
    for run, ckpt in checkpoints.items():
        parts, net, _ = load_checkpoint(ckpt)
        loops = sorted({e["loops_eval"] for e in evals if e["run"] == run})
        described[run] = (parts.cfg.to_dict(), describe(parts, net, loops))
    rows = []
    for e in evals:
        cfg, d = described[e["run"]]
        loops = e["loops_eval"]
        steps = e.get("sampling_steps", d["sampling_steps"])  # a group may sample this L with its own steps
        per_sample = d["gflops_per_sample"][loops]
        if steps != d["sampling_steps"]:
            per_sample = d["gflops_per_forward"][loops] * d["forwards_per_sample"] / d["sampling_steps"] * steps
        rows.append(
            {
                **{
                    k: d[k]
                    for k in (
                        "run",
                        "family",
                        "generator",
                        "modality",
                        "width",
                        "n_unique",
                        "loops_train",
                        "unique_params",
                        "total_params",
                        "guidance",
                    )
                },
                "sampling_steps": steps,
                "group": group_name(cfg),
                "dataset": cfg["data"]["dataset"],
                "loops_eval": loops,
                "depth": d["n_unique"] * loops,
                "gflops_per_forward": d["gflops_per_forward"][loops],
                "gflops_per_sample": per_sample,
                **{k: e.get(k) for k in (*EVALUATION_FIELDS, *RULE_FIELDS)},
                "seed": cfg["seed"],
            }
        )
    columns = with_rule_fields(COLUMNS, rows)
    return pd.DataFrame(rows, columns=columns).sort_values(["group", "family", "loops_eval"]).reset_index(drop=True)


def plan_table(eval_files: list[str], run_configs: dict[str, dict]) -> pd.DataFrame:
    """loop_plans.csv from the evaluations eval/{run}/P_{plan name}.json: one row per (ELT run, loop
    plan), its GFLOPs per sample counted from the loops each sample actually ran
    (elt.eval.accounting.loop_plan_cost) and its metrics."""
    rows = []
    for path in eval_files:
        e = json.loads(Path(path).read_text())
        cfg, sampling = run_configs[e["run"]], e["protocol"]["sampling"]
        rows.append(
            {
                "run": e["run"],
                "group": group_name(cfg),
                "family": cfg["model"]["family"],
                "generator": cfg["model"]["generator"],
                "modality": e["modality"],
                "loops_train": cfg["model"]["loops"],
                "plan": e["loops_eval"],
                "plan_name": Path(path).stem.removeprefix("P_"),  # the pipeline's file name of the plan
                "gflops_per_sample": sampling["gflops_per_sample"],
                "loops_used_mean": sampling["loops_used_mean"],
                "loops_used_per_step": " ".join(f"{v:.2f}" for v in sampling["loops_used_per_step"]),
                **{k: e.get(k) for k in (*EVALUATION_FIELDS, *RULE_FIELDS)},
                "seed": cfg["seed"],
            }
        )
    table = pd.DataFrame(rows, columns=with_rule_fields(PLAN_COLUMNS, rows))
    return table.sort_values(["group", "plan"]).reset_index(drop=True)


def write_table(df: pd.DataFrame, csv_path: str, provenance_path: str, eval_files: list[str], provenance: dict) -> None:
    """metrics.csv, and provenance.json: how every number in it was obtained."""
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    protocols = {
        Path(f).parent.name + "/" + Path(f).stem: json.loads(Path(f).read_text())["protocol"] for f in eval_files
    }
    write_json(provenance_path, {**provenance, "protocols": protocols})


def headline(df: pd.DataFrame, audit_result: dict) -> dict:
    """metrics.json, what `dvc metrics show` and `dvc metrics diff` compare across commits: per comparison
    group, each measured claim's statistic with its interval (elt.harness.audit), and the primary metric
    (mean over seeds) of ELT and vanilla looped at L_max and of the one-depth baselines."""
    out = {}
    for c in audit_result["claims"]:
        if c["estimate"] is not None:
            low, high = c["interval"]
            out.setdefault(c["comparison"], {}).setdefault("claims", {})[c["claim"]] = {
                "estimate": c["estimate"],
                "low": low,
                "high": high,
            }
    df = df.assign(comparison=df["group"].map(comparison_name))
    for (name, modality), rows in df.groupby(["comparison", "modality"]):
        metric = audit_result["primary_metric"][modality]
        at_depth = rows[(rows["loops_eval"] == rows["loops_train"]) | rows["family"].isin(["unshared", "shallow"])]
        values = at_depth.groupby("family")[metric].mean()
        out.setdefault(name, {})[metric] = {family: float(v) for family, v in values.items() if pd.notna(v)}
    return out


# --- Pareto frontier --------------------------------------------------------------------------
def pareto_mask(x, y) -> np.ndarray:
    """True for points no other point dominates (lower-or-equal x and y, strictly lower in one)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.ones(len(x), bool)
    for i in range(len(x)):
        dominated = (x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i]))
        keep[i] = not dominated.any()
    return keep


def primary(df: pd.DataFrame, metrics: dict[str, str]) -> pd.DataFrame:
    """Each row's primary metric (by its modality) as columns metric, value, ci_low, ci_high."""
    out = df.copy()
    out["metric"] = out["modality"].map(metrics)
    for column, suffix in (("value", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high")):
        out[column] = [row[f"{row['metric']}{suffix}"] for _, row in out.iterrows()]
    return out


def _frontier_table(df: pd.DataFrame, x: str, metrics: dict[str, str]) -> pd.DataFrame:
    out = []
    for _, part in primary(df, metrics).groupby(["generator", "modality"]):
        part = part.copy()
        part["on_frontier"] = pareto_mask(part[x], part["value"])
        out.append(part)
    return pd.concat(out)[["run", "generator", "modality", "family", "loops_eval", x, "metric", "value", "on_frontier"]]


def _family_style(families: pd.Series) -> dict:
    """seaborn's hue and style arguments that draw each family present with its FAMILY_STYLE colour and marker."""
    present = [f for f in FAMILY_STYLE if f in set(families)]
    return {
        "hue": "family",
        "style": "family",
        "hue_order": present,
        "style_order": present,
        "palette": {f: FAMILY_STYLE[f][0] for f in present},
        "markers": {f: FAMILY_STYLE[f][1] for f in present},
    }


def _save_plot(fig, png: Path, table: pd.DataFrame) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(png.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")


def plot_pareto(
    df: pd.DataFrame, x: str, metrics: dict[str, str], png: Path, plans: pd.DataFrame | None = None
) -> None:
    """One panel per (generator, modality): the modality's primary metric against x, frontier marked;
    plans (loop_plans.csv rows) add the loop schedules and early-exit rules as stars beside the fixed-L
    points (on the frontier's x = GFLOPs per sample; they are not part of the frontier)."""
    matplotlib.use("Agg")

    table = _frontier_table(df, x, metrics)
    if plans is not None and not plans.empty:
        starred = primary(plans, metrics).assign(family="elt loop plan", loops_eval=plans["plan"], on_frontier=False)
        table = pd.concat([table, starred[table.columns]], ignore_index=True)
    panels = sorted(table.groupby(["generator", "modality"]).groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (generator, kind) in zip(axes[0], panels):
        part = table[(table["generator"] == generator) & (table["modality"] == kind)]
        fixed, planned = part[part["family"] != "elt loop plan"], part[part["family"] == "elt loop plan"]
        sns.scatterplot(data=fixed, x=x, y="value", s=70, ax=ax, **_family_style(fixed["family"]))
        if not planned.empty:
            colour, marker = FAMILY_STYLE["elt loop plan"]
            ax.scatter(planned[x], planned["value"], marker=marker, s=160, color=colour, label="ELT loop plan")
            for row in planned.itertuples():
                ax.annotate(
                    row.loops_eval,
                    (getattr(row, x), row.value),
                    fontsize=6,
                    color=FAMILY_STYLE["elt loop plan"][0],
                    xytext=(3, -9),
                    textcoords="offset points",
                )
        front = part[part["on_frontier"]].sort_values(x)
        ax.step(front[x], front["value"], where="post", color="grey", lw=1, ls="--")
        ax.scatter(front[x], front["value"], s=220, facecolors="none", edgecolors="k", lw=1, label="Pareto frontier")
        for row in fixed[fixed["family"].isin(["elt", "looped"])].itertuples():
            ax.annotate(
                f"L{row.loops_eval}",
                (getattr(row, x), row.value),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ticks = sorted(fixed[x].unique())  # label the models' own sizes: they span less than a decade
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(
            ticks, [f"{t / 1e3:.0f}k" if x == "unique_params" else f"{t:.3g}" for t in ticks], rotation=45, fontsize=7
        )
        ax.set_ylabel(metrics[kind])
        ax.set_title(f"{generator} ({kind}): {metrics[kind]} vs {x}")
        ax.legend(fontsize=7)
    _save_plot(fig, png, table)
    plt.close(fig)


def rule_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that measured their data set's rule (elt.data.shapes), as columns metric, value, ci_low, ci_high
    like `primary`: rule_share is higher-better, where the primary metrics are lower-better."""
    rows = ruled(df)
    return rows.assign(
        metric="rule_share",
        value=rows["rule_share"],
        ci_low=rows["rule_share_ci_low"],
        ci_high=rows["rule_share_ci_high"],
    )


def plot_anytime(df: pd.DataFrame, metrics: dict[str, str], png: Path) -> None:
    """One panel per comparison group: quality against loops at inference, baselines as lines; where the data
    set has a rule checker, a second row of panels: the share of samples that keep their class's rule."""
    matplotlib.use("Agg")

    columns = [
        "run",
        "group",
        "generator",
        "modality",
        "family",
        "loops_train",
        "loops_eval",
        "metric",
        "value",
        "ci_low",
        "ci_high",
    ]
    panel_rows = [primary(df, metrics)[columns]]  # one row of panels per measure
    if len(ruled(df)):
        panel_rows.append(rule_rows(df)[columns])
    table = pd.concat(panel_rows, ignore_index=True)
    groups = sorted(table["group"].unique())
    fig, axes = plt.subplots(
        len(panel_rows), len(groups), figsize=(6 * len(groups), 4.5 * len(panel_rows)), squeeze=False
    )
    for axes_row, rows in zip(axes, panel_rows):
        for ax, group in zip(axes_row, groups):
            part = rows[rows["group"] == group]
            if part.empty:
                ax.set_axis_off()  # a group without a rule checker
                continue
            _anytime_panel(ax, group, part)
    _save_plot(fig, png, table)
    plt.close(fig)


def _anytime_panel(ax, group: str, part: pd.DataFrame) -> None:
    looped = part[part["family"].isin(["elt", "looped"])]
    style = _family_style(looped["family"])
    sns.lineplot(data=looped, x="loops_eval", y="value", dashes=False, ax=ax, **style)
    for family in style["hue_order"]:
        f = looped[looped["family"] == family]
        ax.fill_between(f["loops_eval"], f["ci_low"], f["ci_high"], alpha=0.15, color=FAMILY_STYLE[family][0])
    for family, line in (("unshared", "-."), ("shallow", ":")):
        base = part[part["family"] == family]
        if len(base):
            colour = FAMILY_STYLE[family][0]
            ax.axhline(base["value"].iloc[0], ls=line, color=colour, lw=1, label=f"{family} (one depth)")
    ax.axvline(part["loops_train"].max(), color="grey", lw=0.8)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(part["metric"].iloc[0])
    ax.set_title(f"{group}: any-time {part['metric'].iloc[0]}")
    ax.set_xlabel("loops at inference (grey: L_max of training)")
    ax.legend(fontsize=7)


def sample_grid(sample_files: dict[int, str], png: Path, per_column: int = 10) -> None:
    """One column per loop count, one row per class (the first sample of each), as the paper's Fig. 1."""
    matplotlib.use("Agg")

    loops = sorted(sample_files)
    loaded = {loop: load_samples(sample_files[loop]) for loop in loops}
    frames = loaded[loops[0]][0].shape[1]
    # an image is a 1-inch square; a clip is a strip of its frames, half an inch each
    width, height = (1.0, 1.0) if frames == 1 else (0.5 * frames, 0.6)
    fig, axes = plt.subplots(
        per_column, len(loops), figsize=(width * len(loops) + 0.5, height * per_column), squeeze=False
    )
    rows = []
    for j, loop in enumerate(loops):
        samples, labels, meta = loaded[loop]
        picks = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)[:per_column]]
        for i in range(per_column):
            ax = axes[i][j]
            ax.axis("off")
            if i < len(picks):
                ax.imshow(clip_strip(samples[picks[i]]), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                rows.append({"loops": loop, "row": i, "label": int(labels[picks[i]]), "index": picks[i]})
        axes[0][j].set_title(f"L={loop}", fontsize=8)
    fig.suptitle(meta["run"], fontsize=8)
    _save_plot(fig, png, pd.DataFrame(rows))
    plt.close(fig)
