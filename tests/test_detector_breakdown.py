"""benchmarks/detector_breakdown.py: grouped AUCs and posture geometry on hand-made frames."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.detector_breakdown import frame_profile, grouped_auc, posture_geometry


def test_posture_geometry_positions_and_distances() -> None:
    labels = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1, 0], np.float32)
    position, distance = posture_geometry(labels)
    np.testing.assert_array_equal(position, [-1, -1, 0, 1, 2, -1, -1, -1, 0, -1])
    np.testing.assert_array_equal(distance, [-2, -1, 0, 0, 0, 1, 2, -1, 0, 1])


def test_grouped_auc_separates_a_good_group_from_a_broken_one() -> None:
    rng = np.random.default_rng(0)
    labels = [(rng.random(200) < 0.2).astype(np.float32) for _ in range(4)]
    good = [y + 0.1 * rng.random(200) for y in labels[:2]]
    shifted = [np.roll(y, 7) + 0.1 * rng.random(200) for y in labels[2:]]  # broken timing
    out = grouped_auc(good + shifted, labels, ["good", "good", "late", "late"])
    assert out["good"]["auc"] == pytest.approx(1.0)
    assert out["late"]["auc"] < 0.7 and out["late"]["sequences"] == 2
    assert np.isnan(grouped_auc([np.ones(5)], [np.zeros(5)], ["none"])["none"]["auc"])


def test_frame_profile_sees_a_detector_that_stops_early() -> None:
    labels = np.zeros(100, np.float32)
    labels[20:44] = 1.0  # a 24-frame posture
    early = labels.copy()
    early[36:44] = 0.0  # scores drop after 16 frames
    profile = frame_profile([early], [labels])
    assert profile["inside_postures"]["8-16"]["mean_score"] == 1.0
    assert profile["inside_postures"]["16-24"]["mean_score"] == 0.0
    assert profile["negatives_above_half"] == 0.0
