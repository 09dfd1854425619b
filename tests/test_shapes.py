"""The rule-defined scenes of elt.data.shapes: made from a seed alone, every scene satisfies its class's rule
and the checker refuses what breaks it."""

import numpy as np
import pytest

from elt.config import DataConfig
from elt.data import datasets, shapes


@pytest.mark.parametrize("kind", sorted(shapes.KINDS))
def test_every_scene_satisfies_its_own_rule_and_the_same_seed_makes_the_same_scenes(kind):
    make, names, _ = shapes.KINDS[kind]
    images, labels = make(0, 400)
    assert images.shape == (400, shapes.SIDE, shapes.SIDE) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [400 // len(names)] * len(names)
    assert shapes.rule_holds(images[:, None, None], labels, kind).all()
    again, _ = make(0, 400)
    other, _ = make(1, 400)
    assert np.array_equal(images, again) and not np.array_equal(images, other)
    # the pixel codec's 17 levels keep every intensity exactly
    assert set(np.unique(images)) <= {0, 255, *shapes.PALETTE.tolist()}


def test_a_shapes_scene_breaks_its_rule_with_one_object_more_or_recoloured():
    images, labels = shapes.scenes(0, 16)
    k, relation = shapes.rule_of(int(labels[2]))  # "3 same"
    assert (k, relation) == (3, "same")
    scene = images[2].copy()
    ys, xs = np.nonzero(scene)
    scene[ys[0], xs[0]] = shapes.PALETTE[(list(shapes.PALETTE).index(scene[ys[0], xs[0]]) + 1) % 6]
    assert not shapes.frame_holds(scene, 2)  # a block of two shades
    assert not shapes.frame_holds(images[2], 3)  # 3 objects of one shade are not "3 distinct"
    assert not shapes.frame_holds(images[2], 4)  # nor 4 of anything
    noisy = images[2].astype(np.int64) + np.random.default_rng(0).integers(-12, 13, images[2].shape)
    assert shapes.frame_holds(np.clip(noisy, 0, 255).astype(np.uint8), 2)  # a generator's near-miss shades snap


def test_a_tiles_scene_breaks_its_rule_when_one_cell_changes():
    images, labels = shapes.tile_scenes(0, 8)
    scene = images[0].copy()  # mirror_lr
    assert shapes.TILE_CLASSES[labels[0]] == "mirror_lr"
    scene[0:2, 0:2] = shapes.PALETTE[0] if scene[0, 0] != shapes.PALETTE[0] else shapes.PALETTE[1]
    assert not shapes.tile_frame_holds(scene, 0)
    scene = images[0].copy()
    scene[0, 0] = 0  # a cell of two shades
    assert not shapes.tile_frame_holds(scene, 0)


def test_an_automaton_diagram_breaks_its_rule_when_one_cell_flips():
    images, labels = shapes.automaton_scenes(0, 8)
    assert shapes.AUTOMATA_CLASSES[labels[3]] == "rule 60"
    for row, col in ((7, 0), (0, 5), (4, 4)):
        scene = images[3].copy()
        scene[row, col] = 255 - scene[row, col]
        assert not shapes.automaton_frame_holds(scene, 3), (row, col)
    assert shapes.step(np.array([0, 1, 0, 0]), 90).tolist() == [1, 0, 1, 0]  # rule 90: left XOR right


def test_the_share_of_cells_right_counts_each_cell_against_the_row_above():
    images, labels = shapes.automaton_scenes(0, 8)
    assert shapes.automaton_cells_right(images[:, None, None], labels).tolist() == [1.0] * 8
    scene = images[3].copy()
    scene[7, 0] = 255 - scene[7, 0]  # the last row: one cell of the 56 the rule fixes
    assert shapes.automaton_cells_right(scene[None, None, None], labels[3:4])[0] == pytest.approx(55 / 56)
    scene = images[3].copy()
    scene[0] = 255 - scene[0]  # rule 60 (left XOR centre) gives the same next row for a complemented row
    assert shapes.automaton_cells_right(scene[None, None, None], labels[3:4])[0] == pytest.approx(1.0)
    noise = np.random.default_rng(0).integers(0, 2, (400, 1, 1, 8, 8)).astype(np.uint8) * 255
    assert abs(shapes.automaton_cells_right(noise, np.arange(400) % 8).mean() - 0.5) < 0.02  # chance


@pytest.mark.parametrize("dataset", ["shapes", "tiles", "automata", "moving_shapes", "moving_tiles"])
def test_the_scenes_load_as_a_stratified_split_and_moving_ones_keep_the_rule_in_every_frame(dataset):
    cfg = DataConfig(dataset=dataset, image_size=12, frames=9)
    train, held = datasets.load(cfg, "train"), datasets.load(cfg, "held_out")
    assert len(train.labels) + len(held.labels) == shapes.SCENES and len(held.labels) == 450
    assert train.shape == ((9, 1, 12, 12) if dataset.startswith("moving") else (1, 1, 8, 8))
    assert shapes.rule_holds(held.images[:60], held.labels[:60], shapes.kind_of(dataset)).all()
    if dataset.startswith("moving"):
        assert not np.array_equal(held.images[:, 0], held.images[:, 1])  # the scenes move


def test_an_evaluation_reports_the_share_the_checker_finds_and_digits_none(tmp_path):
    """elt.eval.embedded.evaluate_samples on 30 held-out tiles, 10 of them with one pixel off its cell's shade:
    the rule share is 20/30 with an interval around it; the same samples called digits carry no rule share."""
    from elt.eval import embedded
    from elt.sample import save_samples

    data_cfg = {"dataset": "tiles", "held_out_fraction": 0.25, "split_seed": 0}
    settings = {
        "fid_samples": 4,
        "fid_reference_samples": 4,
        "bootstrap_rounds": 200,
        "bootstrap_seed": 0,
    }
    embedded.prepare_reference(data_cfg, str(tmp_path / "ref.npz"), str(tmp_path / "ref.json"))
    embedded.train_domain_classifier(
        data_cfg, {"steps": 5, "hidden": 8}, str(tmp_path / "clf.pt"), str(tmp_path / "clf.json")
    )
    embedded.reference_features(str(tmp_path / "ref.npz"), str(tmp_path / "clf.pt"), settings, str(tmp_path / "f.npz"))
    with np.load(tmp_path / "ref.npz") as f:
        images, labels = f["images"][:30].copy(), f["labels"][:30]
    images[:10, 0, 0, 0, 0] = np.where(images[:10, 0, 0, 0, 0] == 0, 255, 0)  # background or white: no palette shade
    meta = {"run": "tiles-run", "loops": 1, "samples_per_second": 1.0, "sampling_steps": 8}
    save_samples(tmp_path / "s.npz", images, labels, meta)
    args = (str(tmp_path / "s.npz"), str(tmp_path / "f.npz"), str(tmp_path / "clf.pt"), settings)
    result = embedded.evaluate_samples(*args, dataset="tiles")
    assert result["rule_share"] == pytest.approx(20 / 30)
    assert result["rule_share_ci_low"] < 20 / 30 < result["rule_share_ci_high"]
    assert result["protocol"]["rule_share"]["n_samples"] == 30
    assert "rule_share" not in embedded.evaluate_samples(*args, dataset="digits")
