"""Beat consistency (BC) between gesture and speech, as HA2G / DiffGesture compute it.

* joint angles: for each pair of bones that meet at a joint (a->b, b->c), the angle between
  their directions, ``acos(u_ab . u_bc) / pi`` in [0, 1] (0: the limb is straight);
* motion envelope (their ``angle_diff``): per joint angle, the absolute change from frame
  t-1 to frame t, divided by that angle's mean change on reference (real) motion (their
  ``change_angle``), averaged over the angles; frame 0 gets 0;
* motion beats: frames t whose envelope is a local minimum at least ``threshold`` below one
  of its two neighbours (a movement stops or turns), at ``t / fps`` seconds. A minimum
  shared by two equal frames is no beat (their strict ``<``);
* audio beats: ``librosa.onset.onset_detect(y=audio, sr=sample_rate, units="time")``;
* BC = mean over audio beats ``a`` of ``exp(-min_m (a - m)^2 / (2 sigma^2))``, sigma = 0.1 s;
  0 when the motion has no beat.

Their code evaluates two joint-angle sets, and so do we (``BeatFormulation``):

* ``ARM_BEATS`` (the ``bc`` column): DiffGesture's TED Gesture evaluation, the shoulder and
  elbow angles of both arms (4 angles), threshold 0.03;
* ``ALL_JOINT_BEATS`` (``bc_all_joints``): HA2G's / DiffGesture's TED Expressive evaluation,
  every joint angle of the body and both hands (fingers included), threshold 0.001.

Why the arms are the headline: on 2D keypoints, the finger and head angles move with
keypoint jitter, not with gesture. On the synthetic corpus's held-out ground truth the
frame-to-frame change of every angle but the four arm angles has lag-1 autocorrelation
-0.47..-0.49 (white noise on an angle gives -0.5), the arm angles +0.36..+0.66; at threshold
0.001 any jitter dip is a beat, so ``bc_all_joints`` mostly counts jitter.

BC says nothing about timing when beats are dense: with 6.4 audio onsets/s and ~4 motion
beats/s (the synthetic corpus), almost every onset has a beat within sigma by chance.
``chance_beat_consistency`` measures that level (the same motion beats, circularly shifted
against the audio); ``gesturert evaluate`` reports it next to BC.

Differences from their code: whole sequences rather than 34-frame clips; 2D joint angles of
this skeleton rather than 3D direction vectors of theirs (no palm normals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sdk.features import DEFAULT_FEATURES
from sdk.skeleton import MODEL_SKELETON, Skeleton

BC_SIGMA_S = 0.1  # seconds, HA2G/DiffGesture
MOTION_GROUPS = ("body", "left_hand", "right_hand")
CHANCE_SHIFTS = 16  # circular shifts averaged by chance_beat_consistency
CHANCE_MIN_SHIFT_S = 1.0  # seconds: shifts stay this far from 0 and from a full turn


def arm_joint_angles(skeleton: Skeleton = MODEL_SKELETON) -> np.ndarray:
    """(4, 3) int joint triples (a, b, c): the shoulder and elbow angles of each arm.

    Found by joint name (``neck``, ``<side>_shoulder``, ``<side>_elbow``, ``<side>_wrist``);
    raises when the skeleton lacks one.
    """
    index = {name: i for i, name in enumerate(skeleton.joint_names)}
    triples = []
    for side in ("right", "left"):
        chain = ["neck", f"{side}_shoulder", f"{side}_elbow", f"{side}_wrist"]
        missing = [n for n in chain if n not in index]
        if missing:
            raise ValueError(f"skeleton {skeleton.name!r} has no joint named {missing[0]!r}")
        ids = [index[n] for n in chain]
        triples += [ids[0:3], ids[1:4]]
    return np.asarray(triples, dtype=np.int64)


def consecutive_bone_angles(skeleton: Skeleton = MODEL_SKELETON,
                            groups: tuple[str, ...] = MOTION_GROUPS) -> np.ndarray:
    """(K, 3) int joint triples (a, b, c) for every two bones a->b, b->c of the skeleton
    whose joints all lie in ``groups`` (the wrist links included)."""
    joints = {i for g in groups for i in skeleton.groups[g]}
    bones = [b for b in skeleton.bones if b[0] in joints and b[1] in joints]
    triples = [(a, b, c) for a, b in bones for b2, c in bones if b2 == b]
    return np.asarray(triples, dtype=np.int64).reshape(-1, 3)


@dataclass(frozen=True, eq=False)
class BeatFormulation:
    """Which joint angles make the motion envelope, and how deep a beat's minimum must be.

    Attributes:
        name: short label for tables.
        angles: (K, 3) int joint triples (a, b, c): the angle at b between a->b and b->c.
        threshold: the dip below a neighbour that makes a minimum a beat, in envelope units
            (1 = the reference motion's mean change).
    """

    name: str
    angles: np.ndarray
    threshold: float


ARM_BEATS = BeatFormulation("arms", arm_joint_angles(), 0.03)
ALL_JOINT_BEATS = BeatFormulation("all joints", consecutive_bone_angles(), 0.001)


def joint_angles(poses: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(T, J, 2) keypoints -> (T, K) float64 joint angles in units of pi (0..1).

    NaN where one of the two bones has zero length (an undetected or collapsed joint).
    """
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] != 2:
        raise ValueError(f"poses must be (T, J, 2), got shape {p.shape}")
    first = p[:, angles[:, 1]] - p[:, angles[:, 0]]  # (T, K, 2)
    second = p[:, angles[:, 2]] - p[:, angles[:, 1]]
    n1 = np.linalg.norm(first, axis=-1)
    n2 = np.linalg.norm(second, axis=-1)
    valid = (n1 > 1e-9) & (n2 > 1e-9)
    cos = np.sum(first * second, axis=-1) / np.where(valid, n1 * n2, 1.0)
    return np.where(valid, np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi, np.nan)


def joint_angle_change(poses: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(T, J, 2) -> (T, K) float64 ``|angle[t] - angle[t-1]|``; row 0 and changes touching
    an undefined angle are 0."""
    theta = joint_angles(poses, angles)
    change = np.zeros_like(theta)
    change[1:] = np.nan_to_num(np.abs(np.diff(theta, axis=0)), nan=0.0)
    return change


def angle_change_scale(sequences: Sequence[np.ndarray],
                       angles: np.ndarray = ARM_BEATS.angles) -> np.ndarray:
    """(K,) float64 mean frame-to-frame change of each joint angle over reference (real)
    sequences; pass it as ``change_scale`` so every method shares one envelope scale."""
    changes = [joint_angle_change(s, angles)[1:] for s in sequences if np.shape(s)[0] >= 2]
    if not changes:
        raise ValueError("need at least one sequence of >= 2 frames to measure motion")
    return np.concatenate(changes).mean(axis=0)


def motion_envelope(poses: np.ndarray, angles: np.ndarray,
                    change_scale: np.ndarray | None = None) -> np.ndarray:
    """(T, J, 2) -> (T,) mean normalised joint-angle change (see the module doc).

    ``change_scale`` (K,) divides each angle's change (default: this sequence's own mean);
    angles whose scale is 0 (they never move) are left out.
    """
    change = joint_angle_change(poses, angles)
    scale = (change[1:].mean(axis=0) if change_scale is None
             else np.asarray(change_scale, np.float64))
    if scale.shape != (change.shape[1],):
        raise ValueError(f"change_scale must be ({change.shape[1]},) per joint angle, "
                         f"got {scale.shape}")
    moving = scale > 1e-12
    if not np.any(moving):
        return np.zeros(change.shape[0])
    return (change[:, moving] / scale[moving]).mean(axis=1)


def motion_beat_times(poses: np.ndarray, formulation: BeatFormulation = ARM_BEATS,
                      change_scale: np.ndarray | None = None,
                      fps: float = DEFAULT_FEATURES.fps) -> np.ndarray:
    """(T, J, 2) poses -> (n,) float64 motion beat times in seconds (frame index / fps)."""
    env = motion_envelope(poses, formulation.angles, change_scale)
    if env.size < 3:
        return np.zeros(0)
    mid, prev, nxt = env[1:-1], env[:-2], env[2:]
    deep = (prev - mid >= formulation.threshold) | (nxt - mid >= formulation.threshold)
    return (np.flatnonzero((mid < prev) & (mid < nxt) & deep) + 1).astype(np.float64) / fps


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


def chance_beat_consistency(audio_beats: np.ndarray, motion_beats: np.ndarray,
                            duration_s: float, sigma: float = BC_SIGMA_S,
                            shifts: int = CHANCE_SHIFTS,
                            min_shift_s: float = CHANCE_MIN_SHIFT_S) -> float:
    """BC of the same motion beats with their timing broken: the mean BC over ``shifts``
    circular shifts of the motion beats (mod ``duration_s``), evenly spaced in
    ``[min_shift_s, duration_s - min_shift_s]``. Deterministic.

    BC above this level is what the motion's timing earns; BC at it is beat density alone.
    Raises when the sequence is too short to shift by ``min_shift_s`` both ways.
    """
    if duration_s <= 2.0 * min_shift_s:
        raise ValueError(f"chance BC needs a sequence longer than {2.0 * min_shift_s:g} s, "
                         f"got {duration_s:g} s")
    m = np.asarray(motion_beats, dtype=np.float64).reshape(-1)
    offsets = np.linspace(min_shift_s, duration_s - min_shift_s, shifts)
    return float(np.mean([beat_consistency(audio_beats, np.mod(m + s, duration_s), sigma)
                          for s in offsets]))


def sequence_beat_consistency(poses: np.ndarray, audio: np.ndarray,
                              formulation: BeatFormulation = ARM_BEATS,
                              change_scale: np.ndarray | None = None,
                              fps: float = DEFAULT_FEATURES.fps,
                              sample_rate: int = DEFAULT_FEATURES.sample_rate,
                              sigma: float = BC_SIGMA_S) -> float:
    """BC of one (T, J, 2) pose sequence against its (N,) audio (see the module doc)."""
    return beat_consistency(audio_beat_times(audio, sample_rate),
                            motion_beat_times(poses, formulation, change_scale, fps), sigma)
