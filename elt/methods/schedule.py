"""How many loops each sampling step runs: beyond the paper, which fixes one L for every step.

A LoopSchedule gives the loop count of every sampling step (MaskGIT decoding steps, DDPM/DDIM
denoising steps); a fixed L is the trivial schedule. Written compactly:

    4                 every step at L=4
    linear 1->4       from L=1 at the first step to L=4 at the last, rounded to the nearest integer
    step 1@0.5,4      L=1 for the first half of the steps, then L=4 (any number of L@fraction pieces)
    1,2,2,4           one loop count per step (as many as the sampler's steps)

An EarlyExit stops looping each sample, within each step, once its output changes less than a
threshold between consecutive loops (elt.models.looped.LoopedNetwork.early_exit), between L_min and L_max.
A profile's `loop_plans` write it as `exit THRESHOLD` (L_min..L_max = 1..the trained L) or
`exit THRESHOLD LMIN-LMAX`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from elt.errors import UserError

FORMS = "use 4, 'linear 1->4', 'step 1@0.5,4' or a list like 1,2,2,4"


@dataclass(frozen=True)
class LoopSchedule:
    text: str
    kind: str  # fixed | linear | step | list
    values: tuple  # fixed: (L,); linear: (start, end); step: ((L, until_fraction), ..., (L, 1.0)); list: (L, ...)

    def per_step(self, steps: int) -> list[int]:
        if self.kind == "fixed":
            return [self.values[0]] * steps
        if self.kind == "linear":
            start, end = self.values
            return [round(start + (end - start) * (k / (steps - 1) if steps > 1 else 1.0)) for k in range(steps)]
        if self.kind == "step":
            return [next(loops for loops, until in self.values if k / steps < until) for k in range(steps)]
        if len(self.values) != steps:
            raise UserError(
                f"loop schedule {self.text!r} lists {len(self.values)} loop counts for {steps} sampling steps: "
                "give one per step"
            )
        return list(self.values)

    @property
    def is_fixed(self) -> bool:
        return self.kind == "fixed"


def _loops(text: str, spec) -> int:
    if not re.fullmatch(r"\d+", text.strip()) or int(text) < 1:
        raise UserError(f"loop schedule {spec!r}: {text.strip()!r} is not a loop count >= 1; {FORMS}")
    return int(text)


def parse_schedule(spec) -> LoopSchedule:
    """A schedule from its compact text (or an int, or a list of ints)."""
    if isinstance(spec, bool):
        raise UserError(f"loop schedule {spec!r} is invalid: {FORMS}")
    if isinstance(spec, int):
        return LoopSchedule(str(spec), "fixed", (_loops(str(spec), spec),))
    if isinstance(spec, (list, tuple)):
        return LoopSchedule(",".join(map(str, spec)), "list", tuple(_loops(str(v), spec) for v in spec))
    text = str(spec).strip()
    if m := re.fullmatch(r"linear\s+(\S+)\s*->\s*(\S+)", text):
        return LoopSchedule(text, "linear", (_loops(m.group(1), spec), _loops(m.group(2), spec)))
    if text.startswith("step "):
        pieces = [p.strip() for p in text[5:].split(",")]
        values = []
        for piece in pieces[:-1]:
            loops, _, until = piece.partition("@")
            try:
                fraction = float(until)
            except ValueError:
                raise UserError(f"loop schedule {spec!r}: {piece!r} needs L@fraction, e.g. 1@0.5; {FORMS}") from None
            values.append((_loops(loops, spec), fraction))
        fractions = [f for _, f in values]
        if (
            not fractions
            or fractions != sorted(fractions)
            or not all(0 < f < 1 for f in fractions)
            or "@" in pieces[-1]
        ):
            raise UserError(
                f"loop schedule {spec!r}: fractions must rise within (0, 1) and the last piece be a bare L; {FORMS}"
            )
        return LoopSchedule(text, "step", (*values, (_loops(pieces[-1], spec), 1.0)))
    if "," in text:
        return LoopSchedule(text, "list", tuple(_loops(v, spec) for v in text.split(",")))
    return LoopSchedule(text, "fixed", (_loops(text, spec),))


@dataclass(frozen=True)
class EarlyExit:
    """Exit a sample at the first L in [l_min, l_max] whose output changed less than `threshold` since
    loop L-1 (loop 0: the head on the embeddings): 0 never exits early (= L_max), inf exits at L_min."""

    threshold: float
    l_min: int
    l_max: int

    def __post_init__(self):
        if not (1 <= self.l_min <= self.l_max):
            raise UserError(f"early exit needs 1 <= L_min <= L_max, got {self.l_min} and {self.l_max}")
        if math.isnan(self.threshold) or self.threshold < 0:
            raise UserError(f"early-exit threshold {self.threshold} is invalid: use a number >= 0 (inf exits at L_min)")

    @property
    def text(self) -> str:
        return f"exit<{self.threshold:g} L{self.l_min}-{self.l_max}"


def parse_plan(spec, l_max: int) -> LoopSchedule | EarlyExit:
    """A profile's loop plan: a schedule (parse_schedule), or `exit THRESHOLD [LMIN-LMAX]` for early
    exit between L_min and L_max (default 1 and l_max, the run's trained L)."""
    text = str(spec).strip()
    if not text.startswith("exit"):
        return parse_schedule(spec)
    m = re.fullmatch(r"exit\s+(\S+)(?:\s+(\d+)-(\d+))?", text)
    try:
        threshold = float(m.group(1)) if m else None
    except ValueError:
        threshold = None
    if threshold is None:
        raise UserError(
            f"loop plan {spec!r} is invalid: write early exit as 'exit 0.05' or 'exit 0.05 1-4', schedules as "
            f"{FORMS[4:]}"
        )
    return EarlyExit(threshold, *((int(m.group(2)), int(m.group(3))) if m.group(2) else (1, l_max)))


def plan_name(plan) -> str:
    """A loop count, schedule or early-exit rule as it goes into a file name: 'linear 1->4' -> linear_1_4."""
    return str(plan) if isinstance(plan, int) else re.sub(r"[^A-Za-z0-9.]+", "_", plan.text).strip("_")
