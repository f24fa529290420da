"""Ten minutes through one stream (benchmarks/long_stream.py): the talk is what it says, a
shorter talk is the longer one's beginning, and the shipped bundle's first minute, streamed
in 20 ms chunks, is the committed one and equals one offline pass."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import long_stream
from benchmarks.long_stream import PAUSE_S, SILENCE_AT_S, SILENCE_S, assemble, body_speed

RATE = 1000  # small arrays: the assembly does not care about the rate
COMMITTED = (Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "voices"
             / "long_stream.json")


def _speech() -> dict[str, np.ndarray]:
    return {name: np.full(RATE * seconds, 0.5, np.float32)
            for name, seconds in (("a", 5), ("b", 9), ("c", 13))}


def test_the_talk_has_its_length_its_silence_and_its_pauses() -> None:
    audio, said, (first, end) = assemble(_speech(), RATE, 600.0)
    assert audio.dtype == np.float32 and len(audio) == 600 * RATE
    assert (first, end) == (SILENCE_AT_S * RATE, (SILENCE_AT_S + SILENCE_S) * RATE)
    assert not audio[first:end].any() and audio[end:end + 60 * RATE].any()
    starts = [start for _, start in said]
    assert starts == sorted(starts) and {name for name, _ in said} == {"a", "b", "c"}
    for (name, start), (_, following) in itertools.pairwise(said):
        if start * RATE < first <= following * RATE:
            continue  # cut by the silence
        gap = following - start - len(_speech()[name]) / RATE
        assert PAUSE_S[0] - 1e-3 <= gap <= PAUSE_S[1] + 1e-3


def test_a_shorter_talk_is_the_longer_ones_beginning() -> None:
    long, _, _ = assemble(_speech(), RATE, 600.0)
    short, _, _ = assemble(_speech(), RATE, 120.0)
    assert np.array_equal(short, long[:len(short)])


def test_body_speed_is_the_mean_joint_displacement_per_frame() -> None:
    poses = np.zeros((3, 4, 2), np.float32)
    poses[1, :2] = [3.0, 4.0]  # joints 0 and 1 move by 5, then back
    assert np.allclose(body_speed(poses, np.array([0, 1])), [5.0, 5.0])
    assert np.allclose(body_speed(poses, np.array([2, 3])), [0.0, 0.0])


def test_the_shipped_bundle_streams_its_first_minute_as_committed() -> None:
    from benchmarks.languages_never_heard import missing
    from benchmarks.recorded_voice import missing as prompts_missing

    problem = missing() or prompts_missing()
    if problem:
        pytest.skip(f"needs espeak-ng and alsa-utils (the README's test command installs "
                    f"them): {problem}")
    report = long_stream.run(long_stream.DEFAULT_BUNDLE, minutes=1, chunk_ms=20.0)
    assert report["max_px_vs_offline"] < 1e-3  # chunk invariance over the streamed minute
    (minute,) = report["minutes"]
    assert all(minute["passed"].values())
    then = json.loads(COMMITTED.read_text())["minutes"][0]
    for key in ("psd", "mean_pose_psd", "confidence", "mouth_energy_r", "mean_abs_z"):
        assert minute[key] == pytest.approx(then[key], abs=2e-3), key
