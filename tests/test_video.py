"""Video data: the moving-digits suite and UCF-101 reading of .avi files the test writes."""

import numpy as np
import pytest
import torch

from elt.config import DataConfig
from elt.data import datasets as data
from elt.data import video
from elt.errors import UserError


def digit_stack(n=5):
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.round(d.images[:n] * 255 / 16).astype(np.uint8), d.target[:n]


def test_moving_digits_are_deterministic_and_keep_the_digit():
    digits, _ = digit_stack()
    a = video.moving_digits(digits, frames=16, canvas=16, seed=0)
    assert a.shape == (5, 16, 1, 16, 16) and a.dtype == np.uint8
    assert np.array_equal(a, video.moving_digits(digits, 16, 16, seed=0))
    assert not np.array_equal(a, video.moving_digits(digits, 16, 16, seed=1))
    for i in range(5):  # every frame holds the whole digit (class-correct), and it moves
        for t in range(16):
            assert a[i, t].sum() == digits[i].astype(np.int64).sum()
        assert not np.array_equal(a[i, 0], a[i, 1])


def test_moving_digits_need_room():
    digits, _ = digit_stack()
    with pytest.raises(UserError, match="smaller than"):
        video.moving_digits(digits, 4, 6, 0)


def test_ucf101_reads_official_layout(ucf):
    clips, labels, classes, windows = video.read_ucf101(ucf, "train", 1, frames=4, stride=2, size=16)
    assert clips.shape == (2, 4, 3, 16, 16) and clips.dtype == np.uint8
    assert list(labels) == [0, 1] and classes == ["ApplyEyeMakeup", "Basketball"] and windows is None
    test_clips, test_labels, _, _ = video.read_ucf101(ucf, "test", 1, frames=4, stride=2, size=16)
    assert len(test_clips) == 2 and not np.array_equal(test_clips, clips)


def test_ucf101_bad_inputs_name_the_file(ucf):
    with pytest.raises(UserError, match="fewer than 20 frames"):
        video.read_ucf101(ucf, "train", 1, frames=20, stride=1, size=16)
    (ucf / "Basketball/v_Basketball_g01_c01.avi").write_bytes(b"not a video")
    with pytest.raises(UserError, match="v_Basketball_g01_c01.avi.*cannot be decoded"):
        video.read_ucf101(ucf, "train", 1, frames=4, stride=1, size=16)
    (ucf / "Basketball/v_Basketball_g01_c01.avi").unlink()
    with pytest.raises(UserError, match="missing"):
        video.read_ucf101(ucf, "train", 1, frames=4, stride=1, size=16)
    with pytest.raises(UserError, match="trainlist02.txt"):
        video.read_ucf101(ucf, "train", 2, frames=4, stride=1, size=16)


def test_moving_digits_dataset_splits_like_the_digits_and_keeps_each_clip():
    cfg = DataConfig(dataset="moving_digits", image_size=12, frames=16)
    train, held = data.load(cfg, "train"), data.load(cfg, "held_out")
    digits = data.load(DataConfig(dataset="digits"), "held_out")
    assert train.images.shape == (1347, 16, 1, 12, 12) and held.images.shape == (450, 16, 1, 12, 12)
    assert held.split_sha == digits.split_sha and list(held.labels) == list(digits.labels)
    # the brightest 8x8 window of every frame holds the clip's digit (class-correct), whatever its position
    for clip, digit in zip(held.images[:20], digits.images[:20, 0, 0]):
        for frame in clip[:, 0]:
            windows = np.lib.stride_tricks.sliding_window_view(frame, (8, 8))
            assert (windows == digit).all(axis=(2, 3)).any()
    again = data.load(cfg, "held_out")
    assert np.array_equal(again.images, held.images)  # deterministic
    moved = held.images[:, 1:] != held.images[:, :-1]
    assert moved.any(axis=(1, 2, 3, 4)).all()  # every clip moves


def test_ucf101_as_a_dataset_uses_the_official_split(ucf):
    cfg = DataConfig(dataset="ucf101", path=str(ucf), channels=3, image_size=16, frames=4, frame_stride=2)
    train, held = data.load(cfg, "train"), data.load(cfg, "held_out")
    assert train.images.shape == (2, 4, 3, 16, 16) and held.classes == ["ApplyEyeMakeup", "Basketball"]
    assert held.split_sha == data.load(cfg, "held_out").split_sha and list(held.labels) == [0, 1]


def test_frames_are_resized_on_the_short_side_then_cropped_as_magvit_or_cropped_first():
    from PIL import Image

    frame = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8))
    short = video.square_frame(frame, 16, "short_side")
    expected = np.asarray(frame.resize((20, 16), Image.Resampling.BILINEAR))[:, 2:18].transpose(2, 0, 1)
    assert np.array_equal(short, expected)
    cropped = video.square_frame(frame, 16, "crop_square")
    assert np.array_equal(
        cropped, np.asarray(frame.crop((4, 0, 36, 32)).resize((16, 16), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    )
    assert not np.array_equal(short, cropped)


def test_every_window_of_a_video_is_a_slice_of_its_frames(ucf):
    path = ucf / "Basketball/v_Basketball_g01_c01.avi"
    frames = video.read_frames(path, 1, 16, "short_side")
    assert frames.shape == (12, 3, 16, 16)
    windows = video.read_windows(path, 4, 1, 16, "short_side", step=2)
    assert windows.shape == (5, 4, 3, 16, 16)
    for k in range(5):
        assert np.array_equal(windows[k], frames[2 * k : 2 * k + 4])
    assert np.array_equal(video.read_clip(path, 4, 1, 16), frames[:4])
    first, _, _, (rows, offsets) = video.read_ucf101(ucf, "train", 1, frames=4, stride=1, size=16, window_step=3)
    assert list(offsets) == [0, 3, 6] and np.array_equal(rows[offsets[:-1]], first)
    with pytest.raises(UserError, match="fewer than 13 frames at stride 1.*on_bad_file: skip"):
        video.read_windows(path, 13, 1, 16, "short_side", step=1)


@pytest.mark.slow
def test_training_draws_a_random_clip_of_every_video_from_memory_and_shards_alike(ucf, tmp_path, monkeypatch):
    from elt import train as train_mod
    from elt.data import shards
    from elt.data.datasets import data_shape
    from elt.runs import assemble

    from .conftest import assert_same_training_state, interrupt_training_at, tiny_cfg

    data = {"dataset": "ucf101", "path": str(ucf), "channels": 3, "image_size": 8, "frames": 4}
    windows = {**data, "windows": "all", "window_step": 2}
    run = {"train": {"steps": 10, "checkpoint_every": 4}}
    cfg = tiny_cfg(data=windows, **run)
    sharded = tiny_cfg(data=windows, codec={"shards": str(tmp_path / "shards")}, **run)
    shards.encode(sharded, "train", tmp_path / "shards", shard_size=1, progress=False)
    codec = assemble(cfg, data_shape(cfg), 2).codec
    opened = shards.ShardSet(tmp_path / "shards", sharded, codec)
    every = video.read_windows(ucf / "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 4, 1, 8, "short_side", 2)
    assert list(opened.offsets_of_windows) == [0, 5, 10]
    assert torch.equal(opened[torch.arange(5)], codec.encode(every))

    drawn, real = [], train_mod.global_batch
    monkeypatch.setattr(train_mod, "global_batch", lambda x, idx, *a: drawn.append(idx) or real(x, idx, *a))
    in_memory = train_mod.train(cfg, tmp_path / "memory", progress=False)
    assert set(torch.cat(drawn).tolist()) == set(range(10))  # every clip of both videos is drawn
    monkeypatch.undo()
    streamed = train_mod.train(sharded, tmp_path / "streamed", progress=False)
    assert streamed["loss_history"] == in_memory["loss_history"]
    first = train_mod.train(tiny_cfg(data=data, **run), tmp_path / "first", progress=False)
    assert first["loss_history"] != in_memory["loss_history"]

    interrupt_training_at(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(sharded, tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    train_mod.train(sharded, tmp_path / "resumed", progress=False)
    assert_same_training_state(tmp_path / "streamed", tmp_path / "resumed")


def test_windows_are_for_videos_longer_than_a_clip():
    from .conftest import tiny_cfg

    with pytest.raises(UserError, match="data.windows all cuts clips from videos longer than a clip"):
        tiny_cfg(data={"dataset": "moving_digits", "windows": "all"})
