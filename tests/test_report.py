"""Pareto frontier and PNG export, on data the tests make (the audit: tests/test_audit.py)."""

import numpy as np
import pytest

from elt.harness.report import pareto_mask
from elt.sample import export_png, save_samples


def test_pareto_frontier_is_strict():
    x = [1, 2, 3, 1, 2]
    y = [5, 3, 4, 5, 3]  # (3, 4) is dominated by (2, 3); duplicates do not dominate each other
    assert pareto_mask(x, y).tolist() == [True, True, False, True, True]
    assert pareto_mask([1, 1], [2, 3]).tolist() == [True, False]  # equal x, worse y: dominated


@pytest.mark.parametrize("shape", [(5, 1, 1, 4, 4), (3, 1, 3, 4, 6), (2, 4, 1, 4, 4)])
def test_export_png_is_lossless(tmp_path, shape):
    from PIL import Image

    samples = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    save_samples(tmp_path / "s.npz", samples, np.arange(shape[0]), {"run": "x"})
    assert export_png(str(tmp_path / "s.npz"), str(tmp_path / "png")) == shape[0]
    first = np.asarray(Image.open(tmp_path / "png/00000_class0.png"))
    expected = np.concatenate(list(samples[0]), axis=-1).transpose(1, 2, 0)
    assert np.array_equal(first, expected[..., 0] if shape[2] == 1 else expected)
