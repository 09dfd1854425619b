"""Diffusion family: adaLN-Zero, the shifted-cosine schedule, the loss weighting, DDPM/DDIM samplers."""

import math

import pytest
import torch

from elt.config import DiffusionConfig
from elt.methods import diffusion
from elt.models.looped import Block, build
from elt.runs import assemble

from .conftest import tiny_cfg


def test_adaln_zero_block_starts_as_identity():
    block = Block(dim=32, heads=2, mlp_ratio=4, adaln=True)
    x, c = torch.randn(3, 5, 32), torch.randn(3, 32)
    torch.testing.assert_close(block(x, c), x, rtol=0, atol=0)


def test_dit_output_starts_at_zero():
    parts = assemble(tiny_cfg(model={"generator": "diffusion", "patch_size": 2}))
    net = build(parts.net_cfg)
    out = net(torch.randn(2, 1, 1, 8, 8), torch.tensor([1, 10]), torch.rand(2))
    assert out.shape == (2, 1, 1, 8, 8) and out.abs().max() == 0


@pytest.mark.parametrize("shift", [1.0, 0.5])
def test_schedule_endpoints_and_formula(shift):
    dc = DiffusionConfig(schedule_shift=shift, logsnr_min=-15, logsnr_max=15)
    ends = diffusion.logsnr_schedule(torch.tensor([0.0, 1.0], dtype=torch.float64), dc)
    torch.testing.assert_close(ends, torch.tensor([15.0, -15.0], dtype=torch.float64) + 2 * math.log(shift))
    wide = DiffusionConfig(schedule_shift=shift, logsnr_min=-60, logsnr_max=60)
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    expected = -2 * torch.log(torch.tan(math.pi * t / 2)) + 2 * math.log(shift)
    torch.testing.assert_close(diffusion.logsnr_schedule(t, wide), expected, rtol=1e-6, atol=1e-6)
    alpha, sigma = diffusion.alpha_sigma(ends)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones(2, dtype=torch.float64))  # variance preserving


def test_loss_weight_is_sigmoid_of_bias_minus_logsnr():
    dc = DiffusionConfig(sigmoid_bias=2.0)
    logsnr = torch.tensor([-10.0, 0.0, 2.0, 10.0])
    torch.testing.assert_close(diffusion.loss_weight(logsnr, dc), 1 / (1 + torch.exp(logsnr - 2.0)))


@pytest.mark.parametrize("target", ["x0", "eps", "v"])
def test_every_target_recovers_x0_and_eps(target):
    x0, eps = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    alpha, sigma = diffusion.alpha_sigma(torch.tensor([[1.5]], dtype=torch.float64))
    z = alpha * x0 + sigma * eps
    out = {"x0": x0, "eps": eps, "v": alpha * eps - sigma * x0}[target]
    got_x0, got_eps = diffusion.to_x0_eps(out, z, alpha, sigma, target)
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, eps)


@pytest.mark.parametrize("target", ["x0", "eps", "v"])
def test_gt_loss_is_weighted_eps_mse(target):
    parts = assemble(tiny_cfg(model={"generator": "diffusion"}, diffusion={"target": target}))
    x = torch.rand(5, 1, 1, 8, 8) * 2 - 1
    inputs = parts.generator.training_inputs((x, torch.zeros(5, dtype=torch.long)), torch.Generator().manual_seed(0))
    out = torch.randn_like(x)
    eps_hat = diffusion.to_x0_eps(out, inputs["z"], inputs["alpha"], inputs["sigma"], target)[1]
    manual = (inputs["weight"] * ((eps_hat - inputs["eps"]) ** 2).mean(dim=(1, 2, 3, 4))).mean()
    torch.testing.assert_close(parts.generator.gt_loss(out, inputs), manual)
    assert parts.generator.distill_loss(out, out, inputs) == 0


def gaussian_denoiser(m, s, dc):
    """Exact E[x0 | z_t] for data x0 ~ N(m, s^2)."""

    def predict(z, t):
        alpha, sigma = diffusion.alpha_sigma(diffusion.expand(diffusion.logsnr_schedule(t, dc), z))
        x0 = m + alpha * s**2 / (alpha**2 * s**2 + sigma**2) * (z - alpha * m)
        return x0, (z - alpha * x0) / sigma

    return predict


def test_ddim_and_ddpm_reach_the_known_gaussian():
    torch.set_default_dtype(torch.float64)
    try:
        dc, m, s, n = DiffusionConfig(logsnr_min=-12, logsnr_max=12), 0.3, 0.5, 4000
        predict = gaussian_denoiser(m, s, dc)
        ddim = diffusion.sample_loop(predict, (n, 1), 400, "ddim", dc, torch.Generator().manual_seed(0), clip=False)
        # the probability-flow ODE of a Gaussian keeps each draw's standardised position
        z1 = torch.randn((n, 1), generator=torch.Generator().manual_seed(0))
        (a1, s1), (a0, s0) = (diffusion.alpha_sigma(diffusion.logsnr_schedule(torch.tensor(t), dc)) for t in (1.0, 0.0))
        u = (z1 - a1 * m) / torch.sqrt(a1**2 * s**2 + s1**2)
        closed_form = a0 * m + torch.sqrt(a0**2 * s**2 + s0**2) * u
        torch.testing.assert_close(ddim, closed_form, rtol=0, atol=1e-2)  # Euler steps: O(1/steps) error
        ddpm = diffusion.sample_loop(predict, (n, 1), 400, "ddpm", dc, torch.Generator().manual_seed(1), clip=False)
        assert abs(ddpm.mean().item() - m) < 3 * s / math.sqrt(n) + 1e-3
        assert abs(ddpm.std().item() - s) < 0.03
        assert abs(ddim.mean().item() - ddpm.mean().item()) < 0.05
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_sampling_is_deterministic_per_seed(sampler, guidance):
    parts = assemble(tiny_cfg(model={"generator": "diffusion"}, diffusion={"sampler": sampler, "guidance": guidance}))
    net = build(parts.net_cfg).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    labels = torch.arange(4)
    a = parts.generator.sample(net, labels, 2, torch.Generator().manual_seed(0))
    b = parts.generator.sample(net, labels, 2, torch.Generator().manual_seed(0))
    c = parts.generator.sample(net, labels, 2, torch.Generator().manual_seed(1))
    assert a.shape == (4, 1, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() <= 1.0 + 1e-6
