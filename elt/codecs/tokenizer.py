"""A small learned 3D VQ tokenizer: the role MAGVIT's tokenizer plays for the masked video models.

Tubelets of (pt, ph, pw) pixels are encoded to a code vector and snapped to the nearest of K
codebook entries (straight-through gradients, commitment loss, codebook initialised from encoder
outputs); the decoder maps codes back to tubelets. Trained once per dataset; its held-out
reconstruction error is recorded with it, and VQCodec exposes it through the codec interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from elt.codecs.base import OnTheCPU, from_signal, to_signal
from elt.errors import UserError
from elt.files import file_sha, load_module, save_module


@dataclass
class TokenizerConfig:
    in_channels: int = 1
    patch: list[int] = field(default_factory=lambda: [4, 4, 4])  # (pt, ph, pw): pixels per token
    hidden: int = 64
    code_dim: int = 16
    codebook: int = 256
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    beta: float = 0.25  # commitment weight
    restart_every: int = 50  # codes unused for this many steps are moved onto encoder outputs
    seed: int = 0


class VQTokenizer(nn.Module):
    """3x3x3 convolutions around a strided (tubelet) convolution: each code sees its neighbours."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        p, h, c = tuple(cfg.patch), cfg.hidden, cfg.in_channels
        self.encoder = nn.Sequential(
            nn.Conv3d(c, h // 2, 3, padding=1),
            nn.GELU(),
            nn.Conv3d(h // 2, h, p, p),
            nn.GELU(),
            nn.Conv3d(h, h, 3, padding=1),
            nn.GELU(),
            nn.Conv3d(h, cfg.code_dim, 1),
        )
        self.codes = nn.Parameter(torch.randn(cfg.codebook, cfg.code_dim))
        self.decoder = nn.Sequential(
            nn.Conv3d(cfg.code_dim, h, 3, padding=1),
            nn.GELU(),
            nn.ConvTranspose3d(h, h // 2, p, p),
            nn.GELU(),
            nn.Conv3d(h // 2, c, 3, padding=1),
        )

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
        idx, q = self.quantise(z)
        recon = self.decoder(z + (q - z).detach())  # straight-through
        commit = F.mse_loss(z, q.detach())
        codebook = F.mse_loss(q, z.detach())
        return recon, F.mse_loss(recon, x) + codebook + self.cfg.beta * commit, z, idx


@torch.no_grad()
def encode_batched(net: VQTokenizer, data: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """uint8 (N, T, C, H, W) -> code indices (N, T', H', W')."""
    return torch.cat([net.encode(to_signal(data[i : i + batch_size])) for i in range(0, len(data), batch_size)])


@torch.no_grad()
def reconstruction_error(net: VQTokenizer, data: np.ndarray) -> dict:
    """Held-out error of the uint8 round trip, as the generators see it: mse on [-1, 1], PSNR, codes in use."""
    idx = encode_batched(net, data)
    recon = to_signal(from_signal(net.decode(idx)))
    mse = F.mse_loss(recon, to_signal(data)).item()
    return {
        "mse": mse,
        "psnr": float(10 * np.log10(4.0 / max(mse, 1e-12))),
        "codes_used": len(torch.unique(idx)),
        "n_clips": len(data),
    }


def train_tokenizer(train_data: np.ndarray, held_data: np.ndarray, cfg: TokenizerConfig, device="cpu"):
    """Train on uint8 clips on `device` (random draws on the CPU: the same on every device); each batch becomes
    float on its way there (the whole split in float32 would be 4x its size: 30 GB for UCF-101 at the paper's
    size) -> (network on the CPU, held-out reconstruction error)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = VQTokenizer(cfg).to(device)

    def draw(n):
        return to_signal(train_data[torch.randint(0, len(train_data), (n,), generator=gen).numpy()]).to(device)

    def encoder_outputs(n):
        return rearrange(net.encoder(draw(n)), "n d t h w -> (n t h w) d")

    with torch.no_grad():  # codebook from encoder outputs: no dead codes at the start
        z = encoder_outputs(cfg.batch_size * 4)
        net.codes.copy_(z[torch.randint(0, len(z), (cfg.codebook,), generator=gen).to(device)])
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    last_used = torch.zeros(cfg.codebook, dtype=torch.long, device=device)
    for step in range(1, cfg.steps + 1):
        _, loss, z, idx = net(draw(cfg.batch_size))
        opt.zero_grad()
        loss.backward()
        opt.step()
        last_used[idx.unique()] = step
        dead = (step - last_used >= cfg.restart_every).nonzero()[:, 0]
        if len(dead) and step < 0.8 * cfg.steps:  # restart dead codes on current encoder outputs
            with torch.no_grad():
                flat = rearrange(z.detach(), "n d t h w -> (n t h w) d")
                net.codes[dead] = flat[torch.randint(0, len(flat), (len(dead),), generator=gen).to(device)]
                last_used[dead] = step
    net.eval().to("cpu")
    return net, reconstruction_error(net, held_data)


def save(net: VQTokenizer, path, error: dict) -> None:
    save_module(net, path, held_out_error=error)


def load(path) -> VQTokenizer:
    if not Path(path).is_file():
        raise UserError(
            f"tokenizer {str(path)!r} does not exist: train one with 'elt tokenizer' (the pipeline does) or fix "
            "codec.tokenizer"
        )
    return load_module(path, VQTokenizer, TokenizerConfig)


class VQCodec(OnTheCPU):
    """Codec over a trained tokenizer: data uint8 (N, T, C, H, W) <-> tokens (N, T'*H'*W')."""

    kind = "tokens"

    def __init__(self, net: VQTokenizer, shape: tuple[int, int, int, int], path=None):
        self.net, self.shape, self.path = net, shape, path
        t, c, h, w = shape
        pt, ph, pw = net.cfg.patch
        self.grid, self.vocab_size = (t // pt, h // ph, w // pw), net.cfg.codebook

    def identity(self) -> dict:
        return {"codec": "vq_tokenizer", "tokenizer_sha": self.path and file_sha(self.path)}

    def encode(self, data: np.ndarray) -> torch.Tensor:
        return encode_batched(self.net, data).flatten(1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        return from_signal(
            self.net.decode(tokens.cpu().view(len(tokens), *self.grid))
        )  # the tokenizer decodes on the CPU
