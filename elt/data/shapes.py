"""Scenes whose class is a rule over all their parts: candidate embedded benchmarks on which depth can matter.

Three kinds of 8 x 8 grayscale scenes, each made from a seed alone (scene i from a generator seeded by
(seed, i)), each with an exact checker of its class's rule that any generator's output can be held to:

- shapes: k 2 x 2 blocks (k in 2..5), every two at least one pixel apart, of one shade of a six-shade
  palette ("same") or each of its own ("distinct"): 8 classes. Nothing local tells a class apart: only
  the count and the shade relation over the whole canvas do.
- tiles: a 4 x 4 grid of uniform 2 x 2 cells, invariant under the class's symmetries of the square
  (mirrors, transposes, rotations and two pairs of them): 8 classes; cells of one orbit share a shade.
- automata: the space-time diagram of an elementary cellular automaton (row 0 random, each next row the
  class's rule applied to the last): 8 rules, composed seven times from the first row to the last.

The checkers (`rule_holds`) snap pixels to the nearest intensity the kind uses first (a generator's
near misses count as their nearest shade). The scenes satisfy their rules by construction, and the
tests hold every one of them to it. moving_shapes and moving_tiles: the scene drifts over a larger
canvas as one piece, bouncing off the walls (elt.data.video.moving_digits moves it); the rule holds in
every frame. benchmarks/depth_probe.py measures whether depth matters on each
(results/depth_probe/depth_probe.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIDE = 8  # canvas side of a scene
COUNTS = (2, 3, 4, 5)
RELATIONS = ("same", "distinct")
CLASSES = [f"{k} {relation}" for k in COUNTS for relation in RELATIONS]
# Six intensities that the 17-level pixel codec keeps exactly (level t decodes to round(t * 255 / 16)).
PALETTE = np.array([round(t * 255 / 16) for t in (5, 7, 9, 11, 13, 15)], dtype=np.uint8)
SCENES = 1800  # about as many as scikit-learn's 1797 digits: the same split sizes and evaluation cost


def rule_of(label: int) -> tuple[int, str]:
    """(object count, relation) of a class index."""
    return COUNTS[label // len(RELATIONS)], RELATIONS[label % len(RELATIONS)]


def _positions(rng: np.random.Generator, k: int) -> list[tuple[int, int]]:
    """Top-left corners of k 2 x 2 blocks on the canvas, pairwise at least one pixel apart (redrawn until they fit)."""
    corners = [(y, x) for y in range(SIDE - 1) for x in range(SIDE - 1)]
    while True:
        chosen = []
        for index in rng.permutation(len(corners)):
            y, x = corners[index]
            if all(abs(y - cy) > 2 or abs(x - cx) > 2 for cy, cx in chosen):
                chosen.append((y, x))
                if len(chosen) == k:
                    return chosen


def scene(label: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (SIDE, SIDE) scene of a class."""
    k, relation = rule_of(label)
    shades = (
        np.full(k, rng.integers(len(PALETTE))) if relation == "same" else rng.choice(len(PALETTE), k, replace=False)
    )
    canvas = np.zeros((SIDE, SIDE), np.uint8)
    for (y, x), shade in zip(_positions(rng, k), shades):
        canvas[y : y + 2, x : x + 2] = PALETTE[shade]
    return canvas


def scenes(seed: int, count: int = SCENES) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (count, SIDE, SIDE) scenes, their labels): classes in turn, scene i drawn from (seed, i)."""
    labels = np.arange(count) % len(CLASSES)
    images = np.stack([scene(int(labels[i]), np.random.default_rng([seed, i])) for i in range(count)])
    return images, labels.astype(np.int64)


def snapped(frame: np.ndarray) -> np.ndarray:
    """Each pixel as its nearest intensity among background (0) and the palette: -1 background, else the shade."""
    levels = np.concatenate([[0], PALETTE.astype(np.int64)])
    nearest = np.abs(frame.astype(np.int64)[..., None] - levels).argmin(-1)
    return nearest - 1


def frame_holds(frame: np.ndarray, label: int) -> bool:
    """Whether one (H, W) frame satisfies its class's rule."""
    k, relation = rule_of(label)
    shade = snapped(frame)
    parts, found = ndimage.label(shade >= 0, structure=np.ones((3, 3)))
    if found != k:
        return False
    shades = []
    for part in range(1, found + 1):
        ys, xs = np.nonzero(parts == part)
        if len(ys) != 4 or np.ptp(ys) != 1 or np.ptp(xs) != 1 or len(set(shade[ys, xs])) != 1:
            return False  # not a uniform 2 x 2 block
        shades.append(int(shade[ys[0], xs[0]]))
    return len(set(shades)) == (1 if relation == "same" else k)


# --- tiles: dense scenes, a 4 x 4 grid of uniform 2 x 2 cells, symmetric under the class's transforms -----------
CELLS = SIDE // 2
# The symmetries of the square a class's cell grid is invariant under (numpy on a (4, 4) grid).
TRANSFORMS = {
    "mirror_lr": np.fliplr,
    "mirror_ud": np.flipud,
    "transpose": np.transpose,
    "antitranspose": lambda g: np.rot90(g, 2).T,
    "rotate_180": lambda g: np.rot90(g, 2),
    "rotate_90": np.rot90,
}
TILE_CLASSES = [*TRANSFORMS, "mirror_lr+mirror_ud", "rotate_90+mirror_lr"]


def _orbits(label: int) -> np.ndarray:
    """(4, 4): each cell's orbit under the group its class's transforms generate, named by the smallest cell
    index in it (cells of one orbit share a shade)."""
    start = np.arange(CELLS * CELLS).reshape(CELLS, CELLS)
    group, frontier = {start.tobytes(): start}, [start]
    while frontier:  # every composition of the transforms, until no new arrangement appears
        grid = frontier.pop()
        for name in TILE_CLASSES[label].split("+"):
            moved = TRANSFORMS[name](grid)
            if moved.tobytes() not in group:
                group[moved.tobytes()] = moved
                frontier.append(moved)
    return np.min(np.stack(list(group.values())), axis=0)


def tile_scene(label: int, rng: np.random.Generator) -> np.ndarray:
    orbit = _orbits(label)
    shades = rng.integers(len(PALETTE), size=CELLS * CELLS)
    return np.kron(PALETTE[shades[orbit]], np.ones((2, 2), np.uint8))


def tile_scenes(seed: int, count: int = SCENES) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(count) % len(TILE_CLASSES)
    images = np.stack([tile_scene(int(labels[i]), np.random.default_rng([seed, i])) for i in range(count)])
    return images, labels.astype(np.int64)


def tile_frame_holds(frame: np.ndarray, label: int) -> bool:
    shade = snapped(frame)
    cells = shade.reshape(CELLS, 2, CELLS, 2).transpose(0, 2, 1, 3).reshape(CELLS, CELLS, 4)
    if (cells < 0).any() or (cells != cells[..., :1]).any():
        return False  # a cell that is not one uniform shade
    grid = cells[..., 0]
    return all(np.array_equal(grid, TRANSFORMS[name](grid)) for name in TILE_CLASSES[label].split("+"))


# --- automata: space-time diagrams of elementary cellular automata, one rule per class ----------------------
# Row 0 is random; row t + 1 is the class's rule applied to row t (periodic boundary): the last row depends on
# the first through seven serial applications, so a model that completes a diagram composes the rule as many
# times. Wolfram's numbering; chaotic, complex and additive rules.
RULES = (30, 45, 54, 60, 90, 105, 110, 150)
AUTOMATA_CLASSES = [f"rule {r}" for r in RULES]


def step(row: np.ndarray, rule: int) -> np.ndarray:
    """One update of a 0/1 row: each cell's next value is bit (4 left + 2 centre + right) of the rule number."""
    neighbourhood = 4 * np.roll(row, 1) + 2 * row + np.roll(row, -1)
    return (rule >> neighbourhood) & 1


def automaton_scene(label: int, rng: np.random.Generator) -> np.ndarray:
    rows = [rng.integers(0, 2, SIDE)]
    for _ in range(SIDE - 1):
        rows.append(step(rows[-1], RULES[label]))
    return (np.stack(rows) * 255).astype(np.uint8)


def automaton_scenes(seed: int, count: int = SCENES) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(count) % len(RULES)
    images = np.stack([automaton_scene(int(labels[i]), np.random.default_rng([seed, i])) for i in range(count)])
    return images, labels.astype(np.int64)


def automaton_frame_holds(frame: np.ndarray, label: int) -> bool:
    cells = (frame >= 128).astype(np.int64)
    return all(np.array_equal(cells[t + 1], step(cells[t], RULES[label])) for t in range(SIDE - 1))


def automaton_cells_right(samples: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 (N, 1, 1, SIDE, SIDE) automata samples -> float (N,): the share of cells in rows 1..7 that equal the
    class's rule applied to the row above: a graded form of the rule, where one wrong cell already breaks it."""
    cells = (samples[:, 0, 0] >= 128).astype(np.int64)
    right = [
        [np.mean(cells[n, t + 1] == step(cells[n, t], RULES[int(label)])) for t in range(SIDE - 1)]
        for n, label in enumerate(labels)
    ]
    return np.mean(right, axis=1)


# scene kind -> (scenes of a seed, class names, the rule of one frame)
KINDS = {
    "shapes": (scenes, CLASSES, frame_holds),
    "tiles": (tile_scenes, TILE_CLASSES, tile_frame_holds),
    "automata": (automaton_scenes, AUTOMATA_CLASSES, automaton_frame_holds),
}


def kind_of(dataset: str) -> str:
    """The scene kind of an embedded data set name: shapes, moving_shapes -> shapes; tiles, moving_tiles -> tiles."""
    return dataset.removeprefix("moving_")


def rule_holds(samples: np.ndarray, labels: np.ndarray, kind: str = "shapes") -> np.ndarray:
    """uint8 (N, T, 1, H, W) samples and their labels -> bool (N,): every frame satisfies the sample's class rule
    (a moving scene is found in each frame by its bounding box)."""
    holds = KINDS[kind][2]
    return np.array(
        [
            all(holds(_scene_window(clip[t, 0]), int(label)) for t in range(len(clip)))
            for clip, label in zip(samples, labels)
        ]
    )


def _scene_window(frame: np.ndarray) -> np.ndarray:
    """An 8 x 8 scene out of a larger frame: the window at the bounding box of its non-background pixels (the
    frame itself when it is the scene's size)."""
    if frame.shape == (SIDE, SIDE):
        return frame
    ys, xs = np.nonzero(snapped(frame) >= 0)
    y, x = (min(ys.min(), frame.shape[0] - SIDE), min(xs.min(), frame.shape[1] - SIDE)) if len(ys) else (0, 0)
    window = np.zeros_like(frame)
    window[y : y + SIDE, x : x + SIDE] = frame[y : y + SIDE, x : x + SIDE]
    if (snapped(window) >= 0).sum() != (snapped(frame) >= 0).sum():
        return np.zeros((SIDE, SIDE), np.uint8)  # pixels outside one scene's window: no valid scene of any class
    return frame[y : y + SIDE, x : x + SIDE]
