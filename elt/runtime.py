"""The runtime layer: where and how a run computes. Device, precision, TF32 and compilation live here
and nowhere else; the rest of the library asks this module.

A run's `runtime` section (elt.config.RunConfig.runtime; a profile's `runtime:` fills it for every
run) says what is wanted; Runtime resolves it on this machine and records what it got. Randomness
is drawn on the CPU from the run's seeded torch.Generator and moved to the device, so a run draws
the same numbers on every device, and at fp32 on the CPU this layer changes nothing at all.

Under torchrun (WORLD_SIZE > 1) training joins the process group (NCCL on GPUs, gloo on CPUs), puts
each rank on its own GPU (LOCAL_RANK), and says how the global batch splits: train.batch_size =
per-rank micro-batch x ranks x runtime.grad_accum.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass

import torch

from elt.errors import UserError

DEVICES = "auto, cpu, cuda or cuda:N"
COMPILE_OPTIONS = {"dynamic": True}  # torch.compile's options for runtime.compile (tests pick the eager backend)
PRECISIONS = ("fp32", "bf16")


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 (autocast of matrix multiplies; weights, optimiser and EMA stay fp32)
    tf32: bool = False  # CUDA only: TF32 for the fp32 matrix multiplies left outside autocast
    compile: bool = False  # torch.compile the network (training and sampling)
    sample_batch_size: int = 256  # samples per generator call when sampling for metrics
    grad_accum: int = 1  # micro-batches per rank per optimiser step: train.batch_size = micro x ranks x grad_accum


def check(cfg: RuntimeConfig) -> RuntimeConfig:
    """Reject what no machine could honour (the device's presence is checked by Runtime, where it runs)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device):
        raise UserError(f"config key 'runtime.device' is {cfg.device!r}: use {DEVICES}")
    if cfg.precision not in PRECISIONS:
        raise UserError(f"config key 'runtime.precision' is {cfg.precision!r}: use one of {', '.join(PRECISIONS)}")
    for key in ("sample_batch_size", "grad_accum"):
        if getattr(cfg, key) < 1:
            raise UserError(f"config key 'runtime.{key}' is {getattr(cfg, key)}: it must be at least 1")
    return cfg


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """local_rank: under torchrun, the rank's GPU when the device is auto or cuda (cuda:N stays N)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"runtime.device is {name!r} but this machine has no CUDA GPU: set runtime.device to cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"runtime.device is {name!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s): "
                f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    return device


class Runtime:
    """A RuntimeConfig resolved on this machine."""

    def __init__(self, cfg: RuntimeConfig | None = None):
        self.cfg = check(cfg or RuntimeConfig())
        self.world_size, self.rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
        distributed = self.world_size > 1
        self.device = resolve_device(self.cfg.device, int(os.environ.get("LOCAL_RANK", 0)) if distributed else None)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.cfg.tf32

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints and records; every rank computes."""
        return self.rank == 0

    def micro_batch(self, batch_size: int) -> int:
        """The per-rank micro-batch of a global batch; it must split evenly."""
        parts = self.world_size * self.cfg.grad_accum
        if batch_size % parts:
            raise UserError(
                f"train.batch_size {batch_size} does not split into {self.world_size} rank(s) x {self.cfg.grad_accum} "
                f"accumulation step(s): make it a multiple of {parts}, or change runtime.grad_accum or the GPU count"
            )
        return batch_size // parts

    def micro_batches(self) -> list[int]:
        """Which micro-batches of the global batch this rank computes: r, r + ranks, ... (rank r)."""
        return list(range(self.rank, self.world_size * self.cfg.grad_accum, self.world_size))

    def rows(self, micro: int) -> torch.Tensor:
        """The rows of the global batch in this rank's micro-batches."""
        return torch.cat([torch.arange(part * micro, (part + 1) * micro) for part in self.micro_batches()])

    def average_each(self, values: list[float]) -> list[float]:
        """Each number's mean over the ranks (logged losses), in one all-reduce."""
        if self.world_size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return [value / self.world_size for value in tensor.tolist()]

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def autocast(self):
        """bf16 autocast on the run's device, or nothing at fp32."""
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to(self, *tensors: torch.Tensor):
        """Tensors on the device; from the CPU to a GPU through pinned memory, without waiting for the copy."""
        pinned = self.device.type == "cuda"
        moved = tuple(
            t.pin_memory().to(self.device, non_blocking=True)
            if pinned and t.device.type == "cpu"
            else t.to(self.device)
            for t in tensors
        )
        return moved[0] if len(moved) == 1 else moved

    def join(self) -> None:
        """Under torchrun, join the ranks' process group (NCCL on GPUs, gloo on CPUs): what training and
        pre-encoding do; sampling and evaluation run one process per job."""
        if self.world_size > 1 and not torch.distributed.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    def prepare(self, net: torch.nn.Module, train: bool = False) -> torch.nn.Module:
        """The network on the device, its blocks compiled when asked, and for training under torchrun wrapped
        in DistributedDataParallel (gradients averaged over ranks); returns the module to call."""
        net.to(self.device)
        if self.cfg.compile:
            # Each block, not the network: the loop over L stays in Python, so every loop count, ILSD exit
            # and batch size (dynamic shapes) reuses the same graphs, and DDP's gradient all-reduce overlaps
            # the backward as it does uncompiled.
            for block in net.stack.layers:
                block.compile(**COMPILE_OPTIONS)
        if train and self.world_size > 1:
            self.join()
            return torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        return net

    def describe(self) -> dict:
        """What a record says about where its numbers were computed."""
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {
            "device": str(self.device),
            "device_name": name,
            "precision": self.cfg.precision,
            "tf32": self.cfg.tf32 and self.device.type == "cuda",
            "compile": self.cfg.compile,
            "sample_batch_size": self.cfg.sample_batch_size,
            **(
                {"world_size": self.world_size, "grad_accum": self.cfg.grad_accum}
                if self.world_size > 1 or self.cfg.grad_accum > 1
                else {}
            ),
        }


@contextlib.contextmanager
def exact_fp32():
    """TF32 off for matrix multiplies and cuDNN convolutions (torch leaves cuDNN's on by default) while feature
    extractors run: reference and sample features are fp32 alike, in whatever process computes them."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def out_of_memory(err: BaseException, knob: str) -> UserError:
    """CUDA out of memory as a one-line error naming the setting to lower."""
    return UserError(f"the GPU ran out of memory ({str(err).splitlines()[0][:80]}): lower {knob}")


def torchrun_command(processes: int, *elt_args: str) -> list[str]:
    """`elt <elt_args>` as `processes` torchrun ranks on this machine (DDP: NCCL on GPUs, gloo on CPUs)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "elt.cli",
        *elt_args,
    ]
