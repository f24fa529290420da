"""Sequences of joined clips and which of their joints were seen (numpy only).

Shared by the training windows (:mod:`train.data.windows`, torch) and the corpus check
(:mod:`train.data.check`, numpy), so both count windows and missing joints the same way.

Missing joints are data, not zeros: OpenPose writes an undetected joint as (0, 0) with
confidence 0. A model-skeleton joint is **observed** in a frame when its confidence is
> 0 and the root's (the neck's) is too: canonical coordinates are relative to the neck,
so a frame without a neck has no usable joint. The per-joint mask (T, 122) travels with
every training window; losses, metrics and normalisation statistics skip masked joints.

A window is pose frames [s, s + T) of a sequence with s + T <= its length; starts step by
``stride_frames`` and are rounded down to a multiple of ``align`` (the training windows'
frame alignment). A window whose *missing fraction* (masked entries among the non-root
joints of its T frames) exceeds ``max_missing_fraction`` is dropped, and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sdk.features import FeatureConfig
from sdk.skeleton import UPPER_BODY_122
from train.data.sdt import SdtClip

ROOT = UPPER_BODY_122.root
NON_ROOT = np.array([j for j in range(UPPER_BODY_122.num_joints) if j != ROOT])


def frame_alignment(config: FeatureConfig) -> int:
    """Smallest number of pose frames that spans a whole number of MFCC hops (3)."""
    hop_fps = config.fps * config.hop_length
    return hop_fps // math.gcd(config.sample_rate, hop_fps)


@dataclass(frozen=True)
class PoseSequence:
    """Clips of one interval joined in time.

    audio: float32 (N,); pose_px: float32 (F, 137, 2); confidence: float32 (F, 137);
    saliency float32 (F,) or None; posture int16 (F,) or None; start: first frame in the
    interval.
    """

    speaker: str
    split: str
    interval_id: str
    start: int
    audio: np.ndarray
    pose_px: np.ndarray
    confidence: np.ndarray
    saliency: np.ndarray | None
    posture: np.ndarray | None

    @property
    def num_frames(self) -> int:
        return int(self.pose_px.shape[0])

    def joint_mask(self) -> np.ndarray:
        """bool (F, 122): model-skeleton joints observed (see the module docstring)."""
        return joint_mask(self.confidence)


def join_clips(clips: Sequence[SdtClip]) -> list[PoseSequence]:
    """Join clips that tile an interval into sequences (order: speaker, interval, start)."""
    ordered = sorted(clips, key=lambda c: (c.speaker, c.split, c.interval_id, c.start))
    groups: list[list[SdtClip]] = []
    for clip in ordered:
        last = groups[-1][-1] if groups else None
        if last is not None and (last.speaker, last.split, last.interval_id, last.end) == (
                clip.speaker, clip.split, clip.interval_id, clip.start):
            groups[-1].append(clip)
        else:
            groups.append([clip])
    out = []
    for group in groups:
        has_truth = all(c.saliency is not None and c.posture is not None for c in group)
        out.append(PoseSequence(
            speaker=group[0].speaker, split=group[0].split, interval_id=group[0].interval_id,
            start=group[0].start, audio=np.concatenate([c.audio for c in group]),
            pose_px=np.concatenate([c.pose_px for c in group]),
            confidence=np.concatenate([c.confidence for c in group]),
            saliency=np.concatenate([c.saliency for c in group]) if has_truth else None,  # type: ignore[misc]
            posture=np.concatenate([c.posture for c in group]) if has_truth else None,  # type: ignore[misc]
        ))
    return out


def joint_mask(confidence: np.ndarray) -> np.ndarray:
    """OpenPose-137 confidences (..., 137) -> bool (..., 122): observed model joints.

    A joint is observed when its confidence and the root's (neck) are both > 0.
    """
    seen = UPPER_BODY_122.from_openpose(np.asarray(confidence)[..., None])[..., 0] > 0
    return seen & seen[..., ROOT:ROOT + 1]


def missing_fraction(mask: np.ndarray) -> float:
    """Share of masked entries among the non-root joints of a (T, 122) bool mask."""
    return float(1.0 - mask[:, NON_ROOT].mean()) if mask.size else 1.0


def window_starts(num_frames: int, window_frames: int, stride_frames: int, align: int
                  ) -> list[int]:
    """Sorted window starts of a sequence of ``num_frames`` (see the module docstring)."""
    starts = range(0, num_frames - window_frames + 1, stride_frames)
    return sorted({s - s % align for s in starts})


@dataclass(frozen=True)
class WindowCount:
    """Windows of a set of sequences: ``kept`` and ``dropped`` (too much missing)."""

    kept: list[tuple[int, int]]
    dropped: int


def count_windows(masks: Sequence[np.ndarray], window_frames: int, stride_frames: int,
                  align: int, max_missing_fraction: float) -> WindowCount:
    """(sequence index, start) of every window whose missing fraction is at most
    ``max_missing_fraction``, and how many others were dropped. masks: per sequence
    bool (F, 122)."""
    if not 0.0 <= max_missing_fraction <= 1.0:
        raise ValueError(f"max_missing_fraction must be in [0, 1], got {max_missing_fraction}")
    kept: list[tuple[int, int]] = []
    dropped = 0
    for i, mask in enumerate(masks):
        for s in window_starts(mask.shape[0], window_frames, stride_frames, align):
            if missing_fraction(mask[s:s + window_frames]) <= max_missing_fraction:
                kept.append((i, s))
            else:
                dropped += 1
    return WindowCount(kept, dropped)
