"""The codec interface, and what codecs share: the [-1, 1] signal layout and loading a pretrained network
on first use."""

from __future__ import annotations

import abc
from typing import Literal, Protocol

import numpy as np
import torch
from einops import rearrange


class Codec(Protocol):
    """Data uint8 (N, T, C, H, W) <-> what a generator models: tokens (N, S) long, or continuous values
    (N, C', T', H', W'). Pixels, this harness's VQ tokenizer, the SD VAE and MaskGIT's VQGAN implement it."""

    kind: Literal["tokens", "continuous"]

    def encode(self, data: np.ndarray) -> torch.Tensor: ...

    def decode(self, x: torch.Tensor) -> np.ndarray: ...

    def identity(self) -> dict:
        """What pre-encoded shards record, so data another codec made is refused."""

    def to(self, device) -> None:
        """Code on `device`: a pretrained codec's network moves there; a codec without one ignores it."""


class OnTheCPU:
    """A codec without a network of its own, or one that decodes on the CPU: `to` leaves it there."""

    def to(self, device) -> None:
        """Nothing moves: encoding and decoding stay on the CPU."""


class LoadsOnFirstUse(abc.ABC):
    """A pretrained codec's network: loaded from its local path when first needed (describing a run or
    reading its shards needs only the codec's geometry), on the device the codec was moved to."""

    _net, device = None, torch.device("cpu")
    decode_batch = 32  # examples per decoder call: a sampling batch of 256 at 256 x 256 would not fit at once

    @abc.abstractmethod
    def load(self) -> torch.nn.Module:
        """The network, read from the codec's weights."""

    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            self._net = self.load().to(self.device)
        return self._net

    def decode(self, x: torch.Tensor) -> np.ndarray:
        """Decoded decode_batch examples at a time."""
        return np.concatenate(
            [self.decode_chunk(x[i : i + self.decode_batch]) for i in range(0, len(x), self.decode_batch)]
        )

    @abc.abstractmethod
    def decode_chunk(self, x: torch.Tensor) -> np.ndarray:
        """Decode a few examples in one call of the network."""

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
