"""Datasets: the recorded stratified digits split and the class-per-folder loader."""

import numpy as np
import pytest
import torch
from PIL import Image

from elt.config import DataConfig
from elt.data import datasets as data
from elt.errors import UserError


def test_digits_split_is_stratified_fixed_and_disjoint():
    train, held = data.load(DataConfig(), "train"), data.load(DataConfig(), "held_out")
    assert len(train.labels) + len(held.labels) == 1797
    assert train.images.shape[1:] == (1, 1, 8, 8) and train.images.dtype == np.uint8
    share = np.bincount(held.labels) / np.bincount(np.concatenate([train.labels, held.labels]))
    assert share.min() > 0.2 and share.max() < 0.3
    assert train.split_sha == held.split_sha == data.load(DataConfig(), "train").split_sha
    assert data.load(DataConfig(split_seed=1), "train").split_sha != train.split_sha


def write_folder(root, channels, n_per_class=4, size=(13, 9)):
    rng = np.random.default_rng(0)
    for name in ("apple", "pear"):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            shape = (size[1], size[0], 3) if channels == 3 else (size[1], size[0])
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(
                root / name / f"{i}.{'png' if i % 2 else 'jpg'}"
            )


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_loader_resizes_grayscale_and_rgb(tmp_path, channels):
    write_folder(tmp_path, channels)
    cfg = DataConfig(dataset="folder", path=str(tmp_path), image_size=16, channels=channels, held_out_fraction=0.25)
    ds = data.load(cfg, "train")
    assert ds.classes == ["apple", "pear"]
    assert ds.images.shape == (6, 1, channels, 16, 16) and set(ds.labels) == {0, 1}


def test_unreadable_image_is_named(tmp_path):
    write_folder(tmp_path, 1)
    (tmp_path / "pear/broken.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="broken.png"):
        data.load(DataConfig(dataset="folder", path=str(tmp_path)), "train")


def test_training_data_is_the_split_in_the_codecs_space_with_its_record():
    """elt.data.source: the in-memory form holds the encoded split; its record names the split; a class
    count the config contradicts is a one-line error. (Shards and tokens: test_shards, test_tokenizer.)"""
    from elt.codecs import for_run
    from elt.data.datasets import data_shape
    from elt.data.source import training_data

    from .conftest import tiny_cfg

    cfg = tiny_cfg()
    shape = data_shape(cfg)
    codec = for_run(cfg, shape)
    source = training_data(cfg, codec, shape)
    split = data.load(cfg.data, "train")
    assert torch.equal(source.examples, codec.encode(split.images)) and np.array_equal(source.labels, split.labels)
    assert source.classes == split.classes and source.shape == shape == split.shape
    assert source.provenance() == {
        "n_train": len(split.labels),
        "split_sha": split.split_sha,
        "tokens": None,
        "shards": None,
    }
    with pytest.raises(UserError, match="data.num_classes is 7 but the data has 10 classes"):
        training_data(tiny_cfg(data={"num_classes": 7}), codec, shape)
