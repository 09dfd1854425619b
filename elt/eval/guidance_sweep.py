"""The paper protocol's settings, and its guidance sweep: pick each run's classifier-free guidance scale the
way the paper did ("scale swept"), before the 50,000-sample evaluation.

Per run, at its trained loop count: `samples` samples at every scale of `scales` (drawn with
sample_seed + 1, so never the evaluation's own draws), FID at ADM's resize against the reference; the
scale with the lowest FID is the pick (ties: the smaller scale), and every (run, L) of the run is then
evaluated at it. The sweep's table lands beside paper_metrics.csv.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from elt.errors import UserError
from elt.eval.fvd import fvd_settings, generated_clips
from elt.eval.paper import reference_batch
from elt.files import atomic_path, write_json
from elt.harness.efficiency import efficiency_settings
from elt.sample import LABEL_DRAWS

# what paper_protocol.audit may override of the profile's audit section (its primary metrics are the paper's)
PAPER_AUDIT_KEYS = ("parity_tolerance", "anytime_max_ratio", "throughput_tolerance", "level", "bootstrap_rounds")
SEED_OFFSET = 1  # the sweep samples with sample_seed + 1: its samples are not the evaluation's


def paper_settings(section: dict) -> dict:
    """A profile's paper_protocol section checked, with the optional keys' defaults filled in:
    guidance_sweep (null = every run at its own scale), sample_labels (balanced | uniform),
    require_reference_stats (the FID reference must hold mu/sigma) and the FVD protocol (elt.eval.fvd: as
    `fvd`). Bad values are one-line UserErrors."""
    settings = {
        "guidance_sweep": None,
        "sample_labels": "balanced",
        "require_reference_stats": False,
        "efficiency": None,
        "audit": {},
        **section,
    }
    if settings["sample_labels"] not in LABEL_DRAWS:
        raise UserError(
            f"paper_protocol.sample_labels is {settings['sample_labels']!r}: use uniform (ADM's and DiT's sample "
            "scripts) or balanced"
        )
    if not isinstance(settings["require_reference_stats"], bool):
        raise UserError("paper_protocol.require_reference_stats must be true or false")
    if settings["guidance_sweep"] is not None:
        settings["guidance_sweep"] = sweep_settings(settings["guidance_sweep"], settings["num_samples"])
    settings["fvd"] = fvd_settings(settings)
    settings["efficiency"] = efficiency_settings(settings["efficiency"])
    if not isinstance(settings["audit"], dict) or set(settings["audit"]) - set(PAPER_AUDIT_KEYS):
        raise UserError(
            f"paper_protocol.audit overrides the profile's audit settings for paper results: use "
            f"{', '.join(PAPER_AUDIT_KEYS)}, e.g. audit: {{bootstrap_rounds: 200, parity_tolerance: 0.1}}"
        )
    wanted = generated_clips(settings["fvd"])
    if wanted is not None and settings["num_samples"] != wanted:
        spec = settings["fvd"]
        raise UserError(
            f"paper_protocol.num_samples is {settings['num_samples']}, but the {spec['name']} FVD protocol generates "
            f"{spec['clips']} clips x {spec['repeats']} repeats = {wanted}: set num_samples to {wanted}"
        )
    reference = settings.get("fid_reference")
    if settings["require_reference_stats"] and reference and Path(reference).is_file():
        reference_batch(reference, require_stats=True, images=False)  # refused now, not after GPU-days
    return settings


def sweep_settings(sweep, num_samples: int) -> dict:
    example = "e.g. guidance_sweep: {samples: 10000, scales: [1.0, 1.5, 2.0]}"
    if not isinstance(sweep, dict) or set(sweep) != {"samples", "scales"}:
        raise UserError(f"paper_protocol.guidance_sweep must name samples and scales and nothing else: {example}")
    scales, samples = sweep["scales"], sweep["samples"]
    if not isinstance(scales, list) or not scales:
        raise UserError(
            f"paper_protocol.guidance_sweep.scales is empty or not a list: list the scales to try, {example}"
        )
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in scales):
        raise UserError(
            f"paper_protocol.guidance_sweep.scales {scales!r} holds a value that is not a positive number: fix it"
        )
    if len({scale_name(s) for s in scales}) != len(scales):
        raise UserError(f"paper_protocol.guidance_sweep.scales {scales!r} lists a scale twice: drop one")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 2:
        raise UserError(f"paper_protocol.guidance_sweep.samples is {samples!r}: use a count of at least 2")
    if samples > num_samples:
        raise UserError(
            f"paper_protocol.guidance_sweep.samples {samples} is more than the evaluation's num_samples {num_samples}: "
            "a sweep picks with fewer samples than the evaluation it picks for (e.g. 10,000 for 50,000)"
        )
    return {"samples": samples, "scales": [float(s) for s in scales]}


def scale_name(scale: float) -> str:
    """A scale as it appears in file names: 1.5 -> '1.5', 2.0 -> '2'."""
    return f"{float(scale):g}"


def pick(records: list[dict], run: str, loops: int, seed: int) -> dict:
    """The sweep of one run from its per-scale evaluation records: the scale with the lowest fid_adm."""
    rows = sorted(({"guidance": r["guidance"], "fid_adm": r["fid_adm"]} for r in records), key=lambda r: r["guidance"])
    best = min(rows, key=lambda r: (r["fid_adm"], r["guidance"]))
    return {
        "run": run,
        "loops": loops,
        "num_samples": records[0]["num_samples"],
        "seed": seed,
        "scales": rows,
        "picked": best["guidance"],
        "criterion": "lowest fid_adm (ADM's resize) over the sweep's samples",
        "fid_adm_reference": records[0].get("fid_adm_reference"),
    }


def write_pick(record_paths: list[str], run: str, loops: int, seed: int, out: str) -> None:
    write_json(out, pick([json.loads(Path(p).read_text()) for p in record_paths], run, loops, seed))


def picked_guidance(pick_path: str | None) -> float | None:
    return None if pick_path is None else json.loads(Path(pick_path).read_text())["picked"]


def sweep_table(pick_paths: list[str], out_csv: str) -> None:
    """guidance_sweep.csv: one row per (run, scale), the pick marked."""
    rows = []
    for path in pick_paths:
        sweep = json.loads(Path(path).read_text())
        for row in sweep["scales"]:
            rows.append(
                {
                    "run": sweep["run"],
                    "loops": sweep["loops"],
                    "guidance": row["guidance"],
                    "num_samples": sweep["num_samples"],
                    "seed": sweep["seed"],
                    "fid_adm": row["fid_adm"],
                    "fid_adm_reference": sweep["fid_adm_reference"],
                    "picked": row["guidance"] == sweep["picked"],
                }
            )
    with atomic_path(out_csv) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
