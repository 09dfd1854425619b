"""The paper protocol's settings, its guidance sweep's pick and the `comparable` column, on records made here."""

import pytest

from elt.errors import UserError
from elt.eval import guidance_sweep as sweep
from elt.eval.paper import STATS_REFERENCE
from elt.harness.paper_table import not_comparable

from .conftest import tiny_cfg

SECTION = {"num_samples": 50000, "fid_reference": None}


@pytest.mark.parametrize(
    "value, message",
    [
        ({"samples": 10000, "scales": []}, "scales is empty or not a list"),
        ({"samples": 10000, "scales": "1.5"}, "scales is empty or not a list"),
        ({"samples": 10000, "scales": [1.5, "2"]}, "holds a value that is not a positive number"),
        ({"samples": 10000, "scales": [1.5, 0]}, "holds a value that is not a positive number"),
        ({"samples": 10000, "scales": [1.5, 1.50]}, "lists a scale twice"),
        ({"samples": 60000, "scales": [1.5]}, "samples 60000 is more than the evaluation's num_samples 50000"),
        ({"samples": 1, "scales": [1.5]}, "samples is 1: use a count of at least 2"),
        ({"scales": [1.5]}, "must name samples and scales"),
        ([1.5, 2.0], "must name samples and scales"),
    ],
)
def test_a_bad_sweep_is_one_line(value, message):
    with pytest.raises(UserError, match=message):
        sweep.paper_settings({**SECTION, "guidance_sweep": value})


def test_settings_defaults_and_the_other_checks(tmp_path):
    settings = sweep.paper_settings(SECTION)
    assert (settings["guidance_sweep"], settings["sample_labels"], settings["require_reference_stats"]) == (
        None,
        "balanced",
        False,
    )
    with pytest.raises(UserError, match="sample_labels is 'random': use uniform"):
        sweep.paper_settings({**SECTION, "sample_labels": "random"})
    import numpy as np

    np.savez(tmp_path / "images_only.npz", arr_0=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="has no mu/sigma, which the paper's FID is computed against"):
        sweep.paper_settings(
            {**SECTION, "fid_reference": str(tmp_path / "images_only.npz"), "require_reference_stats": True}
        )
    assert sweep.paper_settings({**SECTION, "guidance_sweep": {"samples": 10, "scales": [2, 1.5]}})[
        "guidance_sweep"
    ] == {"samples": 10, "scales": [2.0, 1.5]}


def test_the_pick_is_the_lowest_fid_and_the_smaller_scale_on_a_tie():
    records = [
        {"guidance": 3.0, "fid_adm": 5.0, "num_samples": 8},
        {"guidance": 1.5, "fid_adm": 4.0, "num_samples": 8},
        {"guidance": 2.0, "fid_adm": 4.0, "num_samples": 8},
    ]
    picked = sweep.pick(records, "r", 4, 1)
    assert picked["picked"] == 1.5 and [row["guidance"] for row in picked["scales"]] == [1.5, 2.0, 3.0]
    records[1]["fid_adm"] = 4.5
    assert sweep.pick(records, "r", 4, 1)["picked"] == 2.0
    assert sweep.scale_name(2.0) == "2" and sweep.scale_name(1.25) == "1.25"


def test_a_row_is_comparable_only_under_the_papers_protocol():
    cfg = tiny_cfg(model={"generator": "diffusion"}, diffusion={"sampler": "ddpm", "sampling_steps": 512}).to_dict()
    paper = {"fid": 2.83, "sampler": "ddpm", "sampling_steps": 512, "guidance": 3.0}
    record = {"num_samples": 50000, "fid_adm_reference": STATS_REFERENCE, "guidance": 3.0, "sampling_steps": 512}
    assert not_comparable(record, cfg, paper, swept=False) == []
    assert not_comparable({**record, "guidance": 1.5}, cfg, paper, swept=True) == []
    assert not_comparable({**record, "guidance": 1.5}, cfg, paper, swept=False) == [
        "guidance 1.5 neither picked by a sweep nor the paper's 3.0"
    ]
    fast = tiny_cfg(model={"generator": "diffusion"}, diffusion={"sampler": "ddim", "sampling_steps": 50}).to_dict()
    assert not_comparable(
        {**record, "num_samples": 10000, "fid_adm_reference": "the batch's arr_0 (10000 images)", "sampling_steps": 50},
        fast,
        paper,
        swept=False,
    ) == [
        "FID against the batch's arr_0 (10000 images), not ADM's mu/sigma",
        "10000 samples, not 50000",
        "sampler ddim, the paper's is ddpm",
        "sampling_steps 50, the paper's is 512",
    ]
    assert not_comparable(record, cfg, {}, swept=True) == ["the paper reports no row for this run at this loop count"]
