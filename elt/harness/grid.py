"""The experiment grid of a pipeline profile: which runs exist and where each is evaluated.

A run = (grid group, family, width, N, L_max, seed); a group names its dataset (an entry of the
profile's `datasets`) and the run settings its families share. ELT and vanilla looped models are
sampled at every L from 1 to L_max plus the profile's extrapolation loop counts; the unlooped
baselines (unshared N*L layers, shallow N layers) have a single depth. The profile's `loop_plans`
(a list of {group, plans}: schedules and early-exit rules, elt.methods.schedule) are sampled on the group's
ELT runs too.
"""

from __future__ import annotations

import hashlib
import json
import re

import baselines
from elt import config
from elt.errors import UserError
from elt.methods.schedule import parse_plan, plan_name

GROUP_NAME = re.compile(r"^[A-Za-z0-9_.]+$")


def run_name(group: str, family: str, width: str, n_unique: int, loops: int, seed: int) -> str:
    return f"{group}-{family}-{width}-{n_unique}x{loops}-s{seed}"


def group_of(run: str) -> str:
    """Run names start with their grid group's name (which holds no '-')."""
    return run.split("-")[0]


def group_name(run_cfg: dict) -> str:
    """Runs compared with each other: one grid group (dataset, generator), width, N x L_max and seed;
    the run name without its family."""
    return run_cfg["run"].replace(f"-{run_cfg['model']['family']}-", "-", 1)


def codec_paths(work: str, dataset: str) -> dict:
    """Where the pipeline puts a dataset's tokenizer and its pre-tokenized training split."""
    return {
        "tokenizer": f"{work}/tokenizers/{dataset}/tokenizer.pt",
        "tokens": f"{work}/tokenizers/{dataset}/train_tokens.npz",
    }


STREAMED = ("imagenet",)  # data sets a profile never loads whole: runs train from pre-encoded shards


def shard_folder(work: str, dataset: str, codec: dict) -> str:
    """Where the pipeline puts a dataset's training split pre-encoded with a pretrained codec or its VQ
    tokenizer: one folder per (dataset, codec settings), shared by every run that trains on it."""
    digest = hashlib.sha256(json.dumps(codec, sort_keys=True).encode()).hexdigest()[:8]
    return f"{work}/shards/{dataset}-{codec.get('pretrained') or 'vq'}-{digest}"


def steps_by_loops(group: dict) -> dict[int, int]:
    """A group's sampling_steps_by_loops ({loop count: sampling steps}, e.g. {6: 24}), checked."""
    given = group.get("sampling_steps_by_loops") or {}
    out = {}
    for loops, steps in given.items():
        try:
            loops = int(loops)
        except (TypeError, ValueError):
            loops = 0
        if loops < 1 or isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UserError(
                f"grid group {group['name']!r}: sampling_steps_by_loops maps loop counts to steps, e.g. {{6: 24}}; "
                f"got {given!r}"
            )
        out[loops] = steps
    return out


def sampling_steps(settings: dict, loops) -> int | None:
    """The steps a (run, L) samples with when its group sets them for L; None: the run's own."""
    return settings["sampling_steps_by_loops"].get(loops) if isinstance(loops, int) else None


def _members(profile: dict):
    """(run name, pipeline settings, full run config dict) for every group x family x seed of a profile."""
    for group in profile["grid"]:
        name, dataset = group["name"], group["dataset"]
        if not GROUP_NAME.match(name):
            raise UserError(f"grid group name {name!r} may hold only letters, digits, '_' and '.': rename it")
        if dataset not in profile["datasets"]:
            raise UserError(
                f"grid group {name!r} uses dataset {dataset!r}, which is not under datasets: "
                f"use one of {', '.join(profile['datasets'])}"
            )
        settings = {
            "dataset": dataset,
            "num_samples": group.get("num_samples", profile["metrics"]["num_samples"]),
            "extra_loops": group.get("extra_loops", profile["extra_loops"]),
            "anytime": group.get("anytime", True),
            "sampling_steps_by_loops": steps_by_loops(group),
        }
        codec, kind = {}, group.get("codec", "pixels")
        if isinstance(kind, dict):  # a pretrained codec from a local path; streamed data sets train from its shards
            codec = dict(kind)
            if profile["datasets"][dataset].get("dataset") in STREAMED:
                codec["shards"] = shard_folder(profile["work"], dataset, codec)
        elif kind == "vq":
            if dataset not in profile.get("tokenizers", {}):
                raise UserError(
                    f"grid group {name!r} asks for codec vq but tokenizers has no entry {dataset!r}: add its settings"
                )
            codec = codec_paths(profile["work"], dataset)
            data = profile["datasets"][dataset]
            if data.get("windows") == "all" or data.get("hflip"):
                # the pre-tokenized split holds one unmirrored clip per video: encode with the tokenizer instead,
                # at training start (embedded) or once into shards (paper protocol)
                codec = {"tokenizer": codec["tokenizer"]}
                if profile.get("protocol") == "paper":
                    codec["shards"] = shard_folder(profile["work"], dataset, codec)
        for family in group["families"]:
            for seed in profile["seeds"]:
                base = config.merge(
                    group["run"],
                    {
                        "model": {"family": family},
                        "data": profile["datasets"][dataset],
                        "codec": codec,
                        "seed": seed,
                        "train": {"threads": profile["threads"]},
                        "runtime": profile.get("runtime") or {},
                    },
                )
                model = config.merge(config.ModelConfig().__dict__, base.get("model", {}))
                run = run_name(name, family, model["width"], model["n_unique"], model["loops"], seed)
                try:
                    yield run, settings, config.from_dict({**base, "run": run}).to_dict()
                except UserError as err:
                    raise UserError(f"grid group {name!r}: {err}") from None


def expand(profile: dict) -> dict[str, dict]:
    """{run name: full run config dict} for every group x family x seed of a profile."""
    return {run: cfg for run, _, cfg in _members(profile)}


def pipeline_settings(profile: dict) -> dict[str, dict]:
    """{run name: {dataset: its name under the profile's datasets, num_samples: per loop count,
    extra_loops: beyond L_max (the group's own, or the profile's), anytime: sampled at every L up to L_max}}."""
    return {run: settings for run, settings, _ in _members(profile)}


def eval_loops(run: dict, extra_loops: list[int], anytime: bool = True) -> list[int]:
    """Loop counts a looped run is sampled at: 1..L_max (anytime), or L_max alone, and the extra ones beyond."""
    model = run["model"]
    if model["family"] in baselines.LAYOUTS:  # unlooped: one depth
        return [1]
    below = range(1, model["loops"] + 1) if anytime else [model["loops"]]
    return sorted(set(below) | {l for l in extra_loops if l > model["loops"]})


def trained_loops(run: dict) -> int:
    """The loop count a run was trained at: L_max for looped runs, 1 for unlooped baselines (their depth is N*L)."""
    return run["model"]["loops"] if run["model"]["family"] not in baselines.LAYOUTS else 1


def targets(profile: dict) -> list[tuple[str, int]]:
    """Every (run, loop count) the pipeline samples and evaluates."""
    return [
        (run, loops)
        for run, settings, cfg in _members(profile)
        for loops in eval_loops(cfg, settings["extra_loops"], settings["anytime"])
    ]


def loop_plans(profile: dict) -> dict[str, dict[str, str]]:
    """{ELT run: {plan's file name: plan as written}} for the groups under the profile's loop_plans."""
    groups, plans = {group["name"] for group in profile["grid"]}, {}
    for entry in profile.get("loop_plans") or []:
        if entry["group"] not in groups:
            raise UserError(
                f"loop_plans names grid group {entry['group']!r}, which the grid lacks: use one of "
                f"{', '.join(sorted(groups))}"
            )
        if entry["group"] in plans:
            raise UserError(f"loop_plans lists group {entry['group']!r} twice: merge its plans into one entry")
        plans[entry["group"]] = entry["plans"]
    out = {}
    for run, cfg in expand(profile).items():
        group = group_of(run)
        if cfg["model"]["family"] != "elt" or group not in plans:
            continue
        named = {}
        for spec in plans[group]:
            try:
                name = plan_name(parse_plan(spec, cfg["model"]["loops"]))
            except UserError as err:
                raise UserError(f"loop_plans of group {group!r}: {err}") from None
            if name in named:
                raise UserError(f"loop_plans of group {group!r} lists {spec!r} twice (as {named[name]!r}): drop one")
            named[name] = str(spec)
        out[run] = named
    return out


def paper_rows(profile: dict) -> dict[str, dict]:
    """{run name: the paper's reported row for its group and family (params, FID, ...)} where the
    profile's grid groups give one under `paper`."""
    rows = {}
    for run, cfg in expand(profile).items():
        group = next(g for g in profile["grid"] if run.startswith(g["name"] + "-"))
        row = (group.get("paper") or {}).get(cfg["model"]["family"])
        if row:
            rows[run] = row
    return rows
