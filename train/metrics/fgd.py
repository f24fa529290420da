"""Fréchet Gesture Distance (Yoon et al. 2020) between two sets of feature vectors.

FGD = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)), the Fréchet distance of two
Gaussians fitted to the features (the FID formula). The features come from the FGD
autoencoder (``train.models.fgd.fgd_features``).

The trace of the matrix square root is computed the numerically stable way, with
symmetric eigendecompositions only: ``Tr((S_1 S_2)^(1/2)) = Tr((A S_2 A)^(1/2))`` with
``A = S_1^(1/2)`` (similar matrices; ``A S_2 A`` is symmetric PSD), and tiny negative
eigenvalues from round-off clipped to 0. Unlike ``scipy.linalg.sqrtm`` of the non-symmetric
product, this needs no ``eps * I`` fix for singular covariances and has no imaginary part.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (mean (D,), covariance (D, D)) float64; needs N >= 2."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Args:
        mu1, mu2: (D,) means. sigma1, sigma2: (D, D) covariances.
    Returns:
        the distance (>= 0 up to round-off), float.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes disagree: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} "
                         f"{s2.shape}")
    diff = mu1 - mu2
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    trace_covmean = float(np.sum(np.sqrt(np.clip(linalg.eigvalsh((middle + middle.T) / 2), 0,
                                                 None))))
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_covmean
    return float(max(value, 0.0))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a (D, D) covariance (negative round-off eigenvalues -> 0)."""
    values, vectors = linalg.eigh((sigma + sigma.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def fgd(real_features: np.ndarray, generated_features: np.ndarray) -> float:
    """FGD between (N, D) real and (M, D) generated features (lower is better)."""
    mu1, s1 = gaussian_stats(real_features)
    mu2, s2 = gaussian_stats(generated_features)
    return frechet_distance(mu1, s1, mu2, s2)
