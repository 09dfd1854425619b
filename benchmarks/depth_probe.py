"""Does depth matter on a data set? The default's shallow (N layers) and unshared (N*L layers) models of a
grid group, trained with the group's own settings on a candidate data set, sampled, and scored by the data
set's exact rule (elt.data.shapes.rule_holds): the share of samples that break their class's rule, per
model, and the ratio unshared / shallow with a bootstrap interval. Depth matters where the whole interval
lies below 0.8 (issue 29's target for the audit's primary metric, here on the rule).

    python benchmarks/depth_probe.py --group masked --dataset shapes --out results/depth_probe

Writes <out>/<group>-<dataset>-<steps>.json and rewrites <out>/depth_probe.md from every record there;
trainings and samples go to --work (ignored by git). A benchmark: minutes on this CPU, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from elt import config
from elt.data import shapes
from elt.harness.grid import expand
from elt.provenance import provenance
from elt.sample import load_samples, sample

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "shapes": {"dataset": "shapes", "held_out_fraction": 0.25, "split_seed": 0},
    "tiles": {"dataset": "tiles", "held_out_fraction": 0.25, "split_seed": 0},
    "automata": {"dataset": "automata", "held_out_fraction": 0.25, "split_seed": 0},
    "moving_tiles": {
        "dataset": "moving_tiles",
        "image_size": 12,
        "frames": 16,
        "held_out_fraction": 0.25,
        "split_seed": 0,
    },
    "moving_shapes": {
        "dataset": "moving_shapes",
        "image_size": 12,
        "frames": 16,
        "held_out_fraction": 0.25,
        "split_seed": 0,
    },
}


def run_configs(
    group: str,
    dataset: str,
    steps: int | None,
    sampling_steps: int | None = None,
    width: str | None = None,
    seed: int = 0,
) -> dict[str, dict]:
    """The default profile's shallow and unshared runs of `group`, on the candidate data set, at one seed."""
    profile = yaml.safe_load((ROOT / "config/default.yaml").read_text())
    profile["datasets"] = {dataset: DATASETS[dataset]}
    profile["seeds"] = [seed]
    profile["grid"] = [
        {**g, "dataset": dataset, "families": ["shallow", "unshared"]} for g in profile["grid"] if g["name"] == group
    ]
    run = profile["grid"][0]["run"]
    if steps:
        run["train"]["steps"] = steps
    if sampling_steps:
        run[run["model"]["generator"]]["sampling_steps"] = sampling_steps
    if width:
        run["model"]["width"] = width
    return expand(profile)


def train_and_sample(run_cfg: dict, out: str, num: int, seed: int) -> str:
    import torch

    from elt.train import train

    torch.set_num_threads(1)
    cfg = config.from_dict(run_cfg)
    train(cfg, Path(out) / cfg.run, progress=False)
    loops = 1  # shallow and unshared have one depth
    (path,) = sample(
        str(Path(out) / cfg.run / "checkpoint.pt"), [loops], num, seed, str(Path(out) / cfg.run / "L{loops}.npz")
    )
    return str(path)


def interval(
    broken_a: np.ndarray, broken_b: np.ndarray, rounds: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Ratio of break rates b / a with a percentile bootstrap interval (samples resampled within each model)."""
    rng = np.random.default_rng(seed)
    ra = broken_a[rng.integers(0, len(broken_a), (rounds, len(broken_a)))].mean(1)
    rb = broken_b[rng.integers(0, len(broken_b), (rounds, len(broken_b)))].mean(1)
    ratios = rb / np.maximum(ra, 1e-12)
    return float(broken_b.mean() / max(broken_a.mean(), 1e-12)), *map(float, np.percentile(ratios, [2.5, 97.5]))


def name_of(args) -> str:
    return (
        f"{args.group}-{args.dataset}-{args.steps or 'group'}-{args.sampling_steps or 'group'}-{args.width or 'group'}"
        f"-s{args.seed}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--group", default="masked", help="a grid group of config/default.yaml")
    p.add_argument("--dataset", default="shapes", choices=sorted(DATASETS))
    p.add_argument("--steps", type=int, help="training steps instead of the group's")
    p.add_argument("--sampling-steps", type=int, help="sampling steps instead of the group's")
    p.add_argument("--width", help="model width instead of the group's (elt.models.sizes)")
    p.add_argument("--seed", type=int, default=0, help="the runs' training seed (sampling uses seed 1000 always)")
    p.add_argument("--num", type=int, default=400, help="samples per model")
    p.add_argument("--out", default="results/depth_probe")
    p.add_argument("--work", default="work/depth_probe", help="where the trainings and samples go")
    args = p.parse_args()
    out = Path(args.out)
    runs = run_configs(args.group, args.dataset, args.steps, args.sampling_steps, args.width, args.seed)
    started = time.time()
    with ProcessPoolExecutor(2) as pool:
        paths = dict(
            zip(
                runs,
                pool.map(
                    train_and_sample,
                    runs.values(),
                    [str(Path(args.work) / name_of(args))] * 2,
                    [args.num] * 2,
                    [1000] * 2,
                ),
            )
        )
    broken, shares, cells = {}, {}, {}
    for run, path in paths.items():
        samples, labels, _ = load_samples(path)
        family = runs[run]["model"]["family"]
        broken[family] = ~shapes.rule_holds(samples, labels, shapes.kind_of(args.dataset))
        shares[family] = float(1 - broken[family].mean())
        if args.dataset == "automata":  # graded: one wrong cell breaks a whole diagram
            cells[family] = float(shapes.automaton_cells_right(samples, labels).mean())
    ratio, low, high = interval(broken["shallow"], broken["unshared"])
    record = {
        "group": args.group,
        "dataset": args.dataset,
        "steps": runs[next(iter(runs))]["train"]["steps"],
        "sampling_steps": args.sampling_steps,
        "width": runs[next(iter(runs))]["model"]["width"],
        "seed": args.seed,
        "samples": args.num,
        "rule_share": shares,
        "cells_right": cells or None,
        "break_ratio_unshared_over_shallow": [ratio, low, high],
        "depth_matters": high < 0.8,
        "minutes": (time.time() - started) / 60,
        **provenance(),
    }
    out.mkdir(parents=True, exist_ok=True)
    name = (
        f"{args.group}-{args.dataset}-{record['steps']}"
        + (f"-s{args.sampling_steps}" if args.sampling_steps else "")
        + (f"-{args.width}" if args.width else "")
        + (f"-seed{args.seed}" if args.seed else "")
    )
    (out / f"{name}.json").write_text(json.dumps(record, indent=2))
    write_table(out)
    print(table_line(record))


def table_line(r: dict) -> str:
    ratio, low, high = r["break_ratio_unshared_over_shallow"]
    sampling = r.get("sampling_steps") or "the group's"
    cells = r.get("cells_right")
    cells = f"{cells['shallow']:.3f} / {cells['unshared']:.3f}" if cells else "-"
    return (
        f"| {r['group']} | {r['dataset']} | {r.get('width', 'XS')} | {r['steps']} | {sampling} | {r.get('seed', 0)} | "
        f"{r['samples']} | "
        f"{r['rule_share']['shallow']:.3f} | {r['rule_share']['unshared']:.3f} | {ratio:.2f} [{low:.2f}, {high:.2f}] | "
        f"{cells} | {r['minutes']:.1f} |"
    )


def write_table(out: Path) -> None:
    """depth_probe.md from every record in out: one line per (group, data set, steps, sampling steps)."""
    lines = [
        "# Depth probe: does depth matter on a data set?",
        "",
        "The default's shallow (N layers) and unshared (N*L layers) models of a grid group on a candidate data set: "
        "the share of samples that satisfy their class's rule (elt.data.shapes), and the ratio of the shares that "
        "break it, unshared / shallow, with a 95% bootstrap interval over the samples (one training seed: the "
        "interval holds no training noise; rows of one setting at other seeds show it). Depth matters where the "
        "interval lies below 0.8. Cells right (automata): the share of cells that equal the rule applied to the "
        "row above, shallow / unshared (chance 0.5). Written by benchmarks/depth_probe.py.",
        "",
        "| group | data set | width | training steps | sampling steps | seed | samples | rule share, shallow | "
        "rule share, "
        "unshared | break ratio unshared / shallow [95%] | cells right | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    records = sorted(
        (json.loads(path.read_text()) for path in out.glob("*.json")),
        key=lambda r: (
            r["group"],
            r["dataset"],
            r.get("width", "XS"),
            r["steps"],
            r.get("sampling_steps") or 0,
            r.get("seed", 0),
        ),
    )
    lines += [table_line(r) for r in records]
    pooled = [line for line in map(seeds_line, settings_of(records).values()) if line]
    if pooled:
        lines += [
            "",
            "## Settings trained at several seeds",
            "",
            "The break ratio of each seed, and their geometric mean with a 95% Student t interval over the seeds "
            "(of the log ratio): an interval that holds training noise as well as sampling noise.",
            "",
            "| group | data set | width | training steps | sampling steps | seeds | break ratio per seed | "
            "geometric mean [95%, over seeds] |",
            "|---|---|---|---|---|---|---|---|",
            *pooled,
        ]
    (out / "depth_probe.md").write_text("\n".join(lines) + "\n")


def settings_of(records: list[dict]) -> dict[tuple, list[dict]]:
    """Records grouped by everything but their training seed."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["group"], r["dataset"], r.get("width", "XS"), r["steps"], r.get("sampling_steps"), r["samples"])
        groups.setdefault(key, []).append(r)
    return groups


def seeds_line(records: list[dict]) -> str | None:
    """One setting's break ratios over its seeds, pooled: a t interval of the mean log ratio (None for one seed)."""
    if len(records) < 2:
        return None
    records = sorted(records, key=lambda r: r.get("seed", 0))
    logs = np.log([r["break_ratio_unshared_over_shallow"][0] for r in records])
    half = stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
    r = records[0]
    sampling = r.get("sampling_steps") or "the group's"
    return (
        f"| {r['group']} | {r['dataset']} | {r.get('width', 'XS')} | {r['steps']} | {sampling} | "
        f"{', '.join(str(x.get('seed', 0)) for x in records)} | "
        f"{', '.join(f'{np.exp(v):.2f}' for v in logs)} | "
        f"{np.exp(logs.mean()):.2f} [{np.exp(logs.mean() - half):.2f}, {np.exp(logs.mean() + half):.2f}] |"
    )


if __name__ == "__main__":
    main()
