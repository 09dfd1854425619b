"""paper_metrics.csv of a paper-protocol pipeline: one row per (run, L), and the paper's reported row beside
it only where the measurement follows the paper's protocol; elsewhere `comparable` says why not."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from elt.eval.guidance_sweep import picked_guidance
from elt.eval.paper import STATS_REFERENCE
from elt.files import atomic_path
from elt.harness.describe import gflops_per_sample, meta_network
from elt.harness.grid import expand, group_name, paper_rows, trained_loops

PAPER_TABLE_METRICS = ("fid_adm", "fid_clean", "inception_score", "fvd")
# beside a video row's FVD: its std over repeats, and the reconstruction FVD (the tokenizer's floor)
VIDEO_FIELDS = ("fvd_std", "fvd_reconstruction", "fvd_reconstruction_std")
PAPER_NUM_SAMPLES = 50_000  # the ImageNet FID convention (ADM, DiT, MaskGIT)


def sampling_of(cfg: dict) -> dict:
    """The run's sampler settings as a paper row states them."""
    if cfg["model"]["generator"] == "masked":
        return {"sampler": "maskgit", "sampling_steps": cfg["masked"]["sampling_steps"]}
    return {"sampler": cfg["diffusion"]["sampler"], "sampling_steps": cfg["diffusion"]["sampling_steps"]}


def not_comparable(record: dict, cfg: dict, paper: dict, swept: bool) -> list[str]:
    """Why a measured row cannot stand beside the paper's ([] when it can): a paper row at this L, ADM's
    mu/sigma as the reference, 50,000 samples, guidance picked by a sweep (or the paper's own scale), and
    the sampler and steps the paper states."""
    if not paper:
        return ["the paper reports no row for this run at this loop count"]
    reasons = []
    if "fvd" in record:
        fvd = record["fvd_protocol"]
        if (fvd["name"], fvd["clips"], fvd["repeats"]) != ("magvit", 10000, 4):
            reasons.append(
                f"FVD protocol {fvd['name']} ({fvd['clips']} clips x {fvd['repeats']} repeats), not MAGVIT's "
                "(10000 x 4), which the paper follows"
            )
    else:
        if record.get("fid_adm_reference") != STATS_REFERENCE:
            reasons.append(f"FID against {record.get('fid_adm_reference')}, not ADM's mu/sigma")
        if record["num_samples"] != PAPER_NUM_SAMPLES:
            reasons.append(f"{record['num_samples']} samples, not {PAPER_NUM_SAMPLES}")
    if not swept and record["guidance"] != paper.get("guidance"):
        stated = f"the paper's {paper['guidance']}" if "guidance" in paper else "a scale the paper states"
        reasons.append(f"guidance {record['guidance']} neither picked by a sweep nor {stated}")
    ours = {**sampling_of(cfg), "sampling_steps": record["sampling_steps"]}
    for key in ("sampler", "sampling_steps"):
        if key in paper and paper[key] != ours[key]:
            reasons.append(f"{key} {ours[key]}, the paper's is {paper[key]}")
    return reasons


def paper_row_at(row: dict, loops: int, trained: int) -> dict:
    """The paper's row of a run at a loop count: the row itself at the trained L, its `at_loops` entry at
    another L (e.g. ELT 6N x 4L sampled at L = 6: {6: {fvd: 60.8, sampling_steps: 24}}), else none."""
    if loops == trained:
        return {k: v for k, v in row.items() if k != "at_loops"}
    other = (row.get("at_loops") or {}).get(loops)
    return {**{k: v for k, v in row.items() if k == "params"}, **other} if other else {}


def paper_table(record_paths: list[str], profile: dict, settings: dict, out_csv: str) -> None:
    """One row per (run, loop count); settings: the checked paper_protocol (elt.eval.guidance_sweep.paper_settings)."""
    runs, reported = expand(profile), paper_rows(profile)
    swept = settings.get("guidance_sweep") is not None
    picks = {}  # run -> its sweep's pick, read once
    networks = {}  # run -> its network on the meta device: the FLOPs of a sample at each (L, steps, guidance)
    rows = []
    for path in record_paths:
        record = json.loads(Path(path).read_text())
        cfg = runs[record["run"]]
        if record["run"] not in networks:
            networks[record["run"]] = meta_network(cfg, profile)[1]
        train_record = json.loads((Path(profile["work"]) / "runs" / record["run"] / "train.json").read_text())
        paper = paper_row_at(reported.get(record["run"], {}), record["loops"], trained_loops(cfg))
        reasons = not_comparable(record, cfg, paper, swept)
        beside = {} if reasons else paper
        if swept and record["run"] not in picks:
            picks[record["run"]] = picked_guidance(
                str(Path(profile["work"]) / "paper/sweep" / record["run"] / "pick.json")
            )
        video = "fvd" in record
        rows.append(
            {
                "protocol": "paper",
                "run": record["run"],
                "group": group_name(cfg),
                "family": cfg["model"]["family"],
                "generator": cfg["model"]["generator"],
                "modality": "video" if video else "image",
                "dataset": cfg["data"]["dataset"],
                "width": cfg["model"]["width"],
                "n_unique": networks[record["run"]].cfg.n_unique,  # the network's unique layers, as in metrics.csv
                "loops_train": cfg["model"]["loops"],
                "loops_eval": record["loops"],
                "depth": networks[record["run"]].cfg.n_unique * record["loops"],
                "unique_params": train_record["unique_params"],
                "gflops_per_sample": gflops_per_sample(
                    networks[record["run"]], record["loops"], record["sampling_steps"], record["guidance"]
                ),
                "steps": train_record["steps"],
                "n_samples": record["num_samples"],
                "sampling_steps": record["sampling_steps"],
                "guidance": record["guidance"],
                "guidance_from": "sweep" if swept and picks[record["run"]] == record["guidance"] else "config",
                "labels": record.get("labels"),
                **{m: record.get(m) for m in PAPER_TABLE_METRICS},
                **{m: record.get(m) for m in VIDEO_FIELDS},
                "fvd_protocol": (record.get("fvd_protocol") or {}).get("name"),
                "fid_adm_reference": record.get("fid_adm_reference"),
                "fid_clean_reference": record.get("fid_clean_reference"),
                "comparable": "yes" if not reasons else "no: " + "; ".join(reasons),
                "paper_params": paper.get("params"),  # a count, comparable whatever the protocol
                **{f"paper_{m}": beside.get(m) for m in ("fid", "is", "fvd")},
                "seed": cfg["seed"],
                "features": record.get("features"),  # what the audit and a regression reference resample
            }
        )
    with atomic_path(out_csv) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
