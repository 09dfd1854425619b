"""Training loop: one loop for every family and generator; checkpoints that resume exactly.

All randomness after initialisation comes from one torch.Generator whose state is checkpointed with
the model and optimiser, so an interrupted run resumed on the CPU gives the same result as one that
never stopped. The network computes where the run's runtime says (elt.runtime); the generator and
the data stay on the CPU and each batch moves to the device.
"""

from __future__ import annotations

import collections
import contextlib
import math
import subprocess
import time
from pathlib import Path

import torch
from tqdm import tqdm

from elt import codecs, config
from elt.config import RunConfig
from elt.data.datasets import data_shape
from elt.data.source import training_data
from elt.errors import UserError
from elt.files import atomic_path, write_json
from elt.methods import ilsd
from elt.models.looped import build, count_params
from elt.provenance import provenance
from elt.runs import CHECKPOINT_FORMAT, assemble
from elt.runtime import Runtime, out_of_memory, torchrun_command

CHECKPOINT = "checkpoint.pt"  # written once, when training is complete
PROGRESS = "progress.pt"  # periodic state of an unfinished run: not a pipeline output, so an
# interrupted Snakemake job leaves it in place and the rerun resumes from it
RECORD = "train.json"


def learning_rate(step: int, cfg: RunConfig) -> float:
    """Linear warm-up, then constant or a cosine decay to lr_final of the peak."""
    tc = cfg.train
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    if tc.lr_schedule == "constant":
        return tc.lr
    progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
    return tc.lr * (tc.lr_final + (1 - tc.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))


class EMA:
    """Exponential moving average of the weights, in fp32 on the weights' device: after every optimiser
    step, shadow = decay * shadow + (1 - decay) * weight (integer buffers are copied)."""

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay, self.shadow = decay, {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.floats = [k for k, v in self.shadow.items() if v.dtype.is_floating_point]
        self.others = [k for k in self.shadow if k not in self.floats]

    def update(self, net: torch.nn.Module) -> None:
        """One multi-tensor lerp over every floating-point tensor (a kernel launch per tensor would be hundreds)."""
        with torch.no_grad():  # not a decorator: mutmut (make mutants) skips decorated functions
            state = net.state_dict()
            torch._foreach_lerp_(
                [self.shadow[k] for k in self.floats], [state[k] for k in self.floats], 1.0 - self.decay
            )
            for key in self.others:
                self.shadow[key].copy_(state[key])


def global_batch(x_all, idx: torch.Tensor, runtime: Runtime, micro: int) -> torch.Tensor:
    """The examples at idx, as a global batch in which only this rank's rows are read (from memory or shards);
    the other ranks' rows are zeros that this rank never computes on."""
    if runtime.world_size == 1:
        return x_all[idx]
    rows = runtime.rows(micro)
    mine = x_all[idx[rows]]
    batch = mine.new_zeros((len(idx), *mine.shape[1:]))
    batch[rows] = mine
    return batch


def optimisation_step(model, generator, inputs: dict, l_int, l_max: int, weight: float, micro: int, runtime: Runtime):
    """Forward and backward of one step over this rank's micro-batches (gradients accumulate in the network)
    -> each micro-batch's loss, detached on the device: nothing here waits for the device."""
    slices = runtime.micro_batches()
    losses = []
    try:
        for k, part in enumerate(slices):
            micro_inputs = {key: value[part * micro : (part + 1) * micro] for key, value in inputs.items()}
            last = k == len(slices) - 1
            with contextlib.nullcontext() if last or runtime.world_size == 1 else model.no_sync(), runtime.autocast():
                loss, logged = ilsd.loss(generator, model, micro_inputs, l_int, l_max, weight)
            (loss / len(slices) if len(slices) > 1 else loss).backward()
            losses.append(logged["loss"])
    except torch.OutOfMemoryError as err:
        raise out_of_memory(
            err, "the per-rank micro-batch: raise runtime.grad_accum, or use runtime.precision bf16"
        ) from None
    return losses


def settle(pending: list[tuple[int, list[torch.Tensor]]], runtime: Runtime, run: str) -> list[float]:
    """The pending steps' losses as numbers, each the mean of its micro-batches averaged over the ranks: one
    wait for the device and one all-reduce per checkpoint interval, not per step. A loss that is not finite
    stops the run before its state is saved."""
    values = torch.stack([loss for _, losses in pending for loss in losses]).tolist()
    means, at = [], 0
    for _, losses in pending:
        means.append(sum(values[at : at + len(losses)]) / len(losses))
        at += len(losses)
    means = runtime.average_each(means)
    for (step, _), value in zip(pending, means):
        if not math.isfinite(value):
            raise UserError(
                f"loss became {value} at step {step} of run {run!r}: lower train.lr or raise train.warmup_steps"
            )
    return means


def device_rng_state() -> dict:
    """The streams dropout draws from (torch's default generators: the CPU's and the current CUDA device's)."""
    return {"cpu": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {})}


def set_device_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(
    path: Path, parts, net, opt, gen, step, history, wall, shape, classes, ema: EMA | None, runtime: dict
):
    state = {
        "format": CHECKPOINT_FORMAT,
        "run_config": parts.cfg.to_dict(),
        "net_config": net.cfg.to_dict(),
        "data_shape": list(shape),
        "classes": classes,
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": gen.get_state(),
        "device_rng": device_rng_state(),
        "step": step,
        "history": history,
        "wall_seconds": wall,
        "runtime": runtime,
        **({"ema": ema.shadow} if ema else {}),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def resume(
    cfg: RunConfig, out: Path, net, opt, ema: EMA | None, gen: torch.Generator, runtime: Runtime, set_aside_stale: bool
) -> tuple[int, list[float], float]:
    """Restore the run's saved state in `out` (its checkpoint, else its progress file) into net, opt, ema
    and gen -> (step, loss history, wall seconds); (0, [], 0.0) when there is none.

    Every rank reads the file memory-mapped: it copies what it needs into its own tensors and holds no host
    copy of the whole state (eight ranks each loading a 34 GB state would need 270 GB). A saved state of a
    different config is an error, or, with set_aside_stale (the pipeline, whose config the user changed),
    renamed to <name>.stale-<step>.pt and left beside the new run: by rank 0, once every rank has read it.
    """
    ckpt_path, progress_path = out / CHECKPOINT, out / PROGRESS
    resume_from = ckpt_path if ckpt_path.exists() else progress_path
    if not resume_from.exists():
        return 0, [], 0.0
    try:
        ckpt = torch.load(resume_from, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise UserError(
            f"checkpoint {str(resume_from)!r} is corrupt ({type(err).__name__}): delete it to start over"
        ) from None
    if config.identity(ckpt.get("run_config", {})) == cfg.identity():
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ema:
            ema.shadow = {k: v.to(runtime.device, copy=True) for k, v in ckpt["ema"].items()}
        gen.set_state(ckpt["rng"])
        if "device_rng" in ckpt:
            set_device_rng_state(ckpt["device_rng"])
        print(f"resuming {cfg.run} from step {ckpt['step']} ({resume_from.name})")
        return ckpt["step"], ckpt["history"], ckpt["wall_seconds"]
    if not set_aside_stale:
        raise UserError(f"{str(out)!r} holds a checkpoint of a different config: use another --out or delete it")
    stale = resume_from.with_name(f"{resume_from.stem}.stale-{ckpt.get('step', 0)}.pt")
    runtime.barrier()  # every rank has decided from the file before it moves
    if runtime.is_main:
        resume_from.rename(stale)
        print(f"{resume_from} was trained with another config: kept as {stale.name}, starting afresh")
    runtime.barrier()
    return 0, [], 0.0


def train(cfg: RunConfig, out: str | Path, progress: bool = True, set_aside_stale: bool = False) -> dict:
    """Train one run into `out`, resuming from its checkpoint or progress file (see resume)."""
    out = Path(out)
    torch.set_num_threads(cfg.train.threads)
    runtime = Runtime(cfg.runtime)
    shape = data_shape(cfg)
    codec = codecs.for_run(cfg, shape)
    source = training_data(cfg, codec, shape)
    parts = assemble(cfg, shape, len(source.classes), codec=codec)
    x_all, y_all = source.examples, torch.from_numpy(source.labels)
    torch.manual_seed(cfg.seed)
    net = build(parts.net_cfg)  # initialised on the CPU: the same weights on every device
    model = runtime.prepare(net, train=True)  # what the loop calls: net on the device, compiled, DDP under torchrun
    micro = runtime.micro_batch(cfg.train.batch_size)
    tc = cfg.train
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
    ema = EMA(net, tc.ema_decay) if tc.ema_decay > 0 else None
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt_path, progress_path = out / CHECKPOINT, out / PROGRESS
    step, history, wall = resume(cfg, out, net, opt, ema, gen, runtime, set_aside_stale)
    out.mkdir(parents=True, exist_ok=True)

    net.train()
    bar = tqdm(total=tc.steps, initial=step, desc=cfg.run, disable=not progress, mininterval=2.0, unit="step")
    started = time.perf_counter() - wall
    pending = []  # (step, its micro-batches' losses): on the device until the next checkpoint (settle)
    while step < tc.steps:
        idx = torch.randint(0, len(y_all), (tc.batch_size,), generator=gen)
        labels = y_all[idx].clone()
        labels[torch.rand(tc.batch_size, generator=gen) < tc.label_drop] = net.null_class
        rows = source.rows_of(idx, gen)  # a random clip and flip of each, where the data has them
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        # Every rank draws the whole global batch's randomness (same generator state everywhere) and
        # computes on its own micro-batches: rank r takes micro-batches r, r + ranks, ...
        inputs, l_int = ilsd.draw(
            parts.generator,
            runtime.to(global_batch(x_all, rows, runtime, micro), labels),
            cfg.model.family,
            tc.l_min,
            net.cfg.loops,
            gen,
        )
        weight = ilsd.lam(step, tc.steps)
        opt.zero_grad(set_to_none=True)
        losses = optimisation_step(model, parts.generator, inputs, l_int, net.cfg.loops, weight, micro, runtime)
        if tc.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip)
        opt.step()
        if ema:
            ema.update(net)
        pending.append((step, losses))
        step += 1
        bar.update(1)
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            history += settle(pending, runtime, cfg.run)
            pending = []
            bar.set_postfix(loss=f"{history[-1]:.4f}")
            if runtime.is_main:
                wall = time.perf_counter() - started
                target = ckpt_path if step == tc.steps else progress_path
                save_checkpoint(
                    target, parts, net, opt, gen, step, history, wall, shape, source.classes, ema, runtime.describe()
                )
    bar.close()
    runtime.barrier()  # every rank's last step is done before rank 0 finishes the run
    if not runtime.is_main:
        wall = time.perf_counter() - started
    else:
        progress_path.unlink(missing_ok=True)
    record = {
        "run": cfg.run,
        "config": cfg.to_dict(),
        "net_config": net.cfg.to_dict(),
        "seed": cfg.seed,
        "steps": step,
        "wall_seconds": wall,
        "steps_per_second": step / wall if wall else None,
        "loss_first": sum(history[:20]) / len(history[:20]),
        "loss_last": sum(history[-20:]) / len(history[-20:]),
        "loss_history": history,
        **source.provenance(),
        **count_params(net),
        "runtime": runtime.describe(),
        **provenance(),
    }
    if runtime.is_main:
        write_json(out / RECORD, record)
    return record


def launch(cfg: RunConfig, out: str | Path, processes: int, set_aside_stale: bool = False) -> None:
    """Train in this process, or with processes > 1 (the pipeline: a run's resources ask for more than
    one GPU) as that many torchrun ranks of `elt train` on the run's config file in `out`."""
    if processes <= 1:
        train(cfg, out, progress=False, set_aside_stale=set_aside_stale)
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "launch_config.json"
    write_json(config_file, cfg.to_dict())
    command = torchrun_command(
        processes,
        "train",
        "--config",
        str(config_file),
        "--out",
        str(out),
        "--quiet",
        *(["--set-aside-stale"] if set_aside_stale else []),
    )
    print(" ".join(command), flush=True)
    # The ranks' output goes to this job's log as it comes: a run killed by a time limit leaves it behind.
    tail = collections.deque(maxlen=200)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as ranks:
        for line in ranks.stdout:
            print(line, end="", flush=True)
            tail.append(line.strip())
    if ranks.returncode:
        lines = (
            [line for line in tail if "error:" in line.lower()]
            or [line for line in tail if line and set(line) - set("=-_ ")][-1:]
            or ["no output"]
        )
        raise UserError(f"torchrun with {processes} ranks failed ({lines[0][:200]}): see the log above")
