"""MaskGIT's ImageNet VQGAN (1024 codes, 16 x 16 tokens at 256 x 256), as a codec.

The network follows the official MaskGIT tokenizer (a VQGAN without attention layers, average-pool
downsampling, nearest upsampling, bias-free residual convolutions) with the parameter names of the
public PyTorch conversion of its checkpoint (open-muse's MaskGitVQGAN), so that state dict loads
here with strict=True. A file that does not match is a one-line error: loading it loosely would
silently keep random weights for whatever did not match.

Pixels go in and come out in [0, 1], as in MaskGIT's input pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from elt.codecs.base import LoadsOnFirstUse
from elt.errors import UserError
from elt.files import file_sha


@dataclass(frozen=True)
class VQGANConfig:
    hidden: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # one entry per resolution; each but the last halves the side
    res_blocks: int = 2
    z_channels: int = 256
    codebook: int = 1024
    code_dim: int = 256
    channels: int = 3

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


# Named layouts a codec config refers to (codec.vqgan): MaskGIT's, and a tiny one for tests and smoke runs.
LAYOUTS = {
    "maskgit": VQGANConfig(),
    "T": VQGANConfig(hidden=32, channel_mult=(1, 2), res_blocks=1, z_channels=32, codebook=64, code_dim=32),
}


def conv(cin: int, cout: int, kernel: int, bias: bool = True) -> nn.Conv2d:
    # Stride-1 'SAME' convolutions with odd kernels: symmetric padding of kernel // 2.
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), conv(cin, cout, 3, bias=False)
        self.norm2, self.conv2 = norm(cout), conv(cout, cout, 3, bias=False)
        if cin != cout:
            # MaskGIT projects the block's output, not its input, when the width changes (a quirk of the
            # official model that its weights depend on): the 1x1 maps cout -> cout.
            self.nin_shortcut = conv(cout, cout, 1, bias=False)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.nin_shortcut(h) if hasattr(self, "nin_shortcut") else x)


class Stage(nn.Module):
    """Residual blocks at one resolution, then a resampling (none at the innermost resolution)."""

    def __init__(self, cin: int, cout: int, blocks: int, up: bool, resample: bool):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin if i == 0 else cout, cout) for i in range(blocks))
        self.up, self.resample = up, resample
        if up and resample:
            self.upsample_conv = conv(cout, cout, 3)

    def forward(self, x):
        for block in self.block:
            x = block(x)
        if self.resample and self.up:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        elif self.resample:
            x = F.avg_pool2d(x, 2)
        return x


class Encoder(nn.Module):
    def __init__(self, c: VQGANConfig):
        super().__init__()
        widths = [c.hidden * m for m in c.channel_mult]
        last = len(widths) - 1
        self.conv_in = conv(c.channels, c.hidden, 3, bias=False)
        self.down = nn.ModuleList(
            Stage(([c.hidden] + widths)[i], widths[i], c.res_blocks, up=False, resample=i != last)
            for i in range(len(widths))
        )
        self.mid = nn.ModuleList(ResnetBlock(widths[-1], widths[-1]) for _ in range(c.res_blocks))
        self.norm_out, self.conv_out = norm(widths[-1]), conv(widths[-1], c.z_channels, 1)

    def forward(self, x):  # (N, 3, H, W) in [0, 1] -> (N, z, H/f, W/f)
        x = self.conv_in(x)
        for stage in [*self.down, *self.mid]:
            x = stage(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, c: VQGANConfig):
        super().__init__()
        widths = [c.hidden * m for m in c.channel_mult]
        self.conv_in = conv(c.z_channels, widths[-1], 3)
        self.mid = nn.ModuleList(ResnetBlock(widths[-1], widths[-1]) for _ in range(c.res_blocks))
        # up[i] works at resolution i (0 = full size) and runs from the innermost outwards.
        self.up = nn.ModuleList(
            Stage((widths + [widths[-1]])[i + 1], widths[i], c.res_blocks, up=True, resample=i != 0)
            for i in range(len(widths))
        )
        self.norm_out, self.conv_out = norm(widths[0]), conv(widths[0], c.channels, 3)

    def forward(self, z):
        x = self.conv_in(z)
        for stage in [*self.mid, *reversed(self.up)]:
            x = stage(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class VectorQuantizer(nn.Module):
    def __init__(self, codebook: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(codebook, dim)

    def indices(self, z):  # (N, D, h, w) -> (N, h*w) nearest codes
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        distance = (
            flat.pow(2).sum(1, keepdim=True) + self.embedding.weight.pow(2).sum(1) - 2 * flat @ self.embedding.weight.T
        )
        return distance.argmin(1).view(len(z), -1)

    def codes(self, idx, side: tuple[int, int]):  # (N, h*w) -> (N, D, h, w)
        return self.embedding(idx).view(len(idx), *side, -1).permute(0, 3, 1, 2)


class VQGAN(nn.Module):
    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.codebook, cfg.code_dim)

    @torch.no_grad()
    def encode(self, pixels):  # (N, 3, H, W) in [0, 1] -> (N, H/f * W/f) long
        return self.quantize.indices(self.encoder(pixels))

    @torch.no_grad()
    def decode(self, idx, side: tuple[int, int]):  # (N, h*w) -> (N, 3, h*f, w*f) in [0, 1]
        return self.decoder(self.quantize.codes(idx, side)).clamp(0, 1)


def read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load(path, layout: str = "maskgit") -> VQGAN:
    """The VQGAN of a layout with the weights of a state dict file (.safetensors, .pt or .bin), strictly."""
    if layout not in LAYOUTS:
        raise UserError(f"codec.vqgan is {layout!r}: use one of {', '.join(LAYOUTS)}")
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"VQGAN weights {str(path)!r} do not exist: set codec.weights to the MaskGIT VQGAN state dict file"
        )
    try:
        state = read_state_dict(path)
    except Exception as err:
        raise UserError(
            f"VQGAN weights {str(path)!r} cannot be read ({type(err).__name__}): pass a .safetensors, .pt or .bin "
            "state dict"
        ) from None
    net = VQGAN(LAYOUTS[layout])
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or reshaped:
        what = "; ".join(
            f"{label} {len(keys)} (e.g. {keys[0]})"
            for label, keys in [("missing", missing), ("unexpected", unexpected), ("wrong shape", reshaped)]
            if keys
        )
        raise UserError(
            f"VQGAN weights {str(path)!r} do not match the {layout!r} layout ({what}): "
            "pass the MaskGIT VQGAN state dict in the layout of its PyTorch conversion, or fix codec.vqgan"
        )
    net.load_state_dict(state, strict=True)
    return net.eval()


class VQGANCodec(LoadsOnFirstUse):
    """Images uint8 (N, 1, 3, H, W) <-> tokens (N, H/f * W/f); the network loads on first use."""

    kind = "tokens"

    def __init__(self, weights, layout: str, shape: tuple[int, int, int, int]):
        t, c, h, w = shape
        cfg = LAYOUTS.get(layout) or load(weights, layout).cfg  # an unknown layout fails here, in one line
        if t != 1 or c != cfg.channels or h % cfg.downsampling or w % cfg.downsampling:
            raise UserError(
                f"the VQGAN codes {cfg.channels}-channel images whose sides divide by {cfg.downsampling}, "
                f"not examples of shape {shape}: fix data.image_size, data.channels or the codec"
            )
        self.weights, self.layout, self.shape = weights, layout, shape
        self.side = (h // cfg.downsampling, w // cfg.downsampling)
        self.grid, self.vocab_size = (1, *self.side), cfg.codebook

    def load(self):
        return load(self.weights, self.layout)

    def identity(self) -> dict:
        return {"codec": "maskgit_vqgan", "layout": self.layout, "weights_sha": file_sha(self.weights)}

    def encode(self, data: np.ndarray) -> torch.Tensor:  # uint8 (N, 1, C, H, W) -> (N, h*w) long
        return self.net.encode(torch.from_numpy(data[:, 0]).float().div(255).to(self.device)).cpu()

    def decode_chunk(self, tokens: torch.Tensor) -> np.ndarray:
        pixels = self.net.decode(tokens.to(self.device), self.side)
        return (pixels * 255).round().to(torch.uint8).cpu().numpy()[:, None]
