"""Datasets as uint8 arrays (N, T, C, H, W) with integer labels; images have T = 1.

- digits: scikit-learn's 8x8 handwritten digits (ship with the package: no download), intensities
  0..16 stored as round(v * 255 / 16) so 17 token levels recover them exactly.
- shapes, tiles, automata: scenes whose class is a rule over all their parts (elt.data.shapes), made from a seed.
- folder: a class-per-folder tree of PNG/JPEG/BMP images of any size, resized to data.image_size.
- moving_digits: one clip per digit (elt.data.video), so the clips split exactly as the digits do;
  moving_shapes, moving_tiles: one clip per scene, moved the same way.
- ucf101: the official train/test lists of data.fold (elt.data.video); the test list is the held-out set.
- imagenet: train/ and val/ with one folder per class (val is the held-out set), ADM's center crop to
  data.image_size; only ever streamed (`Stream`) into pre-encoded shards (elt.data.shards), never loaded whole.
The train/held-out split is stratified and seeded; its indices' hash goes into every run record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from elt.config import DataConfig
from elt.data import shapes
from elt.data.video import moving_digits, read_clip, read_frames, read_ucf101, read_windows, ucf101_index
from elt.errors import UnreadableExample, UserError

SCENES = ("shapes", "moving_shapes", "tiles", "moving_tiles", "automata")  # elt.data.shapes
EMBEDDED = ("digits", "moving_digits", *SCENES)  # made here, grayscale
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
SPLITS = ("train", "held_out")


@dataclass
class Dataset:
    images: np.ndarray  # uint8 (N, T, C, H, W)
    labels: np.ndarray  # int64 (N,)
    classes: list[str]
    split_sha: str  # hash of the split's indices: identical splits, identical hash
    # data.windows all: every clip of every video (rows) and where each video's clips start (N + 1 offsets)
    windows: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:  # (T, C, H, W)
        return tuple(self.images.shape[1:])


def mirrored(data: np.ndarray) -> np.ndarray:
    """uint8 (N, T, C, H, W) mirrored left-right (training's flips, data.hflip)."""
    return np.ascontiguousarray(data[..., ::-1])


def modality(shape) -> str:
    """(T, C, H, W) of one example -> "image" (T = 1) or "video"."""
    return "image" if shape[0] == 1 else "video"


def _digits():
    from sklearn.datasets import load_digits  # here: 0.9 s of start-up that only the digits need

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    return images[:, None, None], digits.target.astype(np.int64), [str(c) for c in range(10)]


def _folder(cfg: DataConfig):
    root = Path(cfg.path)
    if not root.is_dir():
        raise UserError(
            f"data folder {str(root)!r} does not exist: set data.path to a folder with one sub-folder per class"
        )
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files = [
        (f, i)
        for i, c in enumerate(classes)
        for f in sorted((root / c).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise UserError(
            f"data folder {str(root)!r} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in class sub-folders: "
            "put each class's images in root/<class>/"
        )
    mode, size = ("L" if cfg.channels == 1 else "RGB"), (cfg.image_size, cfg.image_size)
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                images.append(np.asarray(im.convert(mode).resize(size, Image.Resampling.BICUBIC)))
        except (UnidentifiedImageError, OSError) as err:
            raise UnreadableExample(f"image {str(f)!r} cannot be read ({err}): remove or replace it") from None
    arr = np.stack(images)
    arr = arr[:, None, None] if cfg.channels == 1 else arr.transpose(0, 3, 1, 2)[:, None]
    return arr.astype(np.uint8), np.array([i for _, i in files], dtype=np.int64), classes


def _ucf101(cfg: DataConfig, split: str) -> Dataset:
    official = "train" if split == "train" else "test"
    step = cfg.window_step if cfg.windows == "all" and split == "train" else None
    clips, labels, classes, windows = read_ucf101(
        cfg.path, official, cfg.fold, cfg.frames, cfg.frame_stride, cfg.image_size, cfg.resize, step
    )
    held, _ = ucf101_index(cfg.path, "test", cfg.fold)
    return Dataset(clips, labels, classes, listed_split_sha(cfg.path, held), windows)


def listed_split_sha(root, held: list[tuple[Path, int]]) -> str:
    """The split hash of a data set whose held-out files are listed (UCF-101, ImageNet's val/)."""
    return hashlib.sha256("\n".join(str(p.relative_to(root)) for p, _ in held).encode()).hexdigest()[:16]


def load(cfg: DataConfig, split: str) -> Dataset:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if cfg.dataset == "ucf101":
        return _ucf101(cfg, split)
    if cfg.dataset == "imagenet":
        raise UserError(
            "imagenet is never loaded whole: pre-encode it with 'elt encode' and set codec.shards to the shard folder"
        )
    if cfg.dataset in ("digits", "moving_digits"):
        images, labels, classes = _digits()
    elif cfg.dataset in SCENES:
        make, names, _ = shapes.KINDS[shapes.kind_of(cfg.dataset)]
        scenes, labels = make(cfg.split_seed)
        images, classes = scenes[:, None, None], list(names)
    else:
        images, labels, classes = _folder(cfg)
    if cfg.dataset in EMBEDDED and cfg.channels != 1:
        raise UserError(f"{cfg.dataset} are grayscale: set data.channels to 1")
    idx = np.arange(len(labels))
    train_idx, held_idx = train_test_split(
        idx, test_size=cfg.held_out_fraction, stratify=labels, random_state=cfg.split_seed
    )
    chosen = np.sort(train_idx if split == "train" else held_idx)
    sha = hashlib.sha256(np.sort(held_idx).tobytes()).hexdigest()[:16]
    if cfg.is_video:  # the embedded video sets: each image moved over a larger canvas
        clips = moving_digits(images[chosen, 0, 0], cfg.frames, cfg.image_size, cfg.split_seed, ids=chosen)
        return Dataset(clips, labels[chosen], classes, sha)
    return Dataset(images[chosen], labels[chosen], classes, sha)


def adm_center_crop(image, size: int) -> np.ndarray:
    """ADM's ImageNet preprocessing (guided-diffusion's center_crop_arr): halve with a box filter while the
    short side is at least twice the target, resize the short side to `size` (bicubic), crop the center."""
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.Resampling.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.Resampling.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top : top + size, left : left + size]


def read_imagenet_image(path: Path, size: int) -> np.ndarray:
    """uint8 (1, 3, size, size)."""
    try:
        with Image.open(path) as im:
            arr = adm_center_crop(im.convert("RGB"), size)
    except (UnidentifiedImageError, OSError) as err:
        raise UnreadableExample(
            f"image {str(path)!r} cannot be read ({type(err).__name__}): replace it, or set "
            "data.on_bad_file: skip to leave it out with a record"
        ) from None
    return arr.transpose(2, 0, 1)[None]


def _imagenet_index(root: Path, split: str) -> tuple[list[tuple[Path, int]], list[str]]:
    folders = {name: root / name for name in ("train", "val")}
    for where in folders.values():
        if not where.is_dir():
            raise UserError(
                f"ImageNet folder {str(where)!r} is missing: data.path must hold train/ and val/, one sub-folder per "
                "class"
            )
    classes = sorted(d.name for d in folders["train"].iterdir() if d.is_dir())
    held_classes = sorted(d.name for d in folders["val"].iterdir() if d.is_dir())
    if held_classes != classes:
        odd = sorted(set(held_classes) ^ set(classes))
        raise UserError(
            f"ImageNet val/ and train/ have different class folders (e.g. {odd[0]!r}): "
            "val/ must be in the class-per-folder layout of train/"
        )
    where = folders["train" if split == "train" else "val"]
    items = [
        (f, i)
        for i, c in enumerate(classes)
        for f in sorted((where / c).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not items:
        raise UserError(f"ImageNet folder {str(where)!r} has no images in its class folders: fix data.path")
    return items, classes


class Stream:
    """The examples of a split one at a time (what pre-encoding reads): paths and labels are listed up
    front, pixels are read per example. Small in-memory data sets stream from their loaded arrays."""

    def __init__(self, cfg: DataConfig, split: str):
        self.cfg = cfg
        if cfg.dataset in ("imagenet", "ucf101"):
            if cfg.dataset == "imagenet":
                listed, self.classes = _imagenet_index(Path(cfg.path), split)
                held, _ = _imagenet_index(Path(cfg.path), "held_out")
            else:
                listed, self.classes = ucf101_index(cfg.path, "train" if split == "train" else "test", cfg.fold)
                held, _ = ucf101_index(cfg.path, "test", cfg.fold)
            self.items = [path for path, _ in listed]
            self.labels = np.array([label for _, label in listed], dtype=np.int64)
            self.split_sha = listed_split_sha(cfg.path, held)
            self._loaded = None
        else:
            self._loaded = load(cfg, split)
            self.items, self.labels = list(range(len(self._loaded.labels))), self._loaded.labels
            self.classes, self.split_sha = self._loaded.classes, self._loaded.split_sha

    def __len__(self) -> int:
        return len(self.items)

    def name(self, i: int) -> str:
        return str(self.items[i])

    def read(self, i: int) -> np.ndarray:
        """uint8 (T, C, H, W) of example i; UnreadableExample when its file cannot be read."""
        if self._loaded is not None:
            return self._loaded.images[i]
        if self.cfg.dataset == "imagenet":
            return read_imagenet_image(self.items[i], self.cfg.image_size)

        return read_clip(self.items[i], self.cfg.frames, self.cfg.frame_stride, self.cfg.image_size, self.cfg.resize)

    def frames(self, i: int, limit: int | None = None) -> np.ndarray:
        """uint8 (F, C, H, W): every kept frame of video i, or its first `limit` (a clip of the embedded suites
        is its whole video)."""
        if self.cfg.dataset != "ucf101":
            return self.read(i)[:limit]
        return read_frames(self.items[i], self.cfg.frame_stride, self.cfg.image_size, self.cfg.resize, limit)

    def read_windows(self, i: int) -> np.ndarray:
        """uint8 (W, T, C, H, W): every clip of video i, data.window_step kept frames apart (data.windows all)."""
        c = self.cfg
        return read_windows(self.items[i], c.frames, c.frame_stride, c.image_size, c.resize, c.window_step)


def data_shape(cfg) -> tuple[int, int, int, int]:
    """(T, C, H, W) of one example of a run config's data, known from the config alone."""
    d = cfg.data
    side = 8 if d.dataset in EMBEDDED and not d.is_video else d.image_size
    return (d.frames if d.is_video else 1, d.channels, side, side)


def num_classes(cfg) -> int:
    if cfg.data.num_classes:
        return cfg.data.num_classes
    if cfg.data.dataset in ("digits", "moving_digits"):
        return 10
    if cfg.data.dataset in SCENES:
        return len(shapes.KINDS[shapes.kind_of(cfg.data.dataset)][1])
    if cfg.data.dataset == "ucf101":
        return len(ucf101_index(cfg.data.path, "test", cfg.data.fold)[1])
    root = Path(cfg.data.path) / ("train" if cfg.data.dataset == "imagenet" else "")
    if not root.is_dir():
        raise UserError(
            f"data folder {str(root)!r} does not exist: set data.path to a folder with one sub-folder per class"
        )
    return sum(1 for d in root.iterdir() if d.is_dir())
