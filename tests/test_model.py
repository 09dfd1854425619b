"""Weight tying, compute and early exits of the looped stack (as x-transformers tests them), for
image and video models alike."""

import functools

import pytest
import torch

from elt.errors import UserError
from elt.eval.accounting import analytic_flops, measured_flops
from elt.models.looped import build, count_params
from elt.runs import assemble, layout

from .conftest import deep_update, tiny_cfg

GENERATORS = ["masked", "diffusion", "video_diffusion", "video_masked"]
MOVING_DIGITS = {"dataset": "moving_digits", "image_size": 12, "frames": 16}


@functools.cache
def vq_tokenizer_file() -> str:
    """An untrained 3D VQ tokenizer (4x4x4 tubelets): enough for shapes, parameters and FLOPs."""
    import tempfile

    from elt.codecs import tokenizer

    path = f"{tempfile.mkdtemp()}/vq.pt"
    tokenizer.save(
        tokenizer.VQTokenizer(tokenizer.TokenizerConfig(patch=[4, 4, 4], hidden=8, code_dim=4, codebook=16)), path, {}
    )
    return path


def network(generator, family, n=2, loops=3, width="T"):
    """generator: masked / diffusion on 8x8 digits; video_diffusion (4x4x4 tubelets) and video_masked
    (VQ codes) on 16-frame 12x12 moving digits."""
    overrides = {}
    if generator.startswith("video_"):
        generator = generator.removeprefix("video_")
        overrides = {"data": MOVING_DIGITS, "model": {"patch_size": 4, "patch_time": 4}}
        if generator == "masked":
            overrides = {"data": MOVING_DIGITS, "codec": {"tokenizer": vq_tokenizer_file()}}
    model = {"generator": generator, "family": family, "n_unique": n, "loops": loops, "width": width}
    parts = assemble(tiny_cfg(**deep_update(overrides, {"model": model})))
    return build(parts.net_cfg)


@pytest.mark.parametrize("generator", GENERATORS)
def test_parameters_independent_of_loop_count(generator):
    nets = {loops: network(generator, "elt", n=2, loops=loops) for loops in (1, 2, 4)}
    counts = {loops: count_params(net) for loops, net in nets.items()}
    assert len({c["unique_params"] for c in counts.values()}) == 1
    layer = sum(p.numel() for p in nets[1].stack.layers[0].parameters())
    assert counts[4]["block_params"] == 2 * layer


@pytest.mark.parametrize("generator", GENERATORS)
def test_unshared_baseline_has_loops_times_the_block(generator):
    elt, unshared, shallow = (network(generator, f, n=2, loops=4) for f in ("elt", "unshared", "shallow"))
    assert unshared.cfg.n_unique == 8 and unshared.cfg.loops == 1
    assert count_params(unshared)["block_params"] == 4 * count_params(elt)["block_params"]
    assert count_params(shallow)["unique_params"] == count_params(elt)["unique_params"]
    # "total" params of ELT = the unshared model it unrolls into
    assert count_params(elt)["total_params"] == count_params(unshared)["unique_params"]


@pytest.mark.parametrize("generator", GENERATORS)
def test_flops_match_unshared_and_grow_linearly(generator):
    elt, unshared = network(generator, "elt", n=2, loops=4), network(generator, "unshared", n=2, loops=4)
    per_loop = [measured_flops(elt, loops) for loops in (1, 2, 3, 4)]
    assert abs(per_loop[3] - measured_flops(unshared, 1)) / per_loop[3] < 0.01
    steps = {per_loop[i + 1] - per_loop[i] for i in range(3)}
    assert len(steps) == 1 and steps.pop() > 0  # exactly linear in L


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("loops", [1, 3, 5])
def test_analytic_flops_equal_torch_flop_counter(generator, loops):
    net = network(generator, "elt", n=2, loops=3)
    assert measured_flops(net, loops) == analytic_flops(net.cfg, loops)


def inputs_for(net):
    from elt.eval.accounting import dummy_inputs

    x, labels, t = dummy_inputs(net.cfg)
    if net.cfg.kind == "masked":
        x = torch.randint(0, net.cfg.vocab_size + 1, (3, x.shape[1]))
    else:
        x, t = torch.randn(3, *x.shape[1:]), torch.rand(3)
    return x, torch.tensor([0, 1, 10]), t


@pytest.mark.parametrize("generator", GENERATORS)
def test_multi_exit_pass_equals_plain_forward(generator):
    net = network(generator, "elt", n=2, loops=4).eval()
    if net.cfg.kind == "diffusion":  # adaLN-Zero starts as identity: perturb so the loops do something
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.05)
    x, labels, t = inputs_for(net)
    exits = net(x, labels, t, exits=[1, 2, 4])
    assert set(exits) == {1, 2, 4}
    for loops, out in exits.items():
        torch.testing.assert_close(out, net(x, labels, t, loops=loops), rtol=0, atol=1e-6)
    assert not torch.allclose(exits[1], exits[4])


@pytest.mark.parametrize("generator", GENERATORS)
def test_any_loop_count_at_inference_including_beyond_training(generator):
    net = network(generator, "elt", n=1, loops=2).eval()
    x, labels, t = inputs_for(net)
    assert net(x, labels, t).shape == net(x, labels, t, loops=7).shape
    with pytest.raises(UserError, match="L >= 1"):
        net(x, labels, t, loops=0)


def test_layouts():
    assert layout("elt", 2, 4) == (2, 4) and layout("looped", 2, 4) == (2, 4)
    assert layout("unshared", 2, 4) == (8, 1) and layout("shallow", 2, 4) == (2, 1)


def test_output_shapes():
    masked = network("masked", "elt")
    x, labels, t = inputs_for(masked)
    assert masked(x, labels).shape == (3, 64, 17)
    dit = network("diffusion", "elt")
    x, labels, t = inputs_for(dit)
    assert dit(x, labels, t).shape == x.shape == (3, 1, 1, 8, 8)
    video_dit = network("video_diffusion", "elt")
    assert video_dit.cfg.grid == (4, 3, 3) and video_dit.cfg.patch == (4, 4, 4)
    x, labels, t = inputs_for(video_dit)
    assert video_dit(x, labels, t).shape == x.shape == (3, 1, 16, 12, 12)
    video_masked = network("video_masked", "elt")
    x, labels, t = inputs_for(video_masked)
    assert video_masked.cfg.grid == (4, 3, 3) and video_masked(x, labels).shape == (3, 36, 16)


def test_activation_is_recorded_and_old_checkpoints_keep_tanh():
    """The MLP nonlinearity is part of the network's config; a net_config saved before the field
    existed was trained with DiT's tanh approximation and must rebuild with it."""
    from elt.models.looped import NetConfig

    net = network("diffusion", "elt")
    assert net.cfg.activation == "gelu" and net.stack.layers[0].mlp[1].approximate == "none"
    old = {k: v for k, v in net.cfg.to_dict().items() if k != "activation"}
    rebuilt = build(NetConfig.from_dict(old))
    assert rebuilt.cfg.activation == "gelu_tanh" and rebuilt.stack.layers[0].mlp[1].approximate == "tanh"
