"""The paper-protocol audit from saved features, the efficiency claims, and the sampling-noise regression
reference, on hand-made features and timings (the tiny paper pipeline runs them end to end)."""

import math

import numpy as np
import pandas as pd
import pytest

from elt.errors import UserError
from elt.eval import metrics
from elt.eval.fvd import per_repeat
from elt.eval.guidance_sweep import paper_settings
from elt.eval.paper import PaperFeatures, save_features
from elt.harness import calibrate, efficiency
from elt.harness.check import check, reference_from_table, sampling_table
from elt.harness.paper_audit import BETTER, CONSISTENT, WORSE, paper_audit, rounding

D = 6
AUDIT = {
    "parity_tolerance": 0.25,
    "anytime_max_ratio": 1.5,
    "collapse_min_ratio": 2.0,
    "throughput_tolerance": 0.2,
    "level": 0.95,
    "bootstrap_rounds": 200,
    "bootstrap_seed": 0,
}


def video_features(tmp_path, n_per_repeat=40, repeats=2, seed=0):
    """A (run, L)'s saved FVD features: generated clips in repeat blocks, each against its own real clips."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_per_repeat * repeats, D))
    generated = rng.normal(0.3, 1.1, size=(n_per_repeat * repeats, D))
    stats = [metrics.mean_cov(part) for part in np.array_split(real, repeats)]
    path = tmp_path / "video.npz"
    save_features(
        path,
        {"fvd": generated, "fvd_mu": np.stack([m for m, _ in stats]), "fvd_sigma": np.stack([s for _, s in stats])},
    )
    return PaperFeatures({("v", 2): str(path)}), generated, real


def test_fvd_is_resampled_repeat_by_repeat_against_each_repeats_own_real_clips(tmp_path):
    features, generated, real = video_features(tmp_path)
    identity = np.arange(len(generated))[None]
    point, resampled = features.frechet("v", 2, "fvd", identity)
    assert point == pytest.approx(np.mean(per_repeat(generated, real, 2)), rel=1e-10)  # elt.eval.fvd's number
    assert resampled[0] == pytest.approx(point, rel=1e-10)  # the identity draw is the sample itself
    draws = np.random.default_rng(1).integers(0, 80, (3, 80))
    _, resampled = features.frechet("v", 2, "fvd", draws)
    blocks = [slice(0, 40), slice(40, 80)]
    by_hand = [  # each repeat's block resampled within itself (draws mapped into it), the repeats averaged
        np.mean(
            [
                metrics.frechet_distance(*metrics.mean_cov(generated[b][d[b] % 40]), *metrics.mean_cov(real[b]))
                for b in blocks
            ]
        )
        for d in draws
    ]
    assert resampled == pytest.approx(by_hand, rel=1e-8)


def test_resampling_in_memory_bounded_chunks_gives_the_same_distances(monkeypatch):
    rng = np.random.default_rng(0)
    feats, draws = rng.normal(size=(50, D)), rng.integers(0, 50, (7, 50))
    mu, sigma = metrics.mean_cov(rng.normal(size=(200, D)))
    whole = metrics.frechet_resamples(feats, draws, mu, sigma)
    monkeypatch.setattr(metrics, "MEMORY_BYTES", 8 * 50 * D * 2)  # two rounds at a time
    assert metrics.frechet_resamples(feats, draws, mu, sigma) == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize(("reported", "band"), [(2.0, 0.05), (254.3, 0.05), (72.8, 0.05), (60, 0.05), (2.25, 0.005)])
def test_a_reported_number_stands_for_its_rounding_band(reported, band):
    assert rounding(reported) == pytest.approx(band)


def image_results(tmp_path, paper_fid: dict[str, float | None]):
    """A paper_metrics.csv of one comparison (ELT 1x2 and its unshared baseline) with saved Gaussian features."""
    rng = np.random.default_rng(0)
    mu, sigma = metrics.mean_cov(rng.normal(size=(2000, D)))
    rows = []
    for family, shift in (("elt", 0.5), ("unshared", 0.45)):
        run, loops = f"g-{family}-T-1x2-s0", 2 if family == "elt" else 1
        feats = rng.normal(size=(300, D)) + shift
        path = tmp_path / f"{family}.npz"
        save_features(path, {"fid_adm": feats, "fid_adm_mu": mu, "fid_adm_sigma": sigma})
        reported = paper_fid.get(family)
        rows.append(
            {
                "protocol": "paper",
                "run": run,
                "group": "g-T-1x2-s0",
                "family": family,
                "modality": "image",
                "loops_train": 2,
                "loops_eval": loops,
                "n_samples": 300,
                "unique_params": 10 if family == "elt" else 20,
                "gflops_per_sample": 1.0,
                "fid_adm": metrics.frechet_to_reference(feats, mu, sigma),
                "comparable": "yes" if reported is not None else "no: the paper reports no row",
                "paper_fid": reported,
                "seed": 0,
                "features": str(path),
            }
        )
    return pd.DataFrame(rows)


def test_measured_numbers_stand_beside_the_papers_with_their_interval_and_rounding(tmp_path):
    table = image_results(tmp_path, {})
    elt = float(table.fid_adm[0])
    for reported, verdict in ((round(elt, 1), CONSISTENT), (elt / 3, WORSE), (elt * 3, BETTER)):
        table = image_results(tmp_path, {"elt": reported})
        result = paper_audit(table, AUDIT, PaperFeatures.of_table(table, "t.csv"))
        (row,) = [n for n in result["paper_numbers"] if n["family"] == "elt"]
        assert row["verdict"] == verdict and row["reported"] == reported
        assert row["difference"] == pytest.approx(elt - reported) and row["measured"] == pytest.approx(elt)
        low, high = row["interval"]
        assert row["difference_interval"] == pytest.approx([low - reported, high - reported])
    (base,) = [n for n in result["paper_numbers"] if n["family"] == "unshared"]
    assert base["verdict"] == "not compared" and base["why"] == "no: the paper reports no row"
    parity = next(c for c in result["claims"] if c["claim"] == "iso_compute_parity")
    assert parity["metric"] == "fid_adm" and parity["estimate"] == pytest.approx(elt / table.fid_adm[1])
    assert not any(c["claim"] == "throughput" for c in result["claims"])  # timed by the efficiency step instead


def test_paper_results_without_their_features_are_refused_in_one_line(tmp_path):
    table = image_results(tmp_path, {})
    with pytest.raises(UserError, match="name no saved features"):
        PaperFeatures.of_table(table.assign(features=None), "t.csv")
    (tmp_path / "elt.npz").unlink()
    with pytest.raises(UserError, match=r"do not exist \(1 missing\)"):
        PaperFeatures.of_table(table, "t.csv")


def efficiency_record(elt_seconds: float, unshared_seconds: float, memory=(None, None), repeats: int = 9):
    jitter = np.linspace(0.98, 1.02, repeats)
    runs = {
        "elt": ("g-elt-T-1x2-s0", 2, elt_seconds, memory[0]),
        "unshared": ("g-unshared-T-1x2-s0", 1, unshared_seconds, memory[1]),
    }
    return {
        "settings": {"batch_sizes": [1, 8], "repeats": repeats, "warmup": 1, "train_batch": 4},
        "device": "cuda:0",
        "memory": "not measured: peak memory is read from the CUDA allocator",
        "sampling": [
            {
                "run": run,
                "loops_eval": loops,
                "batch_size": b,
                "seconds": list(seconds * b * jitter),
                "peak_memory_gib": gib,
            }
            for run, loops, seconds, gib in runs.values()
            for b in (1, 8)
        ],
        "training": [
            {"run": run, "batch_size": 4, "seconds": list(seconds * jitter[::-1]), "peak_memory_gib": gib}
            for run, _, seconds, gib in runs.values()
        ],
    }  # fmt: skip


def verdicts(record) -> dict:
    table = image_results_table()
    return {c["claim"]: c["verdict"] for c in efficiency.claims(table, record, AUDIT)}


def image_results_table():
    return pd.DataFrame(
        [
            {"run": "g-elt-T-1x2-s0", "group": "g-T-1x2-s0", "family": "elt", "loops_train": 2},
            {"run": "g-unshared-T-1x2-s0", "group": "g-T-1x2-s0", "family": "unshared", "loops_train": 2},
        ]
    )


def test_efficiency_claims_are_judged_on_paired_timings_and_measured_memory():
    faster = verdicts(efficiency_record(1.0, 2.0, memory=(3.0, 5.0)))
    assert faster == {
        "throughput_batch_1": "holds",
        "throughput_batch_8": "holds",
        "training_step_time": "holds",
        "training_memory": "holds",
        "sampling_memory": "holds",
    }
    slower = verdicts(efficiency_record(2.0, 1.0, memory=(5.0, 3.0)))
    assert set(slower.values()) == {"fails"}
    on_a_cpu = verdicts(efficiency_record(1.0, 1.0))
    assert on_a_cpu["training_memory"] == on_a_cpu["sampling_memory"] == "not measured"
    few = verdicts(efficiency_record(1.0, 0.85, repeats=3))  # 3 repeats: the interval is the whole range
    assert few["throughput_batch_1"] in ("inconclusive", "holds")
    claim = next(c for c in efficiency.claims(image_results_table(), efficiency_record(1.0, 2.0), AUDIT))
    assert (
        claim["estimate"] == pytest.approx(2.0, rel=0.05) and claim["interval"][0] <= 2.0 <= claim["interval"][1] * 1.05
    )


def test_the_latency_table_is_the_median_of_the_timings_with_its_order_statistic_interval():
    table = calibrate.latency_table(efficiency_record(1.0, 2.0)["sampling"])
    row = table[(table.run == "g-elt-T-1x2-s0") & (table.batch_size == 8)].iloc[0]
    assert row.latency_ms == pytest.approx(8000.0) and row.latency_ms_low <= 8000 <= row.latency_ms_high
    assert row.repeats == 9


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"batch_size": 8}, "takes batch_sizes, repeats, warmup, train_batch"),
        ({"batch_sizes": []}, "list of positive integers"),
        ({"batch_sizes": [1, 0]}, "list of positive integers"),
        ({"batch_sizes": [True]}, "list of positive integers"),
        ({"repeats": 2}, "repeats must be an integer >= 3"),
        ({"train_batch": True}, "train_batch must be an integer >= 1"),
    ],
)
def test_bad_efficiency_settings_are_one_line_errors(section, message):
    with pytest.raises(UserError, match=message):
        efficiency.efficiency_settings(section)


def test_paper_audit_overrides_are_checked():
    base = {"num_samples": 4, "fid_reference": None}
    assert paper_settings({**base, "audit": {"bootstrap_rounds": 50}})["audit"] == {"bootstrap_rounds": 50}
    with pytest.raises(UserError, match="paper_protocol.audit overrides"):
        paper_settings({**base, "audit": {"primary_metric": {"image": "fid_clean"}}})


def test_a_one_seed_paper_reference_takes_its_tolerances_from_sampling_noise(tmp_path):
    table = image_results(tmp_path, {})
    long = sampling_table(table, replicates=12)
    assert sorted(set(long.metric)) == ["fid_adm"] and len(long) == 24
    for (stem, loops), part in long.groupby(["stem", "loops"]):
        measured = float(table[(table.run == f"{stem}-s0") & (table.loops_eval == loops)].fid_adm.iloc[0])
        assert part.value.mean() == pytest.approx(measured)  # replicates centred on the measured value
        assert part.value.std() > 0
    reference = reference_from_table(long, 0, None, 0.01)
    assert check(reference, table).passed  # the measurement itself sits at the centre
    worse = table.assign(fid_adm=table.fid_adm * (1 + 20 * long.value.std() / long.value.mean()))
    assert not check(reference, worse).passed
    with pytest.raises(UserError, match="at least 3"):
        sampling_table(table, replicates=2)
    assert math.isfinite(reference["k"])


def test_paper_results_of_several_seeds_make_a_reference_of_their_seed_noise(tmp_path):
    from elt.harness.check import build_reference

    paths = []
    for seed, scale in ((0, 1.0), (1, 1.1), (2, 0.95)):
        table = image_results(tmp_path, {})
        table = table.assign(
            run=table.run.str.replace("-s0", f"-s{seed}"),
            group=f"g-T-1x2-s{seed}",
            seed=seed,
            fid_adm=table.fid_adm * scale,
            features=None,  # several seeds: their spread is the noise, no features needed
        )
        paths.append(tmp_path / f"s{seed}.csv")
        table.to_csv(paths[-1], index=False)
    reference = build_reference([str(p) for p in paths], 0, None, "tiny", {})
    assert reference["protocol"] == "paper" and reference["noise"]["kind"] == "seeds"
    assert reference["seeds"] == [0, 1, 2] and set(reference["entries"]) == {"g-elt-T-1x2-s0", "g-unshared-T-1x2-s0"}
