"""The experiment grid of a pipeline profile: which runs exist and where each is evaluated.

A run = (generator, family, width, N, L_max, seed). ELT and vanilla looped models are sampled at
every L from 1 to L_max plus the profile's extrapolation loop counts; the unlooped baselines
(unshared N*L layers, shallow N layers) have a single depth.
"""
from __future__ import annotations

import baselines

from . import config
from .errors import UserError


def run_name(generator: str, family: str, width: str, n_unique: int, loops: int, seed: int) -> str:
    return f"{generator}-{family}-{width}-{n_unique}x{loops}-s{seed}"


def expand(profile: dict) -> dict[str, dict]:
    """{run name: full run config dict} for every group x family x seed of a profile."""
    runs = {}
    for group in profile["grid"]:
        for family in group["families"]:
            for seed in profile["seeds"]:
                base = config.merge(group["run"], {"model": {"family": family}, "data": profile["data"], "seed": seed,
                                                    "train": {"threads": profile["threads"]}})
                model = config.merge(config.ModelConfig().__dict__, base.get("model", {}))
                name = run_name(model["generator"], family, model["width"], model["n_unique"], model["loops"], seed)
                try:
                    runs[name] = config.from_dict({**base, "run": name}).to_dict()
                except UserError as err:
                    raise UserError(f"grid group {group.get('name', '?')!r}: {err}") from None
    return runs


def eval_loops(run: dict, extra_loops: list[int]) -> list[int]:
    model = run["model"]
    if model["family"] in baselines.LAYOUTS:  # unlooped: one depth
        return [1]
    return sorted(set(range(1, model["loops"] + 1)) | {l for l in extra_loops if l > model["loops"]})


def targets(profile: dict) -> list[tuple[str, int]]:
    """Every (run, loop count) the pipeline samples and evaluates."""
    return [(name, loops) for name, run in expand(profile).items() for loops in eval_loops(run, profile["extra_loops"])]
