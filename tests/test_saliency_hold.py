"""The saliency-hold sweep (benchmarks/saliency_hold.py): the running maximum and the AUC
it scores, on a detector that fades before its posture ends."""

from __future__ import annotations

import numpy as np

from benchmarks.saliency_hold import pooled_auc, running_max


def test_running_max_is_causal_and_equals_the_window_maximum() -> None:
    scores = np.random.default_rng(0).random(50)
    for hold in (0, 1, 4):
        want = [scores[max(0, t - hold):t + 1].max() for t in range(scores.size)]
        np.testing.assert_array_equal(running_max(scores, hold), want)
    bumped = scores.copy()
    bumped[30] = 5.0  # a later score never reaches back
    np.testing.assert_array_equal(running_max(bumped, 4)[:30], running_max(scores, 4)[:30])


def test_a_hold_recovers_the_tail_a_fading_detector_misses() -> None:
    """Postures of 24 frames; the detector fires on their first 16 frames only, with noise:
    holding its score over 8 frames covers the tail, and a hold far longer than the tail
    spills onto the frames after the posture and loses again."""
    rng = np.random.default_rng(1)
    labels, scores = [], []
    for _ in range(20):
        y = np.zeros(100)
        y[40:64] = 1
        s = 0.3 * rng.random(100)
        s[40:56] += 0.7
        labels.append(y)
        scores.append(s)
    raw, tail, too_long = (pooled_auc(scores, labels, h) for h in (0, 8, 40))
    assert raw < 0.9 < tail
    assert too_long < tail
