"""Masked-token generation (MaskGIT): cosine masking in training, iterative parallel decoding.

Tokens come from a codec (pixel levels on digits; a learned or pretrained tokenizer elsewhere).
The network is looped inside every decoding step; the sampler itself is unchanged. Each step may run
its own loop count (elt.methods.schedule), or stop looping each sample early.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from elt.config import RunConfig
from elt.methods.schedule import EarlyExit, LoopSchedule
from elt.models.looped import NetConfig, guide
from elt.models.sizes import width


def token_divergence(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence of the token distributions of two logits (B, S, V), averaged over positions -> (B,)."""
    p, q = F.log_softmax(previous.float(), -1), F.log_softmax(current.float(), -1)
    m = torch.logsumexp(torch.stack([p, q]), 0) - math.log(2)
    return (0.5 * (p.exp() * (p - m)).sum(-1) + 0.5 * (q.exp() * (q - m)).sum(-1)).mean(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of values (B, S) over the True positions of mask (at least one per row: training_inputs)."""
    return (values * mask).sum() / mask.sum()


def inverse_cdf_sample(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One category per row of probs (..., V) from uniforms (...) in [0, 1): the first whose cumulative
    probability exceeds u times the total. On the device of probs, with no copy to the host."""
    cdf = probs.cumsum(-1)
    picked = torch.searchsorted(cdf, (uniforms * cdf[..., -1])[..., None].contiguous(), right=True)
    return picked[..., 0].clamp_max(probs.shape[-1] - 1)


class MaskedGenerator:
    def __init__(self, cfg: RunConfig, codec):
        self.cfg, self.codec = cfg, codec

    def net_config(self, num_classes: int, n_unique: int, loops: int) -> NetConfig:
        w = width(self.cfg.model.width)
        return NetConfig(
            "masked",
            w.dim,
            w.heads,
            w.mlp_ratio,
            n_unique,
            loops,
            self.codec.grid,
            num_classes,
            vocab_size=self.codec.vocab_size,
            activation=self.cfg.model.activation,
            norm=self.cfg.model.norm,
            dropout=self.cfg.model.dropout,
        )

    # --- training -------------------------------------------------------------------------------
    def training_inputs(self, batch, gen):
        tokens, labels = batch  # (B, S) long, (B,) long
        b, s = tokens.shape
        # drawn on the CPU from the run's generator (the same on every device), then moved to the batch
        ratio = torch.cos(math.pi / 2 * torch.rand(b, generator=gen)).to(tokens.device)  # cosine schedule: share masked
        n_masked = torch.ceil(ratio * s).clamp(min=1)
        ranks = torch.rand(b, s, generator=gen).to(tokens.device).argsort(1).argsort(1)
        mask = ranks < n_masked[:, None]  # (B, S) True where masked
        inputs = torch.where(mask, self.codec.vocab_size, tokens)
        return {"inputs": inputs, "labels": labels, "targets": tokens, "mask": mask}

    def forward(self, net, inputs, exits):
        return net(inputs["inputs"], inputs["labels"], exits=exits)

    # Both losses average over the masked positions by weighting with the mask: boolean indexing would wait
    # for the device to count them (a host sync every step).
    def gt_loss(self, logits, inputs):
        mask = inputs["mask"]
        per_position = F.cross_entropy(
            logits.flatten(0, 1),
            inputs["targets"].flatten(),
            reduction="none",
            label_smoothing=self.cfg.train.label_smoothing,
        )
        return masked_mean(per_position.view_as(mask), mask)

    def distill_loss(self, student, teacher, inputs):
        """Cross-entropy of the student against the teacher's full softmax, on masked positions."""
        per_position = -(F.softmax(teacher, -1) * F.log_softmax(student, -1)).sum(-1)
        return masked_mean(per_position, inputs["mask"])

    # --- sampling -------------------------------------------------------------------------------
    def guided_logits(self, net, tokens, labels, loops):
        """-> (logits (B, S, V), loops used (B,)); loops: an int, or an EarlyExit rule."""
        scale = self.cfg.masked.guidance
        if isinstance(loops, EarlyExit):
            inputs, conds, copies = (
                (tokens, labels, 1)
                if scale == 1.0
                else (torch.cat([tokens, tokens]), torch.cat([labels, torch.full_like(labels, net.null_class)]), 2)
            )
            return net.early_exit(inputs, conds, None, loops, lambda out: guide(out, scale), token_divergence, copies)
        used = torch.full((len(labels),), loops, device=labels.device)
        if scale == 1.0:
            return net(tokens, labels, loops=loops), used
        null = torch.full_like(labels, net.null_class)
        return guide(net(torch.cat([tokens, tokens]), torch.cat([labels, null]), loops=loops), scale), used

    def sample(
        self, net, labels: torch.Tensor, loops, gen: torch.Generator, loops_used: list | None = None
    ) -> torch.Tensor:
        """loops: an int, a LoopSchedule (a loop count per decoding step) or an EarlyExit rule; the loops
        each sample ran at each step are appended to loops_used (one (B,) tensor per step) when given."""
        with torch.no_grad():  # not a decorator: mutmut (make mutants) skips decorated functions
            mc, s, mask_id = self.cfg.masked, net.cfg.seq_len, self.codec.vocab_size
            k_steps = mc.sampling_steps
            per_step = loops.per_step(k_steps) if isinstance(loops, LoopSchedule) else [loops] * k_steps
            tokens = torch.full((len(labels), s), mask_id, dtype=torch.long, device=labels.device)
            for k in range(k_steps):
                ratio = (k + 1) / k_steps
                temperature = mc.temperature_min + mc.temperature_range * (1 - ratio)
                logits, used = self.guided_logits(net, tokens, labels, per_step[k])
                if loops_used is not None:
                    loops_used.append(used)
                probs = F.softmax(logits.float() / temperature, -1)  # (B, S, V)
                # uniforms drawn on the CPU from the seeded generator (the same on every device), tokens on the device
                sampled = inverse_cdf_sample(probs, torch.rand(tokens.shape, generator=gen).to(tokens.device))
                unknown = tokens == mask_id
                sampled = torch.where(unknown, sampled, tokens)
                # MaskGIT ranks by the untempered probability of the drawn token: confidence "untempered"
                ranked = probs if mc.confidence == "tempered" else F.softmax(logits.float(), -1)
                confidence = torch.log(torch.gather(ranked, -1, sampled[..., None])[..., 0].clamp_min(1e-30))
                gumbel = -torch.log(-torch.log(torch.rand(tokens.shape, generator=gen).clamp(1e-20, 1 - 1e-7))).to(
                    tokens.device
                )
                confidence = confidence + mc.remask_noise * (1 - ratio) * gumbel
                confidence = torch.where(unknown, confidence, torch.inf)  # decided tokens stay decided
                n_next = math.floor(s * math.cos(math.pi / 2 * ratio))  # cosine unmasking schedule
                n_next = torch.minimum(torch.tensor(n_next, device=tokens.device), unknown.sum(1) - 1).clamp(
                    min=0
                )  # >= 1 new token a step
                remask = confidence.argsort(1).argsort(1) < n_next[:, None]
                tokens = torch.where(remask, mask_id, sampled)
            return tokens
