"""Keypoint errors: L1, PCK (Speech2Gesture), diversity (HA2G) and lip-sync correlation.

Ground-truth joints the data did not observe are NaN (train.data.sequences) and are left
out of every score here; predictions are always complete.
"""

from __future__ import annotations

import numpy as np

from sdk.skeleton import LIP_BOTTOM, LIP_TOP

PCK_ALPHA = 0.2


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape or p.ndim < 2 or p.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be (..., J, 2), got {p.shape} and {g.shape}")
    return p, g


def _observed(gt: np.ndarray) -> np.ndarray:
    """bool (..., J): ground-truth joints with finite coordinates."""
    return np.isfinite(gt).all(axis=-1)


def l1_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute coordinate error of (..., J, 2) keypoints, in their units, over the
    joints observed in ``gt`` (NaN when none is)."""
    p, g = _pair(pred, gt)
    seen = _observed(g)
    return float(np.mean(np.abs(p - g)[seen])) if seen.any() else float("nan")


def pck(pred: np.ndarray, gt: np.ndarray, alpha: float = PCK_ALPHA) -> float:
    """Percentage of correct keypoints, as Speech2Gesture.

    A keypoint is correct when its L2 error is below ``alpha * max(h, w)`` of the
    ground-truth bounding box of its frame (of the observed joints; unobserved ones,
    NaN in ``gt``, are not counted).

    Args:
        pred, gt: (..., J, 2) keypoints (frames in the leading axes).
    Returns:
        fraction in [0, 1]; NaN when no joint is observed.
    """
    p, g = _pair(pred, gt)
    seen = _observed(g)
    if not seen.any():
        return float("nan")
    high = np.where(seen[..., None], g, -np.inf).max(axis=-2)  # (..., 2)
    low = np.where(seen[..., None], g, np.inf).min(axis=-2)
    extent = np.where(np.isfinite(high - low), high - low, 0.0)  # bounding box width, height
    radius = alpha * extent.max(axis=-1, keepdims=True)  # (..., 1)
    with np.errstate(invalid="ignore"):
        correct = np.linalg.norm(p - g, axis=-1) < radius
    return float(np.mean(correct[seen]))


def diversity(features: np.ndarray, seed: int = 0) -> float:
    """HA2G diversity: mean L1 distance between (N, D) features and a shuffled copy.

    The permutation comes from ``seed``, so the value is reproducible.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"diversity needs (N, D) features with N >= 2, got {f.shape}")
    perm = np.random.default_rng(seed).permutation(f.shape[0])
    return float(np.mean(np.sum(np.abs(f - f[perm]), axis=1)))


def lip_opening(poses: np.ndarray, top: int = LIP_TOP, bottom: int = LIP_BOTTOM) -> np.ndarray:
    """(..., T, J, 2) keypoints -> (..., T) inner-lip opening ||P_top - P_bottom||."""
    p = np.asarray(poses, dtype=np.float64)
    return np.linalg.norm(p[..., top, :] - p[..., bottom, :], axis=-1)


def lip_sync_correlation(pred: np.ndarray, gt: np.ndarray) -> float:
    """Pearson correlation of predicted vs ground-truth inner-lip opening over frames.

    Args:
        pred, gt: (T, J, 2) keypoints of one sequence (or (..., T, J, 2), pooled).
    Returns:
        r in [-1, 1] over the frames whose ground-truth inner lips are observed; 0 when
        either opening is constant (no lip motion to correlate).
    """
    p, g = _pair(pred, gt)
    return observed_correlation(lip_opening(p).ravel(), lip_opening(g).ravel())


def observed_correlation(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Pearson r of two (T,) series over the frames whose ``truth`` is finite; 0 when
    there is none or either side is constant there (the lip-sync r of one sequence)."""
    seen = np.isfinite(truth)
    a, b = np.asarray(prediction, np.float64)[seen], np.asarray(truth, np.float64)[seen]
    if a.size == 0:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denom) if denom > 0 else 0.0
