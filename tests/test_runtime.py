"""The runtime layer on this CPU machine: device resolution and its errors, bf16 autocast, EMA of the
weights (arithmetic, checkpointing, sampling from it), and runs that resume under another runtime."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from elt import train as train_mod
from elt.cli import main
from elt.config import profile_device
from elt.errors import UserError
from elt.runs import load_checkpoint
from elt.runtime import Runtime, RuntimeConfig
from elt.sample import load_samples, sample
from tests.conftest import ROOT

from .conftest import assert_same_training_state, count_steps, interrupt_training_at, tiny_cfg


def test_auto_is_the_cpu_here_and_the_record_says_so():
    runtime = Runtime()
    assert runtime.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert Runtime(RuntimeConfig(device="cpu")).describe() == {
        "device": "cpu",
        "device_name": "cpu",
        "precision": "fp32",
        "tf32": False,
        "compile": False,
        "sample_batch_size": 256,
    }
    assert profile_device({}) == profile_device({"runtime": {"device": "auto"}}) == str(runtime.device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"device": "gpu"}, "'runtime.device' is 'gpu': use auto, cpu, cuda or cuda:N"),
        ({"device": "cuda"}, "no CUDA GPU: set runtime.device to cpu or auto"),
        ({"device": "cuda:1"}, "no CUDA GPU"),
        ({"precision": "fp16"}, "'runtime.precision' is 'fp16': use one of fp32, bf16"),
        ({"sample_batch_size": 0}, "sample_batch_size' is 0"),
    ],
)
def test_impossible_runtimes_are_one_line_errors(settings, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")) as err:
        Runtime(RuntimeConfig(**settings))
    assert "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_sampling_on_a_missing_gpu_exits_2_and_writes_nothing(tmp_path, capsys):
    train_mod.train(tiny_cfg(train={"steps": 2}), tmp_path, progress=False)
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "sample",
                "--checkpoint",
                str(tmp_path / "checkpoint.pt"),
                "--loops",
                "1",
                "--num",
                "4",
                "--device",
                "cuda",
                "--out",
                str(tmp_path / "s.npz"),
            ]
        )
    assert exit_.value.code == 2 and "no CUDA GPU" in capsys.readouterr().err and not (tmp_path / "s.npz").exists()


@pytest.mark.slow
def test_bf16_autocast_trains_with_fp32_weights_and_records_its_precision(tmp_path):
    cfg = tiny_cfg(train={"steps": 40, "batch_size": 32, "lr": 3e-3}, runtime={"precision": "bf16"})
    record = train_mod.train(cfg, tmp_path / "bf16", progress=False)
    fp32 = train_mod.train(
        tiny_cfg(train={"steps": 40, "batch_size": 32, "lr": 3e-3}), tmp_path / "fp32", progress=False
    )
    assert record["runtime"]["precision"] == "bf16" and fp32["runtime"]["precision"] == "fp32"
    assert record["loss_last"] < 0.95 * record["loss_first"]
    assert record["loss_history"] != fp32["loss_history"]  # autocast did compute in bf16 ...
    # ... and tracks fp32: bf16 keeps 8 mantissa bits (relative rounding 2^-9 per product), the sums stay fp32
    assert np.allclose(record["loss_history"], fp32["loss_history"], rtol=0.02)
    ckpt = torch.load(tmp_path / "bf16/checkpoint.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())


def test_ema_is_the_decayed_average_of_the_weights():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = train_mod.EMA(net, decay=0.9)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].num_batches_tracked += 3
    ema.update(net)
    assert torch.allclose(ema.shadow["0.weight"], 0.9 * start["0.weight"] + 0.1 * net[0].weight)
    assert torch.equal(ema.shadow["0.bias"], start["0.bias"])
    assert int(ema.shadow["1.num_batches_tracked"]) == 3  # integer buffers are copied, not averaged


def test_ema_is_checkpointed_resumed_exactly_and_sampled_by_default(tmp_path, monkeypatch):
    cfg = tiny_cfg(train={"steps": 25, "checkpoint_every": 10, "ema_decay": 0.8})
    train_mod.train(cfg, tmp_path / "whole", progress=False)
    interrupt_training_at(monkeypatch, 16)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    steps = count_steps(monkeypatch)
    train_mod.train(cfg, tmp_path / "resumed", progress=False)
    assert steps["n"] == 15  # from the checkpoint at step 10
    assert_same_training_state(tmp_path / "whole", tmp_path / "resumed")  # the EMA weights among the rest
    whole = torch.load(tmp_path / "whole/checkpoint.pt", weights_only=True)

    _, ema_net, _ = load_checkpoint(tmp_path / "whole/checkpoint.pt")
    _, raw_net, _ = load_checkpoint(tmp_path / "whole/checkpoint.pt", weights="raw")
    name = next(k for k, v in whole["model"].items() if v.is_floating_point())
    assert torch.equal(ema_net.state_dict()[name], whole["ema"][name])
    assert torch.equal(raw_net.state_dict()[name], whole["model"][name]) and not torch.equal(
        whole["ema"][name], whole["model"][name]
    )
    out = sample(str(tmp_path / "whole/checkpoint.pt"), [2], 8, 0, str(tmp_path / "s.npz"))[0]
    assert load_samples(out)[2]["weights"] == "ema"
    raw = sample(str(tmp_path / "whole/checkpoint.pt"), [2], 8, 0, str(tmp_path / "r.npz"), weights="raw")[0]
    assert load_samples(raw)[2]["weights"] == "raw" and not np.array_equal(load_samples(raw)[0], load_samples(out)[0])


def test_a_run_resumes_under_another_runtime_and_records_the_new_one(tmp_path, monkeypatch):
    """The runtime is not part of a run's identity: a run started at fp32 may finish in bf16 (or on a GPU)."""
    interrupt_training_at(monkeypatch, 12)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(tiny_cfg(train={"steps": 20, "checkpoint_every": 10}), tmp_path, progress=False)
    monkeypatch.undo()
    record = train_mod.train(
        tiny_cfg(train={"steps": 20, "checkpoint_every": 10}, runtime={"precision": "bf16"}), tmp_path, progress=False
    )
    assert record["steps"] == 20 and record["runtime"]["precision"] == "bf16"
    assert json.loads((tmp_path / "train.json").read_text())["runtime"]["device"] == "cpu"


def test_bench_times_elt_against_its_unshared_baseline_and_counts_the_step(tmp_path):
    from elt.harness.bench import bench

    result = bench(RuntimeConfig(device="cpu"), "test", repeats=2, warmup=1, matmul_n=64)
    (row,) = result["layouts"]
    assert result["matmul_peak_tflop_per_s"] > 0 and result["device"] == "cpu" and row["unshared_layers"] == 2
    elt, unshared = row["train"]["elt"], row["train"]["unshared"]
    assert (
        elt["repeats"] == unshared["repeats"] == 2
        and elt["mfu"] > 0
        and elt["q1_ms"] <= elt["median_ms"] <= elt["q3_ms"]
    )
    assert unshared["unique_params"] > elt["unique_params"]  # 2 unique layers against 1 looped twice
    # equal layer passes: the step's counted FLOPs differ only by ILSD's extra head and loss at L_int
    assert 1.0 <= elt["flops_per_step"] / unshared["flops_per_step"] < 1.5
    assert [s["batch"] for s in row["sampling_forward"]] == [1, 2]
    assert {"elt L=1", "elt L=2", "unshared L=1"} <= set(row["sampling_forward"][0])
    assert result["datasheet_peak_tflop_per_s"] is None and elt["mfu_datasheet"] is None  # no datasheet for a CPU


def test_mfu_against_the_datasheet_uses_the_devices_peak_at_the_runs_precision():
    from elt.harness.bench import datasheet_peak

    class H200:
        def __init__(self, precision, tf32):
            self.described = {"device_name": "NVIDIA H200", "precision": precision, "tf32": tf32}

        def describe(self):
            return self.described

    assert datasheet_peak(H200("bf16", False)) == 989.0 and datasheet_peak(H200("fp32", True)) == 494.0
    assert datasheet_peak(H200("fp32", False)) == 67.0 and datasheet_peak(Runtime(RuntimeConfig(device="cpu"))) is None


@pytest.mark.slow
def test_compiled_network_computes_what_the_eager_one_does():
    """runtime.compile: torch.compile (inductor, C++ on this CPU) of the looped network, same outputs to float
    rounding."""
    from elt.models.looped import build
    from elt.runs import assemble

    net = build(assemble(tiny_cfg()).net_cfg).eval()
    tokens, labels = torch.randint(0, 17, (4, net.cfg.seq_len)), torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        eager = net(tokens, labels, loops=2)
        compiled = Runtime(RuntimeConfig(device="cpu", compile=True)).prepare(net)(tokens, labels, loops=2)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def test_compiled_blocks_make_one_graph_for_every_loop_count_exit_and_batch_size(monkeypatch):
    """runtime.compile compiles the blocks, not the looped network: sampling at L = 1..4 and batch sizes 4, 5
    and 6, and training steps with ILSD's exits, reuse two graphs (with and without autograd). A compiled
    network would trace one graph per loop count, exit set and batch size, and past the recompile limit
    fall back to eager without a word. Dynamo's own graph counter, on its eager backend (no C++ build)."""
    from torch._dynamo.utils import counters

    from elt import runtime as runtime_mod
    from tests.test_devices import tiny, training_step

    monkeypatch.setattr(runtime_mod, "COMPILE_OPTIONS", {**runtime_mod.COMPILE_OPTIONS, "backend": "eager"})
    torch._dynamo.reset()
    counters.clear()
    parts, net = tiny("masked", n_unique=2, loops=3)
    Runtime(RuntimeConfig(device="cpu", compile=True)).prepare(net)
    for batch in (4, 5, 6):
        net.eval()
        for loops in (1, 2, 3, 4):
            parts.generator.sample(net, torch.arange(batch) % 10, loops, torch.Generator().manual_seed(0))
        net.train()
        training_step(parts, net, "cpu")
    assert counters["stats"]["unique_graphs"] == 2 and counters["stats"]["calls_captured"] > 0


@pytest.mark.slow
def test_the_gpu_check_runs_its_stages_and_records_each_outcome(tmp_path):
    """benchmarks/gpu_check.py on the CPU (--quick): each stage in its own process, its figures or its failure
    in one results file, a failed stage failing only itself and the exit status."""
    out = tmp_path / "gpu_check.json"
    command = [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out)]
    done = subprocess.run(command + ["--stages", "environment,vae,torchrun"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    stages = json.loads(out.read_text())["stages"]
    assert all(stage["ok"] for stage in stages.values()) and stages["environment"]["figures"]["cpu_kernels"]
    failed = subprocess.run(command + ["--stages", "environment,nonsense"], cwd=ROOT, capture_output=True, text=True)
    assert failed.returncode == 1 and not json.loads(out.read_text())["stages"]["nonsense"]["ok"]
