"""train.metrics.beat: beat consistency (BC) as HA2G / DiffGesture compute it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sdk.skeleton import MODEL_SKELETON, Skeleton
from train.metrics import (
    ALL_JOINT_BEATS,
    ARM_BEATS,
    angle_change_scale,
    beat_consistency,
    chance_beat_consistency,
    motion_beat_times,
    sequence_beat_consistency,
)
from train.metrics.beat import arm_joint_angles, consecutive_bone_angles, joint_angles

J = MODEL_SKELETON.num_joints
FPS = 15
NECK, R_SHOULDER, R_ELBOW, R_WRIST = 0, 2, 3, 4  # MODEL_SKELETON (UPPER_BODY_122)


def test_beat_consistency_formula() -> None:
    audio = np.array([1.0, 2.0])
    assert beat_consistency(audio, audio) == pytest.approx(1.0)
    expected = np.mean([1.0, np.exp(-(0.1**2) / (2 * 0.1**2))])
    assert beat_consistency(audio, np.array([1.0, 2.1, 5.0])) == pytest.approx(expected)
    assert beat_consistency(audio, np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="audio beat"):
        beat_consistency(np.zeros(0), audio)


def test_arm_angles_are_the_shoulders_and_elbows() -> None:
    names = [[MODEL_SKELETON.joint_names[i] for i in t] for t in arm_joint_angles()]
    assert names == [["neck", "right_shoulder", "right_elbow"],
                     ["right_shoulder", "right_elbow", "right_wrist"],
                     ["neck", "left_shoulder", "left_elbow"],
                     ["left_shoulder", "left_elbow", "left_wrist"]]
    no_arms = Skeleton("head", ("neck", "nose"), {"body": (0, 1)}, ((0, 1),), None, root=0)
    with pytest.raises(ValueError, match="right_shoulder"):
        arm_joint_angles(no_arms)
    every = consecutive_bone_angles()
    assert len(every) > 40 and {tuple(t) for t in arm_joint_angles()} <= {tuple(t) for t in every}


def test_joint_angles_in_units_of_pi() -> None:
    poses = np.zeros((3, J, 2))
    poses[:, R_SHOULDER] = (-1.0, 0.0)
    poses[:, R_ELBOW] = (-1.0, 1.0)
    poses[0, R_WRIST] = (-1.0, 2.0)  # straight: 0
    poses[1, R_WRIST] = (0.0, 1.0)  # right angle: 0.5
    poses[2, R_WRIST] = (-1.0, 1.0)  # collapsed forearm: undefined
    elbow = joint_angles(poses, arm_joint_angles()[1:2])[:, 0]
    np.testing.assert_allclose(elbow[:2], [0.0, 0.5], atol=1e-12)
    assert np.isnan(elbow[2])


def _beat_motion(stop_frames: np.ndarray, frames: int, amplitude: float = 1.0) -> np.ndarray:
    """(frames, J, 2): the right elbow bending back and forth, pausing (zero angular
    velocity) at ``stop_frames``; every other joint still at a random place."""
    rng = np.random.default_rng(3)
    poses = np.repeat(rng.uniform(-0.5, 0.5, (1, J, 2)), frames, axis=0)
    knots = np.concatenate([[0], stop_frames, [frames - 1]])
    swing = np.zeros(frames)
    for k, (lo, hi) in enumerate(itertools.pairwise(knots)):
        u = (np.arange(lo, hi + 1) - lo) / max(hi - lo, 1)
        ease = u * u * (3 - 2 * u)  # smoothstep: zero velocity at both knots
        swing[lo : hi + 1] = ease if k % 2 == 0 else 1 - ease
    poses[:, NECK] = (0.0, 0.0)
    poses[:, R_SHOULDER] = (-1.0, 0.0)
    poses[:, R_ELBOW] = (-1.0, 1.0)
    direction = 0.2 + 1.2 * amplitude * swing  # forearm direction (rad): elbow angle monotonic
    poses[:, R_WRIST, 0] = -1.0 + 0.5 * np.cos(direction)
    poses[:, R_WRIST, 1] = 1.0 + 0.5 * np.sin(direction)
    return poses


# uneven segments: with the backward difference, a stop between two equal segments is a tie
STOPS = np.array([13, 30, 44])


def test_motion_beats_sit_on_velocity_minima() -> None:
    found = motion_beat_times(_beat_motion(STOPS, 60), fps=FPS)
    np.testing.assert_allclose(found * FPS, STOPS, atol=1)


def test_arm_beats_ignore_finger_jitter_that_all_joint_beats_count() -> None:
    clean = _beat_motion(STOPS, 60)
    jittery = clean.copy()
    hands = list(MODEL_SKELETON.groups["left_hand"] + MODEL_SKELETON.groups["right_hand"])
    jittery[:, hands] += np.random.default_rng(4).normal(0, 0.02, (60, len(hands), 2))
    np.testing.assert_array_equal(motion_beat_times(jittery, ARM_BEATS),
                                  motion_beat_times(clean, ARM_BEATS))
    assert motion_beat_times(jittery, ALL_JOINT_BEATS).size > 3 * STOPS.size


def test_beats_need_motion_of_gesture_size() -> None:
    """Against the scale of real motion, a 1% copy of it has no arm beat (threshold 0.03),
    though its minima sit at the same frames."""
    real = _beat_motion(STOPS, 60)
    scale = angle_change_scale([real])
    assert motion_beat_times(real, ARM_BEATS, scale).size == STOPS.size
    assert motion_beat_times(_beat_motion(STOPS, 60, amplitude=0.01), ARM_BEATS,
                             scale).size == 0
    with pytest.raises(ValueError, match="per joint angle"):
        motion_beat_times(real, ARM_BEATS, scale[:2])


def _click_track(times_s: np.ndarray, seconds: float, rate: int = 16000) -> np.ndarray:
    audio = np.zeros(int(seconds * rate), np.float32)
    burst = np.random.default_rng(5).normal(0, 0.5, 400).astype(np.float32) * np.hanning(400)
    for t in times_s:
        i = int(t * rate)
        audio[i : i + 400] += burst.astype(np.float32)
    return audio


def test_bc_is_high_on_onsets_and_low_when_shuffled() -> None:
    stops = np.cumsum(np.tile([8, 10], 7))[:-1]  # every 0.53 / 0.67 s, uneven
    audio = _click_track(stops / FPS, 8.4)
    on_beat = sequence_beat_consistency(_beat_motion(stops, 126), audio)
    off_beat = sequence_beat_consistency(_beat_motion(stops + 4, 126), audio)
    assert on_beat > 0.85
    assert off_beat < 0.2


def test_chance_bc_is_the_level_of_timing_free_beats() -> None:
    audio = np.arange(1.0, 19.0, 1.5)  # sparse onsets in a 20 s sequence
    aligned = audio + 0.02
    assert beat_consistency(audio, aligned) > 0.95
    assert chance_beat_consistency(audio, aligned, 20.0) < 0.5  # sparse: timing is what counts
    dense = np.arange(0.0, 20.0, 0.1)  # a beat every 0.1 s is near every onset, any shift
    assert chance_beat_consistency(audio, dense, 20.0) == pytest.approx(
        beat_consistency(audio, dense), abs=0.05)
    assert chance_beat_consistency(audio, aligned, 20.0) == chance_beat_consistency(
        audio, aligned, 20.0)  # deterministic
    with pytest.raises(ValueError, match="longer than 2 s"):
        chance_beat_consistency(audio, aligned, 1.5)
