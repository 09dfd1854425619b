"""The 3D VQ tokenizer learns moving digits and round-trips them within its recorded error."""
import numpy as np
import pytest
import torch

from elt import tokenizer, video


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    from sklearn.datasets import load_digits

    d = load_digits()
    digits = np.round(d.images * 255 / 16).astype(np.uint8)
    clips = video.moving_digits(digits[:300], frames=8, canvas=12, seed=0)
    held = video.moving_digits(digits[300:340], frames=8, canvas=12, seed=1)
    cfg = tokenizer.TokenizerConfig(patch=[2, 2, 2], hidden=48, code_dim=8, codebook=64, steps=400, batch_size=16)
    net, error = tokenizer.train_tokenizer(clips, held, cfg)
    path = tmp_path_factory.mktemp("tok") / "vq.pt"
    tokenizer.save(net, path, error)
    return path, held, error


def test_round_trip_within_recorded_error(trained):
    path, held, error = trained
    codec = tokenizer.VQCodec(tokenizer.load(path), held.shape[1:])
    tokens = codec.encode(held)
    assert tokens.shape == (40, 4 * 6 * 6) and tokens.max() < 64 and tokens.dtype == torch.long
    recon = codec.decode(tokens)
    assert recon.shape == held.shape and recon.dtype == np.uint8
    mse = np.mean(((recon.astype(np.float64) - held) / 127.5) ** 2)
    assert mse == pytest.approx(error["mse"], rel=0.05, abs=1e-3)  # uint8 rounding aside, the recorded error
    blank = np.mean((held.astype(np.float64) / 127.5 - 1 + 1) ** 2)  # error of predicting all-black clips
    assert error["mse"] < 0.5 * blank and error["codes_used"] > 8


def test_codec_is_deterministic(trained):
    path, held, _ = trained
    codec = tokenizer.VQCodec(tokenizer.load(path), held.shape[1:])
    assert torch.equal(codec.encode(held), codec.encode(held))
