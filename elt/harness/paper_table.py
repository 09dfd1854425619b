"""paper_metrics.csv of a paper-protocol pipeline: one row per (run, L) with the paper's reported row beside
it at the run's trained L."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from elt.files import atomic_path
from elt.harness.grid import expand, paper_rows

PAPER_TABLE_METRICS = ("fid_adm", "fid_clean", "inception_score", "fvd")


def paper_table(record_paths: list[str], profile: dict, out_csv: str) -> None:
    """One row per (run, loop count) with the paper's reported row beside it at the run's trained L."""
    runs, reported = expand(profile), paper_rows(profile)
    rows = []
    for path in record_paths:
        record = json.loads(Path(path).read_text())
        cfg = runs[record["run"]]
        trained = cfg["model"]["loops"] if cfg["model"]["family"] in ("elt", "looped") else 1
        train_record = json.loads((Path(profile["work"]) / "runs" / record["run"] / "train.json").read_text())
        paper = reported.get(record["run"], {}) if record["loops"] == trained else {}
        rows.append(
            {
                "run": record["run"],
                "family": cfg["model"]["family"],
                "width": cfg["model"]["width"],
                "n_unique": cfg["model"]["n_unique"],
                "loops_train": cfg["model"]["loops"],
                "loops": record["loops"],
                "unique_params": train_record["unique_params"],
                "steps": train_record["steps"],
                "num_samples": record["num_samples"],
                **{m: record.get(m) for m in PAPER_TABLE_METRICS},
                "paper_params": paper.get("params"),
                **{f"paper_{m}": paper.get(m) for m in ("fid", "is", "fvd")},
            }
        )
    with atomic_path(out_csv) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
