"""What a GPU run would hit, caught on the CPU.

On the meta device a tensor made on the CPU and mixed with the network's is a device-mismatch error, and
anything that waits for the device (.item(), a boolean mask's nonzero, a copy to the host) cannot run: a
step that runs on meta makes neither mistake. The kernel sequence of ELT N x L and of the unshared N*L-layer
model is recorded with a dispatch mode: at the same FLOPs they must dispatch the same operations."""

import contextlib
import difflib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from elt import train as train_mod
from elt.eval.paper import is_network, tf_bilinear_resize
from elt.methods import ilsd
from elt.models.looped import build
from elt.runs import assemble
from elt.runtime import Runtime

from .conftest import tiny_cfg

GENERATORS = ["masked", "diffusion"]


def tiny(generator: str, family: str = "elt", guidance: float = 1.0, n_unique: int = 1, loops: int = 3):
    cfg = tiny_cfg(
        model={"generator": generator, "family": family, "n_unique": n_unique, "loops": loops},
        masked={"guidance": guidance},
        diffusion={"guidance": guidance},
    )
    parts = assemble(cfg)
    return parts, build(parts.net_cfg)


def batch(generator: str, device: str, n: int = 8):
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, 17, (n, 64), generator=gen) if generator == "masked" else torch.randn(n, 1, 1, 8, 8)
    return data.to(device), (torch.arange(n) % 10).to(device)


def training_step(parts, net, device: str, family: str = "elt", record=None):
    """One step as elt.train runs it: draw, forward and backward (recorded by `record`), clipping, AdamW, EMA."""
    net = net.to(device)
    opt, ema = torch.optim.AdamW(net.parameters(), lr=1e-3), train_mod.EMA(net, 0.99)
    inputs, l_int = ilsd.draw(
        parts.generator,
        batch(parts.cfg.model.generator, device),
        family,
        1,
        net.cfg.loops,
        torch.Generator().manual_seed(0),
    )
    with record or contextlib.nullcontext():
        losses = train_mod.optimisation_step(net, parts.generator, inputs, l_int, net.cfg.loops, 0.5, 8, Runtime())
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    ema.update(net)
    return losses


@pytest.mark.parametrize("generator", GENERATORS)
def test_a_training_step_neither_mixes_devices_nor_waits_for_the_device(generator):
    parts, net = tiny(generator)
    losses = training_step(parts, net, "meta")
    assert [loss.device.type for loss in losses] == ["meta"]


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_sampling_neither_mixes_devices_nor_waits_for_the_device(generator, guidance):
    parts, net = tiny(generator, guidance=guidance)
    labels = (torch.arange(3) % 10).to("meta")
    out = parts.generator.sample(net.eval().to("meta"), labels, loops=2, gen=torch.Generator().manual_seed(0))
    assert out.device.type == "meta"


def test_the_paper_protocols_resize_and_inception_score_network_stay_on_the_images_device():
    images = torch.zeros(2, 3, 32, 32, device="meta")
    assert tf_bilinear_resize(images).device.type == "meta"
    logits = is_network().to("meta").eval()(tf_bilinear_resize(images))
    assert logits.shape == (2, 1008) and logits.device.type == "meta"


class Kernels(TorchDispatchMode):
    """The aten operations dispatched, in order, with the shapes of their tensor arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
        self.calls.append((str(func.overloadpacket), shapes))
        return func(*args, **(kwargs or {}))


def kernels_of(run) -> list:
    with Kernels() as recorded:
        run()
    return recorded.calls


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_elt_and_the_unshared_model_sample_with_the_same_kernels(generator, guidance):
    """ELT 2N x 3L against 6 unique layers applied once: operation for operation the same work, only the
    weights read differ. Any per-loop work the baseline does not do would show here."""
    labels = torch.arange(4) % 10

    def sampling(family):
        parts, net = tiny(generator, family, guidance, n_unique=2, loops=3)
        net.eval()
        return kernels_of(lambda: parts.generator.sample(net, labels, net.cfg.loops, torch.Generator().manual_seed(0)))

    elt, unshared = sampling("elt"), sampling("unshared")
    assert len(elt) > 100 and elt == unshared


@pytest.mark.parametrize("generator", GENERATORS)
def test_elt_and_the_unshared_model_train_with_the_same_kernels_but_sharing_and_ilsds_exit(generator):
    """Forward and backward of a step without a student (vanilla looped N x L) dispatch the unshared N*L-layer
    model's kernels, but for what sharing weights means: autograd adds each shared weight's gradients over the
    L applications ((L - 1) adds per block tensor) where the unshared model's go to distinct tensors (a free
    detach). ELT's step adds ILSD's student exit (a head, its loss, the distillation term) and nothing else."""

    def step(family):
        parts, net = tiny(generator, family, n_unique=2, loops=3)
        training_step(parts, net, "cpu", family, record := Kernels())
        return [c for c in record.calls if c[0] != "aten.detach"], net

    (looped, net), (unshared, _), (elt, _) = step("looped"), step("unshared"), step("elt")
    block = {tuple(p.shape) for p in net.stack.parameters()}
    only_looped = []
    for tag, i, j, k, m in difflib.SequenceMatcher(None, looped, unshared, autojunk=False).get_opcodes():
        assert tag in ("equal", "delete"), (tag, looped[i:j], unshared[k:m])  # nothing the baseline does more
        only_looped += looped[i:j] if tag == "delete" else []
    assert {c[0] for c in only_looped} == {"aten.add"} and {c[1][0] for c in only_looped} <= block
    assert len(only_looped) == (net.cfg.loops - 1) * len(list(net.stack.parameters())) and len(unshared) > 100
    assert 0 < len(elt) - len(looped) < len(looped) // 3


def test_guidance_and_the_samplers_arithmetic_run_in_fp32_on_a_bf16_network():
    from elt.methods.diffusion import relative_change, to_x0_eps
    from elt.models.looped import guide

    half = torch.randn(4, 3, dtype=torch.bfloat16)
    assert guide(half, 1.0).dtype == guide(half, 2.0).dtype == torch.float32
    z, alpha, sigma = torch.randn(2, 3), torch.tensor(0.6), torch.tensor(0.8)
    for target in ("eps", "x0", "v"):
        assert {t.dtype for t in to_x0_eps(half[:2], z, alpha, sigma, target)} == {torch.float32}
    assert relative_change(half, half * 2).dtype == torch.float32


def test_feature_extractors_compute_without_tf32_whatever_the_process_set():
    """torch turns TF32 on for cuDNN by default: a feature process without a Runtime would compute reference
    features at TF32 and sample features at fp32. Every extractor runs with both switches off."""
    from elt.eval import i3d, metrics, paper

    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.width = width

        def forward(self, x):
            seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
            return torch.zeros(len(x), self.width)

    class Headed(Recorder):
        """With a 1008-way head: the Inception Score reads the head's input and weight."""

        def __init__(self):
            super().__init__(2048)
            self.fc = torch.nn.Linear(2048, 1008)

        def forward(self, x):
            return self.fc(super().forward(x))

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8).numpy()
        metrics.inception_features(images, Recorder(2048))
        paper.adm_features(images, Recorder(2048))
        paper.inception_logits(Headed(), images)
        i3d.i3d_features(torch.zeros(1, 9, 3, 8, 8, dtype=torch.uint8).numpy(), Recorder(400))
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    assert seen == [(False, False)] * 4
