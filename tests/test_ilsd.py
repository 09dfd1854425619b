"""ILSD as the paper states it: schedule, student draw, one pass for both exits. The loss, its gradients
and the teacher's stop-gradient against a loss built by hand: tests/test_method.py."""

import pytest
import torch

from elt.methods import ilsd
from elt.models.looped import build
from elt.runs import assemble

from .conftest import tiny_cfg


def test_lambda_is_linear_from_one_to_zero():
    total = 11
    values = [ilsd.lam(step, total) for step in range(total)]
    assert values[0] == 1.0 and values[-1] == 0.0
    diffs = {round(b - a, 12) for a, b in zip(values, values[1:])}
    assert diffs == {-0.1}


def test_student_loops_uniform_in_half_open_range():
    gen = torch.Generator().manual_seed(0)
    draws = [ilsd.draw_student_loops(2, 5, gen) for _ in range(3000)]
    assert set(draws) == {2, 3, 4}
    counts = [draws.count(v) for v in (2, 3, 4)]
    assert max(counts) - min(counts) < 200


class Recorder:
    """Wraps a generator to record the outputs the objective sees."""

    def __init__(self, inner):
        self.inner, self.outputs = inner, None

    def training_inputs(self, batch, gen):
        return self.inner.training_inputs(batch, gen)

    def forward(self, net, inputs, exits):
        self.outputs = self.inner.forward(net, inputs, exits)
        self.inputs = inputs
        return self.outputs

    def gt_loss(self, out, inputs):
        return self.inner.gt_loss(out, inputs)

    def distill_loss(self, student, teacher, inputs):
        return self.inner.distill_loss(student, teacher, inputs)


def setup(generator):
    parts = assemble(tiny_cfg(model={"generator": generator, "n_unique": 1, "loops": 4}))
    net = build(parts.net_cfg)
    for p in net.parameters():  # break adaLN-Zero's identity start so every loop matters
        torch.nn.init.normal_(p, std=0.05)
    b = 6
    if generator == "masked":
        x = torch.randint(0, 17, (b, 64))
    else:
        x = torch.rand(b, 1, 1, 8, 8) * 2 - 1
    return parts, net, (x, torch.arange(b) % 10)


@pytest.mark.parametrize("generator", ["masked", "diffusion"])
def test_student_exit_equals_separate_forward_at_l_int(generator):
    parts, net, batch = setup(generator)
    rec = Recorder(parts.generator)
    gen = torch.Generator().manual_seed(3)
    _, log = ilsd.objective(rec, net, batch, "elt", step=5, total_steps=10, l_min=1, gen=gen)
    l_int = log["l_int"]
    assert 1 <= l_int < 4 and set(rec.outputs) == {l_int, 4}
    inputs = rec.inputs
    if generator == "masked":
        alone = net(inputs["inputs"], inputs["labels"], loops=l_int)
    else:
        alone = net(inputs["z"], inputs["labels"], inputs["t"], loops=l_int)
    torch.testing.assert_close(rec.outputs[l_int], alone, rtol=0, atol=1e-6)


def test_vanilla_looped_trains_on_teacher_only():
    parts, net, batch = setup("masked")
    rec = Recorder(parts.generator)
    _, log = ilsd.objective(rec, net, batch, "looped", 0, 10, 1, torch.Generator().manual_seed(1))
    assert set(rec.outputs) == {4} and set(log) == {"loss", "gt_teacher"}
