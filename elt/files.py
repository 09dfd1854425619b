"""Files written whole or not at all (atomic replace), content hashes, small networks saved with their config."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from elt.errors import UserError


def file_sha(path) -> str:
    """Short content hash of a file: which reference set, tokenizer or weights a result used."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def save_module(net, path, **extra) -> None:
    """A small network with its dataclass config (net.cfg) and extra records, written atomically."""
    with atomic_path(path) as tmp:
        torch.save({"config": dataclasses.asdict(net.cfg), "model": net.state_dict(), **extra}, tmp)


def load_module(path, net_class, config_class):
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = net_class(config_class(**state["config"]))
    net.load_state_dict(state["model"])
    return net.eval()


def read_json(path: str | Path, what: str, fix: str) -> dict:
    """A JSON file the user named; missing or invalid is a one-line error that names `what` and the `fix`."""
    if not Path(path).is_file():
        raise UserError(f"{what} {str(path)!r} does not exist: {fix}")
    try:
        return json.loads(Path(path).read_text())
    except ValueError:
        raise UserError(f"{what} {str(path)!r} is not valid JSON: {fix}") from None
