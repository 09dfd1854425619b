"""The 3D VQ tokenizer learns moving digits and round-trips them within its recorded error."""

import numpy as np
import pytest
import torch

from elt.codecs import tokenizer
from elt.data import tokens as pretokenized
from elt.data import video

pytestmark = pytest.mark.slow  # its module fixture trains a tokenizer (about 20 s)


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


def test_pretokenized_data_round_trips_and_refuses_another_tokenizer(trained, tmp_path):
    from elt.data.datasets import Dataset
    from elt.errors import UserError

    path, held, _ = trained
    net = tokenizer.load(path)
    ds = Dataset(held, np.arange(len(held)) % 10, [str(c) for c in range(10)], "abc")
    pretokenized.save_tokens(tmp_path / "tokens.npz", net, path, ds)
    tokens, labels, classes, split_sha = pretokenized.load_tokens(tmp_path / "tokens.npz", path, held.shape[1:])
    assert torch.equal(tokens, tokenizer.VQCodec(net, held.shape[1:]).encode(held)) and split_sha == "abc"
    assert list(labels) == list(ds.labels) and classes == ds.classes
    with pytest.raises(UserError, match="another clip shape"):
        pretokenized.load_tokens(tmp_path / "tokens.npz", path, (16, 1, 12, 12))
    other = tmp_path / "other.pt"
    tokenizer.save(tokenizer.VQTokenizer(net.cfg), other, {})
    with pytest.raises(UserError, match="another tokenizer"):
        pretokenized.load_tokens(tmp_path / "tokens.npz", other, held.shape[1:])
    with pytest.raises(UserError, match="does not exist"):
        pretokenized.load_tokens(tmp_path / "none.npz", path, held.shape[1:])


def test_tokenizer_step_checks_its_settings(tmp_path):
    from elt.errors import UserError

    data = {"dataset": "moving_digits", "image_size": 12, "frames": 16}
    outputs = (tmp_path / "t.pt", tmp_path / "t.json", tmp_path / "t.npz")
    with pytest.raises(UserError, match="does not divide the 16x12x12 clips"):
        pretokenized.tokenizer_step(data, {"patch": [4, 5, 5]}, *outputs)
    with pytest.raises(UserError, match="unknown config key 'tokenizer.codes'"):
        pretokenized.tokenizer_step(data, {"codes": 5}, *outputs)
    assert not list(tmp_path.iterdir())
