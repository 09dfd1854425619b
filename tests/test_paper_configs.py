"""The paper's rows as profiles (config/paper/): every run described without data or weights, its
parameter count against the paper's, and the pipeline's one-line refusal of a protocol it lacks."""

import json
import subprocess
import sys

import pytest

from elt.cli import load_profile
from elt.harness.describe import describe_profile

from .conftest import ROOT, SNAKEMAKE, copy_repo

PAPER = sorted((ROOT / "config/paper").glob("*.yaml"))
# No single DiT width fits 1N x 32L (69M reported): the paper's parts outside the loop must be smaller
# than DiT's (README, "Paper configs").
NO_WIDTH_FITS = {"diffusion_1x32-elt-H-1x32-s0"}


def test_every_paper_row_is_a_run_within_5_percent_of_the_papers_parameter_count():
    rows = [row for path in PAPER for row in describe_profile(load_profile(str(path)))]
    assert len(rows) == 13 and all(row["paper_params"] for row in rows)
    off = {row["run"] for row in rows if abs(row["params_vs_paper"]) > 0.05}
    assert off == NO_WIDTH_FITS
    by_run = {row["run"]: row for row in rows}
    # docs/paper.md's hand counts with the project's classes
    assert round(by_run["masked_XL7x4-elt-XL-7x4-s0"]["unique_params"] / 1e6, 1) == 115.1
    assert round(by_run["masked_XL7x4-unshared-XL-7x4-s0"]["unique_params"] / 1e6, 1) == 449.9
    assert (
        by_run["masked_XL7x4-elt-XL-7x4-s0"]["gflops_per_sample"]
        == by_run["masked_XL7x4-unshared-XL-7x4-s0"]["gflops_per_sample"]
    )


def test_the_video_row_uses_the_token_grid_its_tokenizer_settings_will_give():
    (elt_row, _) = describe_profile(load_profile(str(ROOT / "config/paper/ucf101_masked.yaml")))
    assert elt_row["layout"] == "6N x 4L" and 0.9 < elt_row["unique_params"] / 76e6 < 1.05


def test_describe_takes_the_embedded_profiles_too(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "elt.cli",
            "describe",
            "--config",
            "config/default.yaml",
            "--run-configs",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "config/default.yaml: 11 runs" in done.stdout and "| masked-elt-XS-2x3-s0 | elt | 2N x 3L |" in done.stdout
    written = json.loads((tmp_path / "masked-elt-XS-2x3-s0.json").read_text())
    assert written["model"]["n_unique"] == 2 and len(list(tmp_path.iterdir())) == 11


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_each_paper_profile_prints_its_whole_job_graph_without_data_or_weights(path, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    done = subprocess.run(
        [SNAKEMAKE, "-n", "--configfile", str(path.relative_to(ROOT))], cwd=repo, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for rule in ("train", "sample_shard", "paper_metrics", "paper_table"):
        assert f"rule {rule}:" in done.stdout
    assert "rule encode:" in done.stdout  # ImageNet: with its pretrained codec; UCF-101: every window, tokenized


def test_a_paper_profile_without_its_data_stops_at_the_first_job_naming_the_key(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    (repo / "config/cpu.yaml").write_text("runtime: {device: cpu}\n")  # this machine has no GPU
    done = subprocess.run(
        [SNAKEMAKE, "--cores", "1", "--configfile", "config/paper/imagenet_masked.yaml", "config/cpu.yaml"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    (log,) = (repo / "work/paper/imagenet_masked/logs/encode").glob("*.log")
    lines = log.read_text().strip().splitlines()
    assert lines == [
        "error: ImageNet folder 'data/imagenet/train' is missing: data.path must hold train/ and val/, one "
        "sub-folder per class"
    ]
    assert not list((repo / "work/paper/imagenet_masked/runs").glob("*/checkpoint.pt"))
