"""Pre-encoded shards: ImageNet-shaped folders streamed, encoded once per codec, resumed after a kill,
spread over ranks, refused when another codec or split made them, and trained from like in-memory data."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from elt import config
from elt import train as train_mod
from elt.data import datasets as data
from elt.data import shards
from elt.errors import UserError
from elt.runtime import torchrun_command

from .conftest import assert_same_training_state, count_steps, interrupt_training_at, tiny_cfg

CLASSES = ("n01", "n02", "n03")


def imagenet_folder(root, per_class=(5, 2), seed=0):
    """train/ and val/ with one folder per class of RGB JPEGs and PNGs of assorted sizes."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "val"), per_class):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for k in range(count):
                h, w = rng.integers(10, 40, 2)
                suffix = ".JPEG" if k % 2 else ".png"
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                    root / split / c / f"{c}_{k}{suffix}"
                )
    return root


def imagenet_cfg(root, out, **data_overrides):
    return tiny_cfg(
        data={"dataset": "imagenet", "path": str(root), "channels": 3, "image_size": 8, **data_overrides},
        codec={"shards": str(out)},
    )


def test_adm_center_crop_halves_then_resizes_the_short_side_and_crops_the_center():
    square = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    assert np.array_equal(data.adm_center_crop(square, 8), np.asarray(square))  # already the size: untouched
    wide = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 50, 3), dtype=np.uint8))
    crop = data.adm_center_crop(wide, 8)
    # 20x50 -> box halving to 10x25 (20 >= 16) -> short side to 8: 8x20 -> center 8 columns from 6
    halved = wide.resize((25, 10), Image.Resampling.BOX).resize((20, 8), Image.Resampling.BICUBIC)
    assert crop.shape == (8, 8, 3) and np.array_equal(crop, np.asarray(halved)[:, 6:14])


def test_imagenet_streams_in_class_order_and_is_never_loaded_whole(tmp_path):
    root = imagenet_folder(tmp_path / "imagenet")
    cfg = imagenet_cfg(root, tmp_path / "shards")
    stream = data.Stream(cfg.data, "train")
    assert len(stream) == 15 and stream.classes == list(CLASSES) and list(stream.labels) == [0] * 5 + [1] * 5 + [2] * 5
    assert stream.read(7).shape == (1, 3, 8, 8) and stream.read(7).dtype == np.uint8
    assert len(data.Stream(cfg.data, "held_out")) == 6
    with pytest.raises(UserError, match="never loaded whole.*elt encode"):
        data.load(cfg.data, "train")
    with pytest.raises(UserError, match="trains from pre-encoded shards"):
        tiny_cfg(data={"dataset": "imagenet", "path": str(root), "channels": 3})


def test_encoding_writes_shards_and_a_manifest_that_match_the_stream(tmp_path):
    root = imagenet_folder(tmp_path / "imagenet")
    cfg = imagenet_cfg(root, tmp_path / "shards")
    manifest = shards.encode(cfg, "train", tmp_path / "shards", shard_size=4, batch_size=3, progress=False)
    assert manifest["total"] == 15 and [s["count"] for s in manifest["shards"]] == [4, 4, 4, 3]
    assert manifest["codec"] == {"codec": "pixel_levels", "levels": 17} and manifest["data"]["split"] == "train"
    opened = shards.ShardSet(tmp_path / "shards", cfg, shards_codec(cfg))
    stream, levels = data.Stream(cfg.data, "train"), shards_codec(cfg)
    idx = torch.tensor([14, 0, 5, 5, 9])
    expected = levels.encode(np.stack([stream.read(int(i)) for i in idx]))
    assert torch.equal(opened[idx], expected) and opened[idx].dtype == torch.long
    assert np.array_equal(opened.labels, stream.labels)
    assert not list((tmp_path / "shards").glob(".*"))  # no temporary files left behind


def shards_codec(cfg):
    from elt.data.datasets import data_shape
    from elt.runs import assemble

    return assemble(cfg, data_shape(cfg), 3).codec


def test_a_killed_encoding_resumes_at_the_next_shard(tmp_path, monkeypatch):
    root = imagenet_folder(tmp_path / "imagenet")
    cfg, out = imagenet_cfg(root, tmp_path / "shards"), tmp_path / "shards"
    real_read, reads = data.Stream.read, []

    def read_until_killed(self, i):
        reads.append(i)
        if i == 9:
            raise KeyboardInterrupt  # killed while encoding the third shard
        return real_read(self, i)

    monkeypatch.setattr(data.Stream, "read", read_until_killed)
    with pytest.raises(KeyboardInterrupt):
        shards.encode(cfg, "train", out, shard_size=4, progress=False)
    assert sorted(p.name for p in out.glob("shard-*.json")) == ["shard-00000.json", "shard-00001.json"]
    assert not (out / shards.MANIFEST).exists()
    with pytest.raises(UserError, match="an unfinished encoding"):
        shards.ShardSet(out, cfg, shards_codec(cfg))
    monkeypatch.setattr(data.Stream, "read", lambda self, i: reads.append(i) or real_read(self, i))
    reads.clear()
    manifest = shards.encode(cfg, "train", out, shard_size=4, progress=False)
    assert reads == list(range(8, 15)) and manifest["total"] == 15
    fresh = shards.encode(cfg, "train", tmp_path / "fresh", shard_size=4, progress=False)
    for name in [s["name"] for s in fresh["shards"]]:
        assert np.array_equal(np.load(out / f"{name}.x.npy"), np.load(tmp_path / f"fresh/{name}.x.npy"))


def test_an_unreadable_image_stops_or_is_skipped_with_a_record(tmp_path):
    root = imagenet_folder(tmp_path / "imagenet")
    bad = root / "train/n02/n02_1.JPEG"
    bad.write_bytes(b"not an image")
    with pytest.raises(UserError, match="n02_1.JPEG' cannot be read.*data.on_bad_file: skip"):
        shards.encode(imagenet_cfg(root, tmp_path / "stop"), "train", tmp_path / "stop", shard_size=4, progress=False)
    assert not (tmp_path / "stop" / shards.MANIFEST).exists()
    cfg = imagenet_cfg(root, tmp_path / "skip", on_bad_file="skip")
    manifest = shards.encode(cfg, "train", tmp_path / "skip", shard_size=4, progress=False)
    assert manifest["total"] == 14 and [s["example"] for s in manifest["skipped"]] == [str(bad)]
    opened = shards.ShardSet(tmp_path / "skip", cfg, shards_codec(cfg))
    assert len(opened) == 14 and list(opened.labels).count(1) == 4


def test_shards_of_another_codec_split_or_data_setting_are_refused(tmp_path):
    root = imagenet_folder(tmp_path / "imagenet")
    cfg, out = imagenet_cfg(root, tmp_path / "shards"), tmp_path / "shards"
    shards.encode(cfg, "train", out, shard_size=8, progress=False)
    other_levels = imagenet_cfg(root, out)
    other_levels.data.levels = 9
    with pytest.raises(UserError, match="written for another run \\(codec levels: 17 there, 9 here\\)"):
        shards.ShardSet(out, other_levels, shards_codec(other_levels))
    with pytest.raises(UserError, match="data split: 'train' there, 'held_out' here"):
        shards.ShardSet(out, cfg, shards_codec(cfg), split="held_out")
    bigger = imagenet_cfg(root, out, image_size=16)
    with pytest.raises(UserError, match="holds shards of another encoding \\(data image_size: 8 there, 16 here\\)"):
        shards.encode(bigger, "train", out, progress=False)


def test_training_from_shards_follows_training_in_memory_exactly(tmp_path, monkeypatch, capsys):
    """A class-per-folder data set, once loaded whole and once pre-encoded: the same draws, the same run;
    streamed training interrupted and resumed ends where the uninterrupted one does."""
    root = tmp_path / "folder"
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for k in range(8):
            Image.fromarray(np.random.default_rng(k + 10 * len(c)).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                root / c / f"{k}.png"
            )
    folder = {"dataset": "folder", "path": str(root), "channels": 3, "image_size": 8}
    in_memory = train_mod.train(
        tiny_cfg(data=folder, train={"steps": 12, "checkpoint_every": 5}), tmp_path / "memory", progress=False
    )
    cfg = tiny_cfg(data=folder, train={"steps": 12, "checkpoint_every": 5}, codec={"shards": str(tmp_path / "shards")})
    shards.encode(cfg, "train", tmp_path / "shards", shard_size=5, progress=False)
    streamed = train_mod.train(cfg, tmp_path / "streamed", progress=False)
    assert streamed["loss_history"] == in_memory["loss_history"] and streamed["split_sha"] == in_memory["split_sha"]
    assert streamed["shards"] == {"total": 18, "skipped": []}

    interrupt_training_at(monkeypatch, 9)  # streamed training killed after its checkpoint at step 5
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    steps = count_steps(monkeypatch)
    capsys.readouterr()
    train_mod.train(cfg, tmp_path / "resumed", progress=False)
    assert "resuming tiny from step 5 (progress.pt)" in capsys.readouterr().out and steps["n"] == 7
    assert_same_training_state(tmp_path / "streamed", tmp_path / "resumed")


@pytest.mark.distributed
def test_two_ranks_encode_the_same_shards_as_one_process(tmp_path):
    root = imagenet_folder(tmp_path / "imagenet")
    cfg = imagenet_cfg(root, tmp_path / "two")
    (tmp_path / "run.json").write_text(json.dumps(cfg.to_dict()))
    done = subprocess.run(
        torchrun_command(
            2,
            "encode",
            "--config",
            str(tmp_path / "run.json"),
            "--shard-size",
            "4",
            "--quiet",
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    one = shards.encode(cfg, "train", tmp_path / "one", shard_size=4, progress=False)
    two = json.loads((tmp_path / "two" / shards.MANIFEST).read_text())
    assert two["world_size"] == 2 and two["shards"] == one["shards"]
    for s in one["shards"]:
        assert np.array_equal(
            np.load(tmp_path / f"one/{s['name']}.x.npy"), np.load(tmp_path / f"two/{s['name']}.x.npy")
        )


def test_the_cli_encodes_into_the_configs_shard_folder_and_says_what_it_wrote(tmp_path):
    root = imagenet_folder(tmp_path / "imagenet")
    cfg = imagenet_cfg(root, tmp_path / "shards")
    (tmp_path / "run.yaml").write_text(json.dumps(cfg.to_dict()))
    done = subprocess.run(
        [sys.executable, "-m", "elt.cli", "encode", "--config", str(tmp_path / "run.yaml"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total"] == 15 and (tmp_path / "shards" / shards.MANIFEST).is_file()
    (tmp_path / "imagenet/val/n01").rename(tmp_path / "imagenet/val/other")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "elt.cli",
            "encode",
            "--config",
            str(tmp_path / "run.yaml"),
            "--out",
            str(tmp_path / "again"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "different class folders" in done.stderr and not (tmp_path / "again").exists()


def test_ucf101_clips_stream_through_the_same_reader(ucf, tmp_path):
    from elt.data.video import read_clip, ucf101_index

    cfg = config.from_dict(
        {
            "data": {"dataset": "ucf101", "path": str(ucf), "channels": 3, "image_size": 8, "frames": 4},
            "codec": {"shards": str(tmp_path / "shards")},
        }
    )
    manifest = shards.encode(cfg, "train", tmp_path / "shards", shard_size=1, progress=False)
    assert manifest["total"] == 2 and manifest["shape"] == [4, 3, 8, 8] and len(manifest["shards"]) == 2
    second, _ = ucf101_index(ucf, "train", 1)[0][1]
    x = np.load(tmp_path / "shards/shard-00001.x.npy")
    assert np.array_equal(x[0], shards_codec(cfg).encode(read_clip(second, 4, 1, 8)[None])[0].numpy())


def test_a_latent_dit_trains_from_vae_shards_and_samples_images(tmp_path):
    """The paper's diffusion path end to end on a tiny VAE: ImageNet-shaped folder -> VAE latents in
    shards -> a DiT on latents -> samples decoded back to images."""
    from elt.sample import load_samples, sample

    from .test_pretrained_codecs import tiny_vae

    root = imagenet_folder(tmp_path / "imagenet")
    tiny_vae(tmp_path / "sd/vae")
    cfg = tiny_cfg(
        data={"dataset": "imagenet", "path": str(root), "channels": 3, "image_size": 16},
        model={"generator": "diffusion", "patch_size": 2},
        train={"steps": 4},
        codec={
            "pretrained": "sd_vae",
            "weights": str(tmp_path / "sd"),
            "subfolder": "vae",
            "downsampling": 2,
            "shards": str(tmp_path / "shards"),
        },
    )
    manifest = shards.encode(cfg, "train", tmp_path / "shards", shard_size=8, progress=False)
    assert manifest["kind"] == "continuous" and np.load(tmp_path / "shards/shard-00000.x.npy").shape == (8, 4, 1, 8, 8)
    train_mod.train(cfg, tmp_path / "run", progress=False)
    (path,) = sample(str(tmp_path / "run/checkpoint.pt"), [1], 3, 0, str(tmp_path / "s.npz"))
    images, labels, _ = load_samples(path)
    assert images.shape == (3, 1, 3, 16, 16) and images.dtype == np.uint8 and list(labels) == [0, 1, 2]
