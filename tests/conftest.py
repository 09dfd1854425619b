import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from elt import config
from elt.config import merge as deep_update

TINY = {
    "run": "tiny",
    "seed": 0,
    "model": {"generator": "masked", "family": "elt", "width": "T", "n_unique": 1, "loops": 3},
    "train": {"steps": 30, "batch_size": 16, "lr": 3e-3, "warmup_steps": 5, "checkpoint_every": 10},
    "masked": {"sampling_steps": 4},
    "diffusion": {"sampling_steps": 4},
}


def tiny_cfg(**overrides) -> config.RunConfig:
    return config.from_dict(deep_update(TINY, overrides))


def _on_each_step(monkeypatch, hook) -> dict:
    """Wraps the training loop's loss (called once per step in one process): hook(n) before the n-th call."""
    from elt import train as train_mod

    real, calls = train_mod.ilsd.loss, {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        hook(calls["n"])
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod.ilsd, "loss", wrapped)
    return calls


def interrupt_training_at(monkeypatch, call: int) -> None:
    """A killed run: the training loop's loss raises KeyboardInterrupt at its call-th call (one call per
    step in one process); undo with monkeypatch.undo()."""

    def interrupt(n):
        if n == call:
            raise KeyboardInterrupt

    _on_each_step(monkeypatch, interrupt)


def count_steps(monkeypatch) -> dict:
    """Counts the training steps a run computes: a resumed run must compute only the steps after its saved state."""
    return _on_each_step(monkeypatch, lambda n: None)


def assert_same_training_state(a: Path, b: Path, tolerance: float = 0.0) -> None:
    """Two finished runs hold the same weights, optimiser moments, random generator, EMA and loss history:
    bit for bit, or within a relative tolerance (other world sizes sum in another order): of each loss, and of
    each tensor's norm (a tensor near zero differs more, element for element, than its scale)."""
    x, y = (torch.load(Path(p) / "checkpoint.pt", weights_only=True) for p in (a, b))
    assert x["step"] == y["step"]
    assert torch.equal(x["rng"], y["rng"])
    if tolerance:
        assert x["history"] == pytest.approx(y["history"], rel=tolerance)
    else:
        assert x["history"] == y["history"]
    pairs = [(f"model.{k}", v, y["model"][k]) for k, v in x["model"].items()]
    pairs += [(f"ema.{k}", v, y["ema"][k]) for k, v in x.get("ema", {}).items()]
    pairs += [
        (f"optimizer.{i}.{k}", v, y["optimizer"]["state"][i][k])
        for i, state in x["optimizer"]["state"].items()
        for k, v in state.items()
    ]
    assert len(x["optimizer"]["state"]) == len(y["optimizer"]["state"]) > 0
    for name, u, v in pairs:
        if tolerance:
            change = float((u.double() - v.double()).norm() / v.double().norm().clamp_min(1e-12))
            assert change < tolerance * 10, (name, change)
        else:
            assert torch.equal(u, v), name


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


# --- the pipeline in a temporary copy of the repository ---------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def copy_repo(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "workflow", "config"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    (dest / "profiles").symlink_to("workflow/profiles")  # where Snakemake finds the default workflow profile
    (dest / "results/reference").mkdir(parents=True)
    shutil.copy(ROOT / "results/reference/smoke.json", dest / "results/reference/smoke.json")
    return dest


def snakemake(repo: Path, *args):
    return subprocess.run([SNAKEMAKE, "--cores", "2", *args], cwd=repo, capture_output=True, text=True)


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The smoke profile run once, locally, for every test that reads its outputs."""
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    result = snakemake(repo, "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    return repo


def write_avi(path, frames, size=(40, 32), seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for _ in range(frames):
            img = np.full((size[1], size[0], 3), rng.integers(0, 255), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def ucf(tmp_path):
    root = tmp_path / "UCF-101"
    names = {"ApplyEyeMakeup": 1, "Basketball": 2}
    train, test = [], []
    for name, idx in names.items():
        for g in (1, 2):
            rel = f"{name}/v_{name}_g{g:02d}_c01.avi"
            write_avi(root / rel, frames=12, seed=idx * 10 + g)
            (train if g == 1 else test).append(rel)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i} {n}\n" for n, i in names.items()))
    (lists / "trainlist01.txt").write_text("".join(f"{r} {names[r.split('/')[0]]}\n" for r in train))
    (lists / "testlist01.txt").write_text("".join(f"{r}\n" for r in test))
    return root
