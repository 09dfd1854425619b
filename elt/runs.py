"""From a run config to its pieces: codec, generator, network layout; checkpoints in and out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import baselines
from elt import codecs, config
from elt.config import RunConfig
from elt.data.datasets import data_shape, num_classes
from elt.errors import UserError
from elt.methods.diffusion import DiffusionGenerator
from elt.methods.masked import MaskedGenerator
from elt.models.looped import LoopedNetwork, NetConfig, build

CHECKPOINT_FORMAT = "elt-checkpoint-1"


def layout(family: str, n_unique: int, loops: int) -> tuple[int, int]:
    """(unique layers, loops) of the network a family trains: ELT and vanilla looped loop N layers L times."""
    if family in baselines.LAYOUTS:
        return baselines.LAYOUTS[family](n_unique, loops)
    return n_unique, loops


@dataclass
class Parts:
    cfg: RunConfig
    codec: codecs.Codec
    generator: MaskedGenerator | DiffusionGenerator
    net_cfg: NetConfig


def assemble(cfg: RunConfig, shape=None, classes: int | None = None, codec=None) -> Parts:
    shape = shape or data_shape(cfg)
    codec = codec or codecs.for_run(cfg, shape)
    generator = (MaskedGenerator if cfg.model.generator == "masked" else DiffusionGenerator)(cfg, codec)
    n, loops = layout(cfg.model.family, cfg.model.n_unique, cfg.model.loops)
    net_cfg = generator.net_config(classes if classes is not None else num_classes(cfg), n, loops)
    return Parts(cfg, codec, generator, net_cfg)


WEIGHTS = ("ema", "raw")


def load_checkpoint(path: str | Path, weights: str = "ema") -> tuple[Parts, LoopedNetwork, dict]:
    """Rebuild the network (on the CPU) from a checkpoint; a missing or corrupt file is a one-line UserError.
    weights: ema (the run's EMA weights when it kept them, else its weights) or raw (the optimised weights)."""
    if weights not in WEIGHTS:
        raise UserError(
            f"weights {weights!r} is unknown: use ema (the default; a run without EMA gives its weights) or raw"
        )
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist: run 'elt train' first or fix the path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not an ELT checkpoint")
        cfg = config.from_dict(ckpt["run_config"])
        parts = assemble(cfg, tuple(ckpt["data_shape"]), ckpt["net_config"]["num_classes"])
        net = build(NetConfig.from_dict(ckpt["net_config"]))
        net.load_state_dict(ckpt["ema"] if weights == "ema" and "ema" in ckpt else ckpt["model"])
    except UserError:
        raise
    except Exception as err:  # torch raises many types for a damaged file
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise UserError(
            f"checkpoint {str(path)!r} is corrupt or not an ELT checkpoint ({reason}): delete it and re-run 'elt train'"
        ) from None
    net.eval()
    return parts, net, ckpt
