"""Pre-tokenized training data: a split encoded once by this harness's 3D VQ tokenizer (`elt tokenizer`,
the pipeline's train_tokenizer rule), so the masked generator trains without reading or encoding pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from elt import config
from elt.codecs.tokenizer import TokenizerConfig, VQTokenizer, encode_batched, save, train_tokenizer
from elt.data import datasets as data
from elt.errors import UserError
from elt.files import atomic_path, file_sha, write_json
from elt.provenance import provenance


def save_tokens(path, net: VQTokenizer, tokenizer_path, ds) -> None:
    """Pre-tokenized training data (ds: an elt.data.datasets.Dataset): the masked generator then trains on
    it without reading or encoding any pixels."""
    tokens = encode_batched(net, ds.images).flatten(1).numpy().astype(np.int32)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            tokens=tokens,
            labels=ds.labels,
            classes=np.array(ds.classes),
            shape=np.array(ds.shape),
            split_sha=np.array(ds.split_sha),
            tokenizer_sha=np.array(file_sha(tokenizer_path)),
        )


def load_tokens(path, tokenizer_path, shape) -> tuple[torch.Tensor, np.ndarray, list[str], str]:
    """-> (tokens (N, S) long, labels, class names, split hash); refuses tokens that another
    tokenizer made, or of clips of another shape than the run's data config describes."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"pre-tokenized data {str(path)!r} does not exist: make it with 'elt tokenizer' or fix codec.tokens"
        )
    with np.load(path) as f:
        made = {"tokenizer": str(f["tokenizer_sha"]), "clip shape": tuple(int(v) for v in f["shape"])}
        tokens, labels = torch.from_numpy(f["tokens"].astype(np.int64)), f["labels"].astype(np.int64)
        classes, split_sha = [str(c) for c in f["classes"]], str(f["split_sha"])
    wanted = {"tokenizer": file_sha(tokenizer_path), "clip shape": tuple(shape)}
    for key in made:
        if made[key] != wanted[key]:
            raise UserError(
                f"pre-tokenized data {str(path)!r} was made with another {key} ({made[key]} != {wanted[key]}): "
                "re-run 'elt tokenizer' for this run's data config"
            )
    return tokens, labels, classes, split_sha


def tokenizer_step(data_cfg: dict, settings: dict, out_pt, record, out_tokens, device="cpu") -> dict:
    """Train a dataset's tokenizer on `device`, record its held-out error, pre-tokenize the training split
    (the pipeline's train_tokenizer rule and 'elt tokenizer')."""
    # the tokenizer learns from each video's first clip (every window of UCF-101 would not fit in memory);
    # runs on every window encode them with it (elt.data.shards)
    dcfg = config.from_dict({"data": {**data_cfg, "windows": "first"}}).data
    train, held = data.load(dcfg, "train"), data.load(dcfg, "held_out")
    tcfg = config.parse_section(TokenizerConfig, {**settings, "in_channels": train.shape[1]}, "tokenizer.")
    t, _, h, w = train.shape
    if t % tcfg.patch[0] or h % tcfg.patch[1] or w % tcfg.patch[2]:
        raise UserError(f"tokenizer.patch {tcfg.patch} does not divide the {t}x{h}x{w} clips: pick divisors")
    net, error = train_tokenizer(train.images, held.images, tcfg, device)
    save(net, out_pt, error)
    save_tokens(out_tokens, net, out_pt, train)
    summary = {
        "held_out_error": error,
        "config": tcfg.__dict__,
        "data": data_cfg,
        "token_grid": [t // tcfg.patch[0], h // tcfg.patch[1], w // tcfg.patch[2]],
        "n_train": len(train.labels),
        "split_sha": train.split_sha,
        **provenance(),
        "device": str(device),
    }
    write_json(record, summary)
    return summary
