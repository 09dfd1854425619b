"""Codecs turn data (uint8 (N, T, C, H, W)) into what a generator models, and back.

- PixelTokens: each channel value quantised to `levels` tokens; exact for digits (17 levels).
  Channels fold into the grid's time axis, so the token grid is (T*C, H, W).
- Pixels: identity to continuous values in [-1, 1], laid out (N, C, T, H, W) for the DiT.
- VQCodec (elt.tokenizer): codes of this harness's 3D VQ tokenizer.
- VQGANCodec (elt.vqgan): MaskGIT's ImageNet VQGAN tokens; VAECodec (elt.vae): SD VAE latents.
Every codec has `kind` (tokens | continuous), encode, decode, and `identity()`: what pre-encoded
shards record, so data another codec made is refused.
"""
from __future__ import annotations

import abc

import numpy as np
import torch
from einops import rearrange


class PixelTokens:
    kind = "tokens"

    def __init__(self, levels: int, shape: tuple[int, int, int, int]):
        self.levels, self.shape = levels, shape
        t, c, h, w = shape
        self.grid = (t * c, h, w)
        self.vocab_size = levels

    def encode(self, data: np.ndarray) -> torch.Tensor:  # -> (N, T*C*H*W) long
        tokens = np.rint(data.astype(np.float64) * (self.levels - 1) / 255.0).astype(np.int64)
        return torch.from_numpy(tokens.reshape(len(data), -1))

    def identity(self) -> dict:
        return {"codec": "pixel_levels", "levels": self.levels}

    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        t, c, h, w = self.shape
        values = np.rint(tokens.cpu().numpy().astype(np.float64) * 255.0 / (self.levels - 1))
        return values.clip(0, 255).astype(np.uint8).reshape(len(tokens), t, c, h, w)


class LoadsOnFirstUse(abc.ABC):
    """A pretrained codec's network: loaded from its local path when first needed (describing a run or
    reading its shards needs only the codec's geometry), on the device the codec was moved to."""

    _net, device = None, torch.device("cpu")

    @abc.abstractmethod
    def load(self) -> torch.nn.Module:
        """The network, read from the codec's weights."""

    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            self._net = self.load().to(self.device)
        return self._net

    def to(self, device) -> None:
        """Code on `device` (the run's: sampling and pre-encoding on a GPU decode and encode there)."""
        self.device = torch.device(device)
        if self._net is not None:
            self._net.to(self.device)


def to_signal(data: np.ndarray) -> torch.Tensor:
    """uint8 (N, T, C, H, W) -> float (N, C, T, H, W) in [-1, 1]."""
    return rearrange(torch.from_numpy(data).float() / 127.5 - 1.0, "n t c h w -> n c t h w")


def from_signal(x: torch.Tensor) -> np.ndarray:
    """float (N, C, T, H, W), clipped to [-1, 1] -> uint8 (N, T, C, H, W)."""
    x = rearrange(x.detach().cpu().float(), "n c t h w -> n t c h w")
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


class Pixels:
    kind = "continuous"

    def __init__(self, shape: tuple[int, int, int, int]):
        self.shape = shape
        t, c, h, w = shape
        self.channels, self.spatial = c, (t, h, w)

    def identity(self) -> dict:
        return {"codec": "pixels"}

    def encode(self, data: np.ndarray) -> torch.Tensor:  # -> (N, C, T, H, W) float in [-1, 1]
        return to_signal(data)

    def decode(self, x: torch.Tensor) -> np.ndarray:
        return from_signal(x)


def for_run(cfg, shape: tuple[int, int, int, int]):
    """The codec a run config asks for: pixels or SD VAE latents for diffusion; pixel levels, VQ codes
    or MaskGIT VQGAN tokens for masked."""
    c = cfg.codec
    if c.pretrained == "sd_vae":
        from .vae import VAECodec

        return VAECodec(c.weights, c.subfolder, shape, c.latent_channels, c.downsampling)
    if c.pretrained == "maskgit_vqgan":
        from .vqgan import VQGANCodec

        return VQGANCodec(c.weights, c.vqgan, shape)
    if cfg.model.generator != "masked":
        return Pixels(shape)
    if c.tokenizer:
        from .tokenizer import VQCodec, load

        return VQCodec(load(c.tokenizer), shape, c.tokenizer)
    return PixelTokens(cfg.data.levels, shape)
