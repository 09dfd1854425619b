"""Sample a trained run at one or more loop counts into .npz files of uint8 data and labels.

Every loop count uses the same labels and the same seed, so loop counts are compared on paired
draws. Throughput (samples/s at that loop count, on this machine) is measured and stored.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .model import check_loops
from .provenance import atomic_path, provenance
from .runs import load_checkpoint


def out_paths(out: str, loops: list[int]) -> dict[int, Path]:
    if len(loops) > 1 and "{loops}" not in out:
        raise UserError(f"--out {out!r} names one file for {len(loops)} loop counts: put '{{loops}}' in it, e.g. samples_L{{loops}}.npz")
    if not out.endswith(".npz"):
        raise UserError(f"--out {out!r} must end in .npz")
    return {loop: Path(out.replace("{loops}", str(loop))) for loop in loops}


def balanced_labels(num: int, classes: int) -> torch.Tensor:
    return torch.arange(num) % classes


def generate(parts, net, loops: int, labels: torch.Tensor, seed: int, batch_size: int = 256) -> np.ndarray:
    """uint8 (N, T, C, H, W) samples for the given labels."""
    gen = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, len(labels), batch_size):
        out = parts.generator.sample(net, labels[start:start + batch_size], loops, gen)
        chunks.append(parts.codec.decode(out))
    return np.concatenate(chunks)


def save_samples(path: Path, samples: np.ndarray, labels: np.ndarray, meta: dict) -> None:
    """Images are stored (N, C, H, W), videos (N, T, C, H, W); meta is a JSON string."""
    if samples.shape[1] == 1:
        samples = samples[:, 0]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
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


def sample(checkpoint: str, loops: list[int], num: int, seed: int, out: str, threads: int = 1) -> list[Path]:
    torch.set_num_threads(threads)
    for loop in loops:
        check_loops(loop)
    if num < 1:
        raise UserError(f"--num {num} is invalid: ask for at least 1 sample")
    paths = out_paths(out, loops)
    parts, net, ckpt = load_checkpoint(checkpoint)
    labels = balanced_labels(num, net.cfg.num_classes)
    written = []
    for loop, path in paths.items():
        generate(parts, net, loop, labels[:2], seed)  # warm-up, so the timing below is steady-state
        started = time.perf_counter()
        samples = generate(parts, net, loop, labels, seed)
        seconds = time.perf_counter() - started
        meta = {
            "run": parts.cfg.run, "checkpoint": str(checkpoint), "checkpoint_step": ckpt["step"], "loops": loop,
            "num": num, "seed": seed, "sampling_steps": parts.cfg.sampling_steps, "guidance": parts.cfg.guidance,
            "seconds": seconds, "samples_per_second": num / seconds, "threads": threads, **provenance(),
        }
        save_samples(path, samples, labels.numpy(), meta)
        written.append(path)
    return written


def clip_strip(clip: np.ndarray) -> np.ndarray:
    """uint8 (T, C, H, W) -> an image (H, T*W) or (H, T*W, 3): frames side by side."""
    strip = np.concatenate(list(clip), axis=-1).transpose(1, 2, 0)
    return strip[..., 0] if strip.shape[-1] == 1 else strip


def export_png(samples_npz: str, out_dir: str) -> int:
    """Lossless PNGs of a samples file, for an independent clean-fid or pytorch-fid run."""
    from PIL import Image

    samples, labels, _ = load_samples(samples_npz)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, (clip, label) in enumerate(zip(samples, labels)):
        Image.fromarray(clip_strip(clip)).save(out / f"{i:05d}_class{int(label)}.png")
    return len(samples)
