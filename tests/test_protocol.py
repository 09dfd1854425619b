"""The paper's image metric protocol: ADM's resize, the Inception Score, ADM's reference batch, and
sample shards, on small images and randomly initialised Inception weights the tests save."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from elt.errors import UserError
from elt.eval import metrics
from elt.eval import paper as protocol
from elt.runtime import torchrun_command
from elt.sample import load_samples, sample, save_samples

from .conftest import tiny_cfg


def test_adm_resize_samples_at_i_times_in_over_out_without_half_pixel_centres():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    up = protocol.tf_bilinear_resize(x, 8)
    assert torch.equal(up[..., 0::2, 0::2], x)  # output 2i samples input i exactly
    assert torch.equal(up[..., 1, 0], (x[..., 0, 0] + x[..., 1, 0]) / 2)  # halfway between rows 0 and 1
    assert torch.equal(up[..., 7, :][..., 0::2], x[..., 3, :])  # past the last row: clamped to it
    assert not torch.allclose(
        up, F.interpolate(x, size=8, mode="bilinear", align_corners=False)
    )  # torch centres half pixels
    down = protocol.tf_bilinear_resize(torch.arange(64.0).view(1, 1, 8, 8), 4)
    assert torch.equal(down, torch.arange(64.0).view(1, 1, 8, 8)[..., 0::2, 0::2])


def test_inception_score_is_the_class_count_for_confident_even_predictions_and_1_for_constant_ones():
    confident = np.full((12000, 1008), -50.0)
    confident[np.arange(12000), np.arange(12000) % 10] = 50.0
    score = protocol.inception_score(confident)
    assert score["is_chunks"] == 3 and score["inception_score"] == pytest.approx(10.0, rel=1e-9)
    assert protocol.inception_score(np.zeros((100, 1008)))["inception_score"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def is_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "pt_inception.pth"
    torch.save(protocol.is_network().state_dict(), path)
    return path


def test_the_inception_score_network_loads_strictly_from_a_local_file(is_weights, tmp_path):
    net = protocol.load_is_network(is_weights)
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    assert protocol.inception_logits(net, images).shape == (2, 1008)
    state = torch.load(is_weights, weights_only=True)
    state.pop("fc.bias")
    torch.save(state, tmp_path / "headless.pth")
    with pytest.raises(UserError, match="do not match the TF Inception with its 1008-way head"):
        protocol.load_is_network(tmp_path / "headless.pth")
    with pytest.raises(UserError, match="do not exist: set paper_protocol.inception_weights"):
        protocol.load_is_network(tmp_path / "absent.pth")


def test_inception_score_logits_are_pool3_times_the_head_weight_without_its_bias(is_weights):
    """ADM's evaluator: softmax(pool3 @ W) of the softmax/logits/MatMul node, before the bias is added."""
    net = protocol.load_is_network(is_weights)
    images = np.random.default_rng(1).integers(0, 256, (3, 3, 40, 40), dtype=np.uint8)
    logits = protocol.inception_logits(net, images)
    headless = protocol.load_is_network(is_weights)
    headless.fc = torch.nn.Identity()  # the network up to pool3, computed without the code under test
    with torch.no_grad():
        x = protocol.tf_bilinear_resize(torch.from_numpy(images.astype(np.float32)))
        pool3 = headless((x - 128.0) / 128.0).double()
    expected = pool3 @ net.fc.weight.detach().double().T
    assert np.abs(logits - expected.numpy()).max() < 1e-4 * np.abs(expected.numpy()).max()
    with torch.no_grad():
        net.fc.bias.copy_(torch.linspace(-1e4, 1e4, 1008))  # a bias that would decide every softmax
    assert protocol.inception_score(protocol.inception_logits(net, images)) == protocol.inception_score(logits)


def rgb(n, seed, side=16):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_the_reference_batch_is_read_or_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        protocol.reference_batch(tmp_path / "absent.npz")
    np.savez(tmp_path / "empty.npz", other=np.zeros(3))
    with pytest.raises(UserError, match="holds neither arr_0"):
        protocol.reference_batch(tmp_path / "empty.npz")
    np.savez(tmp_path / "float.npz", arr_0=np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(UserError, match="not uint8 \\(N, H, W, 3\\) images"):
        protocol.reference_batch(tmp_path / "float.npz")
    np.savez(tmp_path / "ok.npz", arr_0=rgb(4, 0), mu=np.zeros(2048), sigma=np.eye(2048))
    batch = protocol.reference_batch(tmp_path / "ok.npz")
    assert batch["images"].shape == (4, 3, 16, 16) and batch["mu"].shape == (2048,)


@pytest.mark.slow
def test_paper_metrics_of_sample_shards_equal_the_metric_functions_on_all_samples(tmp_path, is_weights):
    shards = []
    for k, n in enumerate((5, 4)):
        path = tmp_path / f"s_{k}.npz"
        save_samples(path, rgb(n, 10 + k).transpose(0, 3, 1, 2)[:, None], np.zeros(n, np.int64), {"run": "r"})
        shards.append(str(path))
    np.savez(tmp_path / "ref.npz", arr_0=rgb(7, 1))
    record = protocol.image_metrics(shards, str(tmp_path / "ref.npz"))
    samples = np.concatenate([load_samples(p)[0][:, 0] for p in shards])
    reference = rgb(7, 1).transpose(0, 3, 1, 2)
    adm = metrics.frechet_distance(
        *metrics.mean_cov(protocol.adm_features(samples)), *metrics.mean_cov(protocol.adm_features(reference))
    )
    clean = metrics.frechet_distance(
        *metrics.mean_cov(metrics.inception_features(samples)), *metrics.mean_cov(metrics.inception_features(reference))
    )
    assert (
        record["num_samples"] == 9
        and record["fid_adm"] == pytest.approx(adm)
        and record["fid_clean"] == pytest.approx(clean)
    )
    assert (
        record["fid_adm"] != pytest.approx(record["fid_clean"])
        and record["fid_adm_reference"] == "the batch's arr_0 (7 images)"
    )
    assert record["inception_score"] is None and "not measured" in record["inception_score_note"]
    assert record["protocol"]["name"] == "paper"
    # ADM's own statistics, when the batch has them, are the ADM-resize reference; no images: no clean FID
    mu, sigma = metrics.mean_cov(protocol.adm_features(reference))
    np.savez(tmp_path / "stats.npz", mu=mu, sigma=sigma)
    out = tmp_path / "record.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "elt.cli",
            "paper-metrics",
            "--samples",
            *shards,
            "--reference",
            str(tmp_path / "stats.npz"),
            "--inception-weights",
            str(is_weights),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    from_stats = json.loads(out.read_text())
    assert from_stats["fid_adm"] == pytest.approx(adm) and from_stats["fid_clean"] is None
    assert from_stats["inception_score"] >= 1.0 and from_stats["is_chunks"] == 1


def test_sharded_sampling_splits_the_labels_and_gives_each_shard_its_own_seed(tmp_path):
    from elt.train import train

    train(tiny_cfg(train={"steps": 2}), tmp_path / "run", progress=False)
    checkpoint = str(tmp_path / "run/checkpoint.pt")
    paths = sample(checkpoint, [2], 25, 7, str(tmp_path / "s_{shard}.npz"), shards=3)
    assert [p.name for p in paths] == ["s_00000.npz", "s_00001.npz", "s_00002.npz"]
    parts = [load_samples(p) for p in paths]
    assert np.array_equal(np.concatenate([labels for _, labels, _ in parts]), np.arange(25) % 10)
    assert [meta["first"] for _, _, meta in parts] == [0, 8, 16] and len({meta["seed"] for _, _, meta in parts}) == 3
    (one,) = sample(checkpoint, [2], 25, 7, str(tmp_path / "s_{shard}.npz"), shards=3, only_shard=1)
    assert np.array_equal(load_samples(one)[0], parts[1][0])
    (whole,) = sample(checkpoint, [2], 8, 7, str(tmp_path / "whole.npz"))
    assert load_samples(whole)[2]["seed"] == 7  # one shard: the run's seed, as before
    with pytest.raises(UserError, match="put '\\{shard\\}' in it"):
        sample(checkpoint, [2], 25, 7, str(tmp_path / "x.npz"), shards=3)
    # uniform labels (ADM's and DiT's sample scripts): one draw over all samples from the seed, split by shard
    paths = sample(checkpoint, [2], 25, 7, str(tmp_path / "u_{shard}.npz"), shards=3, labels="uniform", guidance=2.5)
    uniform = [load_samples(p) for p in paths]
    drawn = np.concatenate([labels for _, labels, _ in uniform])
    assert np.array_equal(drawn, np.random.default_rng(7).integers(0, 10, 25)) and len(set(drawn)) > 1
    assert all(meta["labels"] == "uniform" and meta["guidance"] == 2.5 for _, _, meta in uniform)
    unguided = sample(checkpoint, [2], 25, 7, str(tmp_path / "p_{shard}.npz"), shards=3, labels="uniform")
    assert not np.array_equal(load_samples(unguided[0])[0], uniform[0][0])  # guided at 2.5, not the run's 1.0
    with pytest.raises(UserError, match="sampling labels 'random' are unknown"):
        sample(checkpoint, [2], 4, 7, str(tmp_path / "r.npz"), labels="random")
    (fewer,) = sample(checkpoint, [2], 4, 7, str(tmp_path / "steps.npz"), sampling_steps=1)  # a group's per-L steps
    assert load_samples(fewer)[2]["sampling_steps"] == 1
    with pytest.raises(UserError, match="3 labels given for 4 samples"):
        sample(checkpoint, [2], 4, 7, str(tmp_path / "r.npz"), labels=np.array([0, 1, 2]))
    with pytest.raises(UserError, match="guidance scale 0.0 is invalid"):
        sample(checkpoint, [2], 4, 7, str(tmp_path / "r.npz"), guidance=0.0)


@pytest.mark.slow
def test_fvd_of_sample_shards_against_streamed_training_clips(tmp_path):
    from elt import config
    from elt.data.video import moving_digits
    from elt.eval import fvd
    from elt.eval.i3d import i3d_features

    data = config.from_dict({"data": {"dataset": "moving_digits", "image_size": 12, "frames": 9}}).data
    spec = fvd.fvd_settings({"fvd_reference_clips": 3})
    fvd.reference_features(data, spec, 0, str(tmp_path / "ref.npz"), batch=2)
    with np.load(tmp_path / "ref.npz") as f:
        reference = f["features"]
    from elt.data.datasets import Stream

    stream = Stream(data, "train")
    assert len(reference) == 3  # read in chunks of 2: the same features as all at once, to fp32 convolution order
    np.testing.assert_allclose(
        reference, i3d_features(np.stack([stream.read(i) for i in range(3)])), rtol=1e-4, atol=1e-5
    )
    digits = np.random.default_rng(0).integers(0, 256, (2, 8, 8), dtype=np.uint8)
    samples = moving_digits(digits, 9, 12, 1)
    paths = []
    for k in range(2):
        paths.append(str(tmp_path / f"s_{k}.npz"))
        save_samples(
            paths[-1],
            samples[k : k + 1],
            np.zeros(1, np.int64),
            {"run": "v", "loops": 2, "checkpoint_step": 1, "sampling_steps": 2, "guidance": 1.0},
        )
    record = protocol.evaluate_run(paths, {"fid_reference": None}, str(tmp_path / "ref.npz"))
    expected = metrics.frechet_distance(*metrics.mean_cov(i3d_features(samples)), *metrics.mean_cov(reference))
    assert record["fvd"] == pytest.approx(expected) and record["num_samples"] == 2 and record["num_reference"] == 3
    assert record["run"] == "v" and record["loops"] == 2 and record["protocol"]["name"] == "paper"
    assert record["fvd_protocol"] == {"name": "first_clips", "repeats": 1, "clips": 3} and record["fvd_std"] == 0


@pytest.mark.distributed
def test_torchrun_ranks_share_the_sample_shards_out(tmp_path):
    from elt.train import train

    train(tiny_cfg(train={"steps": 2}), tmp_path / "run", progress=False)
    done = subprocess.run(
        torchrun_command(
            2,
            "sample",
            "--checkpoint",
            str(tmp_path / "run/checkpoint.pt"),
            "--loops",
            "2",
            "--num-samples",
            "12",
            "--shards",
            "3",
            "--out",
            str(tmp_path / "ranks_{shard}.npz"),
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    one = sample(str(tmp_path / "run/checkpoint.pt"), [2], 12, 0, str(tmp_path / "one_{shard}.npz"), shards=3)
    for k, path in enumerate(one):
        assert np.array_equal(load_samples(tmp_path / f"ranks_{k:05d}.npz")[0], load_samples(path)[0])


@pytest.mark.slow
def test_the_protocol_self_test_reproduces_expected_numbers_or_exits_1(tmp_path, is_weights):
    """Its plumbing on tiny fake batches in ADM's layout: FID against the reference's mu/sigma and IS from
    unbiased logits, the samples streamed from the archive in chunks; exit 1 when a number is off."""
    samples, reference = rgb(6, 3), rgb(5, 4)
    np.savez(tmp_path / "samples.npz", arr_0=samples)
    mu, sigma = metrics.mean_cov(protocol.adm_features(reference.transpose(0, 3, 1, 2)))
    np.savez(tmp_path / "reference.npz", mu=mu, sigma=sigma, arr_0=reference)
    nchw = samples.transpose(0, 3, 1, 2)
    fid = metrics.frechet_distance(*metrics.mean_cov(protocol.adm_features(nchw)), mu, sigma)
    score = protocol.inception_score(protocol.inception_logits(protocol.load_is_network(is_weights), nchw))
    expected = {"fid_adm": fid, "inception_score": score["inception_score"]}
    record = protocol.self_test(
        tmp_path / "reference.npz", tmp_path / "samples.npz", is_weights, expected=expected, batch_size=4
    )
    assert record["passed"] and record["num_samples"] == 6
    assert record["checks"]["fid_adm"]["measured"] == pytest.approx(fid, rel=1e-9)

    def selftest(*extra):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "elt.cli",
                "paper-selftest",
                "--reference",
                str(tmp_path / "reference.npz"),
                "--samples",
                str(tmp_path / "samples.npz"),
                "--inception-weights",
                str(is_weights),
                "--device",
                "cpu",
                "--expect-is",
                str(score["inception_score"]),
                *extra,
            ],
            capture_output=True,
            text=True,
        )

    done = selftest("--expect-fid", repr(fid), "--out", str(tmp_path / "selftest.json"))
    assert done.returncode == 0, done.stderr
    assert "fid_adm" in done.stdout and done.stdout.count(": ok") == 2
    assert json.loads((tmp_path / "selftest.json").read_text())["passed"] is True
    off = selftest("--expect-fid", repr(fid + 0.5))
    assert off.returncode == 1 and "fid_adm" in off.stdout and "OFF" in off.stdout
    assert "does not reproduce the expected numbers" in off.stderr
    np.savez(tmp_path / "no_stats.npz", arr_0=reference)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "elt.cli",
            "paper-selftest",
            "--reference",
            str(tmp_path / "no_stats.npz"),
            "--samples",
            str(tmp_path / "samples.npz"),
            "--inception-weights",
            str(is_weights),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "has no mu/sigma" in bad.stderr


def test_a_sample_batch_is_streamed_from_its_archive_or_refused_in_one_line(tmp_path):
    images = rgb(7, 5)
    np.savez(tmp_path / "batch.npz", arr_0=images)
    chunks = list(protocol.npz_image_batches(tmp_path / "batch.npz", batch_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert np.array_equal(np.concatenate(chunks), images.transpose(0, 3, 1, 2))
    np.savez_compressed(tmp_path / "compressed.npz", arr_0=images)
    assert np.array_equal(
        np.concatenate(list(protocol.npz_image_batches(tmp_path / "compressed.npz", 5))), images.transpose(0, 3, 1, 2)
    )
    np.savez(tmp_path / "other.npz", images=images)
    with pytest.raises(UserError, match="cannot be read as an .npz with arr_0"):
        list(protocol.npz_image_batches(tmp_path / "other.npz"))
    np.savez(tmp_path / "gray.npz", arr_0=images[..., 0])
    with pytest.raises(UserError, match="not uint8 \\(N, H, W, 3\\) images"):
        list(protocol.npz_image_batches(tmp_path / "gray.npz"))
