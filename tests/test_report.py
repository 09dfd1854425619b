"""Pareto frontier, audit verdicts, regression checks and PNG export, on data the tests make."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from elt import audit
from elt.check import build_reference, check
from elt.report import pareto_mask
from elt.sample import export_png, save_samples


def test_pareto_frontier_is_strict():
    x = [1, 2, 3, 1, 2]
    y = [5, 3, 4, 5, 3]  # (3, 4) is dominated by (2, 3); duplicates do not dominate each other
    assert pareto_mask(x, y).tolist() == [True, True, False, True, True]
    assert pareto_mask([1, 1], [2, 3]).tolist() == [True, False]  # equal x, worse y: dominated


def metrics_frame(elt_values, looped_values, unshared, shallow, width=0.1, sps=(100.0, 100.0)):
    rows = []
    for family, values in (("elt", elt_values), ("looped", looped_values)):
        for loops, v in values.items():
            rows.append({"run": f"g-{family}", "group": "g", "family": family, "loops_train": 3, "loops_eval": loops, "metric": v,
                         "unique_params": 10, "gflops_per_sample": loops, "samples_per_second": sps[0]})
    rows.append({"run": "g-unshared", "group": "g", "family": "unshared", "loops_train": 3, "loops_eval": 1, "metric": unshared,
                 "unique_params": 30, "gflops_per_sample": 3, "samples_per_second": sps[1]})
    rows.append({"run": "g-shallow", "group": "g", "family": "shallow", "loops_train": 3, "loops_eval": 1, "metric": shallow,
                 "unique_params": 10, "gflops_per_sample": 1, "samples_per_second": 300})
    df = pd.DataFrame(rows)
    df["fd_domain"], df["fd_domain_ci_low"], df["fd_domain_ci_high"] = df["metric"], df["metric"] * (1 - width), df["metric"] * (1 + width)
    df["modality"] = "image"
    return df


SETTINGS = {"primary_metric": {"image": "fd_domain", "video": "fvd_domain"}, "parity_tolerance": 0.25, "anytime_max_ratio": 1.5, "collapse_min_ratio": 2.0,
            "throughput_tolerance": 0.2}


def verdicts(df):
    return {c["claim"]: c["verdict"] for c in audit.audit(df, SETTINGS)["claims"]}


def test_audit_verdicts_when_the_paper_holds():
    df = metrics_frame({1: 12, 2: 11, 3: 10, 4: 10.5}, {1: 50, 2: 40, 3: 10, 4: 30}, unshared=9.5, shallow=20)
    assert verdicts(df) == {"iso_compute_parity": "holds", "anytime_elt": "holds", "vanilla_collapse": "holds",
                            "looping_helps": "holds", "extrapolation": "holds", "throughput": "holds"}


def test_audit_verdicts_when_the_paper_fails():
    df = metrics_frame({1: 40, 2: 30, 3: 10, 4: 30}, {1: 11, 2: 10.5, 3: 10, 4: 10}, unshared=5, shallow=5, width=0.05, sps=(50, 100))
    assert verdicts(df) == {"iso_compute_parity": "fails", "anytime_elt": "fails", "vanilla_collapse": "fails",
                            "looping_helps": "fails", "extrapolation": "fails", "throughput": "fails"}


def test_audit_is_inconclusive_when_intervals_straddle():
    df = metrics_frame({1: 16, 2: 12, 3: 10, 4: 13}, {1: 18, 2: 15, 3: 10, 4: 12}, unshared=7.5, shallow=10.5, width=0.3)
    v = verdicts(df)
    assert v["iso_compute_parity"] == v["anytime_elt"] == v["vanilla_collapse"] == v["looping_helps"] == "inconclusive"


def test_audit_markdown_states_thresholds_and_verdicts():
    df = metrics_frame({1: 12, 2: 11, 3: 10, 4: 10.5}, {1: 50, 2: 40, 3: 10, 4: 30}, unshared=9.5, shallow=20)
    md = audit.markdown(audit.audit(df, SETTINGS), {"git_commit": "abc"})
    assert "parity tolerance 25%" in md and "**holds**" in md and "abc" in md


def seed_metrics(seed, shift=0.0):
    return pd.DataFrame([
        {"run": f"masked-elt-XS-2x3-s{seed}", "loops_eval": loops, "fid": 50 + loops + shift + seed,
         "fd_domain": 10 + loops + 0.5 * seed, "kid": 0.1 + 0.01 * seed, "class_accuracy": 0.9 - 0.01 * seed}
        for loops in (1, 2, 3)
    ])


@pytest.fixture
def reference(tmp_path):
    paths = []
    for seed in (0, 1, 2):
        paths.append(tmp_path / f"m{seed}.csv")
        seed_metrics(seed).to_csv(paths[-1], index=False)
    ref = build_reference([str(p) for p in paths], baseline_seed=0, k=3.0, profile="test", provenance={})
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    return ref


def test_reference_tolerance_is_k_seed_standard_deviations(reference):
    entry = reference["entries"]["masked-elt-XS-2x3-s0"]["2"]["fid"]
    assert entry["value"] == 52 and entry["seed_std"] == pytest.approx(1.0)
    assert entry["tolerance"] == pytest.approx(3 * max(1.0, reference["median_relative_seed_std"]["fid"] * 52))


def test_unchanged_run_passes_and_planted_regression_fails(reference, tmp_path):
    table, passed = check(reference, seed_metrics(0))
    assert passed and (table["status"] == "ok").all()
    worse = seed_metrics(0, shift=20.0)  # a worse FID, far beyond three seed deviations
    table, passed = check(reference, worse)
    assert not passed and set(table[table["status"] != "ok"]["metric"]) == {"fid"}
    better = seed_metrics(0, shift=-20.0)  # better is not a regression
    assert check(reference, better)[1]
    worse.to_csv(tmp_path / "worse.csv", index=False)
    cli = subprocess.run([sys.executable, "-m", "elt.cli", "check", "--reference", tmp_path / "ref.json", tmp_path / "worse.csv"],
                         capture_output=True, text=True)
    assert cli.returncode == 1 and "REGRESSED" in cli.stdout and "FAILED" in cli.stdout


def test_vanished_run_or_metric_fails(reference):
    df = seed_metrics(0)
    table, passed = check(reference, df[df["loops_eval"] != 3])
    assert not passed and (table["status"] == "MISSING").sum() == 4
    assert not check(reference, df.drop(columns=["kid"]))[1]


def test_reference_needs_two_seeds(tmp_path):
    from elt.errors import UserError

    seed_metrics(0).to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(UserError, match="seed noise"):
        build_reference([str(tmp_path / "one.csv")], 0, 3.0, "x", {})


@pytest.mark.parametrize("shape", [(5, 1, 1, 4, 4), (3, 1, 3, 4, 6), (2, 4, 1, 4, 4)])
def test_export_png_is_lossless(tmp_path, shape):
    from PIL import Image

    samples = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    save_samples(tmp_path / "s.npz", samples, np.arange(shape[0]), {"run": "x"})
    assert export_png(str(tmp_path / "s.npz"), str(tmp_path / "png")) == shape[0]
    first = np.asarray(Image.open(tmp_path / "png/00000_class0.png"))
    expected = np.concatenate(list(samples[0]), axis=-1).transpose(1, 2, 0)
    assert np.array_equal(first, expected[..., 0] if shape[2] == 1 else expected)


def test_check_with_missing_reference_is_one_line_error(tmp_path):
    seed_metrics(0).to_csv(tmp_path / "m.csv", index=False)
    cli = subprocess.run([sys.executable, "-m", "elt.cli", "check", "--reference", tmp_path / "nope.json", tmp_path / "m.csv"],
                         capture_output=True, text=True)
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1 and "elt reference" in cli.stderr


def test_audit_uses_each_modalitys_primary_metric():
    image = metrics_frame({1: 12, 2: 11, 3: 10, 4: 10.5}, {1: 50, 2: 40, 3: 10, 4: 30}, unshared=9.5, shallow=20)
    video = metrics_frame({1: 12, 2: 11, 3: 10, 4: 10.5}, {1: 50, 2: 40, 3: 10, 4: 30}, unshared=9.5, shallow=20)
    video["group"], video["modality"] = "v", "video"
    for suffix in ("", "_ci_low", "_ci_high"):  # video rows carry fvd_domain; make fd_domain absurd to prove it is unused
        video[f"fvd_domain{suffix}"], video[f"fd_domain{suffix}"] = video[f"fd_domain{suffix}"], np.nan
    result = audit.audit(pd.concat([image, video]), SETTINGS)
    by_group = {}
    for c in result["claims"]:
        by_group.setdefault(c["group"], set()).add((c["metric"], c["verdict"]))
    assert {m for m, _ in by_group["g"]} == {"fd_domain"} and {m for m, _ in by_group["v"]} == {"fvd_domain"}
    assert by_group["g"] == {(m.replace("fvd", "fd"), v) for m, v in by_group["v"]}  # same numbers, same verdicts


def test_reference_skips_metrics_a_modality_lacks(tmp_path):
    paths = []
    for seed in (0, 1, 2):
        image = seed_metrics(seed)
        video = pd.DataFrame([{"run": f"video_diffusion-elt-XS-2x3-s{seed}", "loops_eval": 1, "fvd": 300.0 + seed,
                               "fvd_domain": 20.0 + seed, "class_accuracy": 0.8}])
        paths.append(tmp_path / f"m{seed}.csv")
        pd.concat([image, video]).to_csv(paths[-1], index=False)
    ref = build_reference([str(p) for p in paths], 0, 3.0, "x", {})
    assert set(ref["entries"]["video_diffusion-elt-XS-2x3-s0"]["1"]) == {"fvd", "fvd_domain", "class_accuracy"}
    assert set(ref["entries"]["masked-elt-XS-2x3-s0"]["1"]) == {"fid", "fd_domain", "kid", "class_accuracy"}
    assert check(ref, pd.read_csv(paths[0]))[1]
