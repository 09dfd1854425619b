"""Pipeline steps from data to per-(run, loop count) metrics: reference set, feature networks,
cached reference statistics, and the evaluation of one samples file.

Every record states its protocol: sample counts, extractor, implementation, reference statistics.
Feature networks run at fp32 on the profile's device (runtime.device), whatever the run's training
precision: the metric protocol does not change with the hardware.
"""

from __future__ import annotations

import numpy as np

from elt.config import DataConfig
from elt.data import datasets as data
from elt.data import shapes
from elt.eval import classifier as clf
from elt.eval import metrics
from elt.eval.i3d import PROTOCOL_FVD, i3d_features
from elt.files import atomic_path, file_sha, write_json
from elt.provenance import provenance
from elt.sample import load_samples


def prepare_reference(data_cfg: dict, out_npz: str, manifest: str) -> None:
    """The held-out split, saved once: the real set every metric compares against."""
    held = data.load(DataConfig(**data_cfg), "held_out")
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=held.images, labels=held.labels)
    write_json(
        manifest,
        {
            "data": data_cfg,
            "classes": held.classes,
            "n_reference": len(held.labels),
            "split_sha": held.split_sha,
            "shape": list(held.shape),
            **provenance(),
        },
    )


def train_domain_classifier(data_cfg: dict, settings: dict, out_pt: str, record: str) -> None:
    cfg = DataConfig(**data_cfg)
    train, held = data.load(cfg, "train"), data.load(cfg, "held_out")
    t, c = train.shape[:2]
    ccfg = clf.ClassifierConfig(in_channels=t * c, num_classes=len(train.classes), **settings)
    net, accuracy = clf.train_classifier(train.images, train.labels, held.images, held.labels, ccfg)
    clf.save(net, out_pt, accuracy)
    write_json(
        record,
        {
            "held_out_accuracy": accuracy,
            "config": ccfg.__dict__,
            "n_train": len(train.labels),
            "n_held_out": len(held.labels),
            **provenance(),
        },
    )


# Frechet metrics by modality: (metric, extractor). Images: FID (Inception) and fd_domain; videos:
# FVD (I3D) and fvd_domain. KID uses the Inception features of images.
FRECHET = {
    "image": (("fid", "inception"), ("fd_domain", "domain")),
    "video": (("fvd", "i3d"), ("fvd_domain", "domain")),
}
SAMPLE_KEYS = {"inception": ("fid_samples", "fid_reference_samples"), "i3d": ("fvd_samples", "fvd_reference_samples")}


def pretrained_features(extractor: str, data: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Features of the standard networks: Inception on images, I3D on clips."""
    if extractor == "inception":
        return metrics.inception_features(metrics.to_rgb_frames(data), device=device)

    return i3d_features(data, device=device)


def reference_features(
    reference_npz: str, classifier_pt: str, settings: dict, out_npz: str, device: str = "cpu"
) -> None:
    """Features and statistics of the real set for each extractor, computed once and cached.
    settings: the profile's `metrics` section (how many reference items the slow extractors see)."""
    with np.load(reference_npz) as f:
        images = f["images"]
    (_, pretrained), _ = FRECHET[data.modality(images.shape[1:])]
    limit = settings.get(SAMPLE_KEYS[pretrained][1])
    features = {
        pretrained: pretrained_features(pretrained, images[:limit] if limit else images, device),
        "domain": clf.load(classifier_pt).features_and_predictions(images, device=device)[0],
    }
    stats = {}
    for name, feats in features.items():
        mu, sigma = metrics.mean_cov(feats)
        stats.update({f"{name}_features": feats, f"{name}_mu": mu, f"{name}_sigma": sigma})
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, **stats, reference_sha=np.array(file_sha(reference_npz)))


def evaluate_samples(
    samples_npz: str,
    reference_npz: str,
    classifier_pt: str,
    settings: dict,
    features_npz: str | None = None,
    device: str = "cpu",
    dataset: str | None = None,
) -> dict:
    """All metrics of one (run, loop count). settings: the profile's `metrics` section. features_npz: where
    to keep the features each Frechet metric was computed from (by metric name), for the audit's bootstrap.
    device: where the feature networks run (resolved: cpu, cuda, cuda:N). dataset: the run's data set kind
    (data.dataset); scenes whose class is a rule (elt.data.shapes) add the share of samples that keep it."""
    samples, labels, meta = load_samples(samples_npz)
    with np.load(reference_npz) as f:
        ref = dict(f)
    kind = data.modality(samples.shape[1:])
    (metric, pretrained), (domain_metric, _) = FRECHET[kind]
    domain, preds = clf.load(classifier_pt).features_and_predictions(samples, device=device)
    n_pretrained = min(settings[SAMPLE_KEYS[pretrained][0]], len(samples))
    features = {pretrained: pretrained_features(pretrained, samples[:n_pretrained], device), "domain": domain}
    rounds, seed = settings["bootstrap_rounds"], settings["bootstrap_seed"]
    result = {
        "run": meta["run"],
        "loops_eval": meta["loops"],
        "modality": kind,
        "n_samples": len(samples),
        f"n_{metric}": n_pretrained,
        "class_accuracy": float((preds == labels).mean()),
        "samples_per_second": meta["samples_per_second"],
        "sampling_steps": meta["sampling_steps"],
    }
    for name, extractor in FRECHET[kind]:
        feats, mu, sigma = features[extractor], ref[f"{extractor}_mu"], ref[f"{extractor}_sigma"]
        result[name] = metrics.frechet_to_reference(feats, mu, sigma)
        result[f"{name}_ci_low"], result[f"{name}_ci_high"] = metrics.bootstrap_interval(feats, mu, sigma, rounds, seed)
    protocol = {
        metric: {
            **(metrics.PROTOCOL_FID if kind == "image" else PROTOCOL_FVD),
            "n_samples": n_pretrained,
            "n_reference": len(ref[f"{pretrained}_features"]),
        },
        domain_metric: {
            "extractor": "elt.eval.classifier.DomainClassifier penultimate features (frames folded into channels)",
            "n_samples": len(samples),
            "n_reference": len(ref["domain_features"]),
        },
        "bootstrap": {"rounds": rounds, "seed": seed, "interval": "95%, bias-corrected percentile"},
        "reference_sha": str(ref["reference_sha"]),
        "clip_shape": list(samples.shape[1:]),
        "sampling": meta,
        "feature_device": str(device),
        "feature_precision": "fp32",
    }
    if features_npz:
        with atomic_path(features_npz) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{name: features[extractor] for name, extractor in FRECHET[kind]})
    if kind == "image":
        result["kid"] = metrics.kid(features["inception"], ref["inception_features"], seed=seed)
        protocol["kid"] = (
            "clean-fid kernel_distance (unbiased, cubic kernel, 100 seeded subsets) on the Inception features"
        )
    if dataset in data.SCENES:
        scene = shapes.kind_of(dataset)
        holds = shapes.rule_holds(samples, labels, scene)
        result["rule_share"] = float(holds.mean())
        result["rule_share_ci_low"], result["rule_share_ci_high"] = metrics.share_interval(holds, rounds, seed)
        protocol["rule_share"] = {
            "checker": f"elt.data.shapes.rule_holds, kind {scene}: every frame keeps its class's rule",
            "n_samples": len(samples),
            "interval": "95%, percentile bootstrap over the samples",
        }
    result["protocol"] = protocol
    return result


class SavedFeatures(metrics.FrechetFeatures):
    """The features evaluations kept, with their datasets' reference statistics: what the audit resamples.
    feature_files: {(run, loops): features npz}; reference_files: {run: its dataset's reference_features npz}."""

    def __init__(self, feature_files: dict[tuple[str, int], str], reference_files: dict[str, str]):
        self.feature_files, self.reference_files = feature_files, reference_files

    def samples(self, run: str, loops: int, metric: str) -> np.ndarray:
        with np.load(self.feature_files[(run, loops)]) as f:
            return f[metric]

    def reference(self, run: str, loops: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
        extractor = dict(sum(FRECHET.values(), ()))[metric]
        with np.load(self.reference_files[run]) as f:
            return f[f"{extractor}_mu"], f[f"{extractor}_sigma"]
