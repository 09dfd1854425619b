"""Training loop: one loop for every family and generator; checkpoints that resume exactly.

All randomness after initialisation comes from one torch.Generator whose state is checkpointed with
the model and optimiser, so an interrupted run resumed on the CPU gives the same result as one that
never stopped.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import data, ilsd
from .config import RunConfig
from .errors import UserError
from .model import build, count_params
from .provenance import atomic_path, file_sha, provenance, write_json
from .runs import CHECKPOINT_FORMAT, assemble, data_shape

CHECKPOINT = "checkpoint.pt"  # written once, when training is complete
PROGRESS = "progress.pt"  # periodic state of an unfinished run: not a pipeline output, so an
# interrupted Snakemake job leaves it in place and the rerun resumes from it
RECORD = "train.json"


def learning_rate(step: int, cfg: RunConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    tc = cfg.train
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
    return tc.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(path: Path, parts, net, opt, gen, step, history, wall, shape, classes):
    state = {
        "format": CHECKPOINT_FORMAT, "run_config": parts.cfg.to_dict(), "net_config": net.cfg.to_dict(),
        "data_shape": list(shape), "classes": classes, "model": net.state_dict(), "optimizer": opt.state_dict(),
        "rng": gen.get_state(), "step": step, "history": history, "wall_seconds": wall,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train(cfg: RunConfig, out: str | Path, progress: bool = True, set_aside_stale: bool = False) -> dict:
    """Train one run into `out`, resuming from its checkpoint or progress file.

    A saved state of a different config is an error, or, with set_aside_stale (the pipeline, whose
    config the user changed), renamed to <name>.stale-<step>.pt and left beside the new run.
    """
    out = Path(out)
    torch.set_num_threads(cfg.train.threads)
    if cfg.codec.tokens:  # pre-tokenized: no pixels are read or encoded (paper scale: no video decoding)
        from .tokenizer import load_tokens

        shape = data_shape(cfg)
        x_all, labels, classes, split_sha = load_tokens(cfg.codec.tokens, cfg.codec.tokenizer, shape)
        parts = assemble(cfg, shape, len(classes))
    else:
        ds = data.load(cfg.data, "train")
        shape, classes, split_sha = ds.shape, ds.classes, ds.split_sha
        parts = assemble(cfg, shape, len(classes))
        x_all, labels = parts.codec.encode(ds.images), ds.labels
    y_all = torch.from_numpy(labels)
    torch.manual_seed(cfg.seed)
    net = build(parts.net_cfg)
    tc = cfg.train
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, history, wall = 0, [], 0.0

    ckpt_path, progress_path = out / CHECKPOINT, out / PROGRESS
    resume_from = ckpt_path if ckpt_path.exists() else progress_path
    if resume_from.exists():
        try:
            ckpt = torch.load(resume_from, map_location="cpu", weights_only=True)
        except Exception as err:
            raise UserError(f"checkpoint {str(resume_from)!r} is corrupt ({type(err).__name__}): delete it to start over") from None
        if ckpt.get("run_config") == cfg.to_dict():
            net.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            gen.set_state(ckpt["rng"])
            step, history, wall = ckpt["step"], ckpt["history"], ckpt["wall_seconds"]
            print(f"resuming {cfg.run} from step {step} ({resume_from.name})")
        elif set_aside_stale:
            stale = resume_from.with_name(f"{resume_from.stem}.stale-{ckpt.get('step', 0)}.pt")
            resume_from.rename(stale)
            print(f"{resume_from} was trained with another config: kept as {stale.name}, starting afresh")
        else:
            raise UserError(f"{str(out)!r} holds a checkpoint of a different config: use another --out or delete it")
    out.mkdir(parents=True, exist_ok=True)

    net.train()
    bar = tqdm(total=tc.steps, initial=step, desc=cfg.run, disable=not progress, mininterval=2.0, unit="step")
    started = time.perf_counter() - wall
    while step < tc.steps:
        idx = torch.randint(0, len(y_all), (tc.batch_size,), generator=gen)
        labels = y_all[idx].clone()
        labels[torch.rand(tc.batch_size, generator=gen) < tc.label_drop] = net.null_class
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        loss, parts_log = ilsd.objective(parts.generator, net, (x_all[idx], labels), cfg.model.family, step, tc.steps, tc.l_min, gen)
        if not torch.isfinite(loss):
            raise UserError(f"loss became {loss.item()} at step {step} of run {cfg.run!r}: lower train.lr or raise train.warmup_steps")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip)
        opt.step()
        step += 1
        history.append(parts_log["loss"])
        bar.update(1)
        bar.set_postfix(loss=f"{parts_log['loss']:.4f}")
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            wall = time.perf_counter() - started
            target = ckpt_path if step == tc.steps else progress_path
            save_checkpoint(target, parts, net, opt, gen, step, history, wall, shape, classes)
    bar.close()
    progress_path.unlink(missing_ok=True)
    record = {
        "run": cfg.run, "config": cfg.to_dict(), "net_config": net.cfg.to_dict(), "seed": cfg.seed, "steps": step,
        "wall_seconds": wall, "steps_per_second": step / wall if wall else None,
        "loss_first": sum(history[:20]) / len(history[:20]), "loss_last": sum(history[-20:]) / len(history[-20:]),
        "loss_history": history, "n_train": len(y_all), "split_sha": split_sha, "tokens": cfg.codec.tokens and file_sha(cfg.codec.tokens), **count_params(net),
        **provenance(),
    }
    write_json(out / RECORD, record)
    return record
