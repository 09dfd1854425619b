"""Multi-process training on this CPU: torchrun ranks with the gloo backend, DistributedDataParallel,
the global batch split over ranks and accumulation steps, rank-0 checkpoints, resume across world sizes."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from elt import train as train_mod
from elt.errors import UserError
from elt.runtime import Runtime, RuntimeConfig, torchrun_command

from .conftest import assert_same_training_state, count_steps, tiny_cfg

pytestmark = pytest.mark.distributed

# The diffusion loss is a mean of per-sample terms, so the mean of two half-batch losses is the loss of
# the whole batch and averaged gradients are its gradient: 2 ranks compute the same step as 1 process
# up to float summation order (all-reduce, batch reductions), about 1e-7 relative per step, which the
# optimiser carries forward. 1e-4 over 12 steps leaves room for that and none for a wrong split.
TOLERANCE = 1e-4


def diffusion_cfg(**train):
    return tiny_cfg(
        model={"generator": "diffusion", "width": "XS", "n_unique": 1, "loops": 2, "patch_size": 2},
        train={"steps": 12, "batch_size": 16, "lr": 3e-3, "checkpoint_every": 6, **train},
    )


def children(pid: int) -> list[int]:
    """Direct children of `pid`, read from /proc (torchrun starts each rank in a session of its own)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def kill_tree(launcher: subprocess.Popen) -> None:
    """SIGKILL torchrun and its ranks, and wait until no rank can write again: the ranks live in their own
    sessions, so killing the launcher's process group alone leaves them training."""
    ranks = children(launcher.pid)
    os.kill(launcher.pid, signal.SIGSTOP)  # no restarts while the ranks go
    ranks = sorted(set(ranks + children(launcher.pid)))
    for pid in ranks:
        os.kill(pid, signal.SIGKILL)
    launcher.kill()
    launcher.wait()
    deadline = time.time() + 30
    for pid in ranks:
        while (state := process_state(pid)) not in (None, "Z"):
            assert time.time() < deadline, f"rank process {pid} is still {state} after SIGKILL"
            time.sleep(0.02)


def process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def history(out) -> list[float]:
    return json.loads((out / "train.json").read_text())["loss_history"]


def test_two_gloo_ranks_follow_one_process_at_the_same_global_batch(tmp_path):
    single = train_mod.train(diffusion_cfg(), tmp_path / "one", progress=False)
    train_mod.launch(diffusion_cfg(), tmp_path / "two", processes=2)
    two = json.loads((tmp_path / "two/train.json").read_text())
    assert two["runtime"]["world_size"] == 2 and single["runtime"].get("world_size") is None
    np.testing.assert_allclose(two["loss_history"], single["loss_history"], rtol=TOLERANCE)
    one_ckpt = torch.load(tmp_path / "one/checkpoint.pt", weights_only=True)["model"]
    two_ckpt = torch.load(tmp_path / "two/checkpoint.pt", weights_only=True)["model"]
    for name, value in one_ckpt.items():
        torch.testing.assert_close(two_ckpt[name], value, rtol=1e-3, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint.pt", "launch_config.json", "train.json"]


def test_gradient_accumulation_is_the_same_split_in_one_process(tmp_path):
    whole = train_mod.train(diffusion_cfg(), tmp_path / "whole", progress=False)
    accumulated = train_mod.train(
        tiny_cfg(**{**diffusion_cfg().to_dict(), "runtime": {"grad_accum": 4}}), tmp_path / "acc", progress=False
    )
    assert accumulated["runtime"]["grad_accum"] == 4
    np.testing.assert_allclose(accumulated["loss_history"], whole["loss_history"], rtol=TOLERANCE)


def test_a_global_batch_that_does_not_split_is_a_one_line_error():
    with pytest.raises(
        UserError, match="train.batch_size 16 does not split into 1 rank\\(s\\) x 3 accumulation step\\(s\\)"
    ):
        Runtime(RuntimeConfig(grad_accum=3)).micro_batch(16)


def test_a_two_rank_run_killed_mid_way_resumes_in_one_process(tmp_path, monkeypatch, capsys):
    """The checkpoint holds global state only (weights, optimiser, the generator every rank shares), so a
    run stopped under 2 ranks continues in 1 process at the same global batch: it computes only the steps
    after its saved one and ends where a run in one process that never stopped ends (up to summation order)."""
    cfg = diffusion_cfg(steps=80, checkpoint_every=2)
    config_file, out = tmp_path / "run.json", tmp_path / "run"
    config_file.write_text(json.dumps(cfg.to_dict()))
    ranks = subprocess.Popen(
        torchrun_command(
            2,
            "train",
            "--config",
            str(config_file),
            "--out",
            str(out),
            "--quiet",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not (out / "progress.pt").exists():
        assert ranks.poll() is None and time.time() < deadline, "the ranks ended before writing progress.pt"
        time.sleep(0.01)
    kill_tree(ranks)
    saved = torch.load(out / "progress.pt", weights_only=True)
    assert 2 <= saved["step"] < 80 and saved["runtime"]["world_size"] == 2 and not (out / "checkpoint.pt").exists()
    steps = count_steps(monkeypatch)
    capsys.readouterr()
    record = train_mod.train(cfg, out, progress=False)
    assert f"resuming {cfg.run} from step {saved['step']}" in capsys.readouterr().out
    assert steps["n"] == 80 - saved["step"] and record["steps"] == 80
    assert "world_size" not in record["runtime"] and not (out / "progress.pt").exists()
    train_mod.train(cfg, tmp_path / "one", progress=False)
    assert_same_training_state(tmp_path / "one", out, tolerance=TOLERANCE)


def test_two_ranks_set_a_stale_checkpoint_aside_once_and_train_afresh(tmp_path):
    """The pipeline passes --set-aside-stale: with a checkpoint of another config in the run's folder, rank 0
    alone renames it, after every rank has read it, and both ranks train the new config from step 0."""
    out = tmp_path / "run"
    train_mod.train(diffusion_cfg(steps=4, lr=1e-3), out, progress=False)
    train_mod.launch(diffusion_cfg(), out, processes=2, set_aside_stale=True)
    assert sorted(p.name for p in out.glob("*.pt")) == ["checkpoint.pt", "checkpoint.stale-4.pt"]
    record = json.loads((out / "train.json").read_text())
    assert record["steps"] == 12 and record["runtime"]["world_size"] == 2 and len(record["loss_history"]) == 12


def test_each_rank_reads_only_the_rows_of_its_own_micro_batches():
    """Rank 1 of 2 with 2 accumulation steps computes micro-batches 1 and 3 of 4: it reads those rows of the
    global batch (from memory or shards) and leaves the others zero, never touched by its steps."""

    class Counting:
        def __init__(self, data):
            self.data, self.read = data, []

        def __getitem__(self, idx):
            self.read += idx.tolist()
            return self.data[idx]

    runtime = Runtime(RuntimeConfig(grad_accum=2))
    runtime.world_size, runtime.rank = 2, 1
    source = Counting(torch.arange(100.0)[:, None].repeat(1, 3))
    idx = torch.arange(16) * 5
    batch = train_mod.global_batch(source, idx, runtime, micro=4)
    rows = [4, 5, 6, 7, 12, 13, 14, 15]
    assert runtime.micro_batches() == [1, 3] and runtime.rows(4).tolist() == rows
    assert sorted(source.read) == sorted(idx[rows].tolist())
    assert torch.equal(batch[rows], source.data[idx[rows]]) and not batch[[0, 1, 2, 3, 8, 9, 10, 11]].any()
