"""The one place training gets its data from: `training_data(cfg, codec)`.

A run's training split comes in one of three forms, chosen by its config:

- in memory (the default): the split is read whole (elt.data.datasets) and encoded once by the codec;
- pre-tokenized (codec.tokens): the VQ tokenizer's codes of the split, written by 'elt tokenizer';
- sharded (codec.shards): pre-encoded shards written by 'elt encode', memory-mapped, never read whole.

Each gives a `TrainingData`: examples indexable by a LongTensor of indices (a batch in the codec's
space), their labels, the class names, the split's hash, and what the run's record says about it.
An example may have several rows: with data.windows all, video i's clips are rows offsets[i] ..
offsets[i+1] - 1, and each draw takes one of them at random; with data.hflip every row r has a mirrored
copy at r + R (R rows in all), encoded once (a code or a latent of a mirrored image is not the mirrored
code), taken with probability 1/2. `rows_of` makes those draws from the run's generator, and only the
draws the config asks for, so a run without them keeps its random stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from elt.config import RunConfig
from elt.data import datasets
from elt.data.shards import ShardSet
from elt.data.tokens import load_tokens
from elt.errors import UserError
from elt.files import file_sha


@dataclass
class TrainingData:
    examples: torch.Tensor | ShardSet  # examples[idx] -> a batch, as the codec encodes it
    labels: np.ndarray  # int64 (N,)
    classes: list[str]
    shape: tuple[int, int, int, int]  # (T, C, H, W) of one example before encoding
    split_sha: str  # hash of the split's indices: identical splits, identical hash
    origin: dict = field(default_factory=dict)  # the pre-made data it came from, for the run's record
    offsets: np.ndarray | None = None  # data.windows all: (N + 1,) where each example's rows start
    mirrored: bool = False  # data.hflip: rows R .. 2R - 1 are rows 0 .. R - 1 mirrored

    def __len__(self) -> int:
        return len(self.labels)

    def rows_of(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The rows a batch of examples idx reads: a random clip of each (windows), mirrored or not (flips)."""
        rows = idx
        if self.offsets is not None:
            first = torch.from_numpy(self.offsets[idx.numpy()])
            counts = torch.from_numpy(self.offsets[idx.numpy() + 1]) - first
            rows = first + (torch.rand(len(idx), generator=gen, dtype=torch.float64) * counts).long()
        if self.mirrored:
            total = len(self) if self.offsets is None else int(self.offsets[-1])
            rows = rows + total * (torch.rand(len(idx), generator=gen) < 0.5)
        return rows

    def provenance(self) -> dict:
        """What a training record states about its data."""
        return {"n_train": len(self), "split_sha": self.split_sha, "tokens": None, "shards": None} | self.origin


def in_memory(cfg: RunConfig, codec) -> TrainingData:
    ds = datasets.load(cfg.data, "train")  # its examples have the config's shape (elt.config validates it)
    rows, offsets = ds.windows if ds.windows is not None else (ds.images, None)
    examples = codec.encode(rows)
    if cfg.data.hflip:
        examples = torch.cat([examples, codec.encode(datasets.mirrored(rows))])
    return TrainingData(examples, ds.labels, ds.classes, ds.shape, ds.split_sha, {}, offsets, cfg.data.hflip)


def pre_tokenized(cfg: RunConfig, shape: tuple[int, int, int, int]) -> TrainingData:
    if cfg.data.hflip or cfg.data.windows == "all":
        raise UserError(
            "data.hflip and data.windows all need the mirrored examples or every clip encoded, which codec.tokens "
            "files do not hold: use codec.shards ('elt encode' writes them) or set them off"
        )
    tokens, labels, classes, split_sha = load_tokens(cfg.codec.tokens, cfg.codec.tokenizer, shape)
    return TrainingData(tokens, labels, classes, shape, split_sha, {"tokens": file_sha(cfg.codec.tokens)})


def sharded(cfg: RunConfig, codec, shape: tuple[int, int, int, int]) -> TrainingData:
    shards = ShardSet(cfg.codec.shards, cfg, codec)
    origin = {"shards": {k: shards.manifest[k] for k in ("total", "skipped")}}
    return TrainingData(
        shards,
        shards.labels,
        shards.classes,
        shape,
        shards.split_sha,
        origin,
        shards.offsets_of_windows,
        cfg.data.hflip,
    )


def training_data(cfg: RunConfig, codec, shape: tuple[int, int, int, int]) -> TrainingData:
    """The run's training split in its codec's space; `shape` is one example's (T, C, H, W) as the
    config describes it (elt.data.datasets.data_shape)."""
    if cfg.codec.shards:
        source = sharded(cfg, codec, shape)
    elif cfg.codec.tokens:
        source = pre_tokenized(cfg, shape)
    else:
        source = in_memory(cfg, codec)
    if cfg.data.num_classes and cfg.data.num_classes != len(source.classes):
        raise UserError(
            f"data.num_classes is {cfg.data.num_classes} but the data has {len(source.classes)} classes: fix "
            "data.num_classes or data.path"
        )
    return source
