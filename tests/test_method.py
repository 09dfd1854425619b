"""The method, derived independently of the code under test.

Each expected value here is built from the paper's and the reference recipes' own statements, not
from the harness's helpers: the ILSD loss from separate forward passes at L_int and L_max (teacher
stop-gradient, the student distilled against the teacher's full softmax, GT at both exits), the
diffusion loss and the DDIM and DDPM samplers from their closed forms, MaskGIT's training mask and
decoding from a decoder written out here with hand-computed temperatures, re-masking noise scales and
unmasking counts, and the label drop rate from what training actually feeds the network. Every test
here failed on a deliberately broken copy (swapped GT terms, no stop-gradient, reversed distillation,
temperature 1, no or mis-scaled Gumbel noise, no label drop) before it was trusted; `make mutants`
keeps checking that (results/mutants.md).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from elt import train as train_mod
from elt.methods import ilsd
from elt.models.looped import build
from elt.runs import assemble

from .conftest import tiny_cfg

LAM = 0.3  # an interior lambda: every term of the loss counts, none with weight 1


def looped_net(generator: str, loops: int = 4, **overrides):
    model = {
        "generator": generator,
        "n_unique": 1,
        "loops": loops,
        **({"patch_size": 2} if generator == "diffusion" else {}),
    }
    parts = assemble(tiny_cfg(model=model, **overrides))
    net = build(parts.net_cfg)
    if generator == "masked":  # float64 for exact comparisons (the DiT's time embedding computes in float32)
        net = net.double()
    for p in net.parameters():  # break adaLN-Zero's identity start so every loop and the head matter
        torch.nn.init.normal_(p, std=0.1)
    return parts, net


def masked_inputs(parts, b=6):
    tokens = torch.randint(0, 17, (b, 64), generator=torch.Generator().manual_seed(1))
    return parts.generator.training_inputs((tokens, torch.arange(b) % 10), torch.Generator().manual_seed(2))


def diffusion_inputs(parts, b=6):
    x = torch.rand(b, 1, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return parts.generator.training_inputs((x, torch.arange(b) % 10), torch.Generator().manual_seed(2))


def gradients(value: torch.Tensor, net) -> list[torch.Tensor]:
    params = [p for p in net.parameters() if p.requires_grad]
    return [
        g if g is not None else torch.zeros_like(p)
        for g, p in zip(torch.autograd.grad(value, params, allow_unused=True), params)
    ]


def assert_same_loss_and_gradients(harness: torch.Tensor, by_hand: torch.Tensor, net) -> None:
    """Equal up to float rounding (float64: 1e-10; float32: 1e-5), far below what any wrong term moves."""
    exact = harness.dtype == torch.float64
    torch.testing.assert_close(harness, by_hand, rtol=1e-10 if exact else 1e-5, atol=1e-12 if exact else 1e-7)
    for got, want in zip(gradients(harness, net), gradients(by_hand, net)):
        torch.testing.assert_close(got, want, rtol=1e-8 if exact else 1e-4, atol=1e-12 if exact else 1e-6)


# --- ILSD on the masked generator -------------------------------------------------------------------
def masked_terms_by_hand(net, inputs, l_int: int, l_max: int) -> dict[str, torch.Tensor]:
    """The paper's three terms from two separate forward passes: GT is the cross-entropy of the true token
    at the masked positions (MaskGIT), at the teacher's exit L_max and the student's L_int; DIST the
    cross-entropy of the student against the stop-gradient teacher's full softmax there."""
    x, y, target, mask = inputs["inputs"], inputs["labels"], inputs["targets"], inputs["mask"]
    teacher, student = net(x, y, loops=l_max), net(x, y, loops=l_int)

    def ground_truth(logits):
        log_p = logits - logits.logsumexp(-1, keepdim=True)
        return -log_p.gather(-1, target[..., None])[..., 0][mask].mean()

    teacher_p = torch.exp(teacher.detach() - teacher.detach().logsumexp(-1, keepdim=True))
    student_log_p = student - student.logsumexp(-1, keepdim=True)
    distill = -(teacher_p * student_log_p).sum(-1)[mask].mean()
    return {"gt_teacher": ground_truth(teacher), "gt_student": ground_truth(student), "distill": distill}


def masked_loss_by_hand(net, inputs, l_int: int, l_max: int, lam: float) -> torch.Tensor:
    """GT(teacher) + lam GT(student) + (1 - lam) DIST(student, stopgrad(teacher))."""
    t = masked_terms_by_hand(net, inputs, l_int, l_max)
    return t["gt_teacher"] + lam * t["gt_student"] + (1 - lam) * t["distill"]


@pytest.mark.parametrize("l_int", [1, 2, 3])
def test_masked_ilsd_loss_and_gradients_equal_the_papers_loss_built_by_hand(l_int):
    parts, net = looped_net("masked")
    inputs = masked_inputs(parts)
    value, log = ilsd.loss(parts.generator, net, inputs, l_int, 4, LAM)
    assert log["l_int"] == l_int and log["lam"] == LAM
    assert_same_loss_and_gradients(value, masked_loss_by_hand(net, inputs, l_int, 4, LAM), net)
    # the logged parts are the terms themselves
    for key, term in masked_terms_by_hand(net, inputs, l_int, 4).items():
        assert float(log[key]) == pytest.approx(term.item(), rel=1e-10), key
    assert float(log["loss"]) == pytest.approx(value.item(), rel=1e-12)


def test_the_teachers_output_gets_gradient_from_its_own_ground_truth_only():
    """Stop-gradient on the teacher: the gradient reaching the L_max output is that of GT(teacher)
    alone; the distillation term sends nothing back into it (and the student term reaches the student)."""
    parts, net = looped_net("masked")
    inputs = masked_inputs(parts)
    outputs = {}

    class Recording:
        def __getattr__(self, name):
            return getattr(parts.generator, name)

        def forward(self, net_, inputs_, exits):
            outputs.update(parts.generator.forward(net_, inputs_, exits))
            for out in outputs.values():
                out.retain_grad()
            return outputs

    value, _ = ilsd.loss(Recording(), net, inputs, 2, 4, LAM)
    value.backward()
    teacher = outputs[4].detach().requires_grad_()
    alone = F.cross_entropy(teacher[inputs["mask"]], inputs["targets"][inputs["mask"]])
    (expected,) = torch.autograd.grad(alone, teacher)
    torch.testing.assert_close(outputs[4].grad, expected, rtol=1e-10, atol=1e-14)
    assert outputs[2].grad.abs().sum() > 0


def test_vanilla_looping_and_the_baselines_train_on_the_teachers_ground_truth_alone():
    parts, net = looped_net("masked")
    inputs = masked_inputs(parts)
    value, log = ilsd.loss(parts.generator, net, inputs, None, 4, LAM)
    x, y, target, mask = inputs["inputs"], inputs["labels"], inputs["targets"], inputs["mask"]
    by_hand = F.cross_entropy(net(x, y, loops=4)[mask], target[mask])
    assert set(log) == {"loss", "gt_teacher"}
    assert_same_loss_and_gradients(value, by_hand, net)


@pytest.mark.parametrize(
    "family, l_max, student", [("elt", 1, None), ("elt", 2, 1), ("looped", 3, None), ("unshared", 1, None)]
)
def test_only_elt_with_more_than_one_loop_draws_a_student(family, l_max, student):
    parts, _ = looped_net("masked")
    tokens = torch.randint(0, 17, (4, 64), generator=torch.Generator().manual_seed(1))
    _, l_int = ilsd.draw(parts.generator, (tokens, torch.arange(4)), family, 1, l_max, torch.Generator().manual_seed(0))
    assert l_int == student


@pytest.mark.parametrize("total, expected", [(1, [1.0]), (2, [1.0, 0.0]), (5, [1.0, 0.75, 0.5, 0.25, 0.0])])
def test_lambda_falls_linearly_from_one_at_the_first_step_to_zero_at_the_last(total, expected):
    assert [ilsd.lam(step, total) for step in range(total)] == pytest.approx(expected, abs=1e-15)


def test_lambda_is_drawn_into_the_objective_linearly_over_training():
    """objective() at step s of S weighs the student's GT by 1 - s/(S-1) and the distillation by the rest."""
    parts, net = looped_net("masked")
    tokens = torch.randint(0, 17, (6, 64), generator=torch.Generator().manual_seed(1))
    batch = (tokens, torch.arange(6) % 10)
    for step, total in [(0, 11), (3, 11), (7, 11), (10, 11)]:
        gen = torch.Generator().manual_seed(5)
        value, log = ilsd.objective(parts.generator, net, batch, "elt", step, total, 1, gen)
        replay = torch.Generator().manual_seed(5)
        inputs = parts.generator.training_inputs(batch, replay)
        l_int = int(torch.randint(1, 4, (1,), generator=replay))  # L_int uniform in [L_min, L_max)
        assert log["l_int"] == l_int
        expected = masked_loss_by_hand(net, inputs, l_int, 4, 1 - step / 10)
        torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)


# --- ILSD on the diffusion generator ----------------------------------------------------------------
def logsnr_by_hand(t: torch.Tensor) -> torch.Tensor:
    """The shifted cosine schedule at shift 1: -2 log tan(pi t / 2), t rescaled so logSNR spans [-15, 15]."""
    t_min, t_max = math.atan(math.exp(-7.5)), math.atan(math.exp(7.5))
    return -2 * torch.log(torch.tan(t_min + t * (t_max - t_min)))


def diffusion_loss_by_hand(net, inputs, l_int: int | None, l_max: int, lam: float, target: str, bias: float = 2.0):
    """The weighted eps-space MSE (Kingma & Gao's sigmoid weighting, w = sigmoid(bias - logSNR)) for
    GT at both exits and for DIST against the stop-gradient teacher, with eps_hat from the network's
    prediction target by the closed forms; logSNR from t by the shifted cosine schedule."""
    z, y, t, eps = inputs["z"], inputs["labels"], inputs["t"], inputs["eps"]
    logsnr = logsnr_by_hand(t)
    alpha = torch.sigmoid(logsnr).sqrt().view(-1, 1, 1, 1, 1)
    sigma = torch.sigmoid(-logsnr).sqrt().view(-1, 1, 1, 1, 1)
    weight = 1 / (1 + torch.exp(logsnr - bias))

    def eps_hat(out):
        if target == "x0":
            return (z - alpha * out) / sigma
        if target == "eps":
            return out
        return sigma * z + alpha * out  # v = alpha eps - sigma x0

    def weighted_mse(a, b):
        return (weight * ((a - b) ** 2).mean(dim=(1, 2, 3, 4))).mean()

    teacher = eps_hat(net(z, y, t, loops=l_max))
    if l_int is None:
        return weighted_mse(teacher, eps)
    student = eps_hat(net(z, y, t, loops=l_int))
    return (
        weighted_mse(teacher, eps)
        + lam * weighted_mse(student, eps)
        + (1 - lam) * weighted_mse(student, teacher.detach())
    )


@pytest.mark.parametrize("target", ["x0", "eps", "v"])
def test_diffusion_ilsd_loss_and_gradients_equal_the_papers_loss_built_by_hand(target):
    parts, net = looped_net("diffusion", diffusion={"target": target})
    inputs = diffusion_inputs(parts)
    x = (inputs["z"] - inputs["sigma"] * inputs["eps"]) / inputs["alpha"]  # the clean batch, recovered
    assert float(x.abs().max()) <= 1 + 1e-5
    for l_int in (1, 3, None):
        value, _ = ilsd.loss(parts.generator, net, inputs, l_int, 4, LAM)
        assert_same_loss_and_gradients(value, diffusion_loss_by_hand(net, inputs, l_int, 4, LAM, target), net)


def test_diffusion_training_inputs_follow_the_forward_process():
    """z_t = alpha_t x + sigma_t eps at t ~ U[0, 1), alpha^2 + sigma^2 = 1, alpha^2 = sigmoid(logSNR(t))."""
    parts, _ = looped_net("diffusion")
    x = torch.rand(400, 1, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    inputs = parts.generator.training_inputs((x, torch.zeros(400, dtype=torch.long)), torch.Generator().manual_seed(2))
    t = inputs["t"]
    assert float(t.min()) >= 0 and float(t.max()) < 1 and abs(float(t.mean()) - 0.5) < 0.05
    logsnr = logsnr_by_hand(t)
    alpha, sigma = (torch.sigmoid(s * logsnr).sqrt().view(-1, 1, 1, 1, 1) for s in (1, -1))
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha))
    torch.testing.assert_close(inputs["alpha"], alpha)
    torch.testing.assert_close(inputs["z"], alpha * x + sigma * inputs["eps"])
    assert abs(float(inputs["eps"].std()) - 1) < 0.02


# --- diffusion sampling -----------------------------------------------------------------------------
def alpha_sigma_by_hand(t: float) -> tuple[float, float]:
    """alpha_t, sigma_t of the shifted cosine schedule (shift 1, logSNR clipped to [-15, 15])."""
    logsnr = float(logsnr_by_hand(torch.tensor(t, dtype=torch.float64)))
    return math.sqrt(1 / (1 + math.exp(-logsnr))), math.sqrt(1 / (1 + math.exp(logsnr)))


def point_mass(c: float):
    """The exact denoiser of data that is always c: x0_hat = c, eps_hat = (z - alpha c) / sigma."""

    def predict(z, t_b):
        alpha, sigma = alpha_sigma_by_hand(float(t_b[0]))
        return torch.full_like(z, c), (z - alpha * c) / sigma

    return predict


def test_sampling_clips_x0_to_the_data_range_by_default():
    from elt.config import DiffusionConfig
    from elt.methods.diffusion import sample_loop

    def far_outside(z, t_b):  # predicts +3 for the first sample and -3 for the second
        x0 = torch.tensor([3.0, -3.0]).view(2, 1, 1, 1, 1).expand_as(z)
        alpha, sigma = alpha_sigma_by_hand(float(t_b[0]))
        return x0, (z - alpha * x0) / sigma

    out = sample_loop(far_outside, (2, 1, 1, 4, 4), 5, "ddim", DiffusionConfig(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[0], torch.ones_like(out[0]), rtol=0, atol=0.01)
    torch.testing.assert_close(out[1], -torch.ones_like(out[1]), rtol=0, atol=0.01)


def test_ddim_with_the_exact_denoiser_carries_its_initial_noise_to_the_end():
    """DDIM is deterministic given z_1: with the exact x0, eps_hat stays (z_1 - alpha_1 c) / sigma_1 at every
    step, so z_0 = alpha_0 c + sigma_0 (z_1 - alpha_1 c) / sigma_1."""
    from elt.config import DiffusionConfig
    from elt.methods.diffusion import sample_loop

    c, shape = 0.3, (3, 1, 1, 4, 4)
    out = sample_loop(point_mass(c), shape, 7, "ddim", DiffusionConfig(), torch.Generator().manual_seed(0))
    z1 = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    (a1, s1), (a0, s0) = alpha_sigma_by_hand(1.0), alpha_sigma_by_hand(0.0)
    torch.testing.assert_close(out, a0 * c + s0 * (z1 - a1 * c) / s1, rtol=0, atol=2e-6)


def test_ddpm_steps_draw_from_the_posterior_q_of_z_s_given_z_t_and_x0():
    """Two ancestral steps written out from the variance-preserving posterior (Kingma et al. 2021):
    mean = alpha_{t|s} sigma_s^2 / sigma_t^2 z_t + alpha_s sigma_{t|s}^2 / sigma_t^2 x0,
    variance = sigma_{t|s}^2 sigma_s^2 / sigma_t^2, with alpha_{t|s} = alpha_t / alpha_s and
    sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2; noise drawn in order from the one generator."""
    from elt.config import DiffusionConfig
    from elt.methods.diffusion import sample_loop

    c, shape = -0.4, (3, 1, 1, 4, 4)
    out = sample_loop(point_mass(c), shape, 2, "ddpm", DiffusionConfig(), torch.Generator().manual_seed(0))
    replay = torch.Generator().manual_seed(0)
    z = torch.randn(shape, generator=replay)
    for t, s in [(1.0, 0.5), (0.5, 0.0)]:
        (a_t, s_t), (a_s, s_s) = alpha_sigma_by_hand(t), alpha_sigma_by_hand(s)
        a_ts = a_t / a_s
        var_ts = s_t**2 - a_ts**2 * s_s**2
        mean = a_ts * s_s**2 / s_t**2 * z + a_s * var_ts / s_t**2 * c
        z = mean + math.sqrt(var_ts * s_s**2 / s_t**2) * torch.randn(shape, generator=replay)
    torch.testing.assert_close(out, z, rtol=0, atol=2e-6)


def test_ddim_sampling_draws_only_the_initial_noise_and_ddpm_more():
    for sampler, draws in [("ddim", 1), ("ddpm", 4)]:
        parts, net = looped_net("diffusion", diffusion={"sampler": sampler, "sampling_steps": 3})
        gen = torch.Generator().manual_seed(0)
        parts.generator.sample(net.eval(), torch.arange(2), loops=2, gen=gen)
        replay = torch.Generator().manual_seed(0)
        for _ in range(draws):
            torch.randn((2, 1, 1, 8, 8), generator=replay)
        assert torch.equal(gen.get_state(), replay.get_state()), sampler


def test_diffusion_training_inputs_and_loss_stay_on_the_batchs_device():
    """Times and noise are drawn on the CPU (the same on every device) and moved to the batch's device."""
    parts, net = looped_net("diffusion")
    x = torch.zeros(4, 1, 1, 8, 8, device="meta")
    inputs = parts.generator.training_inputs((x, torch.arange(4, device="meta")), torch.Generator().manual_seed(0))
    assert {v.device.type for v in inputs.values()} == {"meta"}
    outputs = parts.generator.forward(
        net.to("meta"), inputs, exits=[2, 4]
    )  # (ilsd.loss logs with .item(): not on meta)
    value = parts.generator.gt_loss(outputs[4], inputs) + parts.generator.distill_loss(
        outputs[2], outputs[4].detach(), inputs
    )
    assert value.device.type == "meta"


@pytest.mark.parametrize("sampler, guidance", [("ddim", 1.0), ("ddpm", 2.0)])
def test_diffusion_sampling_keeps_every_tensor_on_the_networks_device(sampler, guidance):
    """On the meta device any tensor the sampler makes on the CPU and hands to the network (times, noise,
    loop counts) is a device-mismatch error, as it would be on a GPU."""
    parts, net = looped_net("diffusion", diffusion={"sampler": sampler, "guidance": guidance, "sampling_steps": 3})
    net = net.to("meta").eval()
    used = []
    out = parts.generator.sample(
        net, torch.arange(3, device="meta"), loops=2, gen=torch.Generator().manual_seed(0), loops_used=used
    )
    assert out.device.type == "meta" and out.shape == (3, 1, 1, 8, 8)
    assert torch.stack(used).device.type == "meta" and len(used) == 3


# --- MaskGIT decoding ------------------------------------------------------------------------------
K = 4
# token temperature 0.5 + 0.8 (1 - (k+1)/K) and the re-masking noise scale 1 - (k+1)/K at steps k = 0..3
TEMPERATURES = [1.1, 0.9, 0.7, 0.5]
NOISE_SCALES = [0.75, 0.5, 0.25, 0.0]
# tokens still masked after step k: floor(64 cos(pi/2 (k+1)/K)), MaskGIT's cosine schedule
STILL_MASKED = [59, 45, 24, 0]


def decode_by_hand(net, labels, loops, gen, noise: float, guidance: float = 1.0, mask_id: int = 17):
    """MaskGIT's parallel decoding written out: sample every position from the tempered softmax, keep the
    decided tokens, score each new token by its (untempered-by-noise) log-probability plus scaled Gumbel
    noise, and re-mask the lowest-scoring ones down to the schedule's count. Random draws in the harness's
    documented order (one uniform per position, turned into a token by the inverse CDF, then the Gumbel
    uniforms), on the CPU."""
    b, s = len(labels), 64
    tokens = torch.full((b, s), mask_id)
    for k in range(K):
        if guidance == 1.0:
            logits = net(tokens, labels, loops=loops)
        else:
            both = net(
                torch.cat([tokens, tokens]), torch.cat([labels, torch.full_like(labels, net.null_class)]), loops=loops
            )
            cond, uncond = both[:b], both[b:]
            logits = uncond + guidance * (cond - uncond)
        probs = torch.softmax(logits.float() / TEMPERATURES[k], -1)
        u = torch.rand(b, s, generator=gen).numpy()  # float32, as the harness computes
        cdf = probs.cumsum(-1).numpy()
        drawn = torch.tensor(
            [[np.searchsorted(cdf[i, j], u[i, j] * cdf[i, j, -1], side="right") for j in range(s)] for i in range(b)]
        )
        unknown = tokens == mask_id
        drawn = torch.where(unknown, drawn, tokens)
        score = probs.gather(-1, drawn[..., None])[..., 0].clamp_min(1e-30).log()
        u = torch.rand(b, s, generator=gen).clamp(1e-20, 1 - 1e-7)
        score = score + noise * NOISE_SCALES[k] * -torch.log(-torch.log(u))
        score = torch.where(unknown, score, torch.inf)
        tokens = drawn.clone()
        for i in range(b):
            n = min(STILL_MASKED[k], int(unknown[i].sum()) - 1) if k < K - 1 else 0
            lowest = torch.sort(score[i], stable=True).indices[: max(n, 0)]
            tokens[i, lowest] = mask_id
    return tokens


@pytest.mark.parametrize("noise,guidance", [(1.0, 1.0), (4.5, 1.0), (1.0, 2.5)])
def test_maskgit_decoding_equals_the_decoder_written_out(noise, guidance):
    parts, net = looped_net("masked", masked={"sampling_steps": K, "remask_noise": noise, "guidance": guidance})
    net = net.float().eval()
    labels = torch.arange(5) % 10
    with torch.no_grad():
        got = parts.generator.sample(net, labels, loops=3, gen=torch.Generator().manual_seed(7))
        want = decode_by_hand(net, labels, 3, torch.Generator().manual_seed(7), noise, guidance)
    assert torch.equal(got, want)


def test_training_masks_a_cosine_distributed_share_of_the_tokens():
    """MaskGIT's training mask: share r = cos(pi/2 u), u ~ U[0, 1), ceil(r S) tokens (at least one); so
    P(r < x) = 1 - 2 arccos(x) / pi: a third of the rows mask under half, the mean share is 2/pi."""
    parts, _ = looped_net("masked")
    tokens = torch.randint(0, 17, (4000, 64), generator=torch.Generator().manual_seed(0))
    inputs = parts.generator.training_inputs(
        (tokens, torch.zeros(4000, dtype=torch.long)), torch.Generator().manual_seed(1)
    )
    share = inputs["mask"].sum(1).double() / 64
    assert share.min() == 1 / 64 and share.max() <= 1  # about 1% of the rows mask a single token
    # exactly ceil(64 cos(pi/2 u)) tokens a row, u the first draw of the run's generator, and the rest as given
    u = torch.rand(4000, generator=torch.Generator().manual_seed(1))
    expected = torch.ceil(torch.cos(math.pi / 2 * u) * 64).clamp(min=1)
    assert torch.equal(inputs["mask"].sum(1).double(), expected.double())
    assert (
        torch.equal(inputs["inputs"][~inputs["mask"]], tokens[~inputs["mask"]])
        and (inputs["inputs"][inputs["mask"]] == 17).all()
    )
    assert abs(float((share < 0.5).double().mean()) - 1 / 3) < 0.03
    assert abs(float(share.mean()) - 2 / math.pi) < 0.02


def test_with_more_decoding_steps_than_tokens_each_step_decides_at_least_one():
    """The schedule floor(S cos(pi/2 (k+1)/K)) would leave some steps deciding nothing: every step decides
    at least one new token until none is left masked."""
    steps = 80
    parts, net = looped_net("masked", masked={"sampling_steps": steps})
    net = net.float().eval()
    seen, real = [], net.forward

    def counting(tokens, labels, *args, **kwargs):
        seen.append(int((tokens == 17).sum(1)[0]))
        return real(tokens, labels, *args, **kwargs)

    net.forward = counting
    with torch.no_grad():
        out = parts.generator.sample(net, torch.arange(1), loops=1, gen=torch.Generator().manual_seed(0))
    expected, masked = [64], 64
    for k in range(steps - 1):
        masked = max(min(math.floor(64 * math.cos(math.pi / 2 * (k + 1) / steps)), masked - 1), 0)
        expected.append(masked)
    assert seen == expected and not (out == 17).any()


# --- training ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("drop", [0.1, 0.0, 0.5])
def test_training_replaces_the_configured_share_of_labels_by_the_null_class(tmp_path, monkeypatch, drop):
    """Classifier-free guidance needs the unconditional model: a share label_drop of the labels the
    network sees in training are the null class (10 for digits), the rest the data's own classes."""
    seen, real = [], ilsd.draw

    def recording(generator, batch, *args, **kwargs):
        seen.append(batch[1].clone())
        return real(generator, batch, *args, **kwargs)

    monkeypatch.setattr(ilsd, "draw", recording)
    monkeypatch.setattr(
        ilsd, "loss", lambda generator, net, *a: (next(net.parameters()).sum() * 0, {"loss": torch.zeros(())})
    )
    train_mod.train(
        tiny_cfg(train={"steps": 50, "batch_size": 64, "label_drop": drop, "checkpoint_every": 1000}),
        tmp_path,
        progress=False,
    )
    labels = torch.cat(seen)
    n, dropped = len(labels), int((labels == 10).sum())
    assert n == 3200 and labels.min() >= 0 and labels.max() <= 10
    if drop == 0:
        assert dropped == 0
    else:  # binomial: within 4.5 standard deviations of n * drop
        assert abs(dropped - n * drop) < 4.5 * math.sqrt(n * drop * (1 - drop)), (dropped, n * drop)
        assert len(set(labels[labels != 10].tolist())) == 10  # the data's classes pass through
