"""ROC AUC from ranks, and the salient-posture detector's frame-level AUC."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney U / (P N)).

    Ties count one half (average ranks).

    Args:
        scores: (n,) float, higher = more likely positive.
        labels: (n,) bool or {0, 1}.
    Returns:
        AUC in [0, 1]; 0.5 is chance.
    Raises:
        ValueError: shapes differ, or labels are not both present.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have the same length, got {s.size} and {y.size}")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError("labels must be binary (0/1 or bool)")
    positive = y.astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    ranks = rankdata(s)  # average ranks, 1-based
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def detector_frame_auc(saliency_scores: Sequence[np.ndarray],
                       ground_truth: Sequence[np.ndarray]) -> float:
    """Frame-level AUC of predicted saliency against the synthetic corpus's ground truth.

    Args:
        saliency_scores: per sequence, (T_k,) predicted scores in [0, 1].
        ground_truth: per sequence, (T_k,) float/int saliency labels in {0, 1}.
    Returns:
        ROC AUC over all frames of all sequences pooled.
    """
    if len(saliency_scores) != len(ground_truth):
        raise ValueError(f"got {len(saliency_scores)} score sequences and {len(ground_truth)} "
                         "label sequences")
    for k, (s, g) in enumerate(zip(saliency_scores, ground_truth, strict=True)):
        if np.shape(s) != np.shape(g):
            raise ValueError(f"sequence {k}: scores {np.shape(s)} vs labels {np.shape(g)}")
    scores = np.concatenate([np.ravel(s) for s in saliency_scores])
    labels = np.concatenate([np.ravel(g) for g in ground_truth]) > 0.5
    return roc_auc(scores, labels)
