"""Parameters and inference FLOPs, measured with torch.utils.flop_counter and derived analytically.

FLOPs count matrix multiplications as 2 per multiply-add, as the flop counter does (norms,
activations and softmax are not counted). Per sample = per forward x sampling steps x 2 with
classifier-free guidance (a conditional and an unconditional forward per step).
"""

from __future__ import annotations

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from elt.data.datasets import modality
from elt.models.looped import DiT, LoopedNetwork, NetConfig, count_params


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


# torch counts the CUDA attention kernels but not the CPU one: count it the same way, so FLOPs
# measured on this machine equal those measured on a GPU.
CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


def dummy_inputs(cfg: NetConfig, device: torch.device | str = "cpu"):
    labels = torch.zeros(1, dtype=torch.long, device=device)
    if cfg.kind == "masked":
        return torch.zeros(1, cfg.seq_len, dtype=torch.long, device=device), labels, None
    (t, h, w), (pt, ph, pw) = cfg.grid, cfg.patch
    return torch.zeros(1, cfg.in_channels, t * pt, h * ph, w * pw, device=device), labels, torch.zeros(1, device=device)


@torch.no_grad()
def measured_flops(net: LoopedNetwork, loops: int) -> int:
    """FLOPs of one forward pass for one sample at `loops`, counted by torch."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)
    with counter:
        net(*dummy_inputs(net.cfg, next(net.parameters()).device), loops=loops)
    return counter.get_total_flops()


def analytic_flops(cfg: NetConfig, loops: int) -> int:
    """The same count from the architecture's shapes (a test holds it equal to measured_flops)."""
    d, r = cfg.dim, cfg.mlp_ratio
    s = cfg.seq_len + (1 if cfg.kind == "masked" else 0)  # the masked model prepends a class token
    layer = 2 * s * d * 3 * d + 2 * s * d * d + 2 * 2 * s * s * d + 2 * 2 * s * d * r * d
    if cfg.kind == "masked":
        outside = 2 * cfg.seq_len * d * cfg.vocab_size
    else:
        layer += 2 * d * 6 * d  # adaLN modulation, recomputed in every layer of every loop
        patch_dim = cfg.in_channels * cfg.patch[0] * cfg.patch[1] * cfg.patch[2]
        outside = 2 * s * patch_dim * d + 2 * DiT.time_features * d + 2 * d * d + 2 * d * 2 * d + 2 * s * d * patch_dim
    return layer * cfg.n_unique * loops + outside


def describe(parts, net: LoopedNetwork, eval_loops: list[int]) -> dict:
    """The auditor's view of one run: parameters and FLOPs at every loop count in eval_loops."""
    cfg = parts.cfg
    passes = parts.cfg.sampling_steps * (2 if parts.cfg.guidance != 1.0 else 1)
    per_forward = {loop: measured_flops(net, loop) for loop in eval_loops}
    return {
        "run": cfg.run,
        "family": cfg.model.family,
        "generator": cfg.model.generator,
        "modality": modality(parts.codec.shape),
        "width": cfg.model.width,
        "dim": net.cfg.dim,
        "n_unique": net.cfg.n_unique,
        "loops_train": net.cfg.loops,
        **count_params(net),
        "sampling_steps": parts.cfg.sampling_steps,
        "guidance": parts.cfg.guidance,
        "forwards_per_sample": passes,
        "gflops_per_forward": {loop: f / 1e9 for loop, f in per_forward.items()},
        "gflops_per_sample": {loop: f * passes / 1e9 for loop, f in per_forward.items()},
    }


def loop_plan_cost(net: LoopedNetwork, loops_used: torch.Tensor, guidance: float) -> dict:
    """What a loop schedule or early-exit rule cost, from the loops each sample actually ran at each
    step (loops_used (N, steps)): GFLOPs per sample = sum over steps of the per-forward FLOPs at that
    sample's L (x 2 with guidance), averaged over samples; and the loops used."""
    per_forward = {int(l): measured_flops(net, int(l)) for l in loops_used.unique()}
    flops = torch.zeros(loops_used.shape[0], dtype=torch.float64)
    for loops, f in per_forward.items():
        flops += (loops_used == loops).sum(1).double() * f
    passes = 2 if guidance != 1.0 else 1
    return {
        "gflops_per_sample": float(flops.mean()) * passes / 1e9,
        "loops_used_mean": float(loops_used.double().mean()),
        "loops_used_per_step": loops_used.double().mean(0).tolist(),
        "loops_used_histogram": {int(l): int((loops_used == l).sum()) for l in per_forward},
    }
