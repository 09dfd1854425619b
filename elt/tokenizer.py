"""A small learned 3D VQ tokenizer: the role MAGVIT's tokenizer plays for the masked video models.

Tubelets of (pt, ph, pw) pixels are encoded to a code vector and snapped to the nearest of K
codebook entries (straight-through gradients, commitment loss, codebook initialised from encoder
outputs); the decoder maps codes back to tubelets. Trained once per dataset; its held-out
reconstruction error is recorded with it, and VQCodec exposes it through the codec interface.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .codecs import from_signal, to_signal
from .provenance import load_module, save_module


@dataclass
class TokenizerConfig:
    in_channels: int = 1
    patch: list[int] = field(default_factory=lambda: [4, 4, 4])  # (pt, ph, pw)
    hidden: int = 64
    code_dim: int = 16
    codebook: int = 64
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    beta: float = 0.25  # commitment weight
    seed: int = 0


class VQTokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        p, h = tuple(cfg.patch), cfg.hidden
        self.encoder = nn.Sequential(nn.Conv3d(cfg.in_channels, h, p, p), nn.GELU(), nn.Conv3d(h, h, 1), nn.GELU(), nn.Conv3d(h, cfg.code_dim, 1))
        self.codes = nn.Parameter(torch.randn(cfg.codebook, cfg.code_dim))
        self.decoder = nn.Sequential(nn.Conv3d(cfg.code_dim, h, 1), nn.GELU(), nn.Conv3d(h, h, 1), nn.GELU(), nn.ConvTranspose3d(h, cfg.in_channels, p, p))

    def quantise(self, z):  # z (N, D, T', H', W') -> indices (N, T', H', W'), codes like z
        flat = rearrange(z, "n d t h w -> (n t h w) d")
        idx = torch.cdist(flat, self.codes).argmin(1)
        q = rearrange(self.codes[idx], "(n t h w) d -> n d t h w", n=z.shape[0], t=z.shape[2], h=z.shape[3])
        return idx.view(z.shape[0], *z.shape[2:]), q

    def encode(self, x):  # x (N, C, T, H, W) in [-1, 1]
        return self.quantise(self.encoder(x))[0]

    def decode(self, idx):  # idx (N, T', H', W')
        return self.decoder(rearrange(self.codes[idx], "n t h w d -> n d t h w"))

    def forward(self, x):
        z = self.encoder(x)
        _, q = self.quantise(z)
        recon = self.decoder(z + (q - z).detach())  # straight-through
        commit = F.mse_loss(z, q.detach())
        codebook = F.mse_loss(q, z.detach())
        return recon, F.mse_loss(recon, x) + codebook + self.cfg.beta * commit


def reconstruction_error(net: VQTokenizer, data: np.ndarray) -> dict:
    with torch.no_grad():
        x = to_signal(data)
        recon = net.decode(net.encode(x)).clamp(-1, 1)
    mse = F.mse_loss(recon, x).item()
    used = len(torch.unique(net.encode(x)))
    return {"mse": mse, "psnr": float(10 * np.log10(4.0 / mse)), "codes_used": used}


def train_tokenizer(train_data: np.ndarray, held_data: np.ndarray, cfg: TokenizerConfig):
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = VQTokenizer(cfg)
    x_all = to_signal(train_data)
    with torch.no_grad():  # codebook from encoder outputs: no dead codes at the start
        z = rearrange(net.encoder(x_all[: cfg.batch_size * 4]), "n d t h w -> (n t h w) d")
        net.codes.copy_(z[torch.randperm(len(z), generator=gen)[: cfg.codebook]])
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    for _ in range(cfg.steps):
        batch = x_all[torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen)]
        _, loss = net(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return net, reconstruction_error(net, held_data)


def save(net: VQTokenizer, path, error: dict) -> None:
    save_module(net, path, held_out_error=error)


def load(path) -> VQTokenizer:
    return load_module(path, VQTokenizer, TokenizerConfig)


class VQCodec:
    """Codec over a trained tokenizer: data uint8 (N, T, C, H, W) <-> tokens (N, T'*H'*W')."""

    kind = "tokens"

    def __init__(self, net: VQTokenizer, shape: tuple[int, int, int, int]):
        self.net, self.shape = net, shape
        t, c, h, w = shape
        pt, ph, pw = net.cfg.patch
        self.grid, self.vocab_size = (t // pt, h // ph, w // pw), net.cfg.codebook

    @torch.no_grad()
    def encode(self, data: np.ndarray) -> torch.Tensor:
        return self.net.encode(to_signal(data)).flatten(1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        return from_signal(self.net.decode(tokens.view(len(tokens), *self.grid)))
