"""Pipeline steps from data to per-(run, loop count) metrics: reference set, feature networks,
cached reference statistics, and the evaluation of one samples file.

Every record states its protocol: sample counts, extractor, implementation, reference statistics.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from . import classifier as clf
from . import data, metrics
from .config import DataConfig
from .provenance import atomic_path, provenance, write_json
from .sample import load_samples


def prepare_reference(data_cfg: dict, out_npz: str, manifest: str) -> None:
    """The held-out split, saved once: the real set every metric compares against."""
    cfg = DataConfig(**data_cfg)
    held, train = data.load(cfg, "held_out"), data.load(cfg, "train")
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=held.images, labels=held.labels)
    write_json(manifest, {"data": data_cfg, "classes": held.classes, "n_train": len(train.labels), "n_reference": len(held.labels),
                          "split_sha": held.split_sha, "shape": list(held.shape), **provenance()})


def train_domain_classifier(data_cfg: dict, settings: dict, out_pt: str, record: str) -> None:
    cfg = DataConfig(**data_cfg)
    train, held = data.load(cfg, "train"), data.load(cfg, "held_out")
    t, c = train.shape[:2]
    ccfg = clf.ClassifierConfig(in_channels=t * c, num_classes=len(train.classes), **settings)
    net, accuracy = clf.train_classifier(train.images, train.labels, held.images, held.labels, ccfg)
    clf.save(net, out_pt, accuracy)
    write_json(record, {"held_out_accuracy": accuracy, "config": ccfg.__dict__, "n_train": len(train.labels),
                        "n_held_out": len(held.labels), **provenance()})


def file_sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def reference_features(reference_npz: str, classifier_pt: str, fid_reference_samples: int | None, out_npz: str) -> None:
    """Features and statistics of the real set for each extractor, computed once and cached."""
    with np.load(reference_npz) as f:
        images = f["images"]
    domain, _ = clf.load(classifier_pt).features_and_predictions(images)
    frames = metrics.to_rgb_frames(images[:fid_reference_samples] if fid_reference_samples else images)
    inception = metrics.inception_features(frames)
    stats = {}
    for name, feats in (("inception", inception), ("domain", domain)):
        mu, sigma = metrics.mean_cov(feats)
        stats.update({f"{name}_features": feats, f"{name}_mu": mu, f"{name}_sigma": sigma})
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **stats, reference_sha=np.array(file_sha(reference_npz)))


def evaluate(samples_npz: str, reference_npz: str, classifier_pt: str, settings: dict) -> dict:
    """All metrics of one (run, loop count). settings: the profile's `metrics` section."""
    samples, labels, meta = load_samples(samples_npz)
    net = clf.load(classifier_pt)
    with np.load(reference_npz) as f:
        ref = dict(f)
    domain, preds = net.features_and_predictions(samples)
    n_fid = min(settings["fid_samples"], len(samples))
    inception = metrics.inception_features(metrics.to_rgb_frames(samples[:n_fid]))
    rounds, seed = settings["bootstrap_rounds"], settings["bootstrap_seed"]
    result = {
        "run": meta["run"], "loops_eval": meta["loops"], "n_samples": len(samples), "n_fid": n_fid,
        "fid": metrics.frechet_to_reference(inception, ref["inception_mu"], ref["inception_sigma"]),
        "fd_domain": metrics.frechet_to_reference(domain, ref["domain_mu"], ref["domain_sigma"]),
        "kid": metrics.kid(inception, ref["inception_features"], seed=seed),
        "class_accuracy": float((preds == labels).mean()),
        "samples_per_second": meta["samples_per_second"],
    }
    for name, prefix, feats in (("fid", "inception", inception), ("fd_domain", "domain", domain)):
        low, high = metrics.bootstrap_interval(feats, ref[f"{prefix}_mu"], ref[f"{prefix}_sigma"], rounds, seed)
        result[f"{name}_ci_low"], result[f"{name}_ci_high"] = low, high
    result["protocol"] = {
        "fid": {**metrics.PROTOCOL_FID, "n_samples": n_fid, "n_reference": len(ref["inception_features"])},
        "fd_domain": {"extractor": "elt.classifier.DomainClassifier penultimate features", "n_samples": len(samples),
                      "n_reference": len(ref["domain_features"])},
        "kid": "clean-fid kernel_distance (unbiased, cubic kernel, 100 seeded subsets) on the Inception features",
        "bootstrap": {"rounds": rounds, "seed": seed, "interval": "95%, bias-corrected percentile"},
        "reference_sha": str(ref["reference_sha"]), "sampling": meta,
    }
    return result
