"""Sample a trained run at one or more loop counts into .npz files of uint8 data and labels.

Every loop count uses the same labels and the same seed, so loop counts are compared on paired
draws. Throughput (samples/s at that loop count, on this machine) is measured and stored. The
network runs where the run's runtime says (elt.runtime; overridable per call), from its EMA
weights when it kept them unless weights="raw".
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from elt.errors import UserError
from elt.eval.accounting import loop_plan_cost
from elt.files import atomic_path
from elt.methods.schedule import plan_name
from elt.models.looped import check_loops
from elt.provenance import provenance
from elt.runs import load_checkpoint
from elt.runtime import Runtime, RuntimeConfig, out_of_memory


def out_paths(out: str, loops: list[int]) -> dict[int, Path]:
    if len(loops) > 1 and "{loops}" not in out:
        raise UserError(
            f"--out {out!r} names one file for {len(loops)} loop counts: put '{{loops}}' in it, e.g. "
            f"samples_L{{loops}}.npz"
        )
    if not out.endswith(".npz"):
        raise UserError(f"--out {out!r} must end in .npz")
    return {loop: Path(out.replace("{loops}", str(loop))) for loop in loops}


def balanced_labels(num: int, classes: int) -> torch.Tensor:
    return torch.arange(num) % classes


LABEL_DRAWS = ("balanced", "uniform")


def sampling_labels(num: int, classes: int, draw: str, seed: int) -> torch.Tensor:
    """The class of each of `num` samples: balanced (cycling through the classes: every class the same count)
    or uniform (drawn independently and uniformly from a generator seeded by `seed`, as ADM's and DiT's
    sample scripts draw them)."""
    if draw not in LABEL_DRAWS:
        raise UserError(f"sampling labels {draw!r} are unknown: use one of {', '.join(LABEL_DRAWS)}")
    if draw == "balanced":
        return balanced_labels(num, classes)
    return torch.from_numpy(np.random.default_rng(seed).integers(0, classes, num))


def generate(
    parts,
    net,
    loops,
    labels: torch.Tensor,
    seed: int,
    batch_size: int | None = None,
    loops_used: list | None = None,
    runtime: Runtime | None = None,
) -> np.ndarray:
    """uint8 (N, T, C, H, W) samples for the given labels. loops: an int, a LoopSchedule or an EarlyExit
    rule; loops_used, when given, receives a (N, steps) tensor of the loops each sample ran at each step.
    net must already be on the runtime's device (Runtime.prepare); runtime defaults to the CPU at fp32."""
    runtime = runtime or Runtime(RuntimeConfig(device="cpu"))
    batch_size = batch_size or runtime.cfg.sample_batch_size
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on every device
    chunks, used = [], []
    for start in range(0, len(labels), batch_size):
        per_step = []
        try:
            with runtime.autocast():
                out = parts.generator.sample(net, runtime.to(labels[start : start + batch_size]), loops, gen, per_step)
        except torch.OutOfMemoryError as err:
            raise out_of_memory(err, "runtime.sample_batch_size") from None
        chunks.append(parts.codec.decode(out))
        used.append(torch.stack(per_step, 1).cpu())
    if loops_used is not None:
        loops_used.append(torch.cat(used))
    return np.concatenate(chunks)


def save_samples(path: Path, samples: np.ndarray, labels: np.ndarray, meta: dict) -> None:
    """Images are stored (N, C, H, W), videos (N, T, C, H, W); meta is a JSON string."""
    if samples.shape[1] == 1:
        samples = samples[:, 0]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, samples=samples, labels=labels, meta=np.array(json.dumps(meta)))


def load_samples(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """-> (uint8 (N, T, C, H, W), labels, meta)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"samples file {str(path)!r} does not exist: run 'elt sample' first")
    try:
        with np.load(path) as f:
            samples, labels, meta = f["samples"], f["labels"], json.loads(str(f["meta"]))
    except Exception as err:
        raise UserError(f"samples file {str(path)!r} is unreadable ({type(err).__name__}): sample again") from None
    if samples.ndim == 4:
        samples = samples[:, None]
    return samples, labels, meta


def shard_seed(seed: int, shard: int, shards: int) -> int:
    """The sampling seed of one shard: the run's seed itself when there is one shard (so unsharded
    samples stay what they were), else a seed derived from (seed, shard)."""
    return seed if shards == 1 else int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])


def sample(
    checkpoint: str,
    loops: list,
    num: int,
    seed: int,
    out: str,
    *,
    threads: int = 1,
    runtime: dict | None = None,
    weights: str = "ema",
    shards: int = 1,
    only_shard: int | None = None,
    guidance: float | None = None,
    labels: str | np.ndarray = "balanced",
    sampling_steps: int | None = None,
) -> list[Path]:
    """loops: loop counts (ints), or LoopSchedules / EarlyExit rules (elt.methods.schedule), one file each.
    runtime: settings that override the run's own runtime section (e.g. {"device": "cpu"});
    weights: ema or raw (elt.runs.load_checkpoint); guidance: a scale instead of the run's own (a sweep's);
    labels: balanced or uniform (sampling_labels, drawn over all `num` samples from `seed`), or the `num` labels
    themselves (an FVD protocol's, paired with its real clips); sampling_steps: steps instead of the run's own.
    shards > 1 splits the `num` samples (labels drawn over all of them) into that many files, each
    with its own seed; `out` then names them with {shard}. Under torchrun rank r writes shards r, r +
    ranks, ...; only_shard writes one."""
    torch.set_num_threads(threads)
    for loop in loops:
        if isinstance(loop, int):
            check_loops(loop)
    if num < 1:
        raise UserError(f"--num {num} is invalid: ask for at least 1 sample")
    if not 1 <= shards <= num or (only_shard is not None and not 0 <= only_shard < shards):
        raise UserError(
            f"--shards {shards} / --shard {only_shard} do not fit {num} samples: use 1 <= shards <= num and 0 <= "
            "shard < shards"
        )
    if shards > 1 and "{shard}" not in out:
        raise UserError(
            f"--out {out!r} names one file for {shards} shards: put '{{shard}}' in it, e.g. samples_{{shard}}.npz"
        )
    out_paths(out, [plan_name(loop) for loop in loops])  # a bad --out fails before any work
    if guidance is not None and not guidance > 0:
        raise UserError(f"guidance scale {guidance} is invalid: use a scale > 0 (1 = no guidance)")
    if sampling_steps is not None and sampling_steps < 1:
        raise UserError(f"sampling steps {sampling_steps} are invalid: use at least 1")
    if not isinstance(labels, str) and len(labels) != num:
        raise UserError(f"{len(labels)} labels given for {num} samples: give one label per sample")
    parts, net, ckpt = load_checkpoint(checkpoint, weights)
    section = parts.cfg.masked if parts.cfg.model.generator == "masked" else parts.cfg.diffusion
    if guidance is not None:  # the generator reads its section's settings when it samples
        section.guidance = float(guidance)
    if sampling_steps is not None:
        section.sampling_steps = int(sampling_steps)
    runtime = Runtime(dataclasses.replace(parts.cfg.runtime, **(runtime or {})))
    model = runtime.prepare(net)
    parts.codec.to(runtime.device)  # a pretrained codec decodes on the run's device
    every_label = (
        sampling_labels(num, net.cfg.num_classes, labels, seed)
        if isinstance(labels, str)
        else torch.as_tensor(np.asarray(labels), dtype=torch.long)
    )
    mine = [only_shard] if only_shard is not None else list(range(runtime.rank, shards, runtime.world_size))
    written = []
    for shard in mine:
        first, end = shard * num // shards, (shard + 1) * num // shards
        shard_labels, shard_seed_value = every_label[first:end], shard_seed(seed, shard, shards)
        paths = out_paths(out.replace("{shard}", f"{shard:05d}"), [plan_name(loop) for loop in loops])
        for loop, path in zip(loops, paths.values()):
            generate(
                parts, model, loop, shard_labels[:2], shard_seed_value, runtime=runtime
            )  # warm-up, so the timing below is steady-state
            started, used = time.perf_counter(), []
            samples = generate(
                parts, model, loop, shard_labels, shard_seed_value, loops_used=used, runtime=runtime
            )  # ends on the CPU
            seconds = time.perf_counter() - started
            meta = {
                "run": parts.cfg.run,
                "checkpoint": str(checkpoint),
                "checkpoint_step": ckpt["step"],
                "loops": loop if isinstance(loop, int) else loop.text,
                "num": len(shard_labels),
                "seed": shard_seed_value,
                "sampling_steps": parts.cfg.sampling_steps,
                "guidance": parts.cfg.guidance,
                "seconds": seconds,
                "samples_per_second": len(shard_labels) / seconds,
                "labels": labels if isinstance(labels, str) else "given",
                "threads": threads,
                "weights": "ema" if weights == "ema" and "ema" in ckpt else "raw",
                **(
                    {"shard": shard, "shards": shards, "first": first, "num_total": num, "run_seed": seed}
                    if shards > 1
                    else {}
                ),
                **({} if isinstance(loop, int) else loop_plan_cost(net, used[0], parts.cfg.guidance)),
                **provenance(runtime),
            }
            save_samples(path, samples, shard_labels.numpy(), meta)
            written.append(path)
    return written


def time_throughput(
    settings: dict[str, tuple[str, int]], batch_size: int, repeats: int, warmup: int, seed: int, threads: int
) -> dict:
    """Samples per second of named (checkpoint, loop count) settings, timed back to back.

    Each repeat times every setting once, in an order that rotates between repeats, after `warmup`
    untimed batches of each: drift of the machine (clock, caches, other load) falls on all settings
    alike, and repeat r of two settings forms a pair (see elt.harness.audit for the interval).
    """
    torch.set_num_threads(threads)
    if repeats < 1 or batch_size < 1:
        raise UserError(
            f"throughput needs repeats >= 1 and batch_size >= 1, got {repeats} and {batch_size}: fix audit.throughput"
        )
    models = {}
    for name, (path, loops) in settings.items():
        parts, net, _ = load_checkpoint(path)
        runtime = Runtime(parts.cfg.runtime)
        models[name] = (
            parts,
            runtime.prepare(net),
            check_loops(loops),
            balanced_labels(batch_size, net.cfg.num_classes),
            runtime,
        )
    for parts, net, loops, labels, runtime in models.values():
        for w in range(warmup):
            generate(parts, net, loops, labels, seed - 1 - w, batch_size, runtime=runtime)
    names, seconds = list(models), {name: [] for name in models}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            parts, net, loops, labels, runtime = models[name]
            started = time.perf_counter()
            generate(
                parts, net, loops, labels, seed + r, batch_size, runtime=runtime
            )  # ends on the CPU: timed to completion
            seconds[name].append(time.perf_counter() - started)
    return {
        "batch_size": batch_size,
        "repeats": repeats,
        "warmup": warmup,
        "threads": threads,
        "order": "interleaved, rotating",
        "settings": {
            name: {
                "checkpoint": str(settings[name][0]),
                "loops": settings[name][1],
                "seconds": seconds[name],
                "samples_per_second": [batch_size / s for s in seconds[name]],
            }
            for name in names
        },
        **provenance(runtime),
    }


def clip_strip(clip: np.ndarray) -> np.ndarray:
    """uint8 (T, C, H, W) -> an image (H, T*W) or (H, T*W, 3): frames side by side."""
    strip = np.concatenate(list(clip), axis=-1).transpose(1, 2, 0)
    return strip[..., 0] if strip.shape[-1] == 1 else strip


def export_png(samples_npz: str, out_dir: str) -> int:
    """Lossless PNGs of a samples file, for an independent clean-fid or pytorch-fid run."""
    samples, labels, _ = load_samples(samples_npz)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, (clip, label) in enumerate(zip(samples, labels)):
        Image.fromarray(clip_strip(clip)).save(out / f"{i:05d}_class{int(label)}.png")
    return len(samples)
