"""The public recipes' settings (MaskGIT's, DiT's): each one does what its recipe does, is off by default, and
is refused in one line where it does not apply."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from elt import train as train_mod
from elt.data import datasets, shards
from elt.data.source import training_data
from elt.errors import UserError
from elt.methods import diffusion
from elt.methods.masked import MaskedGenerator
from elt.models.looped import Block, build
from elt.runs import assemble

from .conftest import assert_same_training_state, interrupt_training_at, tiny_cfg
from .test_pretrained_codecs import tiny_vae


# --- diffusion: x0 clamped for pixels only -------------------------------------------------------
class ConstantX0:
    """A denoiser that always predicts x0 = value (target x0)."""

    null_class = 3

    def __init__(self, value):
        self.value = value

    def __call__(self, z, labels, t, loops=None):
        return torch.full_like(z, self.value)


class Geometry:
    channels, spatial = 4, (1, 2, 2)


@pytest.mark.parametrize(
    "codec, clip_x0, expected",
    [({}, None, 1.0), ({"pretrained": "sd_vae"}, None, 3.0), ({"pretrained": "sd_vae"}, True, 1.0), ({}, False, 3.0)],
)
def test_latents_outside_minus_one_one_survive_sampling_and_pixels_are_clamped(codec, clip_x0, expected):
    weights = {"weights": "vae"} if codec else {}
    cfg = tiny_cfg(
        model={"generator": "diffusion"},
        codec={**codec, **weights},
        diffusion={"clip_x0": clip_x0, "sampler": "ddim", "target": "x0"},
    )
    generator = diffusion.DiffusionGenerator(cfg, Geometry())
    samples = generator.sample(ConstantX0(3.0), torch.tensor([0, 1]), 1, torch.Generator().manual_seed(0))
    # at t = 0 DDIM returns alpha x0 + sigma eps_hat with sigma about 5e-4 (logsnr_max 15)
    torch.testing.assert_close(samples, torch.full_like(samples, expected), atol=1e-2, rtol=0)


# --- MaskGIT's transformer: post-norm, dropout, label smoothing, untempered confidences ----------------
def test_a_post_norm_layer_normalises_after_each_residual_sum():
    torch.manual_seed(0)
    block = Block(16, 2, 2, adaln=False, norm="post").eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        h = block.norm1(x + block.proj(attention(block, x)))
        expected = block.norm2(h + block.mlp(h))
    torch.testing.assert_close(block(x), expected)


def attention(block, x):
    q, k, v = block.qkv(x).view(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, -1)
    return (weights @ v).transpose(1, 2).reshape(2, 5, 16)


def test_dropout_acts_in_training_only_and_a_resumed_run_repeats_its_draws(tmp_path, monkeypatch):
    torch.manual_seed(0)
    plain, dropped = Block(16, 2, 2, adaln=False), Block(16, 2, 2, adaln=False, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(dropped.eval()(x), plain.eval()(x))
    assert not torch.allclose(dropped.train()(x), plain.train()(x))

    cfg = tiny_cfg(model={"dropout": 0.3}, train={"steps": 12, "checkpoint_every": 5})
    whole = train_mod.train(cfg, tmp_path / "whole", progress=False)
    assert (
        whole["loss_history"]
        != train_mod.train(tiny_cfg(train={"steps": 12, "checkpoint_every": 5}), tmp_path / "plain", progress=False)[
            "loss_history"
        ]
    )
    interrupt_training_at(monkeypatch, 8)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    torch.manual_seed(123)  # the new process's own stream: resuming must restore the run's
    train_mod.train(cfg, tmp_path / "resumed", progress=False)
    assert_same_training_state(tmp_path / "whole", tmp_path / "resumed")


def test_label_smoothing_mixes_the_true_token_with_the_uniform_over_the_vocabulary():
    cfg = tiny_cfg(train={"label_smoothing": 0.1})
    generator = MaskedGenerator(cfg, None)
    logits = torch.randn(2, 4, 6)
    targets = torch.randint(0, 6, (2, 4))
    mask = torch.tensor([[True, False, True, True], [False, True, False, False]])
    log_p = logits.log_softmax(-1)
    per_position = -0.9 * log_p.gather(-1, targets[..., None])[..., 0] - 0.1 * log_p.mean(-1)
    expected = per_position[mask].mean()
    torch.testing.assert_close(generator.gt_loss(logits, {"mask": mask, "targets": targets}), expected)


def test_untempered_confidences_matter_only_where_the_temperature_is_not_one():
    cfg = tiny_cfg()
    parts = assemble(cfg, (1, 1, 8, 8), 3)
    torch.manual_seed(0)
    net = build(parts.net_cfg).eval()

    def draw(temperature_min, confidence):
        run = tiny_cfg(masked={"temperature_min": temperature_min, "temperature_range": 0.0, "confidence": confidence})
        return MaskedGenerator(run, parts.codec).sample(
            net, torch.tensor([0, 1, 2]), 2, torch.Generator().manual_seed(1)
        )

    assert torch.equal(draw(1.0, "tempered"), draw(1.0, "untempered"))
    assert not torch.equal(draw(0.2, "tempered"), draw(0.2, "untempered"))


# --- DiT's training: constant learning rate, no clipping, posterior draws ------------------------
def test_learning_rate_schedules():
    constant = tiny_cfg(train={"lr_schedule": "constant", "warmup_steps": 2, "steps": 10, "lr": 1e-4})
    assert [train_mod.learning_rate(s, constant) for s in (0, 1, 2, 9)] == [5e-5, 1e-4, 1e-4, 1e-4]
    to_zero = tiny_cfg(train={"lr_final": 0.0, "warmup_steps": 0, "steps": 10, "lr": 1e-4})
    assert train_mod.learning_rate(0, to_zero) == 1e-4 and train_mod.learning_rate(10, to_zero) == pytest.approx(0.0)
    default = tiny_cfg(train={"warmup_steps": 0, "steps": 10, "lr": 1e-4})
    assert train_mod.learning_rate(10, default) == pytest.approx(1e-5)


def test_gradients_are_clipped_unless_grad_clip_is_null(tmp_path, monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    train_mod.train(tiny_cfg(train={"steps": 3}), tmp_path / "clipped", progress=False)
    train_mod.train(tiny_cfg(train={"steps": 3, "grad_clip": None}), tmp_path / "free", progress=False)
    assert calls == [1.0] * 3


def test_vae_latents_drawn_from_the_posterior_with_noise_seeded_by_each_example(tmp_path):
    from elt.codecs import vae

    reference = tiny_vae(tmp_path / "vae")
    data = np.random.default_rng(0).integers(0, 256, (3, 1, 3, 16, 16), dtype=np.uint8)
    mean = vae.VAECodec(str(tmp_path / "vae"), None, (1, 3, 16, 16), downsampling=2)
    drawn = vae.VAECodec(str(tmp_path / "vae"), None, (1, 3, 16, 16), downsampling=2, latents="sample")
    latents = drawn.encode(data)
    with torch.no_grad():
        posterior = reference.encode(torch.from_numpy(data[:, 0]).float() / 127.5 - 1).latent_dist
    for i in range(3):
        seed = int.from_bytes(hashlib.sha256(data[i].tobytes()).digest()[:8], "little") >> 1
        noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(latents[i, :, 0], (posterior.mean[i] + posterior.std[i] * noise[0]) * 0.18215)
    torch.testing.assert_close(drawn.encode(data[1:2]), latents[1:2])  # the same draw in any batch
    assert not torch.allclose(latents, mean.encode(data))
    assert drawn.identity()["latents"] == "sample" and "latents" not in mean.identity()


# --- flips ----------------------------------------------------------------------------------------
def class_folder(root, per_class=6):
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
        for k in range(per_class):
            pixels = np.random.default_rng(k + 10 * ord(c)).integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{k}.png")
    return {"dataset": "folder", "path": str(root), "channels": 3, "image_size": 8}


def test_flips_reach_training_from_memory_and_from_shards_alike(tmp_path, monkeypatch):
    folder = class_folder(tmp_path / "folder")
    cfg = tiny_cfg(data={**folder, "hflip": True}, train={"steps": 8})
    parts = assemble(cfg, (1, 3, 8, 8), 3)
    source = training_data(cfg, parts.codec, (1, 3, 8, 8))
    images = datasets.load(cfg.data, "train").images
    n = len(source)
    assert len(source.examples) == 2 * n
    assert torch.equal(source.examples[n:], parts.codec.encode(images[..., ::-1].copy()))

    sharded = tiny_cfg(data={**folder, "hflip": True}, train={"steps": 8}, codec={"shards": str(tmp_path / "shards")})
    shards.encode(sharded, "train", tmp_path / "shards", shard_size=4, progress=False)
    opened = shards.ShardSet(tmp_path / "shards", sharded, parts.codec)
    idx = torch.tensor([0, n - 1, n, 2 * n - 1, 5])
    assert torch.equal(opened[idx], source.examples[idx])

    drawn, real = [], train_mod.global_batch
    monkeypatch.setattr(train_mod, "global_batch", lambda x, idx, *a: drawn.append(idx) or real(x, idx, *a))
    flipped = train_mod.train(cfg, tmp_path / "memory", progress=False)
    mirrored_share = (torch.cat(drawn) >= n).float().mean()
    assert 0.3 < mirrored_share < 0.7  # about half of the examples drawn are the mirrored copies
    assert flipped["loss_history"] == train_mod.train(sharded, tmp_path / "streamed", progress=False)["loss_history"]
    plain = train_mod.train(tiny_cfg(data=folder, train={"steps": 8}), tmp_path / "plain", progress=False)
    assert plain["loss_history"] != flipped["loss_history"]


# --- refused in one line --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model": {"generator": "diffusion", "norm": "post"}}, "model.norm post is MaskGIT's"),
        ({"model": {"norm": "mid"}}, "'model.norm' is 'mid': use one of pre, post"),
        ({"model": {"dropout": 1.0}}, "'model.dropout' is 1.0: use a share in \\[0, 1\\)"),
        ({"model": {"generator": "diffusion"}, "train": {"label_smoothing": 0.1}}, "label_smoothing applies"),
        ({"train": {"grad_clip": 0.0}}, "'train.grad_clip' is 0.0: use a positive bound, or null"),
        ({"train": {"lr_schedule": "linear"}}, "use one of cosine, constant"),
        ({"train": {"lr_final": 1.5}}, "'train.lr_final' is 1.5"),
        ({"codec": {"latents": "sample"}}, "codec.latents sample draws from the SD VAE"),
        ({"masked": {"confidence": "hot"}}, "use one of tempered, untempered"),
    ],
)
def test_recipe_settings_are_checked_in_one_line(overrides, message):
    with pytest.raises(UserError, match=message):
        tiny_cfg(**overrides)


def test_flips_need_data_that_holds_the_mirrored_codes(tmp_path):
    cfg = tiny_cfg(data={"hflip": True}, codec={"tokenizer": "t.pt", "tokens": "t.npz"})
    with pytest.raises(UserError, match="need the mirrored examples or every clip encoded"):
        training_data(cfg, None, (1, 1, 8, 8))
