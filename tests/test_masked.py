"""MaskGIT sampling and the pixel-token codec."""

import math

import numpy as np
import pytest
import torch

from elt import codecs
from elt.config import DataConfig
from elt.data import datasets as data
from elt.models.looped import build
from elt.runs import assemble
from elt.sample import generate

from .conftest import tiny_cfg


def test_digit_tokens_round_trip_exactly():
    ds = data.load(DataConfig(), "train")
    codec = codecs.PixelTokens(17, ds.shape)
    tokens = codec.encode(ds.images)
    assert tokens.shape == (len(ds.images), 64) and tokens.min() >= 0 and tokens.max() == 16
    assert np.array_equal(codec.decode(tokens), ds.images)


def sampler(guidance=1.0, steps=4):
    parts = assemble(tiny_cfg(masked={"sampling_steps": steps, "guidance": guidance}))
    return parts, build(parts.net_cfg).eval()


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_sampler_returns_valid_tokens_deterministically(guidance):
    parts, net = sampler(guidance)
    labels = torch.arange(7) % 10
    out = parts.generator.sample(net, labels, loops=2, gen=torch.Generator().manual_seed(1))
    assert out.shape == (7, 64) and out.dtype == torch.long
    assert out.min() >= 0 and out.max() < 17  # no [MASK] left
    again = parts.generator.sample(net, labels, loops=2, gen=torch.Generator().manual_seed(1))
    other = parts.generator.sample(net, labels, loops=2, gen=torch.Generator().manual_seed(2))
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_cosine_unmasking_schedule(monkeypatch):
    parts, net = sampler(steps=5)
    masked_counts = []
    real = parts.generator.guided_logits

    def spy(net_, tokens, labels, loops):
        masked_counts.append(int((tokens == 17).sum(1)[0]))
        return real(net_, tokens, labels, loops)

    monkeypatch.setattr(parts.generator, "guided_logits", spy)
    parts.generator.sample(net, torch.zeros(2, dtype=torch.long), loops=1, gen=torch.Generator().manual_seed(0))
    expected = [64] + [math.floor(64 * math.cos(math.pi / 2 * (k + 1) / 5)) for k in range(4)]
    assert masked_counts == expected


def test_generate_decodes_to_uint8_images_with_labels_shape():
    parts, net = sampler()
    labels = torch.arange(12) % 10
    images = generate(parts, net, 3, labels, seed=0, batch_size=5)
    assert images.shape == (12, 1, 1, 8, 8) and images.dtype == np.uint8
    assert np.array_equal(images, generate(parts, net, 3, labels, seed=0, batch_size=5))


def test_training_masks_at_least_one_token():
    parts, _ = sampler()
    tokens = torch.randint(0, 17, (200, 64))
    inputs = parts.generator.training_inputs(
        (tokens, torch.zeros(200, dtype=torch.long)), torch.Generator().manual_seed(0)
    )
    counts = inputs["mask"].sum(1)
    assert counts.min() >= 1 and counts.max() <= 64
    assert torch.equal(inputs["inputs"] == 17, inputs["mask"])


def test_inverse_cdf_sampling_follows_the_probabilities_and_numpys_searchsorted():
    """Each token is the first category whose cumulative probability exceeds u x total (numpy's searchsorted,
    side='right'); over many uniforms the frequencies are the probabilities; zero-probability codes never come."""
    from elt.methods.masked import inverse_cdf_sample

    probs = torch.tensor([0.0, 0.1, 0.0, 0.6, 0.3])
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    picked = inverse_cdf_sample(probs.expand(len(u), 5), u)
    cdf = np.cumsum(probs.numpy())
    assert np.array_equal(picked.numpy(), np.searchsorted(cdf, u.numpy() * cdf[-1], side="right"))
    freq = np.bincount(picked.numpy(), minlength=5) / len(u)
    assert freq[0] == freq[2] == 0 and np.abs(freq - probs.numpy()).max() < 0.005
    assert inverse_cdf_sample(torch.tensor([[0.0, 1.0]]), torch.tensor([0.0])).item() == 1


def test_masked_losses_average_over_the_masked_positions_only():
    from elt.methods.masked import masked_mean

    parts, _ = sampler()
    gen = torch.Generator().manual_seed(0)
    inputs = parts.generator.training_inputs((torch.randint(0, 17, (6, 64), generator=gen), torch.zeros(6)), gen)
    student, teacher = torch.randn(2, 6, 64, 17, generator=gen).unbind()
    mask = inputs["mask"]
    expected = torch.nn.functional.cross_entropy(student[mask], inputs["targets"][mask])
    torch.testing.assert_close(parts.generator.gt_loss(student, inputs), expected)
    indexed = -(teacher[mask].softmax(-1) * student[mask].log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(parts.generator.distill_loss(student, teacher, inputs), indexed)
    assert masked_mean(torch.ones(2, 3), torch.tensor([[True, False, False], [False, False, False]])) == 1
