"""Loop schedules across sampling steps and per-sample early exit: the parser, exact equality with
fixed-L sampling at the trivial settings, the loops actually used, and what they cost."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from elt.cli import main
from elt.errors import UserError
from elt.eval.accounting import describe, loop_plan_cost
from elt.harness.grid import loop_plans
from elt.methods.schedule import EarlyExit, parse_plan, parse_schedule, plan_name
from elt.models.looped import build
from elt.runs import assemble
from elt.sample import generate, load_samples

from .conftest import tiny_cfg


@pytest.mark.parametrize(
    "spec, steps, expected",
    [
        (3, 4, [3, 3, 3, 3]),
        ("2", 3, [2, 2, 2]),
        ("linear 1->4", 4, [1, 2, 3, 4]),
        ("linear 4->1", 7, [4, 4, 3, 2, 2, 2, 1]),  # 4, 3.5, 3, 2.5, 2, 1.5, 1 rounded, halves to even
        ("step 1@0.5,4", 4, [1, 1, 4, 4]),
        ("step 1@0.25, 2@0.75, 3", 8, [1, 1, 2, 2, 2, 2, 3, 3]),
        ("1,2,2,4", 4, [1, 2, 2, 4]),
        ([3, 1], 2, [3, 1]),
    ],
)
def test_schedule_forms(spec, steps, expected):
    assert parse_schedule(spec).per_step(steps) == expected


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("linear 0->4", "'0' is not a loop count"),
        ("step 1@0.7,2@0.3,4", "fractions must rise"),
        ("step 1@half,4", "needs L@fraction"),
        ("fast", "'fast' is not a loop count"),
        (True, "is invalid"),
    ],
)
def test_bad_schedules_get_one_line_errors(spec, fragment):
    with pytest.raises(UserError, match=fragment) as err:
        parse_schedule(spec)
    assert "\n" not in str(err.value) and "linear 1->4" in str(err.value)


def test_a_list_must_give_every_step_its_loops():
    with pytest.raises(UserError, match="3 loop counts for 4 sampling steps"):
        parse_schedule("1,2,3").per_step(4)


def test_early_exit_rule_is_checked():
    with pytest.raises(UserError, match="L_min <= L_max"):
        EarlyExit(0.1, 3, 2)
    with pytest.raises(UserError, match="threshold -1"):
        EarlyExit(-1, 1, 2)


@pytest.mark.parametrize(
    "spec, plan, name",
    [
        ("linear 1->3", parse_schedule("linear 1->3"), "linear_1_3"),
        ("step 1@0.5,3", parse_schedule("step 1@0.5,3"), "step_1_0.5_3"),
        ("exit 0.05", EarlyExit(0.05, 1, 3), "exit_0.05_L1_3"),  # default range: 1 to the trained L
        ("exit inf 2-4", EarlyExit(math.inf, 2, 4), "exit_inf_L2_4"),
    ],
)
def test_profile_loop_plans_and_their_file_names(spec, plan, name):
    assert parse_plan(spec, l_max=3) == plan and plan_name(plan) == name


@pytest.mark.parametrize(
    "spec, fragment", [("exit", "'exit 0.05'"), ("exit often", "'exit 0.05'"), ("exit 0.1 3-1", "L_min <= L_max")]
)
def test_bad_loop_plans_get_one_line_errors(spec, fragment):
    with pytest.raises(UserError, match=fragment) as err:
        parse_plan(spec, l_max=3)
    assert "\n" not in str(err.value)


def test_loop_plans_go_to_the_elt_runs_of_their_group_only():
    profile = yaml.safe_load(Path("config/default.yaml").read_text())
    plans = loop_plans(profile)
    assert set(plans) == {"masked-elt-XS-2x3-s0", "diffusion-elt-XS-2x4-s0"}
    assert plans["masked-elt-XS-2x3-s0"] == {
        "linear_1_3": "linear 1->3",
        "linear_3_1": "linear 3->1",
        "exit_0.01_L1_3": "exit 0.01",
    }
    for entries, fragment in [
        ([{"group": "nope", "plans": ["2"]}], "grid group 'nope', which the grid lacks"),
        ([{"group": "masked", "plans": ["2", 2]}], "lists 2 twice"),
        ([{"group": "masked", "plans": ["linear 0->2"]}], "loop_plans of group 'masked'"),
    ]:
        with pytest.raises(UserError, match=fragment):
            loop_plans({**profile, "loop_plans": entries})


def model(generator: str, guidance: float):
    section = {"sampling_steps": 3, "guidance": guidance}
    cfg = tiny_cfg(model={"generator": generator, "loops": 3}, **{generator: section})
    parts = assemble(cfg)
    torch.manual_seed(1)
    net = build(parts.net_cfg).eval()
    with torch.no_grad():  # away from DiT's zero init, so loop counts give different outputs
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return parts, net


LABELS = torch.arange(6) % 10
CASES = [("masked", 1.0), ("masked", 2.0), ("diffusion", 1.0), ("diffusion", 2.0)]


@pytest.mark.parametrize("generator, guidance", CASES)
def test_constant_schedule_reproduces_fixed_loops_exactly(generator, guidance):
    parts, net = model(generator, guidance)
    fixed = generate(parts, net, 2, LABELS, seed=5)
    assert np.array_equal(generate(parts, net, parse_schedule("2"), LABELS, seed=5), fixed)
    assert np.array_equal(generate(parts, net, parse_schedule("2,2,2"), LABELS, seed=5), fixed)
    assert not np.array_equal(generate(parts, net, 3, LABELS, seed=5), fixed)  # the loop count matters here


@pytest.mark.parametrize("generator, guidance", CASES)
def test_early_exit_at_zero_is_l_max_and_at_infinity_is_l_min(generator, guidance):
    parts, net = model(generator, guidance)
    for threshold, loops in ((0.0, 3), (math.inf, 1)):
        used = []
        samples = generate(parts, net, EarlyExit(threshold, 1, 3), LABELS, seed=5, loops_used=used)
        assert np.array_equal(samples, generate(parts, net, loops, LABELS, seed=5))
        assert used[0].shape == (6, 3) and (used[0] == loops).all()


@pytest.mark.parametrize("generator", ["masked", "diffusion"])
def test_early_exit_in_between_stops_samples_at_different_loops(generator):
    """One step: each sample's output is the fixed-L output at its own exit loop."""
    parts, net = model(generator, 1.0)
    torch.manual_seed(0)
    labels = torch.arange(16) % 10
    if generator == "masked":
        inputs, t = torch.randint(0, net.cfg.vocab_size + 1, (16, net.cfg.seq_len)), None
        from elt.methods.masked import token_divergence as change
    else:
        inputs, t = torch.randn(16, 1, 1, 8, 8), torch.rand(16)
        from elt.methods.diffusion import relative_change as change
    with torch.no_grad():
        at = {l: net(inputs, labels, t, loops=l) for l in (1, 2, 3)}
        moves = change(at[1], at[2])
        threshold = float(moves.median())
        out, used = net.early_exit(inputs, labels, t, EarlyExit(threshold, 2, 3), lambda o: o, change)
    assert set(used.tolist()) == {2, 3}
    assert (used == 2).tolist() == (moves < threshold).tolist()
    for i, loops in enumerate(used.tolist()):
        torch.testing.assert_close(out[i], at[loops][i], rtol=1e-5, atol=1e-5)  # subsets batch differently


@pytest.mark.parametrize("generator, guidance", [("masked", 2.0), ("diffusion", 1.0)])
def test_cost_counts_the_loops_each_step_ran(generator, guidance):
    parts, net = model(generator, guidance)
    per_sample = describe(parts, net, [1, 2, 3])["gflops_per_sample"]
    used = []
    generate(parts, net, parse_schedule("3,1,2"), LABELS, seed=5, loops_used=used)
    assert used[0].tolist() == [[3, 1, 2]] * 6
    cost = loop_plan_cost(net, used[0], guidance)
    assert cost["gflops_per_sample"] == pytest.approx(per_sample[2])  # 3+1+2 loops over 3 steps = L=2 at every step
    assert cost["loops_used_per_step"] == [3, 1, 2] and cost["loops_used_histogram"] == {1: 6, 2: 6, 3: 6}


def test_sample_command_with_a_schedule_and_with_early_exit(tmp_path):
    from .test_cli import write_cfg

    cfg = write_cfg(tmp_path / "c.yaml", train={"steps": 5})
    main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--quiet"])
    main(
        [
            "sample",
            "--checkpoint",
            str(tmp_path / "run/checkpoint.pt"),
            "--schedule",
            "linear 1->3",
            "--num",
            "4",
            "--out",
            str(tmp_path / "linear.npz"),
        ]
    )
    _, _, meta = load_samples(tmp_path / "linear.npz")
    assert (
        meta["loops"] == "linear 1->3" and meta["loops_used_per_step"][0] == 1 and meta["loops_used_per_step"][-1] == 3
    )
    main(
        [
            "sample",
            "--checkpoint",
            str(tmp_path / "run/checkpoint.pt"),
            "--early-exit",
            "inf",
            "--exit-range",
            "2-3",
            "--num",
            "4",
            "--out",
            str(tmp_path / "exit.npz"),
        ]
    )
    _, _, meta = load_samples(tmp_path / "exit.npz")
    assert meta["loops"] == "exit<inf L2-3" and meta["loops_used_mean"] == 2 and meta["gflops_per_sample"] > 0
    assert json.dumps(meta)  # the record stays plain JSON
