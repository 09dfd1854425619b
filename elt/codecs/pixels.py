"""Codecs of raw pixels: token levels for the masked generator, [-1, 1] values for the DiT."""

from __future__ import annotations

import numpy as np
import torch

from elt.codecs.base import OnTheCPU, from_signal, to_signal


class PixelTokens(OnTheCPU):
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


class Pixels(OnTheCPU):
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
