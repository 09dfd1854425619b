"""The Stable Diffusion VAE (or any diffusers AutoencoderKL) from a local folder, as a codec.

The diffusion generator then models latents: images uint8 (N, T, C, H, W) <-> latents
(N, latent_channels, T, H/f, W/f) scaled by the VAE's own `scaling_factor` (0.18215 for SD's), as
DiT does. Video frames are coded one by one. Encoding keeps the posterior mean, or with latents
"sample" draws from the posterior as DiT's training does (latent_dist.sample()) with noise seeded by
the example's own bytes, so a draw does not depend on batching, ranks or device and pre-encoded shards
stay deterministic. The network loads on first use; its config is read at once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from elt.codecs.base import LoadsOnFirstUse, from_signal, to_signal
from elt.errors import UserError

CONFIG = "config.json"


def folder(weights: str, subfolder: str | None) -> Path:
    return Path(weights) / subfolder if subfolder else Path(weights)


def read_config(weights: str, subfolder: str | None) -> dict:
    """The VAE's config.json, checked to be a diffusers AutoencoderKL."""
    where = folder(weights, subfolder)
    if not where.is_dir():
        raise UserError(
            f"VAE folder {str(where)!r} does not exist: set codec.weights (and codec.subfolder) to the local VAE"
        )
    fix = (
        "point codec.weights at a diffusers AutoencoderKL folder (config.json and "
        "diffusion_pytorch_model.safetensors), "
        "with codec.subfolder: vae for a whole pipeline folder"
    )
    if not (where / CONFIG).is_file():
        raise UserError(f"VAE folder {str(where)!r} has no {CONFIG}: {fix}")
    try:
        cfg = json.loads((where / CONFIG).read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{str(where / CONFIG)!r} is not valid JSON ({err.msg}): {fix}") from None
    if cfg.get("_class_name") != "AutoencoderKL":
        raise UserError(
            f"VAE folder {str(where)!r} holds a {cfg.get('_class_name') or 'config without _class_name'}, "
            f"not an AutoencoderKL: {fix}"
        )
    return cfg


def load(weights: str, subfolder: str | None = None):
    from diffusers import AutoencoderKL  # here: 0.7 s of start-up that only the SD-VAE codec needs

    read_config(weights, subfolder)
    try:
        # Local files only: nothing may download at run time.
        vae = AutoencoderKL.from_pretrained(weights, subfolder=subfolder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:
        reason = str(err).splitlines()[0][:160]
        raise UserError(
            f"VAE weights in {str(folder(weights, subfolder))!r} cannot be loaded ({reason}): "
            "point codec.weights at a complete diffusers AutoencoderKL folder"
        ) from None
    return vae.eval().requires_grad_(False)


def example_noise(example: np.ndarray, frame_shape) -> torch.Tensor:
    """Standard normal noise (T, *frame_shape) for one uint8 example (T, C, H, W), seeded by its bytes."""
    seed = int.from_bytes(hashlib.sha256(example.tobytes()).digest()[:8], "little") >> 1
    return torch.randn((len(example), *frame_shape), generator=torch.Generator().manual_seed(seed))


class VAECodec(LoadsOnFirstUse):
    kind = "continuous"

    def __init__(
        self,
        weights: str,
        subfolder: str | None,
        shape: tuple[int, int, int, int],
        latent_channels: int = 4,
        downsampling: int = 8,
        latents: str = "mean",
    ):
        """latent_channels, downsampling: the geometry the run expects (SD's by default), known before the
        weights exist (elt describe, dry runs) and checked against the VAE's config where it does exist."""
        t, c, h, w = shape
        self.weights, self.subfolder, self.shape, self.latents = weights, subfolder, shape, latents
        self.channels, self.spatial = latent_channels, (t, h // downsampling, w // downsampling)
        self._scale = None
        if folder(weights, subfolder).exists():
            cfg = read_config(weights, subfolder)
            found = {
                "latent_channels": int(cfg.get("latent_channels", 4)),
                "downsampling": 2 ** (len(cfg.get("block_out_channels", [0])) - 1),
                "data.channels": int(cfg.get("in_channels", 3)),
            }
            for key, value in {
                "latent_channels": latent_channels,
                "downsampling": downsampling,
                "data.channels": c,
            }.items():
                if found[key] != value:
                    raise UserError(
                        f"the VAE in {str(folder(weights, subfolder))!r} has {key} {found[key]}, the run says {value}: "
                        f"set {key if key.startswith('data.') else 'codec.' + key} to {found[key]}"
                    )
            self._scale = float(cfg.get("scaling_factor", 0.18215))
        if h % downsampling or w % downsampling:
            raise UserError(
                f"the VAE codes images with sides divisible by {downsampling}, not examples of shape {shape}: "
                "fix data.image_size"
            )

    @property
    def scale(self) -> float:
        """The VAE's own scaling_factor (0.18215 for SD v1.x), from its config."""
        if self._scale is None:
            self._scale = float(read_config(self.weights, self.subfolder).get("scaling_factor", 0.18215))
        return self._scale

    def load(self):
        return load(self.weights, self.subfolder)

    def identity(self) -> dict:
        """The config and every weights file, hashed: shards of another VAE are refused."""
        where, digest = folder(self.weights, self.subfolder), hashlib.sha256()
        for f in sorted(p for p in where.iterdir() if p.is_file()):
            digest.update(f.name.encode())
            with open(f, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        identity = {"codec": "sd_vae", "scaling_factor": self.scale, "weights_sha": digest.hexdigest()[:16]}
        return identity | ({"latents": "sample"} if self.latents == "sample" else {})  # mean: as shards always were

    @torch.no_grad()
    def encode(self, data: np.ndarray) -> torch.Tensor:  # uint8 (N, T, C, H, W) -> (N, c, T, h, w)
        frames = rearrange(to_signal(data), "n c t h w -> (n t) c h w").to(self.device)
        posterior = self.net.encode(frames).latent_dist
        latents = posterior.mean
        if self.latents == "sample":
            noise = torch.cat([example_noise(example, posterior.mean.shape[1:]) for example in data])
            latents = latents + posterior.std * noise.to(latents)
        return rearrange((latents * self.scale).float().cpu(), "(n t) c h w -> n c t h w", n=len(data))

    @torch.no_grad()
    def decode_chunk(self, z: torch.Tensor) -> np.ndarray:  # (N, c, T, h, w) -> uint8 (N, T, C, H, W)
        frames = rearrange(z, "n c t h w -> (n t) c h w").to(self.device) / self.scale
        pixels = self.net.decode(frames).sample.float().cpu()
        return from_signal(rearrange(pixels, "(n t) c h w -> n c t h w", n=len(z)))
