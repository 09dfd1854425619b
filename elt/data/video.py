"""Video data: the embedded "moving digits" suite and the UCF-101 reader.

Clips are uint8 (N, T, C, H, W) like every other dataset (images have T = 1).
- moving_digits: one scikit-learn digit bouncing on a dark canvas; the trajectory of clip i is
  drawn from a generator seeded by (seed, i), so the suite is identical on every machine.
- UCF-101: the official layout (<root>/<Class>/v_<Class>_gXX_cYY.avi and <root>/ucfTrainTestlist/
  with classInd.txt, trainlistNN.txt, testlistNN.txt), decoded with PyAV; every frame `stride` apart,
  brought to `size` x `size` (RESIZES); a clip is `frames` consecutive kept frames from a start. The
  first clip of a video starts at its first frame; `clip_windows` cuts every clip `step` frames apart.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from elt.errors import UnreadableExample, UserError


def moving_digits(digits: np.ndarray, frames: int, canvas: int, seed: int, ids: np.ndarray | None = None) -> np.ndarray:
    """digits uint8 (N, h, w) -> clips uint8 (N, frames, 1, canvas, canvas).

    ids: a stable index per digit (its index in the whole digits set) that seeds its trajectory, so a
    clip does not depend on which split or subset it was built in.
    """
    n, h, w = digits.shape
    ids = np.arange(n) if ids is None else ids
    if canvas < max(h, w):
        raise UserError(f"data.image_size={canvas} is smaller than the {h}x{w} digits: use at least {max(h, w)}")
    clips = np.zeros((n, frames, 1, canvas, canvas), np.uint8)
    span = np.array([canvas - h, canvas - w])
    for i in range(n):
        rng = np.random.default_rng([seed, int(ids[i])])
        pos = rng.integers(0, span + 1)
        vel = rng.choice([-2, -1, 1, 2], size=2)
        for t in range(frames):
            y, x = pos
            clips[i, t, 0, y : y + h, x : x + w] = digits[i]
            nxt = pos + vel
            for axis in range(2):  # bounce off the walls
                if nxt[axis] < 0 or nxt[axis] > span[axis]:
                    vel[axis] = -vel[axis]
                    nxt[axis] = pos[axis] + vel[axis]
            pos = np.clip(nxt, 0, span)
    return clips


def _split_list(root: Path, name: str) -> Path:
    path = root / "ucfTrainTestlist" / name
    if not path.is_file():
        raise UserError(
            f"UCF-101 split list {str(path)!r} is missing: data.path must hold ucfTrainTestlist/ beside the class "
            "folders"
        )
    return path


def ucf101_index(root: str | Path, split: str, fold: int) -> tuple[list[tuple[Path, int]], list[str]]:
    """The (video, class index) pairs of the official train or test list of a fold, and class names."""
    root = Path(root)
    classes = [line.split()[1] for line in _split_list(root, "classInd.txt").read_text().split("\n") if line.strip()]
    lookup = {name: i for i, name in enumerate(classes)}
    listed = _split_list(root, f"{'trainlist' if split == 'train' else 'testlist'}{fold:02d}.txt")
    items = []
    for line in listed.read_text().split("\n"):
        if line.strip():
            rel = line.split()[0]
            items.append((root / rel, lookup[rel.split("/")[0]]))
    return items, classes


# How a frame becomes size x size: short_side (MAGVIT's order: the short side resized to `size`, then the
# centre square cut; PIL's bilinear, not TF's) or crop_square (the centre square cut, then resized).
RESIZES = ("short_side", "crop_square")


def square_frame(image: Image.Image, size: int, resize: str) -> np.ndarray:
    """A PIL frame -> uint8 (3, size, size)."""
    w, h = image.size
    if resize == "short_side":
        scale = size / min(w, h)
        w, h = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((w, h), Image.Resampling.BILINEAR)
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size))).transpose(2, 0, 1)
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    return np.asarray(image.crop(box).resize((size, size), Image.Resampling.BILINEAR)).transpose(2, 0, 1)


def read_frames(path: Path, stride: int, size: int, resize: str, limit: int | None = None) -> np.ndarray:
    """uint8 (F, 3, size, size): every `stride`-th frame of a video (the first `limit` of them when given)."""
    if not path.is_file():
        raise UnreadableExample(
            f"video {str(path)!r} listed in the UCF-101 split is missing: restore it or fix data.path"
        )
    picked = []
    try:
        with av.open(str(path)) as container:
            for k, frame in enumerate(container.decode(video=0)):
                if k % stride == 0:
                    picked.append(square_frame(frame.to_image(), size, resize))
                if len(picked) == limit:
                    break
    except (av.error.FFmpegError, OSError) as err:
        raise UnreadableExample(
            f"video {str(path)!r} cannot be decoded ({type(err).__name__}): replace the file, or set "
            "data.on_bad_file: skip to leave it out with a record"
        ) from None
    return np.stack(picked) if picked else np.zeros((0, 3, size, size), np.uint8)


def too_short(path: Path, frames: int, stride: int) -> UnreadableExample:
    return UnreadableExample(
        f"video {str(path)!r} has fewer than {frames} frames at stride {stride}: lower data.frames or "
        "data.frame_stride, or set data.on_bad_file: skip to leave it out with a record"
    )


def read_clip(path: Path, frames: int, stride: int, size: int, resize: str = "short_side") -> np.ndarray:
    """uint8 (frames, 3, size, size) from the start of a video."""
    clip = read_frames(path, stride, size, resize, limit=frames)
    if len(clip) < frames:
        raise too_short(path, frames, stride)
    return clip


def clip_windows(video: np.ndarray, frames: int, step: int) -> np.ndarray:
    """Every clip of `frames` consecutive frames of a video (F, ...) that starts at a multiple of `step`
    -> (W, frames, ...), W = (F - frames) // step + 1."""
    starts = range(0, len(video) - frames + 1, step)
    return np.stack([video[s : s + frames] for s in starts])


def read_windows(path: Path, frames: int, stride: int, size: int, resize: str, step: int) -> np.ndarray:
    """uint8 (W, frames, 3, size, size): every clip of a video `step` kept frames apart (clip_windows)."""
    video = read_frames(path, stride, size, resize)
    if len(video) < frames:
        raise too_short(path, frames, stride)
    return clip_windows(video, frames, step)


def read_ucf101(
    root: str | Path,
    split: str,
    fold: int,
    frames: int,
    stride: int,
    size: int,
    resize: str = "short_side",
    window_step: int | None = None,
):
    """-> (first clips uint8 (N, frames, 3, size, size), labels, class names, every window or None): with
    window_step, also every clip `window_step` frames apart of each video (read_windows) as (rows, offsets)."""
    items, classes = ucf101_index(root, split, fold)
    labels = np.array([label for _, label in items], dtype=np.int64)
    if window_step is None:
        clips = np.stack([read_clip(path, frames, stride, size, resize) for path, _ in items])
        return clips, labels, classes, None
    each = [read_windows(path, frames, stride, size, resize, window_step) for path, _ in items]
    offsets = np.cumsum([0] + [len(w) for w in each])
    return np.stack([w[0] for w in each]), labels, classes, (np.concatenate(each), offsets)
