"""Diffusion generation with a DiT denoiser: shifted-cosine schedule, sigmoid-weighted MSE, DDPM/DDIM.

Continuous time t in [0, 1]; z_t = alpha_t x + sigma_t eps with alpha^2 = sigmoid(logSNR),
sigma^2 = sigmoid(-logSNR) (variance preserving). Whatever the network predicts (x0, eps or v,
a config value), the loss is w(logSNR) * ||eps_hat - eps||^2 with w = sigmoid(bias - logSNR)
(Kingma & Gao's sigmoid weighting), so the weighting means the same thing for every target. ILSD's
distillation term uses the same weighted MSE between student and stop-gradient teacher.
"""

from __future__ import annotations

import math

import torch

from elt.config import DiffusionConfig, RunConfig
from elt.errors import UserError
from elt.methods.schedule import EarlyExit, LoopSchedule
from elt.models.looped import NetConfig, at_least_fp32, guide
from elt.models.sizes import width


def logsnr_schedule(t: torch.Tensor, dc: DiffusionConfig) -> torch.Tensor:
    """Cosine logSNR = -2 log tan(pi t / 2), t rescaled so it spans [logsnr_min, logsnr_max], then shifted."""
    t_min = math.atan(math.exp(-0.5 * dc.logsnr_max))
    t_max = math.atan(math.exp(-0.5 * dc.logsnr_min))
    return -2.0 * torch.log(torch.tan(t_min + t * (t_max - t_min))) + 2.0 * math.log(dc.schedule_shift)


def alpha_sigma(logsnr: torch.Tensor):
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def loss_weight(logsnr: torch.Tensor, dc: DiffusionConfig) -> torch.Tensor:
    return torch.sigmoid(dc.sigmoid_bias - logsnr)


def to_x0_eps(out, z, alpha, sigma, target: str):
    """Network output -> (x0_hat, eps_hat), for any prediction target; at least fp32 whatever the network's
    precision (a bf16 head output would put its rounding into every sampling step)."""
    out = at_least_fp32(out)
    if target == "eps":
        return (z - sigma * out) / alpha, out
    if target == "x0":
        return out, (z - alpha * out) / sigma
    return alpha * z - sigma * out, sigma * z + alpha * out  # v = alpha eps - sigma x0


def relative_change(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """||current - previous|| / ||previous|| per sample -> (B,): how much a loop moved the prediction (>= fp32)."""
    previous, current = at_least_fp32(previous), at_least_fp32(current)
    diff = (current - previous).flatten(1).norm(dim=1)
    return diff / previous.flatten(1).norm(dim=1).clamp_min(1e-12)


def expand(v: torch.Tensor, like: torch.Tensor):
    return v.view(-1, *([1] * (like.dim() - 1)))


def sample_loop(
    predict,
    shape,
    steps: int,
    sampler: str,
    dc: DiffusionConfig,
    gen: torch.Generator,
    clip: bool = True,
    device: torch.device | str = "cpu",
):
    """Run the sampler from pure noise at t=1 to t=0; predict(z, t) -> (x0_hat, eps_hat).

    DDIM: z_s = alpha_s x0 + sigma_s eps_hat (deterministic). DDPM: a draw from q(z_s | z_t, x0_hat).
    """
    z = torch.randn(shape, generator=gen).to(device)  # noise drawn on the CPU: the same on every device
    times = torch.linspace(1.0, 0.0, steps + 1)
    for t, s in zip(times[:-1], times[1:]):
        t_b = torch.full((shape[0],), float(t), device=device)
        logsnr_t, logsnr_s = logsnr_schedule(t_b, dc), logsnr_schedule(torch.full_like(t_b, float(s)), dc)
        (a_t, s_t), (a_s, s_s) = alpha_sigma(expand(logsnr_t, z)), alpha_sigma(expand(logsnr_s, z))
        x0, eps = predict(z, t_b)
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (z - a_t * x0) / s_t
        if sampler == "ddim":
            z = a_s * x0 + s_s * eps
        else:
            a_ts = a_t / a_s
            var_ts = s_t**2 - a_ts**2 * s_s**2  # sigma^2_{t|s}
            mean = (a_ts * s_s**2 / s_t**2) * z + (a_s * var_ts / s_t**2) * x0
            std = (var_ts * s_s**2 / s_t**2).sqrt()
            z = mean + std * torch.randn(shape, generator=gen).to(device)
    return z


def clips_x0(cfg: RunConfig) -> bool:
    """Whether sampling clamps x0 to [-1, 1]: diffusion.clip_x0, else on for pixels (their range) and off for
    latents (a pretrained codec's: unbounded, so a clamp would distort them)."""
    return cfg.diffusion.clip_x0 if cfg.diffusion.clip_x0 is not None else cfg.codec.pretrained is None


class DiffusionGenerator:
    def __init__(self, cfg: RunConfig, codec):
        self.cfg, self.codec, self.dc = cfg, codec, cfg.diffusion

    def net_config(self, num_classes: int, n_unique: int, loops: int) -> NetConfig:
        """Patches of patch_size^2 pixels on images, tubelets of patch_time x patch_size^2 on video."""
        w, m = width(self.cfg.model.width), self.cfg.model
        t, h, ww = self.codec.spatial
        patch = (m.patch_time if t > 1 else 1, m.patch_size, m.patch_size)
        if t % patch[0] or h % patch[1] or ww % patch[2]:
            raise UserError(
                f"patch (time {patch[0]}, side {patch[1]}) does not divide the {t}x{h}x{ww} input: "
                "pick divisors for model.patch_time and model.patch_size"
            )
        grid = (t // patch[0], h // patch[1], ww // patch[2])
        return NetConfig(
            "diffusion",
            w.dim,
            w.heads,
            w.mlp_ratio,
            n_unique,
            loops,
            grid,
            num_classes,
            in_channels=self.codec.channels,
            patch=patch,
            activation=self.cfg.model.activation,
            norm=self.cfg.model.norm,
            dropout=self.cfg.model.dropout,
        )

    # --- training -------------------------------------------------------------------------------
    def training_inputs(self, batch, gen):
        x, labels = batch  # (B, C, T, H, W) in [-1, 1], (B,)
        # drawn on the CPU from the run's generator (the same on every device), then moved to the batch
        t = torch.rand(len(x), generator=gen).to(x.device)
        eps = torch.randn(x.shape, generator=gen).to(x.device)
        logsnr = logsnr_schedule(t, self.dc)
        alpha, sigma = alpha_sigma(expand(logsnr, x))
        return {
            "z": alpha * x + sigma * eps,
            "t": t,
            "labels": labels,
            "eps": eps,
            "alpha": alpha,
            "sigma": sigma,
            "weight": loss_weight(logsnr, self.dc),
        }

    def forward(self, net, inputs, exits):
        return net(inputs["z"], inputs["labels"], inputs["t"], exits=exits)

    def _eps(self, out, inputs):
        return to_x0_eps(out, inputs["z"], inputs["alpha"], inputs["sigma"], self.dc.target)[1]

    def _weighted_mse(self, a, b, inputs):
        return (inputs["weight"] * (a - b).pow(2).flatten(1).mean(1)).mean()

    def gt_loss(self, out, inputs):
        return self._weighted_mse(self._eps(out, inputs), inputs["eps"], inputs)

    def distill_loss(self, student, teacher, inputs):
        return self._weighted_mse(self._eps(student, inputs), self._eps(teacher, inputs), inputs)

    # --- sampling -------------------------------------------------------------------------------
    def sample(
        self, net, labels: torch.Tensor, loops, gen: torch.Generator, loops_used: list | None = None
    ) -> torch.Tensor:
        """loops: an int, a LoopSchedule (a loop count per denoising step) or an EarlyExit rule; the loops
        each sample ran at each step are appended to loops_used (one (B,) tensor per step) when given."""
        with torch.no_grad():  # not a decorator: mutmut (make mutants) skips decorated functions
            scale, (t, h, w) = self.dc.guidance, self.codec.spatial
            null = torch.full_like(labels, net.null_class)
            per_step = (
                loops.per_step(self.dc.sampling_steps)
                if isinstance(loops, LoopSchedule)
                else [loops] * self.dc.sampling_steps
            )
            steps_done = []

            def predict(z, t_b):
                step = per_step[len(steps_done)]
                if isinstance(step, EarlyExit):
                    inputs, conds, times, copies = (
                        (z, labels, t_b, 1)
                        if scale == 1.0
                        else (torch.cat([z, z]), torch.cat([labels, null]), torch.cat([t_b, t_b]), 2)
                    )
                    out, used = net.early_exit(
                        inputs, conds, times, step, lambda o: guide(o, scale), relative_change, copies
                    )
                elif scale == 1.0:
                    out, used = net(z, labels, t_b, loops=step), torch.full((len(labels),), step, device=z.device)
                else:
                    out = guide(
                        net(torch.cat([z, z]), torch.cat([labels, null]), torch.cat([t_b, t_b]), loops=step), scale
                    )
                    used = torch.full((len(labels),), step, device=z.device)
                steps_done.append(used)
                alpha, sigma = alpha_sigma(expand(logsnr_schedule(t_b, self.dc), z))
                return to_x0_eps(out, z, alpha, sigma, self.dc.target)

            shape = (len(labels), self.codec.channels, t, h, w)
            samples = sample_loop(
                predict,
                shape,
                self.dc.sampling_steps,
                self.dc.sampler,
                self.dc,
                gen,
                clip=clips_x0(self.cfg),
                device=labels.device,
            )
            if loops_used is not None:
                loops_used.extend(steps_done)
            return samples
