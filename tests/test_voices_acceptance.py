"""Issue 17's acceptance measure (benchmarks/voices_acceptance.py): each criterion fails on
the input it exists to catch, and the whole measure runs on a bundle through the SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.voices_acceptance import CRITERIA, score_sequences, verdict
from sdk.audio import load_audio
from sdk.streaming import StreamingGenerator
from tests.helpers_bundle import tiny_bundle  # noqa: F401  (fixture)

SAMPLE = Path(__file__).resolve().parents[1] / "sdk" / "data" / "samples" / "speech_en.flac"

GOOD: dict[str, Any] = {"psd": 0.3, "mean_pose_psd": 1.0, "best_offsets": [0, 1, -1],
                        "confidence": 0.5, "mouth_energy_r": 0.8, "mean_abs_z": 0.4,
                        "beyond_4sd": 0.0}
# one fault per criterion, each a value the criterion must refuse
BROKEN: dict[str, dict[str, Any]] = {
    "psd": {"psd": 0.55, "mean_pose_psd": 2.0},
    "psd_vs_mean_pose": {"psd": 0.45, "mean_pose_psd": 0.8},  # a judge blind to sync
    "offset": {"best_offsets": [0, 2]},  # poses two frames late on one sequence
    "confidence": {"confidence": 0.29},
    "mouth": {"mouth_energy_r": 0.1},  # a mouth that ignores the voice
    "training_range": {"beyond_4sd": 0.02},  # a skeleton far outside its training poses
}


def test_a_good_row_passes_every_criterion() -> None:
    assert set(verdict(GOOD)) == set(CRITERIA) and all(verdict(GOOD).values())


@pytest.mark.parametrize("criterion", CRITERIA)
def test_each_criterion_fails_on_its_own_fault(criterion: str) -> None:
    result = verdict(GOOD | BROKEN[criterion])
    assert [k for k, ok in result.items() if not ok] == [criterion]


def test_the_measure_runs_a_bundle_through_the_sdk(tiny_bundle: Path) -> None:  # noqa: F811
    """Random weights (numbers meaningless): every measure is there and finite."""
    with StreamingGenerator(str(tiny_bundle)) as generator:
        audio = load_audio(SAMPLE, generator.manifest.features.sample_rate)[:16000 * 6]
        row = score_sequences(generator, [audio], None)
    assert row["sequences"] == 1 and abs(row["seconds"] - 6.0) < 1e-6
    assert np.isfinite([row["psd"], row["mean_pose_psd"], row["confidence"]]).all()
    assert set(row["passed"]) == set(CRITERIA)
    json.dumps(row)  # the report is JSON
