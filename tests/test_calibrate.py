"""elt calibrate: latency per (run, L, batch size) measured here, joined with the results' quality; the Pareto
set and the choice within a budget, checked on hand-made tables and on two tiny trained runs."""

import subprocess
import sys

import pandas as pd
import pytest

from elt.errors import UserError
from elt.harness import calibrate

from .conftest import tiny_cfg


def metrics_rows(rows):
    base = {"dataset": "digits", "generator": "masked", "modality": "image", "n_unique": 1}
    return pd.DataFrame([{**base, **row} for row in rows])


def latency_rows(rows):
    return pd.DataFrame(
        [
            {"batch_size": 8, "latency_ms_low": r["latency_ms"] * 0.9, "latency_ms_high": r["latency_ms"] * 1.1, **r}
            for r in rows
        ]
    )


def test_the_pareto_set_and_the_choice_within_a_budget():
    metrics = metrics_rows(
        [
            {
                "run": "a",
                "family": "elt",
                "loops_eval": 1,
                "fd_domain": 30.0,
                "fd_domain_ci_low": 28,
                "fd_domain_ci_high": 32,
            },
            {
                "run": "a",
                "family": "elt",
                "loops_eval": 2,
                "fd_domain": 20.0,
                "fd_domain_ci_low": 18,
                "fd_domain_ci_high": 22,
            },
            {
                "run": "b",
                "family": "unshared",
                "loops_eval": 1,
                "fd_domain": 25.0,
                "fd_domain_ci_low": 23,
                "fd_domain_ci_high": 27,
            },
        ]
    )
    latency = latency_rows(
        [
            {"run": "a", "loops_eval": 1, "latency_ms": 10.0},
            {"run": "a", "loops_eval": 2, "latency_ms": 20.0},
            {"run": "b", "loops_eval": 1, "latency_ms": 21.0},
        ]
    )
    table = calibrate.join_quality(latency, metrics)
    table["pareto"] = calibrate.pareto(table)
    # b is slower than a at L = 2 and worse: dominated; a at L = 1 is the fastest, a at L = 2 the best
    assert dict(zip(zip(table.run, table.loops_eval), table.pareto)) == {
        ("a", 1): True,
        ("a", 2): True,
        ("b", 1): False,
    }
    picks = calibrate.recommend(table, budget_ms=15.0)
    assert list(zip(picks.run, picks.loops_eval)) == [("a", 1)]
    assert list(calibrate.recommend(table, budget_ms=22.0).loops_eval) == [2]  # 20 ms within 22 even at its high end
    assert list(calibrate.recommend(table, budget_ms=21.0).loops_eval) == [1]  # 20 ms fits, its interval (to 22) not
    assert calibrate.recommend(table, budget_ms=5.0).empty
    with pytest.raises(UserError, match="no latency for b at L = 1"):
        calibrate.join_quality(latency[latency.run == "a"], metrics)
    with pytest.raises(UserError, match="metrics have no 'kid'"):
        calibrate.join_quality(latency, metrics, "kid")


@pytest.mark.slow
def test_elt_calibrate_times_tiny_runs_and_writes_the_table(tmp_path):
    from elt.train import train

    for run, family in (("elt", "elt"), ("unshared", "unshared")):
        train(tiny_cfg(run=run, model={"family": family}, train={"steps": 2}), tmp_path / "runs" / run, progress=False)
    metrics = metrics_rows(
        [
            {
                "run": "elt",
                "family": "elt",
                "loops_eval": l,
                "fd_domain": 30.0 - l,
                "fd_domain_ci_low": 1,
                "fd_domain_ci_high": 40,
            }
            for l in (1, 3)
        ]
        + [
            {
                "run": "unshared",
                "family": "unshared",
                "loops_eval": 1,
                "fd_domain": 29.0,
                "fd_domain_ci_low": 1,
                "fd_domain_ci_high": 40,
            }
        ]
    )
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    command = [
        sys.executable,
        "-m",
        "elt.cli",
        "calibrate",
        "--metrics",
        str(tmp_path / "metrics.csv"),
        "--batch-sizes",
        "1,4",
        "--repeats",
        "3",
        "--budget-ms",
        "1e6",
        "--out",
        str(tmp_path / "cal"),
    ]
    done = subprocess.run([*command, "--runs", str(tmp_path / "runs")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "cal/calibration.csv")
    assert sorted(zip(table.run, table.loops_eval, table.batch_size)) == [
        ("elt", 1, 1),
        ("elt", 1, 4),
        ("elt", 3, 1),
        ("elt", 3, 4),
        ("unshared", 1, 1),
        ("unshared", 1, 4),
    ]
    assert (table.latency_ms_low <= table.latency_ms).all() and (table.latency_ms <= table.latency_ms_high).all()
    assert (tmp_path / "cal/calibration.png").stat().st_size > 0
    assert "## Within 1e+06 ms per batch" in (tmp_path / "cal/calibration.md").read_text()
    reused = subprocess.run([*command, "--latency", str(tmp_path / "cal/latency.csv")], capture_output=True, text=True)
    assert reused.returncode == 0 and pd.read_csv(tmp_path / "cal/calibration.csv").equals(table)
    without = subprocess.run([*command[:-2], "--out", str(tmp_path / "none")], capture_output=True, text=True)
    assert without.returncode == 2 and without.stderr.count("\n") == 1 and "needs timings" in without.stderr
    assert not (tmp_path / "none").exists()


def test_paper_results_are_calibrated_on_the_papers_metrics(tmp_path):
    metrics = metrics_rows(
        [
            {"run": "a", "family": "elt", "loops_eval": 2, "fid_adm": 2.1, "protocol": "paper"},
            {"run": "b", "family": "unshared", "loops_eval": 1, "fid_adm": 2.0, "protocol": "paper"},
        ]
    )
    metrics.to_csv(tmp_path / "paper_metrics.csv", index=False)
    latency_rows(
        [{"run": "a", "loops_eval": 2, "latency_ms": 9.0}, {"run": "b", "loops_eval": 1, "latency_ms": 12.0}]
    ).to_csv(tmp_path / "latency.csv", index=False)
    table = calibrate.calibrate(
        str(tmp_path / "paper_metrics.csv"), str(tmp_path / "out"), latency_csv=str(tmp_path / "latency.csv")
    )
    assert (table.metric == "fid_adm").all() and table.pareto.all()  # faster or better: both on the front
    assert (
        "| fid_adm | 2.1 | yes |" in (tmp_path / "out/calibration.md").read_text()
    )  # no interval where the results have none
