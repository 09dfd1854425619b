"""Training lowers the loss, and a resumed run equals an uninterrupted one."""

import fractions
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from elt import train as train_mod
from elt.errors import UserError
from elt.models.looped import build
from elt.runs import assemble
from elt.runtime import Runtime

from .conftest import assert_same_training_state, count_steps, interrupt_training_at, tiny_cfg


@pytest.mark.parametrize("generator", ["masked", "diffusion"])
def test_loss_falls_on_digits(tmp_path, generator):
    cfg = tiny_cfg(
        model={"generator": generator, "width": "XS", "n_unique": 1, "loops": 2},
        train={"steps": 60, "batch_size": 32, "lr": 3e-3},
    )
    record = train_mod.train(cfg, tmp_path, progress=False)
    assert record["loss_last"] < 0.85 * record["loss_first"]
    saved = json.loads((tmp_path / "train.json").read_text())
    for key in ("config", "seed", "steps", "wall_seconds", "versions", "git_commit", "split_sha"):
        assert key in saved
    assert saved["steps"] == 60


@pytest.mark.parametrize("generator", ["masked", "diffusion"])
def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch, capsys, generator):
    """The resumed run starts at its saved step, computes only the steps after it, and ends in the state of
    a run that never stopped: weights, optimiser moments, random generator and loss history, bit for bit."""
    model = {"generator": generator, **({"patch_size": 2} if generator == "diffusion" else {})}
    cfg = tiny_cfg(model=model, train={"steps": 25, "checkpoint_every": 10})
    train_mod.train(cfg, tmp_path / "whole", progress=False)

    interrupt_training_at(monkeypatch, 16)  # after the checkpoint at step 10
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tmp_path / "resumed", progress=False)
    assert torch.load(tmp_path / "resumed/progress.pt", weights_only=True)["step"] == 10
    assert not (tmp_path / "resumed/checkpoint.pt").exists() and not (tmp_path / "resumed/train.json").exists()
    monkeypatch.undo()
    steps = count_steps(monkeypatch)
    capsys.readouterr()
    record = train_mod.train(cfg, tmp_path / "resumed", progress=False)

    assert "resuming tiny from step 10 (progress.pt)" in capsys.readouterr().out
    assert steps["n"] == 15 and record["steps"] == 25
    assert_same_training_state(tmp_path / "whole", tmp_path / "resumed")


@pytest.mark.slow
def test_a_training_process_killed_mid_step_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    """A real SIGKILL of `elt train` while it trains (no handler runs, a checkpoint may be half written):
    the rerun resumes from the last complete progress file and ends bit-identical to a run that never stopped."""
    cfg = tiny_cfg(train={"steps": 300, "checkpoint_every": 5})
    config_file, out = tmp_path / "run.json", tmp_path / "killed"
    config_file.write_text(json.dumps(cfg.to_dict()))
    process = subprocess.Popen(
        [sys.executable, "-m", "elt.cli", "train", "--config", str(config_file), "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not (out / "progress.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-2000:]
        time.sleep(0.005)
    time.sleep(0.013)  # somewhere inside a step: steps take a few milliseconds here
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (out / "checkpoint.pt").exists() and not (out / "train.json").exists()  # killed before the end
    saved = torch.load(out / "progress.pt", weights_only=True)["step"]
    assert 5 <= saved < 300 and saved % 5 == 0

    steps = count_steps(monkeypatch)
    capsys.readouterr()
    train_mod.train(cfg, out, progress=False)
    assert f"resuming tiny from step {saved} (progress.pt)" in capsys.readouterr().out and steps["n"] == 300 - saved
    train_mod.train(cfg, tmp_path / "whole", progress=False)
    assert_same_training_state(tmp_path / "whole", out)


def test_resume_refuses_a_different_config(tmp_path):
    train_mod.train(tiny_cfg(train={"steps": 10}), tmp_path, progress=False)
    with pytest.raises(UserError, match="different config"):
        train_mod.train(tiny_cfg(train={"steps": 10, "lr": 1e-4}), tmp_path, progress=False)
    # the pipeline keeps the old state beside the new run instead
    train_mod.train(tiny_cfg(train={"steps": 10, "lr": 1e-4}), tmp_path, progress=False, set_aside_stale=True)
    assert (tmp_path / "checkpoint.stale-10.pt").exists() and (tmp_path / "checkpoint.pt").exists()


def test_nan_loss_stops_with_error_and_no_checkpoint(tmp_path, monkeypatch):
    from elt.methods.masked import MaskedGenerator

    monkeypatch.setattr(MaskedGenerator, "gt_loss", lambda self, out, inputs: out.sum() * float("nan"))
    with pytest.raises(UserError, match="loss became nan at step 0.*lower train.lr"):
        train_mod.train(tiny_cfg(), tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "progress.pt").exists()


def test_learning_rate_warms_up_then_decays():
    cfg = tiny_cfg(train={"steps": 100, "warmup_steps": 10, "lr": 1.0})
    lrs = [train_mod.learning_rate(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_resume_of_an_empty_folder_or_a_stale_state_starts_at_step_zero(tmp_path):
    cfg = tiny_cfg()
    net = build(assemble(cfg).net_cfg)
    opt = torch.optim.AdamW(net.parameters())
    assert train_mod.resume(cfg, tmp_path, net, opt, None, torch.Generator(), Runtime(), False) == (0, [], 0.0)
    torch.save({"run_config": {}, "step": 7, "history": [1.0], "wall_seconds": 9.0}, tmp_path / "progress.pt")
    assert train_mod.resume(cfg, tmp_path, net, opt, None, torch.Generator(), Runtime(), True) == (
        0,
        [],
        0.0,
    )  # set aside
    assert (tmp_path / "progress.stale-7.pt").exists()


def test_the_checkpoint_records_what_sampling_and_provenance_read(tmp_path):
    train_mod.train(tiny_cfg(train={"steps": 3}), tmp_path, progress=False)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["classes"] == [str(c) for c in range(10)] and saved["data_shape"] == [1, 1, 8, 8]
    assert saved["runtime"]["device"] == "cpu" and saved["step"] == 3 and len(saved["history"]) == 3


def test_saved_states_that_are_not_this_runs_get_one_line_each(tmp_path, capsys):
    """A corrupt file, a pickle that is not plain tensors (never unpickled: weights_only), a state without a
    config, and one of another config: refused with the path and the fix, or set aside under its step."""
    cfg, progress = tiny_cfg(train={"steps": 3}), tmp_path / "progress.pt"
    progress.write_bytes(b"not a checkpoint")
    with pytest.raises(
        UserError,
        match=f"^checkpoint '{progress}' is corrupt \\((UnpicklingError|RuntimeError)\\): delete it to start over$",
    ):
        train_mod.train(cfg, tmp_path, progress=False)
    torch.save({"run_config": cfg.to_dict(), "step": 1, "payload": fractions.Fraction(1, 3)}, progress)
    with pytest.raises(UserError, match="is corrupt \\(UnpicklingError\\)"):
        train_mod.train(cfg, tmp_path, progress=False)
    torch.save({"step": 2}, progress)
    with pytest.raises(
        UserError, match=f"^'{tmp_path}' holds a checkpoint of a different config: use another --out or delete it$"
    ):
        train_mod.train(cfg, tmp_path, progress=False)
    torch.save({"run_config": {}}, progress)  # no step recorded: set aside as step 0
    capsys.readouterr()
    record = train_mod.train(cfg, tmp_path, progress=False, set_aside_stale=True)
    assert (tmp_path / "progress.stale-0.pt").exists() and record["steps"] == 3 and len(record["loss_history"]) == 3
    assert (
        f"{progress} was trained with another config: kept as progress.stale-0.pt, starting afresh"
        in capsys.readouterr().out
    )
