"""Keypoint motion of the synthetic speaker, rendered from the script and its voiced envelope.

Per pose frame k (covering audio [k/fps, (k+1)/fps), evaluated at its centre):

* lips: the inner-lip opening follows the *frame voiced envelope* (the mean of the
  per-sample voiced amplitude over the frame's samples, :func:`frame_voiced_envelope`);
  with ``articulation`` each vowel's samples are first scaled by its openness and the
  lips widen or round by its spread (``VOWEL_MOUTH_SHAPES``, :func:`vowel_mouth_tracks`),
  so the mouth also depends on *which* vowel sounds (its formants), as in real speech;
* beats: accented syllables dip the dominant forearm and hand (the other at half size);
* salient postures: arm angles and hand shapes blend from rest towards the posture's
  target with the script's weights (> 0 exactly on the posture's frames);
* nods: each stressed keyword nods the head; idle sway: whole-body drift, torso lean,
  head roll and slow arm drift; per-frame Gaussian jitter on every keypoint.

The model-skeleton pose (UPPER_BODY_122, canonical units) is built first and scattered
into the OpenPose-137 pixel layout with ``UPPER_BODY_122.source_indices``; hips, legs,
feet and ears get a fixed plausible pose. Confidence is 1 everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdk.features import FeatureConfig
from sdk.skeleton import BODY25_NAMES, OPENPOSE_137, UPPER_BODY_122
from train.data.synth_body import (
    FACE_NOSE_TIP,
    FACE_PUPILS,
    FACE_WIDTH,
    HEAD_PIVOT,
    NOSE_TIP,
    REST_ARM,
    arm_chain,
    face_points,
    posture_delta,
    rotate,
)
from train.data.synth_script import (
    NUM_POSTURES,
    VOWEL_MOUTH_SHAPES,
    Script,
    SpeakerProfile,
    posture_weights,
)

LIP_GAIN = 0.09  # mouth aperture (jaw widths) per unit of voiced envelope
NOD_DROP, NOD_S = 0.04, 0.4  # head drop (canonical) and duration (s) of a nod
BEAT_LEAD_S, BEAT_S = 0.05, 0.35  # a beat starts this much before its vowel, lasts BEAT_S
LEAN_DEG, ROLL_DEG, ARM_DRIFT_DEG = 1.2, 2.5, 2.5  # idle sway amplitudes

# Fixed lower body and ears: OpenPose BODY_25 name -> canonical (x, y) (ears: face units).
_FIXED_BODY = {
    "mid_hip": (0.0, 1.55), "right_hip": (-0.3, 1.55), "left_hip": (0.3, 1.55),
    "right_knee": (-0.32, 2.35), "left_knee": (0.32, 2.35),
    "right_ankle": (-0.33, 3.15), "left_ankle": (0.33, 3.15),
    "right_big_toe": (-0.38, 3.3), "right_small_toe": (-0.45, 3.28), "right_heel": (-0.3, 3.22),
    "left_big_toe": (0.38, 3.3), "left_small_toe": (0.45, 3.28), "left_heel": (0.3, 3.22),
}
_EARS = {"right_ear": (-0.52, -0.12), "left_ear": (0.52, -0.12)}  # jaw widths from nose tip


@dataclass(frozen=True)
class SynthMotion:
    """Motion of one interval of F pose frames.

    pose: float32 (F, 3, 137) OpenPose pixels x, y and confidence (SDT clip layout).
    saliency: float32 (F,) 1 on frames of a triggered salient posture, else 0.
    posture: int16 (F,) posture id on those frames, -1 elsewhere.
    lip_aperture: float64 (F,) mouth aperture in jaw widths (what the lips were driven by).
    """

    pose: np.ndarray
    saliency: np.ndarray
    posture: np.ndarray
    lip_aperture: np.ndarray


def frame_sample_bounds(num_frames: int, config: FeatureConfig) -> np.ndarray:
    """First sample of pose frames 0..num_frames: int64 (num_frames + 1,).

    Sample n belongs to pose frame floor(n * fps / sample_rate), so frame k starts at
    ceil(k * sample_rate / fps).
    """
    k = np.arange(num_frames + 1, dtype=np.int64)
    return -((-k * config.sample_rate) // config.fps)


def frame_voiced_envelope(envelope: np.ndarray, num_frames: int,
                          config: FeatureConfig) -> np.ndarray:
    """Mean of a per-sample envelope (N,) over each pose frame's samples: float64 (F,).

    Samples past the end of ``envelope`` count as 0 (the audio is followed by silence).
    """
    bounds = frame_sample_bounds(num_frames, config)
    padded = np.zeros(int(bounds[-1]) + 1)
    n = min(envelope.shape[0], padded.shape[0] - 1)
    padded[1 : n + 1] = np.cumsum(envelope[:n])
    padded[n + 1 :] = padded[n]
    return (padded[bounds[1:]] - padded[bounds[:-1]]) / np.diff(bounds)


def _pulse(t: np.ndarray, onsets: list[float], duration: float) -> np.ndarray:
    """Sum of sin^2 bumps of ``duration`` s starting at ``onsets``, evaluated at ``t`` (F,)."""
    out = np.zeros_like(t)
    for onset in onsets:
        x = (t - onset) / duration
        inside = (x > 0.0) & (x < 1.0)
        out[inside] += np.sin(np.pi * x[inside]) ** 2
    return out


def vowel_mouth_tracks(script: Script, envelope: np.ndarray, num_frames: int,
                       config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per pose frame, float64 (F,) each: the openness-weighted voiced envelope (each
    sample of the envelope times the openness of the vowel sounding there) and the lip
    spread (the mean over the frame's samples of the sounding vowel's spread, weighted by
    how voiced the sample is: ``min(envelope, 1)``; 0 in silence)."""
    sr = config.sample_rate
    openness = np.ones(envelope.shape[0])
    spread = np.zeros(envelope.shape[0])
    for syl in script.syllables:  # a vowel's envelope lives on [vowel_onset, end)
        a = round(syl.vowel_onset_s * sr)
        b = min(round(syl.end_s * sr), envelope.shape[0])
        openness[a:b], spread[a:b] = VOWEL_MOUTH_SHAPES[syl.vowel]
    weighted = frame_voiced_envelope(envelope * openness, num_frames, config)
    lips = frame_voiced_envelope(spread * np.minimum(envelope, 1.0), num_frames, config)
    return weighted, lips


def render_motion(script: Script, profile: SpeakerProfile, envelope: np.ndarray,
                  rng: np.random.Generator, config: FeatureConfig,
                  include_postures: bool = True, articulation: bool = False) -> SynthMotion:
    """Render the keypoints of ``script`` (see the module docstring).

    Args:
        envelope: per-sample voiced envelope (N,) from ``synth_audio.voiced_envelope``.
        rng: drawn from in the same order whatever ``include_postures`` is.
        include_postures: False renders the same motion without salient postures (the
            ground-truth arrays still describe the script); used to check that postures
            move the body exactly on the frames marked salient.
        articulation: vowel-dependent mouth shapes (see the module docstring); draws
            nothing from ``rng``, so everything but the mouth is the same as without.
    """
    n = script.num_frames
    t = (np.arange(n) + 0.5) / config.fps
    phase = rng.uniform(0.0, 2.0 * np.pi, size=8)
    jitter = rng.normal(0.0, profile.noise_px, size=(n, OPENPOSE_137.num_joints, 2))

    spread = None
    if articulation:
        weighted, spread = vowel_mouth_tracks(script, envelope, n, config)
        aperture = LIP_GAIN * weighted
    else:
        aperture = LIP_GAIN * frame_voiced_envelope(envelope, n, config)
    beats = _pulse(t, [s.vowel_onset_s - BEAT_LEAD_S for s in script.syllables if s.accent],
                   BEAT_S)
    nods = _pulse(t, [s.vowel_onset_s for s in script.syllables if s.keyword >= 0], NOD_S)
    w = 2.0 * np.pi * profile.sway_hz * t

    def idle_arm(p0: float, p1: float, beat_scale: float) -> np.ndarray:
        arm = np.broadcast_to(REST_ARM.as_array(), (n, 9)).copy()
        arm[:, 0] += ARM_DRIFT_DEG * np.sin(0.7 * w + p0)
        arm[:, 1] += ARM_DRIFT_DEG * np.sin(1.3 * w + p1) + beat_scale * profile.beat_deg * beats
        arm[:, 2] += 0.8 * beat_scale * profile.beat_deg * beats
        return arm

    dominant, other = idle_arm(phase[0], phase[1], 1.0), idle_arm(phase[2], phase[3], 0.5)
    weight, posture = posture_weights(script)
    active = posture >= 0
    if include_postures and np.any(active):  # a short interval may hold no posture at all
        deltas = [posture_delta(p, profile.gesture_scale) for p in range(NUM_POSTURES)]
        dominant[active] += weight[active, None] * np.stack(
            [deltas[p][0] for p in posture[active]]).reshape(-1, 9)
        other[active] += weight[active, None] * np.stack(
            [deltas[p][1] for p in posture[active]]).reshape(-1, 9)
    right, left = (other, dominant) if profile.dominant_left else (dominant, other)
    right_chain = arm_chain(right)  # (F, 24, 2): shoulder, elbow, wrist, hand 21
    left_chain = arm_chain(left) * np.array([-1.0, 1.0])

    head = face_points(aperture, spread) * FACE_WIDTH + np.asarray(NOSE_TIP)  # (F, 70, 2)
    ears = np.asarray(list(_EARS.values())) * FACE_WIDTH + np.asarray(NOSE_TIP)
    head = np.concatenate([head, np.broadcast_to(ears, (n, 2, 2))], axis=1)  # (F, 72, 2)
    head[..., 1] = HEAD_PIVOT[1] + (head[..., 1] - HEAD_PIVOT[1]) * (1.0 - 0.08 * nods[:, None])
    head[..., 1] += NOD_DROP * nods[:, None]
    head = rotate(head, ROLL_DEG * np.sin(0.8 * w + phase[4]), HEAD_PIVOT)

    model = np.zeros((n, UPPER_BODY_122.num_joints, 2))
    face0 = UPPER_BODY_122.groups["face"][0]
    model[:, 1] = head[:, FACE_NOSE_TIP]
    model[:, 2:5] = right_chain[:, 0:3]
    model[:, 5:8] = left_chain[:, 0:3]
    model[:, 8], model[:, 9] = head[:, FACE_PUPILS[0]], head[:, FACE_PUPILS[1]]
    model[:, face0 : face0 + 70] = head[:, :70]
    model[:, list(UPPER_BODY_122.groups["left_hand"])] = left_chain[:, 3:]
    model[:, list(UPPER_BODY_122.groups["right_hand"])] = right_chain[:, 3:]
    model[:, 1:] = rotate(model[:, 1:], LEAN_DEG * np.sin(w + phase[5]), (0.0, 0.0))
    ears_lean = rotate(head[:, 70:], LEAN_DEG * np.sin(w + phase[5]), (0.0, 0.0))

    canonical = np.zeros((n, OPENPOSE_137.num_joints, 2))
    canonical[:, list(UPPER_BODY_122.source_indices or ())] = model
    for name, xy in _FIXED_BODY.items():
        canonical[:, BODY25_NAMES.index(name)] = xy
    for i, name in enumerate(_EARS):
        canonical[:, BODY25_NAMES.index(name)] = ears_lean[:, i]

    neck_px = np.stack([
        profile.neck_px[0] + profile.sway_px * np.sin(w + phase[6]),
        profile.neck_px[1] + 0.3 * profile.sway_px * np.sin(0.6 * w + phase[7]),
    ], axis=1)
    pixels = neck_px[:, None, :] + canonical * profile.scale_px + jitter
    pose = np.concatenate([pixels, np.ones((n, OPENPOSE_137.num_joints, 1))], axis=2)
    return SynthMotion(
        pose=pose.transpose(0, 2, 1).astype(np.float32),
        saliency=(posture >= 0).astype(np.float32),
        posture=posture,
        lip_aperture=aperture,
    )
