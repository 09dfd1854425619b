"""The looped transformer: N unique layers applied L times, embedding and heads outside the loop.

Two networks share one looped stack:
- MaskedTransformer: BERT-style token model for MaskGIT decoding (class token prepended).
- DiT: denoiser on patches with adaLN-Zero conditioning on noise level and class.
An unshared baseline is the same class with n_unique = N*L and loops = 1 (see baselines/).
One forward pass can return the head outputs at several loop exits: the ILSD student and teacher
come from a single pass, and the exit at L equals a plain forward run with loops=L.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from elt.errors import UserError


@dataclass
class NetConfig:
    """Everything needed to rebuild the network; saved in every checkpoint."""

    kind: str  # "masked" | "diffusion"
    dim: int
    heads: int
    mlp_ratio: int
    n_unique: int  # unique layers in the looped block
    loops: int  # default loop count (L_max of training)
    grid: tuple[int, int, int]  # token grid (T, H, W), after patching for diffusion
    num_classes: int
    vocab_size: int = 0  # masked: codebook size (the [MASK] token is one more)
    in_channels: int = 0  # diffusion: channels of the denoised signal
    patch: tuple[int, int, int] = (1, 1, 1)  # diffusion: (pt, ph, pw)
    activation: str = "gelu"  # MLP nonlinearity: gelu | gelu_tanh
    norm: str = "pre"  # pre | post (LayerNorm after each residual sum: BERT, MaskGIT)
    dropout: float = 0.0  # training only: attention weights and both residual branches

    @property
    def seq_len(self) -> int:
        t, h, w = self.grid
        return t * h * w

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        d = dict(d)
        d["grid"], d["patch"] = tuple(d["grid"]), tuple(d["patch"])
        d.setdefault("activation", "gelu_tanh")  # checkpoints written before the field existed used tanh
        return cls(**d)


def check_loops(loops: int) -> int:
    if not isinstance(loops, int) or loops < 1:
        raise UserError(f"loop count {loops!r} is invalid: use an integer L >= 1")
    return loops


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """A bf16 or fp16 tensor (a head's output under autocast) in fp32; fp32 and fp64 as they are."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def guide(output, scale: float):
    """Classifier-free guidance: output holds the conditional then the unconditional half of a batch. At least
    fp32: under bf16 autocast the head's output is bf16, and the difference of two close halves would lose most bits."""
    output = at_least_fp32(output)
    if scale == 1.0:
        return output
    cond, uncond = output.chunk(2)
    return uncond + scale * (cond - uncond)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class Block(nn.Module):
    """Pre-norm transformer layer (post-norm with norm="post"); with adaln=True the norms are modulated by a
    condition (adaLN-Zero)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: int,
        adaln: bool,
        activation: str = "gelu",
        norm: str = "pre",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.heads, self.post_norm, self.attention_dropout = heads, norm == "post", dropout
        # no module at 0: a run without dropout draws nothing from the device's random stream
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=not adaln, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=not adaln, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim),
            nn.GELU(approximate="tanh" if activation == "gelu_tanh" else "none"),
            nn.Linear(mlp_ratio * dim, dim),
        )
        self.adaln = None
        if adaln:
            self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
            nn.init.zeros_(self.adaln[1].weight)  # zero gates: the block starts as the identity
            nn.init.zeros_(self.adaln[1].bias)

    def attention(self, x):
        b, s, d = x.shape
        q, k, v = rearrange(self.qkv(x), "b s (three h e) -> three b h s e", three=3, h=self.heads)
        dropout = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # (B, heads, S, d/heads), bidirectional
        return self.proj(rearrange(out, "b h s e -> b s (h e)"))

    def forward(self, x, c=None):
        if self.adaln is None and self.post_norm:
            x = self.norm1(x + self.drop(self.attention(x)))
            return self.norm2(x + self.drop(self.mlp(x)))
        if self.adaln is None:
            x = x + self.drop(self.attention(self.norm1(x)))
            return x + self.drop(self.mlp(self.norm2(x)))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(c)[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.drop(self.attention(modulate(self.norm1(x), shift1, scale1)))
        return x + gate2 * self.drop(self.mlp(modulate(self.norm2(x), shift2, scale2)))


class LoopedStack(nn.Module):
    """N unique layers applied L times: effective depth N*L, parameters of N layers."""

    def __init__(self, cfg: NetConfig, adaln: bool):
        super().__init__()
        self.layers = nn.ModuleList(
            Block(cfg.dim, cfg.heads, cfg.mlp_ratio, adaln, cfg.activation, cfg.norm, cfg.dropout)
            for _ in range(cfg.n_unique)
        )

    def step(self, x, c):
        """One loop: the N unique layers once."""
        for layer in self.layers:
            x = layer(x, c)
        return x

    def forward(self, x, c, exits: Sequence[int]) -> dict[int, torch.Tensor]:
        """Run to max(exits) loops; return the hidden state after each loop in exits."""
        wanted = {check_loops(e) for e in exits}
        hidden = {}
        for loop in range(1, max(wanted) + 1):
            x = self.step(x, c)
            if loop in wanted:
                hidden[loop] = x
        return hidden


class GridPositionalEmbedding(nn.Module):
    """Learned positions over (t, h, w), factorised as a sum: images have T = 1."""

    def __init__(self, grid: tuple[int, int, int], dim: int):
        super().__init__()
        self.t, self.h, self.w = (nn.Parameter(torch.randn(n, dim) * 0.02) for n in grid)

    def forward(self):  # (T*H*W, D)
        return (self.t[:, None, None] + self.h[None, :, None] + self.w[None, None, :]).flatten(0, 2)


class LoopedNetwork(nn.Module):
    """What both networks share: the looped stack and the loop-count interface."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.pos = GridPositionalEmbedding(cfg.grid, cfg.dim)
        self.stack = LoopedStack(cfg, adaln=cfg.kind == "diffusion")

    def forward(self, inputs, labels, t=None, loops: int | None = None, exits: Sequence[int] | None = None):
        """Head output at `loops` (default: the trained L), or a dict {L: output} for each L in exits."""
        x, c = self.embed(inputs, labels, t)
        if exits is None:
            loop = check_loops(self.cfg.loops if loops is None else loops)
            return self.head(self.stack(x, c, [loop])[loop], c)
        return {loop: self.head(h, c) for loop, h in self.stack(x, c, exits).items()}

    def early_exit(self, inputs, labels, t, rule, combine, change, copies: int = 1):
        """Per-sample early exit (rule: elt.methods.schedule.EarlyExit). The batch holds `copies` stacked copies of
        B samples (2 under classifier-free guidance); combine(head output (copies*A, ...)) -> per-sample
        output (A, ...); change(previous, current) -> (A,). Loops run only on samples still active; a
        sample leaves at the first L >= L_min whose output moved less than the threshold since L-1 (loop
        0 is the head on the embeddings), or at L_max. -> (outputs (B, ...), loops used (B,))."""
        x, c = self.embed(inputs, labels, t)
        b = x.shape[0] // copies
        active = torch.arange(b, device=x.device)
        result, used = None, torch.zeros(b, dtype=torch.long, device=x.device)

        def keep_rows(v, keep):  # the kept samples in every copy
            return None if v is None else v.view(copies, -1, *v.shape[1:])[:, keep].flatten(0, 1)

        for loop in range(1, rule.l_max + 1):
            if loop == rule.l_min:
                previous = combine(self.head(x, c))
            x = self.stack.step(x, c)
            if loop < rule.l_min:
                continue
            current = combine(self.head(x, c))
            done = (
                change(previous, current) < rule.threshold
                if loop < rule.l_max
                else torch.ones(len(active), dtype=torch.bool, device=x.device)
            )
            if result is None:
                result = current.new_empty((b, *current.shape[1:]))
            result[active[done]], used[active[done]] = current[done], loop
            keep = ~done
            if not keep.any():
                break
            active, x, c, previous = active[keep], keep_rows(x, keep), keep_rows(c, keep), current[keep]
        return result, used


class MaskedTransformer(LoopedNetwork):
    """Tokens (B, S) in [0, vocab] (vocab = [MASK]) and labels (B,) in [0, classes] -> logits (B, S, vocab)."""

    def __init__(self, cfg: NetConfig):
        super().__init__(cfg)
        self.mask_token = cfg.vocab_size
        self.null_class = cfg.num_classes
        self.token_emb = nn.Embedding(cfg.vocab_size + 1, cfg.dim)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.out = nn.Linear(cfg.dim, cfg.vocab_size)

    def embed(self, tokens, labels, t=None):
        x = self.token_emb(tokens) + self.pos()
        return torch.cat([self.class_emb(labels)[:, None], x], dim=1), None  # (B, 1+S, D)

    def head(self, h, c=None):
        return self.out(self.norm(h[:, 1:]))


def timestep_embedding(t, dim: int = 256, max_period: float = 10000.0):
    """Sinusoidal features of t in [0, 1] (scaled by 1000, as DiT's integer steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class DiT(LoopedNetwork):
    """Signal (B, C, T, H, W), labels (B,), noise time t (B,) in [0, 1] -> prediction (B, C, T, H, W)."""

    time_features = 256

    def __init__(self, cfg: NetConfig):
        super().__init__(cfg)
        pt, ph, pw = cfg.patch
        self.patch_dim = cfg.in_channels * pt * ph * pw
        self.patch_emb = nn.Linear(self.patch_dim, cfg.dim)
        self.time_mlp = nn.Sequential(nn.Linear(self.time_features, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, cfg.dim)
        self.null_class = cfg.num_classes
        self.norm = nn.LayerNorm(cfg.dim, elementwise_affine=False, eps=1e-6)
        self.final_adaln = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, 2 * cfg.dim))
        self.out = nn.Linear(cfg.dim, self.patch_dim)
        for layer in (self.final_adaln[1], self.out):  # adaLN-Zero: the output starts at zero
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def embed(self, x, labels, t):
        pt, ph, pw = self.cfg.patch
        patches = rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
        c = self.time_mlp(timestep_embedding(t, self.time_features)) + self.class_emb(labels)  # (B, D)
        return self.patch_emb(patches) + self.pos(), c

    def head(self, h, c):
        shift, scale = self.final_adaln(c)[:, None].chunk(2, dim=-1)
        patches = self.out(modulate(self.norm(h), shift, scale))  # (B, S, C*pt*ph*pw)
        (t, hh, w), (pt, ph, pw) = self.cfg.grid, self.cfg.patch
        return rearrange(
            patches, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)", t=t, h=hh, w=w, pt=pt, ph=ph, pw=pw
        )


def build(cfg: NetConfig) -> LoopedNetwork:
    return {"masked": MaskedTransformer, "diffusion": DiT}[cfg.kind](cfg)


def count_params(net: nn.Module) -> dict[str, int]:
    """unique: stored parameters; total: as if every loop had its own layers (the unshared equivalent)."""
    unique = sum(p.numel() for p in net.parameters())
    block = sum(p.numel() for p in net.stack.parameters())
    return {"unique_params": unique, "total_params": unique + block * (net.cfg.loops - 1), "block_params": block}
