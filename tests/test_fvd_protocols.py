"""The paper protocol's FVD protocols (magvit, stylegan_v, first_clips) on small counts, against the same
clips, windows and labels drawn independently here; the reconstruction FVD; bad settings and videos."""

import numpy as np
import pytest

from elt import config
from elt.data import video
from elt.data.datasets import Stream
from elt.errors import UnreadableExample, UserError
from elt.eval import fvd, metrics
from elt.eval.guidance_sweep import paper_settings
from elt.eval.i3d import i3d_features
from elt.harness import grid

from .conftest import write_avi

CLASSES = {"Archery": 1, "Biking": 2}


def ucf_folder(root, lengths=(14, 12, 16, 11)):
    """Four training videos (two per class) of the given lengths, and a test list."""
    train = []
    for k, frames in enumerate(lengths):
        name = list(CLASSES)[k % 2]
        rel = f"{name}/v_{name}_g{k + 1:02d}_c01.avi"
        write_avi(root / rel, frames=frames, seed=k)
        train.append(rel)
    write_avi(root / "Archery/v_Archery_g09_c01.avi", frames=12, seed=9)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i} {n}\n" for n, i in CLASSES.items()))
    (lists / "trainlist01.txt").write_text("".join(f"{r} {CLASSES[r.split('/')[0]]}\n" for r in train))
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g09_c01.avi\n")
    return root


def data_cfg(root, **overrides):
    data = {"dataset": "ucf101", "path": str(root), "channels": 3, "image_size": 16, "frames": 9, **overrides}
    return config.from_dict({"data": data}).data


def independent_draws(num_videos, clips, repeats, seed):
    """MAGVIT's real clips as this test reads the rule: per repeat, shuffled epochs of the split, a window
    position each."""
    out = []
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        epochs = [rng.permutation(num_videos) for _ in range(-(-clips // num_videos))]
        videos = np.concatenate(epochs)[:clips]
        out += list(zip(videos, rng.random(clips)))
    return out


class Negative:
    """A stand-in tokenizer whose reconstruction is the negative image: the reconstruction FVD must be of it."""

    def encode(self, clips):
        return clips

    def decode(self, codes):
        return 255 - codes


@pytest.mark.slow
def test_magvit_real_clips_labels_and_repeats_match_an_independent_draw(tmp_path):
    root = ucf_folder(tmp_path / "ucf")
    cfg = data_cfg(root)
    spec = fvd.fvd_settings({"fvd_protocol": "magvit", "fvd_clips": 5, "fvd_repeats": 2})
    assert spec == {"name": "magvit", "clips": 5, "repeats": 2, "windows": "random", "labels": "paired"}
    fvd.reference_features(cfg, spec, 7, str(tmp_path / "ref.npz"), codec=Negative(), batch=3)
    with np.load(tmp_path / "ref.npz") as f:
        ref = {k: f[k] for k in f.files}
    stream = Stream(cfg, "train")
    clips, labels = [], []
    for v, u in independent_draws(4, 5, 2, 7):
        frames = video.read_frames(stream.items[v], 1, 16, "short_side")
        start = int(u * (len(frames) - 9 + 1))
        clips.append(frames[start : start + 9])
        labels.append(stream.labels[v])
    clips = np.stack(clips)
    assert np.array_equal(ref["labels"], labels) and len(set(ref["start"])) > 1  # random windows, not first clips
    np.testing.assert_allclose(ref["features"], i3d_features(clips), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ref["reconstruction_features"], i3d_features(255 - clips), rtol=1e-4, atol=1e-5)

    generated = np.random.default_rng(0).normal(size=(10, 400))
    record = fvd.fvd_record(generated, np.array(labels), str(tmp_path / "ref.npz"))
    each = [
        metrics.frechet_distance(
            *metrics.mean_cov(generated[r * 5 : r * 5 + 5]), *metrics.mean_cov(ref["features"][r * 5 : r * 5 + 5])
        )
        for r in range(2)
    ]
    assert record["fvd_repeats"] == pytest.approx(each)
    assert record["fvd"] == pytest.approx(np.mean(each)) and record["fvd_std"] == pytest.approx(np.std(each))
    recon = [
        metrics.frechet_distance(
            *metrics.mean_cov(ref["reconstruction_features"][r * 5 : r * 5 + 5]),
            *metrics.mean_cov(ref["features"][r * 5 : r * 5 + 5]),
        )
        for r in range(2)
    ]
    assert record["fvd_reconstruction"] == pytest.approx(np.mean(recon))
    assert record["fvd_protocol"] == {"name": "magvit", "repeats": 2, "clips": 5}
    with pytest.raises(UserError, match="do not pair with the magvit protocol's real clips"):
        fvd.fvd_record(generated, np.array(labels)[::-1], str(tmp_path / "ref.npz"))


def test_the_protocols_draw_videos_as_they_say():
    magvit = fvd.draws(4, fvd.fvd_settings({"fvd_protocol": "magvit", "fvd_clips": 10, "fvd_repeats": 3}), 1)
    assert len(magvit["video"]) == 30 and np.bincount(magvit["video"][:8], minlength=4).tolist() == [2, 2, 2, 2]
    assert [(v, u) for v, u in zip(magvit["video"], magvit["position"])] == independent_draws(4, 10, 3, 1)
    stylegan = fvd.draws(6, fvd.fvd_settings({"fvd_protocol": "stylegan_v", "fvd_clips": 5}), 1)
    assert len(set(stylegan["video"])) == 5  # distinct videos while the split has enough
    assert fvd.fvd_settings({"fvd_protocol": "stylegan_v"})["clips"] == 2048
    assert fvd.window_start(0.999, 20, 9) == 11 and fvd.window_start(0.0, 9, 9) == 0


def test_a_video_too_short_for_a_clip_stops_or_is_replaced_with_a_record(tmp_path):
    root = ucf_folder(tmp_path / "ucf", lengths=(14, 5, 16, 11))
    reader = fvd.ClipReader(Stream(data_cfg(root, on_bad_file="skip"), "train"), 9)
    used, frames = reader.readable(1)
    assert used == 2 and len(frames) == 16 and reader.skipped[0]["example"].endswith("v_Biking_g02_c01.avi")
    stop = fvd.ClipReader(Stream(data_cfg(root), "train"), 9)
    with pytest.raises(UnreadableExample, match="fewer than 9 frames"):
        stop.readable(1)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"fvd_protocol": "fvd2048"}, "fvd_protocol 'fvd2048' is unknown: use one of magvit, stylegan_v, first_clips"),
        ({"fvd_protocol": "magvit", "fvd_repeats": 0}, "fvd_repeats is 0: use at least 1"),
        ({"fvd_protocol": "magvit", "fvd_clips": 1}, "fvd_clips is 1: use at least 2"),
        ({"fvd_protocol": "magvit"}, "num_samples is 10000, but the magvit FVD protocol generates 10000 clips x 4"),
        ({"fvd_protocol": "first_clips", "fvd_repeats": 2}, "the first_clips FVD protocol has one repeat"),
    ],
)
def test_bad_fvd_settings_are_one_line(section, message):
    with pytest.raises(UserError, match=message):
        paper_settings({"num_samples": 10000, "fid_reference": None, **section})


def test_per_loop_sampling_steps_of_a_grid_group():
    settings = {"sampling_steps_by_loops": grid.steps_by_loops({"name": "g", "sampling_steps_by_loops": {6: 24}})}
    assert grid.sampling_steps(settings, 6) == 24 and grid.sampling_steps(settings, 4) is None
    with pytest.raises(UserError, match="sampling_steps_by_loops maps loop counts to steps"):
        grid.steps_by_loops({"name": "g", "sampling_steps_by_loops": {6: 0}})
    with pytest.raises(UserError, match="sampling_steps_by_loops maps loop counts to steps"):
        grid.steps_by_loops({"name": "g", "sampling_steps_by_loops": {"six": 24}})
