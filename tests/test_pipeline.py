"""The Snakemake pipeline end to end (smoke profile, in a temporary copy of the repository)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from elt.data import shapes
from elt.harness.schema import COLUMNS, PLAN_COLUMNS, RULE_FIELDS
from elt.sample import load_samples
from tests.conftest import copy_repo, snakemake

pytestmark = pytest.mark.pipeline


def test_smoke_outputs_have_the_schema(smoke):
    results = smoke / "results/smoke"
    df = pd.read_csv(results / "metrics.csv")
    assert list(df.columns) == COLUMNS
    assert set(df["family"]) == {"elt", "looped", "unshared", "shallow"} and set(df["generator"]) == {
        "masked",
        "diffusion",
    }
    elt = df[(df["run"] == "masked-elt-T-1x2-s0")]
    assert sorted(elt["loops_eval"]) == [1, 2, 3]  # 1..L_max plus the extrapolation loop count
    assert df[df["family"] == "unshared"]["loops_eval"].tolist() == [1, 1, 1]
    image, video = df[df["modality"] == "image"], df[df["modality"] == "video"]
    assert (
        (image["fid_ci_low"] <= image["fid_ci_high"]).all() and image["fid"].notna().all() and image["fvd"].isna().all()
    )
    assert set(video["run"].str.split("-").str[0]) == {"video_diffusion", "video_masked"} and set(video["dataset"]) == {
        "moving_digits"
    }
    assert video[["fvd", "fvd_domain", "fvd_ci_low", "fvd_ci_high"]].notna().all().all() and video["fid"].isna().all()
    assert (video["fvd_ci_low"] <= video["fvd_ci_high"]).all() and (video["n_fvd"] == 4).all()
    assert sorted(video[video["run"] == "video_diffusion-elt-T-1x2-s0"]["loops_eval"]) == [
        1,
        2,
    ]  # group's extra_loops: []
    headline = json.loads((results / "metrics.json").read_text())["masked-T-1x2"]
    assert set(headline) == {"claims", "fd_domain"} and headline["fd_domain"]["elt"] > 0
    parity = headline["claims"]["iso_compute_parity"]
    assert parity["low"] <= parity["estimate"] <= parity["high"]
    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["config"]["profile"] == "smoke" and "masked-elt-T-1x2-s0/L2" in provenance["protocols"]
    for plot in ("pareto_params", "pareto_gflops", "anytime"):
        assert (results / f"plots/{plot}.png").stat().st_size > 0 and (results / f"plots/{plot}.csv").exists()
    assert (results / "plots/samples/masked-elt-T-1x2-s0.png").exists()
    assert (results / "plots/samples/video_masked-elt-T-1x2-s0.png").exists()


def test_video_runs_use_the_dags_tokenizer_and_record_the_fvd_protocol(smoke):
    tokenizer = json.loads((smoke / "work/smoke/tokenizers/moving_digits/tokenizer.json").read_text())
    assert {"mse", "psnr", "codes_used"} <= set(tokenizer["held_out_error"]) and tokenizer["token_grid"] == [4, 3, 3]
    record = json.loads((smoke / "work/smoke/runs/video_masked-elt-T-1x2-s0/train.json").read_text())
    assert record["config"]["codec"]["tokens"].endswith("train_tokens.npz") and record["tokens"]
    with np.load(smoke / "work/smoke/samples/video_masked-elt-T-1x2-s0/L1.npz") as f:
        assert f["samples"].shape == (20, 16, 1, 12, 12)
    protocol = json.loads((smoke / "work/smoke/eval/video_diffusion-elt-T-1x2-s0/L2.json").read_text())["protocol"]
    assert "I3D" in protocol["fvd"]["implementation"] and protocol["fvd"]["n_samples"] == 4
    assert protocol["fvd"]["n_reference"] == 6 and protocol["clip_shape"] == [16, 1, 12, 12]


def test_smoke_audit_and_regression_check_ran(smoke):
    audit = json.loads((smoke / "results/smoke/audit.json").read_text())
    assert {c["verdict"] for c in audit["claims"]} <= {"holds", "fails", "inconclusive", "not measured"}
    assert {c["claim"] for c in audit["claims"]} == {
        "iso_compute_parity",
        "anytime_elt",
        "vanilla_collapse",
        "looping_helps",
        "extrapolation",
        "throughput",
        "loop_plans",
    }
    plan_claim = next(c for c in audit["claims"] if c["claim"] == "loop_plans" and c["comparison"] == "masked-T-1x2")
    assert plan_claim["verdict"] != "not measured" and set(plan_claim["evidence"]["plans"]) == {
        "linear 1->2",
        "exit<0.05 L1-2",
    }
    assert audit["interval"]["rounds"] == 200 and "hierarchical" in audit["interval"]["method"]
    assert "parity tolerance 25%" in (smoke / "results/smoke/audit.md").read_text()
    assert audit["rule_share"] == []  # digits have no rule checker
    timing = json.loads(next((smoke / "work/smoke/throughput").glob("*.json")).read_text())
    assert len(timing["settings"]["elt"]["seconds"]) == len(timing["settings"]["unshared"]["seconds"]) == 5
    throughput = [c for c in audit["claims"] if c["claim"] == "throughput" and c["verdict"] != "not measured"]
    assert throughput and all(c["evidence"]["repeats"] == 5 for c in throughput)
    assert "PASSED" in (smoke / "results/smoke/check.txt").read_text()


def test_loop_plans_are_sampled_evaluated_and_costed_from_the_loops_run(smoke):
    """The smoke profile's loop_plans: ELT masked at 'linear 1->2' (steps at L 1, 2, 2 of 3 steps) and early exit."""
    plans = pd.read_csv(smoke / "results/smoke/loop_plans.csv")
    assert list(plans["plan_name"]) == ["exit_0.05_L1_2", "linear_1_2"] and set(plans["run"]) == {"masked-elt-T-1x2-s0"}
    metrics = pd.read_csv(smoke / "results/smoke/metrics.csv").set_index(["run", "loops_eval"])
    per_step = {l: metrics.loc[("masked-elt-T-1x2-s0", l), "gflops_per_sample"] / 3 for l in (1, 2)}
    linear = plans.set_index("plan_name").loc["linear_1_2"]
    assert linear["loops_used_per_step"] == "1.00 2.00 2.00" and linear["n_samples"] == 40
    assert linear["gflops_per_sample"] == pytest.approx(per_step[1] + 2 * per_step[2], rel=1e-5)
    assert 1 <= plans.set_index("plan_name").loc["exit_0.05_L1_2", "loops_used_mean"] <= 2
    table = pd.read_csv(smoke / "results/smoke/plots/pareto_gflops.csv")
    assert set(table[table["family"] == "elt loop plan"]["loops_eval"]) == {"linear 1->2", "exit<0.05 L1-2"}


def test_html_report_holds_plots_and_audit(smoke):
    result = snakemake(smoke, "--configfile", "config/smoke.yaml", "--report", "report.html")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (smoke / "report.html").stat().st_size > 10_000


def test_rerun_does_nothing(smoke):
    result = snakemake(smoke, "--configfile", "config/smoke.yaml", "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_every_result_records_its_provenance(smoke):
    evaluation = json.loads(next((smoke / "work/smoke/eval").glob("*/L1.json")).read_text())
    protocol = evaluation["protocol"]
    assert protocol["fid"]["n_samples"] == 8 and "clean-fid" in protocol["fid"]["implementation"]
    assert protocol["sampling"]["seed"] == 1000 and "git_commit" in protocol["sampling"]
    record = json.loads(next((smoke / "work/smoke/runs").glob("*/train.json")).read_text())
    assert {"config", "seed", "versions", "git_commit", "split_sha"} <= set(record)


def test_bad_config_value_fails_the_dry_run_naming_the_key(tmp_path):
    repo = copy_repo(tmp_path)
    cfg = yaml.safe_load((repo / "config/smoke.yaml").read_text())
    cfg["metrics"]["num_samples"] = "lots"
    (repo / "config/bad.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(repo, "--configfile", "config/bad.yaml", "-n")
    assert result.returncode != 0 and "num_samples" in result.stdout + result.stderr
    cfg = yaml.safe_load((repo / "config/smoke.yaml").read_text())
    cfg["grid"][0]["run"]["model"]["widht"] = "XS"
    (repo / "config/bad.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(repo, "--configfile", "config/bad.yaml", "-n")
    assert result.returncode != 0 and "unknown config key 'model.widht'" in result.stdout + result.stderr


def test_users_own_rgb_image_folder_runs_through_the_same_dag(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    rng = np.random.default_rng(0)
    for c, name in enumerate(("circle", "square", "stripe")):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(12):
            img = np.zeros((20, 20, 3), np.uint8)
            img[..., c] = 120 + rng.integers(0, 100)
            img[5:15, 5:15, (c + 1) % 3] = 255 if name != "stripe" else 0
            Image.fromarray(img).save(tmp_path / "images" / name / f"{i}.png")
    cfg = yaml.safe_load((repo / "config/smoke.yaml").read_text())
    cfg.update(
        datasets={
            "mine": {
                "dataset": "folder",
                "path": str(tmp_path / "images"),
                "image_size": 8,
                "channels": 3,
                "levels": 16,
            }
        },
        reference=None,
        results="results/mine",
        work="work/mine",
    )
    cfg["grid"] = [dict(cfg["grid"][0], dataset="mine", families=["elt", "unshared"])]
    (repo / "config/mine.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(repo, "--configfile", "config/mine.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    df = pd.read_csv(repo / "results/mine/metrics.csv")
    assert set(df["run"]) == {"masked-elt-T-1x2-s0", "masked-unshared-T-1x2-s0"}
    with np.load(repo / "work/mine/samples/masked-elt-T-1x2-s0/L1.npz") as f:
        assert f["samples"].shape == (40, 3, 8, 8)


def test_scenes_with_a_rule_report_the_share_that_keeps_it(tmp_path):
    """On a data set with a rule checker, metrics.csv and loop_plans.csv gain the rule share, equal to the checker
    applied to the saved samples, and the audit and the any-time plot show it beside the primary metric. (Smoke
    models keep few rules or none: tests/test_shapes.py holds an evaluation to a known share of 20/30.)"""
    repo = copy_repo(tmp_path / "repo")
    cfg = yaml.safe_load((repo / "config/smoke.yaml").read_text())
    cfg.update(
        datasets={"tiles": {"dataset": "tiles", "held_out_fraction": 0.25, "split_seed": 0}},
        reference=None,
        results="results/tiles",
        work="work/tiles",
    )
    cfg["grid"] = [dict(cfg["grid"][0], dataset="tiles", families=["elt", "unshared", "shallow"])]
    (repo / "config/tiles.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(repo, "--configfile", "config/tiles.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    df = pd.read_csv(repo / "results/tiles/metrics.csv")
    assert list(df.columns) == COLUMNS + list(RULE_FIELDS)
    for row in df.itertuples():
        samples, labels, _ = load_samples(repo / f"work/tiles/samples/{row.run}/L{row.loops_eval}.npz")
        assert row.rule_share == pytest.approx(shapes.rule_holds(samples, labels, "tiles").mean(), abs=1e-6)
        assert row.rule_share_ci_low <= row.rule_share <= row.rule_share_ci_high
    plans = pd.read_csv(repo / "results/tiles/loop_plans.csv")
    assert list(plans.columns) == PLAN_COLUMNS + list(RULE_FIELDS) and plans["rule_share"].notna().all()
    evidence = json.loads((repo / "results/tiles/audit.json").read_text())["rule_share"]
    assert {(r["family"], r["loops_eval"]) for r in evidence} == set(zip(df["family"], df["loops_eval"]))
    assert "## Evidence from the data set's rule" in (repo / "results/tiles/audit.md").read_text()
    anytime = pd.read_csv(repo / "results/tiles/plots/anytime.csv")
    assert len(anytime[anytime["metric"] == "rule_share"]) == len(df)
