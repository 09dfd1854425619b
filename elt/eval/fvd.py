"""FVD protocols of the paper protocol: which real clips a generation FVD is measured against, how many
generated clips, how many repeats, and the labels the generated clips are conditioned on.

- magvit: MAGVIT's UCF-101 protocol (run_frechet_distance(num_samples=10000, num_repeats=4) on the
  training split): per repeat, 10,000 real clips, each a random 16-frame window of a video taken in
  shuffled epochs of the split (the split has fewer videos than clips, so some come twice, as from
  an input pipeline that shuffles and repeats), and 10,000 generated clips, each conditioned on the
  label of the real clip in its place; FVD per repeat, reported as mean and std over the repeats.
- stylegan_v: StyleGAN-V's FVD2048 count: 2,048 real clips (distinct random videos, a random window
  each; the window rule is this harness's reading) and 2,048 generated clips with paired labels, one repeat.
- first_clips: this harness's earlier protocol: the first clip of each training video (the first
  `fvd_reference_clips`, all when null) against every generated clip, one FVD.

The real clips are drawn from a generator seeded by (sample_seed, repeat) and kept with their labels
(`draws`), so the generated clips' labels and the reconstruction FVD use the same clips. A video too
short for a clip, or unreadable, is stopped on or replaced by the next readable video (data.on_bad_file),
with a record.
"""

from __future__ import annotations

import numpy as np

from elt.data.datasets import Stream
from elt.data.video import too_short
from elt.errors import UnreadableExample, UserError
from elt.eval import metrics
from elt.eval.i3d import i3d_features, load_i3d
from elt.files import atomic_path

PROTOCOLS = {
    "magvit": {"clips": 10000, "repeats": 4, "windows": "random", "labels": "paired"},
    "stylegan_v": {"clips": 2048, "repeats": 1, "windows": "random", "labels": "paired"},
    "first_clips": {"clips": None, "repeats": 1, "windows": "first", "labels": "any"},
}


def fvd_settings(section: dict) -> dict:
    """The FVD protocol a paper_protocol section names (fvd_protocol, default first_clips), with its clips
    and repeats (fvd_clips, fvd_repeats override the protocol's) -> {name, clips, repeats, windows, labels}."""
    name = section.get("fvd_protocol") or "first_clips"
    if name not in PROTOCOLS:
        raise UserError(f"paper_protocol.fvd_protocol {name!r} is unknown: use one of {', '.join(PROTOCOLS)}")
    spec = {"name": name, **PROTOCOLS[name]}
    if name == "first_clips":
        spec["clips"] = section.get("fvd_reference_clips")
    for key in ("clips", "repeats"):
        value = section.get(f"fvd_{key}")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if key == "clips" else 1):
            raise UserError(
                f"paper_protocol.fvd_{key} is {value!r}: use at least {2 if key == 'clips' else 1}, or null for the "
                "protocol's own"
            )
        if name == "first_clips" and key == "repeats" and value != 1:
            raise UserError("the first_clips FVD protocol has one repeat: set fvd_repeats null or use magvit")
        spec[key] = value
    return spec


def generated_clips(spec: dict) -> int | None:
    """How many clips a protocol generates per (run, L): clips x repeats, or any number (first_clips)."""
    return None if spec["labels"] == "any" else spec["clips"] * spec["repeats"]


def draws(num_videos: int, spec: dict, seed: int) -> dict:
    """The real clips of every repeat: video indices (shuffled epochs of the split per repeat) and window
    positions u in [0, 1) (the start is floor(u * (frames in the video - clip length + 1)))."""
    videos, positions = [], []
    for repeat in range(spec["repeats"]):
        rng = np.random.default_rng([seed, repeat])
        # shuffled epochs: distinct videos while the split has enough (stylegan_v), repeats beyond (magvit)
        epochs = -(-spec["clips"] // num_videos)
        order = np.concatenate([rng.permutation(num_videos) for _ in range(epochs)])[: spec["clips"]]
        videos.append(order)
        positions.append(rng.random(spec["clips"]))
    return {"video": np.concatenate(videos), "position": np.concatenate(positions)}


def window_start(position: float, frames_in_video: int, clip: int) -> int:
    return int(position * (frames_in_video - clip + 1))


class ClipReader:
    """Real clips of a split by (video, window position), each video decoded once however often it is drawn;
    unreadable or too-short videos stop, or are replaced by the next readable one (data.on_bad_file)."""

    def __init__(self, stream: Stream, clip: int, first_only: bool = False):
        """first_only: only each video's first clip is wanted, so only its first `clip` frames are decoded."""
        self.stream, self.clip, self.skipped, self.bad = stream, clip, [], set()
        self.limit = clip if first_only else None

    def readable(self, video: int) -> tuple[int, np.ndarray]:
        for step in range(len(self.stream)):
            candidate = (video + step) % len(self.stream)
            if candidate in self.bad:
                continue
            try:
                frames = self.stream.frames(candidate, self.limit)
                if len(frames) < self.clip:
                    raise too_short(self.stream.name(candidate), self.clip, self.stream.cfg.frame_stride)
                return candidate, frames
            except UnreadableExample as err:
                if self.stream.cfg.on_bad_file == "stop":
                    raise
                self.bad.add(candidate)
                self.skipped.append({"example": self.stream.name(candidate), "reason": str(err).split(": ")[0]})
        raise UserError("no video of the split is readable: check data.path")


def reference_features(data_cfg, spec: dict, seed: int, out_npz: str, codec=None, batch: int = 32, device="cpu"):
    """I3D features of the protocol's real clips, with their labels, videos and starts, and (codec given: a
    tokenizer) of their reconstructions through it, written to out_npz."""
    stream, net = Stream(data_cfg, "train"), load_i3d()
    if spec["windows"] == "first":
        count = len(stream) if spec["clips"] is None else min(spec["clips"], len(stream))
        picked = {"video": np.arange(count), "position": np.zeros(count)}
    else:
        picked = draws(len(stream), spec, seed)
    reader = ClipReader(stream, data_cfg.frames, first_only=spec["windows"] == "first")
    order = np.argsort(picked["video"], kind="stable")
    n = len(order)
    features = np.zeros((n, 400))
    recon = np.zeros((n, 400)) if codec is not None else None
    videos, starts, pending = np.zeros(n, np.int64), np.zeros(n, np.int64), []

    def flush():
        where, clips = [i for i, _ in pending], np.stack([c for _, c in pending])
        features[where] = i3d_features(clips, net, device=device)
        if codec is not None:
            recon[where] = i3d_features(codec.decode(codec.encode(clips)), net, device=device)
        pending.clear()

    current, frames = None, None
    for i in order:
        if picked["video"][i] != current:
            current = picked["video"][i]
            actual, frames = reader.readable(int(current))
        start = 0 if spec["windows"] == "first" else window_start(picked["position"][i], len(frames), data_cfg.frames)
        videos[i], starts[i] = actual, start
        pending.append((i, frames[start : start + data_cfg.frames]))
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            features=features,
            labels=stream.labels[videos],
            video=videos,
            start=starts,
            repeats=np.array(spec["repeats"]),
            protocol=np.array(spec["name"]),
            split_sha=np.array(stream.split_sha),
            skipped=np.array([s["example"] for s in reader.skipped], dtype=str),
            **({"reconstruction_features": recon} if recon is not None else {}),
        )


def per_repeat(generated: np.ndarray, real: np.ndarray, repeats: int) -> list[float]:
    """One FVD per repeat: the r-th slice of the generated clips against the r-th slice of the real ones."""
    g, r = np.array_split(generated, repeats), np.array_split(real, repeats)
    return [metrics.frechet_distance(*metrics.mean_cov(a), *metrics.mean_cov(b)) for a, b in zip(g, r)]


def repeat_statistics(reference_npz: str) -> tuple[np.ndarray, np.ndarray]:
    """The real clips' mean and covariance per repeat: (repeats, d) and (repeats, d, d)."""
    with np.load(reference_npz) as f:
        features, repeats = f["features"], int(f["repeats"])
    stats = [metrics.mean_cov(part) for part in np.array_split(features, repeats)]
    return np.stack([m for m, _ in stats]), np.stack([s for _, s in stats])


def fvd_record(generated: np.ndarray, labels: np.ndarray, reference_npz: str) -> dict:
    """FVD of generated clips' I3D features (in sample order, with their labels) under the reference's protocol:
    mean and std over repeats, each repeat's FVD, and the tokenizer's reconstruction FVD when recorded."""
    with np.load(reference_npz) as f:
        ref = {k: f[k] for k in f.files}
    repeats, name = int(ref["repeats"]), str(ref["protocol"])
    paired = len(generated) == len(ref["features"]) and np.array_equal(labels, ref["labels"])
    if name != "first_clips" and not paired:
        raise UserError(
            f"the generated clips do not pair with the {name} protocol's real clips ({len(generated)} against "
            f"{len(ref['features'])}, labels equal: {np.array_equal(labels, ref['labels'])}): sample them again "
            "with the reference's labels"
        )
    fvds = per_repeat(generated, ref["features"], repeats)
    record = {
        "fvd": float(np.mean(fvds)),
        "fvd_std": float(np.std(fvds)),
        "fvd_repeats": fvds,
        "num_reference": len(ref["features"]),
        "fvd_protocol": {"name": name, "repeats": repeats, "clips": len(ref["features"]) // repeats},
        "reference_skipped": [str(s) for s in ref["skipped"]],
    }
    if "reconstruction_features" in ref:
        recon = per_repeat(ref["reconstruction_features"], ref["features"], repeats)
        record |= {"fvd_reconstruction": float(np.mean(recon)), "fvd_reconstruction_std": float(np.std(recon))}
    return record
