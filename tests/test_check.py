"""Regression checks: the per-row and aggregate tests, what they can see, and their validation."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elt.errors import UserError
from elt.files import write_json
from elt.harness.check import (
    _holm,
    build_reference,
    changed_numbers,
    check,
    per_row_test,
    reference_from_table,
    seed_table,
    shifted,
    table_of,
    validate,
)

ROOT = Path(__file__).resolve().parent.parent


def seed_metrics(seed, shift=0.0):
    return pd.DataFrame(
        [
            {
                "run": f"masked-elt-XS-2x3-s{seed}",
                "loops_eval": loops,
                "fid": 50 + loops + shift + seed,
                "fd_domain": 10 + loops + 0.5 * seed,
                "kid": 0.1 + 0.01 * seed,
                "class_accuracy": 0.9 - 0.01 * seed,
            }
            for loops in (1, 2, 3)
        ]
    )


@pytest.fixture
def reference(tmp_path):
    paths = []
    for seed in (0, 1, 2):
        paths.append(tmp_path / f"m{seed}.csv")
        seed_metrics(seed).to_csv(paths[-1], index=False)
    ref = build_reference([str(p) for p in paths], baseline_seed=0, k=3.0, profile="test", provenance={})
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    return ref


def elt_check(*args):
    return subprocess.run([sys.executable, "-m", "elt.cli", "check", *map(str, args)], capture_output=True, text=True)


def test_reference_tolerance_is_k_seed_standard_deviations(reference):
    entry = reference["entries"]["masked-elt-XS-2x3-s0"]["2"]["fid"]
    assert entry["value"] == 52 and entry["mean"] == 53 and entry["seed_std"] == pytest.approx(1.0)
    assert entry["seeds"] == {"0": 52, "1": 53, "2": 54}
    predictive = np.sqrt(1 + 1 / 3)  # a new seed against the mean of three
    assert entry["tolerance"] == pytest.approx(
        3 * predictive * max(1.0, reference["rms_relative_seed_std"]["fid"] * 53)
    )


def test_default_k_holds_the_false_alarm_rate_over_rows(tmp_path):
    for seed in (0, 1, 2):
        seed_metrics(seed).to_csv(tmp_path / f"m{seed}.csv", index=False)
    reference = build_reference(
        [str(tmp_path / f"m{s}.csv") for s in (0, 1, 2)], 0, None, "x", {}, false_alarm_rate=0.01
    )
    assert reference["k"] == pytest.approx(
        24.464, abs=1e-3
    )  # Student's t quantile (one run: 2 df) of 1 - 0.01 / 12 rows


def test_unchanged_run_passes_and_planted_regression_fails(reference, tmp_path):
    result = check(reference, seed_metrics(0))
    assert result.passed and (result.rows["status"] == "ok").all()
    worse = seed_metrics(0, shift=20.0)  # a worse FID, far beyond three seed deviations
    result = check(reference, worse)
    assert not result.passed and set(result.rows[result.rows["status"] != "ok"]["metric"]) == {"fid"}
    better = seed_metrics(0, shift=-20.0)  # better is not a regression
    assert check(reference, better).passed
    worse.to_csv(tmp_path / "worse.csv", index=False)
    cli = elt_check("--reference", tmp_path / "ref.json", tmp_path / "worse.csv")
    assert (
        cli.returncode == 1
        and "REGRESSED" in cli.stdout
        and "FAILED: per-row test" in cli.stdout
        and "(fid)" in cli.stdout
    )


def test_vanished_run_or_metric_fails(reference):
    df = seed_metrics(0)
    result = check(reference, df[df["loops_eval"] != 3])
    assert not result.passed and (result.rows["status"] == "MISSING").sum() == 4
    assert not check(reference, df.drop(columns=["kid"])).passed


def test_reference_needs_two_seeds_and_a_current_format(tmp_path, reference):
    seed_metrics(0).to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(UserError, match="seed noise"):
        build_reference([str(tmp_path / "one.csv")], 0, 3.0, "x", {})
    with pytest.raises(UserError, match="make reference"):
        check({**reference, "format": 99}, seed_metrics(0))


def test_a_reference_without_per_seed_values_still_gets_its_per_row_test(tmp_path):
    """The first layout (baseline value and tolerance per row) is checked as it was, and says to rebuild."""
    old = {
        "k": 3.0,
        "seeds": [0, 1, 2],
        "baseline_seed": 0,
        "directions": {"fid": "lower"},
        "entries": {"masked-elt-XS-2x3-s0": {"1": {"fid": {"value": 50.0, "seed_std": 1.0, "tolerance": 3.0}}}},
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    pd.DataFrame([{"run": "masked-elt-XS-2x3-s0", "loops_eval": 1, "fid": 52.9}]).to_csv(
        tmp_path / "ok.csv", index=False
    )
    pd.DataFrame([{"run": "masked-elt-XS-2x3-s0", "loops_eval": 1, "fid": 53.1}]).to_csv(
        tmp_path / "bad.csv", index=False
    )
    assert (
        check(old, pd.read_csv(tmp_path / "ok.csv")).passed and not check(old, pd.read_csv(tmp_path / "bad.csv")).passed
    )
    cli = elt_check("--reference", tmp_path / "old.json", tmp_path / "bad.csv")
    assert (
        cli.returncode == 1
        and "FAILED: per-row test 0 ok, 1 regressed" in cli.stdout
        and "make reference" in cli.stdout
    )


def test_check_with_missing_reference_is_one_line_error(tmp_path):
    seed_metrics(0).to_csv(tmp_path / "m.csv", index=False)
    cli = elt_check("--reference", tmp_path / "nope.json", tmp_path / "m.csv")
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1 and "elt reference" in cli.stderr


def test_reference_skips_metrics_a_modality_lacks(tmp_path):
    paths = []
    for seed in (0, 1, 2):
        image = seed_metrics(seed)
        video = pd.DataFrame(
            [
                {
                    "run": f"video_diffusion-elt-XS-2x3-s{seed}",
                    "loops_eval": 1,
                    "fvd": 300.0 + seed,
                    "fvd_domain": 20.0 + seed,
                    "class_accuracy": 0.8,
                }
            ]
        )
        paths.append(tmp_path / f"m{seed}.csv")
        pd.concat([image, video]).to_csv(paths[-1], index=False)
    ref = build_reference([str(p) for p in paths], 0, 3.0, "x", {})
    assert set(ref["entries"]["video_diffusion-elt-XS-2x3-s0"]["1"]) == {"fvd", "fvd_domain", "class_accuracy"}
    assert set(ref["entries"]["masked-elt-XS-2x3-s0"]["1"]) == {"fid", "fd_domain", "kid", "class_accuracy"}
    assert check(ref, pd.read_csv(paths[0])).passed


# --- the aggregate test, on a simulated grid with known noise -------------------------------------
GROUPS, FAMILIES, LOOPS = ("masked", "diffusion"), ("elt", "looped", "unshared", "shallow"), (1, 2, 3)
RUN_NOISE, ROW_NOISE = 0.06, 0.02  # log-scale training-seed noise of a run, and of each of its rows


def simulated_seeds(rng, seeds, shift=0.0, run_sd=RUN_NOISE, row_sd=ROW_NOISE):
    """metrics.csv rows of a grid whose rows share their run's seed noise (as loop counts of one network do)."""
    rows = []
    for seed in seeds:
        for group in GROUPS:
            for family in FAMILIES:
                run_noise = rng.normal(0, run_sd, size=2)
                for loops in LOOPS:
                    row = np.exp(run_noise + rng.normal(0, row_sd, size=2))
                    rows.append(
                        {
                            "run": f"{group}-{family}-XS-2x3-s{seed}",
                            "loops_eval": loops,
                            "fd_domain": 20 * (10 + loops) / 10 * row[0] * (1 + shift),
                            "class_accuracy": 0.9 / row[1] * (1 - shift),
                        }
                    )
    return pd.DataFrame(rows)


def simulated_reference(rng):
    return reference_from_table(seed_table(simulated_seeds(rng, (0, 1, 2))), 0, None, 0.01)


def rename_to_baseline(df, seed):
    return df.assign(run=df["run"].str.replace(f"-s{seed}", "-s0"))


def test_aggregate_test_sees_a_uniform_shift_no_row_sees():
    rng = np.random.default_rng(0)
    reference = simulated_reference(rng)
    new = rename_to_baseline(simulated_seeds(rng, (3,)), 3)
    assert check(reference, new).passed
    result = check(reference, shifted(new, 0.12))
    assert result.rows_passed  # every row within its three seed deviations...
    flagged = set(
        result.aggregate.loc[result.aggregate["status"] == "REGRESSED", "scope"]
        + "/"
        + result.aggregate.loc[result.aggregate["status"] == "REGRESSED", "metric"]
    )
    assert "all/fd_domain" in flagged and not result.passed  # ...but their mean moved
    shift = result.aggregate.set_index(["metric", "scope"]).loc[("fd_domain", "all"), "shift"]
    assert 0.04 < shift < 0.25  # the measured mean shift, near the planted 12%


@pytest.mark.slow
def test_aggregate_test_false_alarm_rate_and_power_on_fresh_seeds():
    """New reference and new seed each time: false alarms at no more than the stated rate (Holm is
    conservative), and a shift at the reference's own detectable shift is flagged about POWER of the time."""
    rng = np.random.default_rng(1)
    alarms, row_alarms, caught, trials = 0, 0, 0, 150
    for _ in range(trials):
        reference = simulated_reference(rng)
        new = rename_to_baseline(simulated_seeds(rng, (3,)), 3)
        clean = check(reference, new)
        alarms += not clean.aggregate_passed
        row_alarms += not clean.rows_passed
        detectable = reference["detectable_shift"]["aggregate"]["fd_domain/all"]
        planted = check(reference, shifted(new, detectable, ["fd_domain"])).aggregate
        caught += planted.set_index(["metric", "scope"]).loc[("fd_domain", "all"), "status"] == "REGRESSED"
    assert alarms <= 4  # 1% of 150 expected at most 1.5; 4 or more has probability < 2% even at the full 1%
    assert row_alarms <= 4
    assert caught / trials > 0.75  # nominal 90% at the Bonferroni level, Holm's step-down only adds


def test_planted_five_percent_is_caught_and_clean_reruns_never_flag():
    """Where seed noise allows it (2% per run, 1% per row, five reference seeds: what more samples per
    point buy), a uniform 5% regression fails the check, and three clean reruns pass."""
    rng = np.random.default_rng(2)
    reference = reference_from_table(
        seed_table(simulated_seeds(rng, (0, 1, 2, 3, 4), run_sd=0.02, row_sd=0.01)), 0, None, 0.01
    )
    assert reference["detectable_shift"]["aggregate"]["combined/all"] < 0.05
    for rerun in (5, 6, 7):
        new = rename_to_baseline(simulated_seeds(rng, (rerun,), run_sd=0.02, row_sd=0.01), rerun)
        assert check(reference, new).passed
        planted = check(reference, shifted(new, 0.05))
        assert not planted.passed and "combined" in set(planted.bad_tests["metric"])


def test_holm_rejects_step_down():
    p = np.array([0.001, 0.04, 0.012, 0.3])
    assert _holm(p, 0.05).tolist() == [True, False, True, False]  # 0.001 <= .05/4, 0.012 <= .05/3, 0.04 > .05/2
    assert not _holm(np.array([0.02, 0.02]), 0.01).any()


def test_detectable_shifts_are_recorded_and_printed(tmp_path):
    rng = np.random.default_rng(2)
    paths = []
    for seed in (0, 1, 2):
        paths.append(tmp_path / f"m{seed}.csv")
        simulated_seeds(rng, (seed,)).to_csv(paths[-1], index=False)
    reference = build_reference([str(p) for p in paths], 0, 3.0, "sim", {})
    shifts = reference["detectable_shift"]
    assert set(shifts["aggregate"]) == {
        f"{m}/{s}" for m in ("fd_domain", "class_accuracy", "combined") for s in ("all", *GROUPS)
    }
    # the aggregate over 16 rows is finer than any single row's three seed deviations
    assert shifts["aggregate"]["fd_domain/all"] < shifts["per_row"]["fd_domain"]
    # all metrics at once see a uniform shift sooner than either alone
    assert shifts["aggregate"]["combined/all"] < min(
        shifts["aggregate"]["fd_domain/all"], shifts["aggregate"]["class_accuracy/all"]
    )
    (tmp_path / "ref.json").write_text(json.dumps(reference))
    cli = elt_check("--reference", tmp_path / "ref.json", paths[0])
    assert cli.returncode == 0 and "PASSED: per-row test" in cli.stdout and "detectable" in cli.stdout


def test_leave_one_seed_out_validation_on_the_smoke_reference():
    """The committed smoke reference's own seeds: no seed left out is flagged against the others, and
    each metric moved by the detectable shift the reference states is flagged."""
    reference = json.loads((ROOT / "results/reference/smoke.json").read_text())
    table = table_of(reference)
    assert sorted(table["seed"].unique()) == reference["seeds"] == [0, 1, 2]
    results = validate(table, reference["k"], reference["false_alarm_rate"])
    assert len(results) == 3
    for run in results:
        assert run["clean"] == {"rows_flagged": 0, "aggregate_flagged": []}, run
        assert all(planted["flagged"] for planted in run["detectable_shift_planted"].values()), run
    # what `elt reference` recorded is what the data give (to float summation order: BLAS builds differ)
    assert rounded(results) == rounded(reference["validation"])


def rounded(value, digits: int = 10):
    """Floats to `digits` significant digits, through nested lists and dicts."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return float(f"{value:.{digits}g}") if isinstance(value, float) else value


# --- exact reproduction --------------------------------------------------------------------------
@pytest.mark.slow
def test_exact_repeat_lists_every_changed_number(reference, tmp_path):
    cpu = {"cpu_model": "CPU A", "cpu_kernels": "avx2", "capability": "avx2", "blas": "MKL 1", "onednn": "3"}
    record = {
        "config": {"profile": "test"},
        "seeds": [0, 1, 2],
        "device": "cpu",
        "machine": "x86_64",
        "versions": {"torch": "2"},
        "cpu": cpu,
    }
    reference = {**reference, "record": record}
    (tmp_path / "ref.json").write_text(json.dumps(reference))
    df = seed_metrics(0)
    df.loc[1, "kid"] += 1e-7  # a change of numerics far inside every tolerance
    assert changed_numbers(reference, df)[["run", "loops", "metric"]].values.tolist() == [
        ["masked-elt-XS-2x3-s0", 2, "kid"]
    ]
    df.to_csv(tmp_path / "m.csv", index=False)
    provenance = {
        "config": {"profile": "test", "seeds": [0], "results": "elsewhere", "audit": {"level": 0.9}},
        "device": "cpu",
        "machine": "x86_64",
        "versions": {"torch": "2"},
        "cpu": {**cpu, "threads": 16},  # the checking process's threads; the jobs' are in the config
    }
    (tmp_path / "provenance.json").write_text(json.dumps(provenance))
    cli = elt_check("--reference", tmp_path / "ref.json", tmp_path / "m.csv")
    assert cli.returncode == 0 and "1 number(s) differ at all" in cli.stdout
    seed_metrics(0).to_csv(tmp_path / "m.csv", index=False)
    assert "bit-identical" in elt_check("--reference", tmp_path / "ref.json", tmp_path / "m.csv").stdout

    def differences(**changed_cpu):
        write_json(tmp_path / "provenance.json", {**provenance, "cpu": {**cpu, **changed_cpu}})
        return elt_check("--reference", tmp_path / "ref.json", tmp_path / "m.csv").stdout

    # pinned kernels: another CPU model is still a bit-level comparison; any kernel setting is not
    assert "another CPU model (CPU B vs CPU A)" in differences(cpu_model="CPU B")
    assert "differs in: cpu_kernels, cpu_model" in differences(cpu_model="CPU B", cpu_kernels="native")
    assert "differs in: blas, capability" in differences(capability="avx512", blas="MKL 2")
    write_json(tmp_path / "provenance.json", {**provenance, "versions": {"torch": "3"}})
    assert "differs in: versions" in elt_check("--reference", tmp_path / "ref.json", tmp_path / "m.csv").stdout


def test_holm_rejects_at_equality_and_returns_a_boolean_mask():
    """Holm (1979): reject the k-th smallest p while p(k) <= alpha / (m - k + 1), equality included."""
    reject = _holm(np.array([0.05, 0.025]), 0.05)
    assert reject.dtype == bool and reject.tolist() == [True, True]
    assert _holm(np.array([0.05, 0.0250001]), 0.05).tolist() == [False, False]


@pytest.mark.parametrize(
    "direction, measured, status",
    [
        ("lower", 12.0, "REGRESSED"),
        ("lower", 11.0, "ok"),
        ("lower", 8.0, "ok"),
        ("higher", 0.4, "REGRESSED"),
        ("higher", 0.45, "ok"),
        ("higher", 0.9, "ok"),
    ],
)
def test_a_row_regresses_only_beyond_its_tolerance_in_its_metrics_worse_direction(direction, measured, status):
    metric, mean, tolerance = ("fid", 10.0, 1.0) if direction == "lower" else ("class_accuracy", 0.5, 0.05)
    reference = {
        "directions": {metric: direction},
        "entries": {"r": {"2": {metric: {"mean": mean, "tolerance": tolerance}}}},
    }
    rows = per_row_test(reference, pd.DataFrame([{"run": "r", "loops_eval": 2, metric: measured}]))
    assert rows.to_dict("records") == [
        {
            "run": "r",
            "loops": 2,
            "metric": metric,
            "seed_mean": mean,
            "tolerance": tolerance,
            "measured": measured,
            "status": status,
        }
    ]


def test_an_empty_reference_gives_an_empty_table_with_the_columns_and_a_foreign_one_a_fix():
    empty = per_row_test({"directions": {}, "entries": {}}, pd.DataFrame(columns=["run", "loops_eval"]))
    assert empty.empty and list(empty.columns) == [
        "run",
        "loops",
        "metric",
        "seed_mean",
        "tolerance",
        "measured",
        "status",
    ]
    with pytest.raises(
        UserError, match="^the reference is not one 'elt reference' writes: rebuild it with 'make reference'$"
    ):
        check({"format": "something else"}, pd.DataFrame())
