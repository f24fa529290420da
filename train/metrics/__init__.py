"""Evaluation metrics: pure functions over numpy arrays (shapes in each docstring).

FGD (``fgd``), beat consistency (``beat``), keypoint L1 / PCK / diversity / lip sync
(``keypoints``), ROC AUC and the detector's frame AUC (``auc``); PSD with a torch
PoseSyncNet lives in ``train.metrics.psd`` (imported on its own: it loads torch).
"""

from train.metrics.auc import detector_frame_auc, roc_auc
from train.metrics.beat import (
    ALL_JOINT_BEATS,
    ARM_BEATS,
    BeatFormulation,
    angle_change_scale,
    audio_beat_times,
    beat_consistency,
    chance_beat_consistency,
    motion_beat_times,
    sequence_beat_consistency,
)
from train.metrics.fgd import fgd, frechet_distance, gaussian_stats
from train.metrics.keypoints import (
    diversity,
    l1_error,
    lip_opening,
    lip_sync_correlation,
    pck,
)

__all__ = [
    "ALL_JOINT_BEATS",
    "ARM_BEATS",
    "BeatFormulation",
    "angle_change_scale",
    "audio_beat_times",
    "beat_consistency",
    "chance_beat_consistency",
    "detector_frame_auc",
    "diversity",
    "fgd",
    "frechet_distance",
    "gaussian_stats",
    "l1_error",
    "lip_opening",
    "lip_sync_correlation",
    "motion_beat_times",
    "pck",
    "roc_auc",
    "sequence_beat_consistency",
]
