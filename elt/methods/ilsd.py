"""Intra-Loop Self Distillation (ILSD), as the paper states it.

One forward pass to L_max loops; the student is the prefix that exits at L_int, drawn once per
iteration uniformly from [L_min, L_max). With lam decaying linearly from 1 to 0 over training:

    loss = GT(teacher) + lam * GT(student) + (1 - lam) * DIST(student, stopgrad(teacher))

Vanilla looped (family "looped") and the unshared/shallow baselines train on GT(teacher) alone.
The generator (masked or diffusion) supplies GT and DIST; this module knows nothing of either.
"""

from __future__ import annotations

import torch


def lam(step: int, total_steps: int) -> float:
    """Linear from 1 at the first step to 0 at the last."""
    return 1.0 - step / max(1, total_steps - 1)


def draw_student_loops(l_min: int, l_max: int, gen: torch.Generator) -> int:
    return int(torch.randint(l_min, l_max, (1,), generator=gen))


def draw(generator, batch, family: str, l_min: int, l_max: int, gen: torch.Generator):
    """One iteration's randomness, in a fixed order: the generator's training inputs for the whole
    (global) batch, then the student's exit L_int (None when the family has no student)."""
    inputs = generator.training_inputs(batch, gen)
    l_int = draw_student_loops(l_min, l_max, gen) if family == "elt" and l_max > 1 else None
    return inputs, l_int


def loss(generator, net, inputs: dict, l_int: int | None, l_max: int, weight: float):
    """Loss on (a slice of) the drawn inputs and a dict of its parts for logging: detached tensors on the
    loss's device (a float would wait for the device every step), lam and l_int as numbers."""
    if l_int is None:
        teacher = generator.forward(net, inputs, exits=[l_max])[l_max]
        value = generator.gt_loss(teacher, inputs)
        return value, {"loss": value.detach(), "gt_teacher": value.detach()}
    outputs = generator.forward(net, inputs, exits=[l_int, l_max])
    gt_teacher = generator.gt_loss(outputs[l_max], inputs)
    gt_student = generator.gt_loss(outputs[l_int], inputs)
    distill = generator.distill_loss(outputs[l_int], outputs[l_max].detach(), inputs)
    value = gt_teacher + weight * gt_student + (1.0 - weight) * distill
    parts = {"gt_teacher": gt_teacher.detach(), "gt_student": gt_student.detach(), "distill": distill.detach()}
    return value, {"loss": value.detach(), "lam": weight, "l_int": l_int, **parts}


def objective(generator, net, batch, family: str, step: int, total_steps: int, l_min: int, gen: torch.Generator):
    """Loss for one iteration on one batch and a dict of its parts (see loss)."""
    inputs, l_int = draw(generator, batch, family, l_min, net.cfg.loops, gen)
    return loss(generator, net, inputs, l_int, net.cfg.loops, lam(step, total_steps))
