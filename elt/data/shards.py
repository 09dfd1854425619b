"""Pre-encoded training data in shards: each data set is read and encoded once per codec, then streamed.

`encode` reads a split one example at a time (elt.data.datasets.Stream), encodes it with the run's codec
and writes shard k (examples k*S .. (k+1)*S - 1 of the split's fixed order) as two .npy files and a
sidecar, each written atomically, the sidecar last. A killed encoding resumes at the first shard
without a sidecar. Under torchrun rank r encodes shards r, r + ranks, ... on its own GPU; rank 0
writes the manifest once every shard is done. Nothing but the manifest says a folder is complete.

`ShardSet` opens a complete folder for training: data memory-mapped (never read whole), labels in
memory, and the manifest checked against the run: shards of another codec, data set or split are
refused. Batches are gathered from the memory maps at the indices the run's generator draws, so
training from shards follows the same draws as training in memory, and resumes exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from elt.codecs import for_run
from elt.config import RunConfig
from elt.data import datasets as data
from elt.data.datasets import data_shape, mirrored
from elt.errors import UnreadableExample, UserError
from elt.files import atomic_path, write_json
from elt.provenance import provenance
from elt.runtime import Runtime

FORMAT = "elt-shards-1"
MANIFEST = "manifest.json"
PLAN = "encoding.json"  # what this folder is being encoded as: written first, checked on resume


def data_identity(cfg: RunConfig, split: str) -> dict:
    """What decides which examples a split holds and how they look (not where the data lives)."""
    d = cfg.data
    keys = [
        "dataset",
        "image_size",
        "channels",
        "held_out_fraction",
        "split_seed",
        "frames",
        "frame_stride",
        "fold",
        "on_bad_file",
        "hflip",
        "resize",
        "windows",
        "window_step",
    ]
    return {"split": split, **{k: getattr(d, k) for k in keys}}


def identity(cfg: RunConfig, codec, split: str) -> dict:
    return {"format": FORMAT, "data": data_identity(cfg, split), "codec": codec.identity()}


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _describe_difference(found: dict, wanted: dict) -> str:
    for part in ("format", "data", "codec"):
        if found.get(part) != wanted.get(part):
            if isinstance(wanted.get(part), dict) and isinstance(found.get(part), dict):
                key = next(
                    k for k in sorted(set(found[part]) | set(wanted[part])) if found[part].get(k) != wanted[part].get(k)
                )
                return f"{part} {key}: {found[part].get(key)!r} there, {wanted[part].get(key)!r} here"
            return f"{part}: {found.get(part)!r} there, {wanted.get(part)!r} here"
    return "nothing"


def encodes_every_clip(cfg: RunConfig, split: str) -> bool:
    """Whether a split's shards hold every clip of each video (training with data.windows all) or one example."""
    return cfg.data.windows == "all" and split == "train"


class BatchEncoder:
    """Examples encoded batch_size at a time as they are read (a shard of every window of 256 videos would
    not fit in memory raw), then stored as one array of the shard's dtype (int32 codes, float32 values).
    transform: applied to each batch before encoding (the mirrored copies)."""

    def __init__(self, codec, batch_size: int, transform=None):
        self.codec, self.batch_size, self.transform = codec, batch_size, transform
        self.pending, self.coded = [], []

    def add(self, examples: np.ndarray) -> None:
        self.pending.extend(examples)
        while len(self.pending) >= self.batch_size:
            self._encode(self.pending[: self.batch_size])
            del self.pending[: self.batch_size]

    def _encode(self, examples: list[np.ndarray]) -> None:
        batch = np.stack(examples)
        self.coded.append(self.codec.encode(self.transform(batch) if self.transform else batch))

    def result(self) -> np.ndarray:
        if self.pending:
            self._encode(self.pending)
            self.pending = []
        x = torch.cat(self.coded).numpy() if self.coded else np.zeros((0,), np.float32)
        return x.astype(np.int32) if self.codec.kind == "tokens" else x.astype(np.float32)


def encode(
    cfg: RunConfig, split: str, out, shard_size: int = 1024, batch_size: int = 64, progress: bool = True
) -> dict:
    """Encode a split of cfg's data set with cfg's codec into shard folder `out`; returns the manifest."""
    if split not in data.SPLITS:
        raise UserError(f"unknown split {split!r}: use one of {', '.join(data.SPLITS)}")
    if shard_size < 1 or batch_size < 1:
        raise UserError(f"--shard-size {shard_size} and --batch-size {batch_size} must be at least 1")
    out = Path(out)
    runtime = Runtime(cfg.runtime)
    runtime.join()
    stream = data.Stream(cfg.data, split)
    codec = for_run(cfg, data_shape(cfg))
    wanted = identity(cfg, codec, split)
    for name in (MANIFEST, PLAN):
        if (out / name).is_file():
            found = json.loads((out / name).read_text())
            if {k: found.get(k) for k in wanted} != wanted:
                raise UserError(
                    f"{str(out)!r} holds shards of another encoding ({_describe_difference(found, wanted)}): "
                    "use another --out, or delete the folder to encode afresh"
                )
            if name == MANIFEST:
                return found  # complete: nothing to do
    out.mkdir(parents=True, exist_ok=True)
    runtime.barrier()  # every rank has checked the folder before rank 0 claims it
    if runtime.is_main:
        write_json(out / PLAN, {**wanted, "shard_size": shard_size})
    codec.to(runtime.device)  # a pretrained codec encodes on the rank's device
    count = math.ceil(len(stream) / shard_size)
    mine = [k for k in range(runtime.rank, count, runtime.world_size) if not (out / f"{shard_name(k)}.json").is_file()]
    bar = tqdm(total=len(mine), desc=f"encoding {split}", unit="shard", disable=not progress or not runtime.is_main)
    every_clip = encodes_every_clip(cfg, split)  # training's windows; held-out: first clips
    for k in mine:
        labels, names, skipped, windows = [], [], [], []
        coded = BatchEncoder(codec, batch_size)
        flipped = BatchEncoder(codec, batch_size, mirrored) if cfg.data.hflip else None  # for training's flips
        for i in range(k * shard_size, min((k + 1) * shard_size, len(stream))):
            try:
                clips = stream.read_windows(i) if every_clip else stream.read(i)[None]
            except UnreadableExample as err:
                if cfg.data.on_bad_file == "stop":
                    raise
                skipped.append({"example": stream.name(i), "reason": str(err).split(": ")[0]})
                continue
            for encoder in (coded, flipped):
                if encoder:
                    encoder.add(clips)
            windows.append(len(clips))
            labels.append(int(stream.labels[i]))
            names.append(stream.name(i))
        _save_npy(out / f"{shard_name(k)}.x.npy", coded.result())
        if flipped:
            _save_npy(out / f"{shard_name(k)}.xf.npy", flipped.result())
        _save_npy(out / f"{shard_name(k)}.y.npy", np.array(labels, dtype=np.int64))
        if every_clip:  # how many of the rows (clips) each video has, in order
            _save_npy(out / f"{shard_name(k)}.w.npy", np.array(windows, dtype=np.int64))
        write_json(out / f"{shard_name(k)}.json", {"count": len(labels), "skipped": skipped, "first": k * shard_size})
        bar.update(1)
    bar.close()
    runtime.barrier()
    sidecars = [json.loads((out / f"{shard_name(k)}.json").read_text()) for k in range(count)]
    manifest = {
        **wanted,
        "shard_size": shard_size,
        "shards": [{"name": shard_name(k), "count": s["count"]} for k, s in enumerate(sidecars)],
        "total": sum(s["count"] for s in sidecars),
        "skipped": [entry for s in sidecars for entry in s["skipped"]],
        "classes": stream.classes,
        "split_sha": stream.split_sha,
        "shape": list(data_shape(cfg)),
        "kind": codec.kind,
        **provenance(runtime),
    }
    if runtime.is_main:
        write_json(out / MANIFEST, manifest)
    runtime.barrier()
    return manifest


class ShardSet:
    """A complete shard folder as an indexable array: set[idx] -> the examples at idx, as a tensor."""

    def __init__(self, folder, cfg: RunConfig, codec, split: str = "train"):
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            state = (
                "an unfinished encoding: re-run 'elt encode' to finish it"
                if (folder / PLAN).is_file()
                else "no shards: make them with 'elt encode' or fix codec.shards"
            )
            raise UserError(f"shard folder {str(folder)!r} holds {state}")
        manifest = json.loads((folder / MANIFEST).read_text())
        wanted = identity(cfg, codec, split)
        if {k: manifest.get(k) for k in wanted} != wanted:
            raise UserError(
                f"shards in {str(folder)!r} were written for another run ({_describe_difference(manifest, wanted)}): "
                "encode this run's data with 'elt encode', or fix codec.shards"
            )
        self.manifest, self.kind = manifest, manifest["kind"]
        self.classes, self.split_sha = manifest["classes"], manifest["split_sha"]
        kept = [s for s in manifest["shards"] if s["count"]]
        # with data.hflip the mirrored copies follow the originals: row r + R is row r mirrored
        suffixes = ("x", "xf") if cfg.data.hflip else ("x",)
        self.x = [np.load(folder / f"{s['name']}.{suffix}.npy", mmap_mode="r") for suffix in suffixes for s in kept]
        self.labels = (
            np.concatenate([np.load(folder / f"{s['name']}.y.npy") for s in kept]) if kept else np.zeros(0, np.int64)
        )
        # data.windows all: each video's clips are consecutive rows (elt.data.source.TrainingData.offsets)
        self.offsets_of_windows = None
        rows = [s["count"] for s in kept]
        if encodes_every_clip(cfg, split):
            counts = [np.load(folder / f"{s['name']}.w.npy") for s in kept]
            self.offsets_of_windows = np.cumsum([0, *np.concatenate(counts)]) if kept else None
            rows = [int(c.sum()) for c in counts]
        self.offsets = np.cumsum([0] + rows * len(suffixes))
        if not len(self.labels):
            raise UserError(
                f"shard folder {str(folder)!r} holds no examples: check data.path and the manifest's skipped list"
            )

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        """One fancy-indexed read per shard the batch touches (not one per example), rows in idx's order."""
        idx = np.asarray(idx)
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        first = self.x[0]
        rows = np.empty((len(idx), *first.shape[1:]), first.dtype)
        for s in np.unique(shard):
            picked = np.flatnonzero(shard == s)
            rows[picked] = self.x[s][idx[picked] - self.offsets[s]]
        tensor = torch.from_numpy(rows)
        return tensor.long() if self.kind == "tokens" else tensor
