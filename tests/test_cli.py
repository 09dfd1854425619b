"""The command line: help, describe, train/sample round trip, and one-line errors for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from elt.codecs import tokenizer

from .conftest import TINY, deep_update


def elt(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "elt.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def write_cfg(path, **overrides):
    path.write_text(yaml.safe_dump(deep_update(TINY, overrides)))
    return path


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_explains_every_subcommand():
    out = elt("--help").stdout
    for cmd in ("train", "sample", "describe"):
        assert cmd in out
    sample_help = elt("sample", "--help").stdout
    for option in ("--checkpoint", "--loops", "--num", "--seed", "--out"):
        assert option in sample_help


def test_describe_reports_exact_accounting(tmp_path):
    cfgs = [
        write_cfg(tmp_path / f"{fam}.yaml", run=fam, model={"family": fam, "n_unique": 2, "loops": 3})
        for fam in ("elt", "unshared")
    ]
    result = elt("describe", "--config", *cfgs)
    assert result.returncode == 0, result.stderr
    elt_d, unshared_d = json.loads(result.stdout)
    for key in (
        "run",
        "family",
        "generator",
        "width",
        "n_unique",
        "loops_train",
        "unique_params",
        "total_params",
        "gflops_per_forward",
        "gflops_per_sample",
    ):
        assert key in elt_d
    assert elt_d["generator"] == "masked" and elt_d["family"] == "elt"
    assert list(elt_d["gflops_per_forward"]) == ["1", "2", "3"] and list(unshared_d["gflops_per_forward"]) == ["1"]
    assert elt_d["gflops_per_forward"]["3"] == pytest.approx(unshared_d["gflops_per_forward"]["1"])
    assert elt_d["gflops_per_sample"]["3"] == pytest.approx(
        4 * elt_d["gflops_per_forward"]["3"]
    )  # 4 steps, no guidance
    assert elt_d["total_params"] == unshared_d["unique_params"]


def test_train_then_sample_several_loop_counts(tmp_path):
    cfg = write_cfg(tmp_path / "c.yaml", train={"steps": 5})
    assert elt("train", "--config", cfg, "--out", tmp_path / "run", "--quiet").returncode == 0
    result = elt(
        "sample",
        "--checkpoint",
        tmp_path / "run/checkpoint.pt",
        "--loops",
        "1,4",
        "--num",
        6,
        "--out",
        tmp_path / "s_L{loops}.npz",
    )
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "s_L4.npz") as f:
        assert f["samples"].shape == (6, 1, 8, 8) and f["samples"].dtype == np.uint8
        assert list(f["labels"]) == [0, 1, 2, 3, 4, 5]
        assert json.loads(str(f["meta"]))["loops"] == 4


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        ({"model": {"widht": "XS"}}, ["unknown config key 'model.widht'", "fix the spelling"]),
        ({"train": {"steps": "many"}}, ["'train.steps' must be int"]),
        ({"model": {"loops": 0}}, ["'model.loops' is 0", "at least 1"]),
        ({"model": {"family": "recurrent"}}, ["'model.family'", "use one of"]),
        ({"model": {"activation": "relu"}}, ["'model.activation'", "use one of"]),
        ({"data": {"dataset": "folder", "path": "/nonexistent"}}, ["does not exist", "data.path"]),
        ({"data": {"dataset": "ucf101"}}, ["'ucf101' but data.path is empty", "UCF-101 root"]),
        ({"data": {"dataset": "ucf101", "path": "/nonexistent", "channels": 3}}, ["classInd.txt", "is missing"]),
        ({"data": {"dataset": "moving_digits", "image_size": 6}}, ["image_size=6 is smaller", "use at least 8"]),
        ({"data": {"dataset": "moving_digits", "frames": 0}}, ["'data.frames' is 0", "at least 1"]),
        ({"codec": {"tokens": "t.npz"}}, ["codec.tokenizer is not", "name the tokenizer"]),
        ({"codec": {"tokenizer": "/nonexistent.pt"}}, ["tokenizer '/nonexistent.pt' does not exist", "elt tokenizer"]),
        (
            {
                "model": {"generator": "diffusion", "patch_size": 4, "patch_time": 3},
                "data": {"dataset": "moving_digits", "image_size": 12},
            },
            ["does not divide the 16x12x12 input", "model.patch_time"],
        ),
    ],
)
def test_bad_config_gets_one_line_error(tmp_path, overrides, fragments):
    cfg = write_cfg(tmp_path / "c.yaml", **overrides)
    result = elt("train", "--config", cfg, "--out", tmp_path / "run", "--quiet")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run").exists()


def test_empty_image_folder(tmp_path):
    (tmp_path / "imgs/cat").mkdir(parents=True)
    (tmp_path / "imgs/cat/notes.txt").write_text("no images here")
    cfg = write_cfg(tmp_path / "c.yaml", data={"dataset": "folder", "path": str(tmp_path / "imgs")})
    result = elt("train", "--config", cfg, "--out", tmp_path / "run", "--quiet")
    assert_one_line_error(result, "has no images", "root/<class>/")
    assert not (tmp_path / "run").exists()


def test_missing_and_corrupt_checkpoint(tmp_path):
    result = elt("sample", "--checkpoint", tmp_path / "nope.pt", "--loops", "1", "--out", tmp_path / "s.npz")
    assert_one_line_error(result, "does not exist", "elt train")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    result = elt("sample", "--checkpoint", bad, "--loops", "1", "--out", tmp_path / "s.npz")
    assert_one_line_error(result, "corrupt", "re-run 'elt train'")
    assert not (tmp_path / "s.npz").exists()


def test_bad_loop_counts(tmp_path):
    result = elt("sample", "--checkpoint", tmp_path / "x.pt", "--loops", "0", "--out", tmp_path / "s.npz")
    assert_one_line_error(result, ">= 1", "--help")
    result = elt("sample", "--checkpoint", tmp_path / "x.pt", "--loops", "1,2", "--out", tmp_path / "s.npz")
    assert_one_line_error(result, "{loops}")


@pytest.mark.slow
def test_pretokenized_video_path_from_tokenizer_to_samples(tmp_path):
    """A user's path at any scale: train a tokenizer once, then masked runs on its saved tokens."""
    data = {"dataset": "moving_digits", "image_size": 12, "frames": 16}
    (tmp_path / "tok.yaml").write_text(
        yaml.safe_dump(
            {
                "data": data,
                "tokenizer": {
                    "patch": [4, 4, 4],
                    "hidden": 8,
                    "code_dim": 4,
                    "codebook": 16,
                    "steps": 5,
                    "batch_size": 4,
                },
            }
        )
    )
    result = elt("tokenizer", "--config", tmp_path / "tok.yaml", "--out", tmp_path / "tok")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["token_grid"] == [4, 3, 3]
    codec = {"tokenizer": str(tmp_path / "tok/tokenizer.pt"), "tokens": str(tmp_path / "tok/train_tokens.npz")}
    cfg = write_cfg(tmp_path / "c.yaml", data=data, codec=codec, train={"steps": 3})
    assert elt("train", "--config", cfg, "--out", tmp_path / "run", "--quiet").returncode == 0
    result = elt(
        "sample",
        "--checkpoint",
        tmp_path / "run/checkpoint.pt",
        "--loops",
        "1,3",
        "--num",
        "4",
        "--out",
        tmp_path / "s{loops}.npz",
    )
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "s3.npz") as f:
        assert f["samples"].shape == (4, 16, 1, 12, 12)
    wrong = write_cfg(tmp_path / "w.yaml", data=dict(data, image_size=16), codec=codec, train={"steps": 3})
    assert_one_line_error(elt("train", "--config", wrong, "--out", tmp_path / "run2", "--quiet"), "another clip shape")
    other = tmp_path / "other_tokenizer.pt"  # a tokenizer of the same layout that did not make these tokens
    tokenizer.save(tokenizer.VQTokenizer(tokenizer.load(tmp_path / "tok/tokenizer.pt").cfg), other, {})
    stranger = write_cfg(tmp_path / "o.yaml", data=data, codec=dict(codec, tokenizer=str(other)), train={"steps": 3})
    assert_one_line_error(
        elt("train", "--config", stranger, "--out", tmp_path / "run3", "--quiet"), "another tokenizer"
    )
    assert not (tmp_path / "run2").exists() and not (tmp_path / "run3").exists()


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).parent.parent.glob("config/examples/elt_*.yaml")), ids=lambda p: p.stem
)
def test_example_run_configs_are_valid(path):
    from elt import config
    from elt.runs import assemble

    cfg = config.load(path)
    assert assemble(cfg).net_cfg.loops == cfg.model.loops


def test_a_loss_that_becomes_nan_stops_training_with_one_line_and_no_state(tmp_path):
    cfg = write_cfg(tmp_path / "c.yaml", train={"lr": 1e30, "grad_clip": 1e30, "warmup_steps": 1})
    result = elt("train", "--config", cfg, "--out", tmp_path / "run", "--quiet")
    assert_one_line_error(result, "loss became nan at step", "lower train.lr")
    assert not [p for p in (tmp_path / "run").glob("*") if p.suffix in (".pt", ".json")]


def ucf_cfg(tmp_path, root, **data):
    """A tiny video DiT on a UCF-101-shaped folder."""
    return write_cfg(
        tmp_path / "ucf.yaml",
        model={"generator": "diffusion", "patch_size": 4, "patch_time": 2},
        data={"dataset": "ucf101", "path": str(root), "channels": 3, "image_size": 16, "frames": 4, **data},
    )


def test_unreadable_or_short_videos_get_one_line_naming_the_file(tmp_path, ucf):
    result = elt("train", "--config", ucf_cfg(tmp_path, ucf, frames=20), "--out", tmp_path / "run", "--quiet")
    assert_one_line_error(result, "fewer than 20 frames")
    (ucf / "Basketball/v_Basketball_g01_c01.avi").write_bytes(b"not a video")
    result = elt("train", "--config", ucf_cfg(tmp_path, ucf), "--out", tmp_path / "run", "--quiet")
    assert_one_line_error(result, "v_Basketball_g01_c01.avi", "cannot be decoded")
    assert not (tmp_path / "run").exists()
