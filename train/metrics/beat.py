"""Beat consistency (BC) between gesture and speech, as HA2G / DiffGesture compute it.

* motion beats: frames where the motion envelope has a local minimum that is at least
  ``threshold`` below one of its neighbours (the moments a movement stops or turns), at
  ``t / fps`` seconds. The envelope is HA2G's: per bone, the absolute change of its angle,
  divided by that bone's mean change on reference motion (``change_scale``; HA2G's
  ``change_angle``), averaged over bones. HA2G takes the change between frames t-1 and t;
  we take the centred change ``|angle[t+1] - angle[t-1]| / 2``, so that a stop at frame t
  gives its minimum at t (not on a tie between t and t+1);
* audio beats: ``librosa.onset.onset_detect(y=audio, sr=sample_rate, units="time")``;
* BC = mean over audio beats ``a`` of ``exp(-min_m (a - m)^2 / (2 sigma^2))``, sigma = 0.1 s;
  0 when the motion has no beat.

HA2G works on 3D direction vectors of its 42 bones; here the bones are the 2D bones of the
body and hand groups of the skeleton (the face's small deformations are lip sync's business).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sdk.features import DEFAULT_FEATURES
from sdk.skeleton import MODEL_SKELETON, Skeleton

BC_SIGMA_S = 0.1  # seconds, HA2G/DiffGesture
MOTION_BEAT_THRESHOLD = 0.001  # HA2G's `thres`, in normalised envelope units
MOTION_GROUPS = ("body", "left_hand", "right_hand")


def motion_bones(skeleton: Skeleton = MODEL_SKELETON,
                 groups: tuple[str, ...] = MOTION_GROUPS) -> np.ndarray:
    """(B, 2) int bones whose both ends lie in ``groups`` (plus the wrist links)."""
    joints = {i for g in groups for i in skeleton.groups[g]}
    bones = [b for b in skeleton.bones if b[0] in joints and b[1] in joints]
    return np.asarray(bones, dtype=np.int64).reshape(-1, 2)


def bone_angle_speed(poses: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """Centred absolute change of each bone's angle.

    Args:
        poses: (T, J, 2) keypoints (any consistent units: pixels, canonical).
        bones: (B, 2) joint index pairs.
    Returns:
        (T - 2, B) float64 radians per frame; row k is frame k + 1:
        ``|wrap(angle[k + 2] - angle[k])| / 2``. Bones of zero length count as still.
    """
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] != 2:
        raise ValueError(f"poses must be (T, J, 2), got shape {p.shape}")
    vec = p[:, bones[:, 1]] - p[:, bones[:, 0]]  # (T, B, 2)
    angle = np.arctan2(vec[..., 1], vec[..., 0])
    change = np.abs(np.angle(np.exp(1j * (angle[2:] - angle[:-2])))) / 2.0  # wrapped
    length = np.linalg.norm(vec, axis=-1)
    valid = (length[2:] > 1e-9) & (length[:-2] > 1e-9)
    return np.where(valid, change, 0.0)


def motion_change_scale(sequences: Sequence[np.ndarray],
                        bones: np.ndarray | None = None) -> np.ndarray:
    """Per-bone mean angle change over reference (real) sequences: (B,) float64 radians.

    Pass it as ``change_scale`` so generated and real motion share one envelope scale.
    """
    bones = motion_bones() if bones is None else bones
    speeds = [bone_angle_speed(s, bones) for s in sequences if np.shape(s)[0] >= 3]
    if not speeds:
        raise ValueError("need at least one sequence of >= 3 frames to measure motion")
    return np.concatenate(speeds).mean(axis=0)


def motion_envelope(poses: np.ndarray, bones: np.ndarray,
                    change_scale: np.ndarray | None = None) -> np.ndarray:
    """(T, J, 2) -> (T - 2,) mean normalised bone-angle speed of frames 1 .. T-2.

    ``change_scale`` (B,) divides each bone's speed (default: this sequence's own mean);
    bones whose scale is 0 (they never move) are left out.
    """
    speed = bone_angle_speed(poses, bones)
    scale = speed.mean(axis=0) if change_scale is None else np.asarray(change_scale, np.float64)
    if scale.shape != (speed.shape[1],):
        raise ValueError(f"change_scale must be ({speed.shape[1]},) per bone, got {scale.shape}")
    moving = scale > 1e-12
    if not np.any(moving):
        return np.zeros(speed.shape[0])
    return (speed[:, moving] / scale[moving]).mean(axis=1)


def motion_beat_times(poses: np.ndarray, fps: float = DEFAULT_FEATURES.fps,
                      threshold: float = MOTION_BEAT_THRESHOLD,
                      bones: np.ndarray | None = None,
                      change_scale: np.ndarray | None = None) -> np.ndarray:
    """(T, J, 2) poses -> (n,) float64 motion beat times in seconds (frame index / fps)."""
    env = motion_envelope(poses, motion_bones() if bones is None else bones, change_scale)
    if env.size < 3:
        return np.zeros(0)
    mid, prev, nxt = env[1:-1], env[:-2], env[2:]
    is_min = (mid < prev) & (mid < nxt) & ((prev - mid >= threshold) | (nxt - mid >= threshold))
    return (np.flatnonzero(is_min) + 2).astype(np.float64) / fps  # env[k] is frame k + 1


def audio_beat_times(audio: np.ndarray,
                     sample_rate: int = DEFAULT_FEATURES.sample_rate) -> np.ndarray:
    """(N,) float32 mono audio -> (n,) float64 onset times in seconds (librosa's detector)."""
    import librosa  # slow to import; only BC needs it

    y = np.asarray(audio, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"audio must be mono (N,), got shape {y.shape}")
    return np.asarray(librosa.onset.onset_detect(y=y, sr=sample_rate, units="time"), np.float64)


def beat_consistency(audio_beats: np.ndarray, motion_beats: np.ndarray,
                     sigma: float = BC_SIGMA_S) -> float:
    """BC = mean_a exp(-min_m (a - m)^2 / (2 sigma^2)) over audio beats a (seconds).

    Returns 0 when there is no motion beat; raises when there is no audio beat (BC is
    undefined for silence).
    """
    a = np.asarray(audio_beats, dtype=np.float64).reshape(-1)
    m = np.asarray(motion_beats, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("beat consistency needs at least one audio beat, got none")
    if m.size == 0:
        return 0.0
    nearest = np.min((a[:, None] - m[None, :]) ** 2, axis=1)
    return float(np.mean(np.exp(-nearest / (2.0 * sigma**2))))


def sequence_beat_consistency(poses: np.ndarray, audio: np.ndarray,
                              fps: float = DEFAULT_FEATURES.fps,
                              sample_rate: int = DEFAULT_FEATURES.sample_rate,
                              threshold: float = MOTION_BEAT_THRESHOLD,
                              sigma: float = BC_SIGMA_S,
                              change_scale: np.ndarray | None = None) -> float:
    """BC of one (T, J, 2) pose sequence against its (N,) audio (see ``motion_envelope``)."""
    return beat_consistency(audio_beat_times(audio, sample_rate),
                            motion_beat_times(poses, fps, threshold, change_scale=change_scale),
                            sigma)
