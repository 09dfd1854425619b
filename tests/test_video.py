"""Video data: the moving-digits suite and UCF-101 reading of .avi files the test writes."""

import numpy as np
import pytest

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
    clips, labels, classes = video.read_ucf101(ucf, "train", 1, frames=4, stride=2, size=16)
    assert clips.shape == (2, 4, 3, 16, 16) and clips.dtype == np.uint8
    assert list(labels) == [0, 1] and classes == ["ApplyEyeMakeup", "Basketball"]
    test_clips, test_labels, _ = video.read_ucf101(ucf, "test", 1, frames=4, stride=2, size=16)
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
