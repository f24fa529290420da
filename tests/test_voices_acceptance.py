"""Issue 17's acceptance measure (benchmarks/voices_acceptance.py): each criterion fails on
the input it exists to catch, and the whole measure runs on a bundle through the SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.voices_acceptance import CRITERIA, EXCURSION_MAX_SD, score_sequences, verdict
from sdk.audio import load_audio
from sdk.pose_range import PoseRange
from sdk.skeleton import MODEL_SKELETON
from sdk.streaming import StreamingGenerator
from tests.helpers_bundle import tiny_bundle  # noqa: F401  (fixture)

SAMPLE = Path(__file__).resolve().parents[1] / "sdk" / "data" / "samples" / "speech_en.flac"

GOOD: dict[str, Any] = {"psd": 0.3, "mean_pose_psd": 1.0, "best_offsets": [0, 1, -1],
                        "confidence": 0.5, "mouth_energy_r": 0.8, "mean_abs_z": 0.4,
                        "beyond_4sd": 0.0, "outside_training_range": 0.0003,
                        "largest_excursion": 0.15}
# one fault per criterion, each a value the criterion must refuse
BROKEN: dict[str, dict[str, Any]] = {
    "psd": {"psd": 0.55, "mean_pose_psd": 2.0},
    "psd_vs_mean_pose": {"psd": 0.45, "mean_pose_psd": 0.8},  # a judge blind to sync
    "offset": {"best_offsets": [0, 2]},  # poses two frames late on one sequence
    "confidence": {"confidence": 0.29},
    "mouth": {"mouth_energy_r": 0.1},  # a mouth that ignores the voice
    # festival's male voice on the bundle trained without a random level: 0.99 SD past
    "training_range": {"largest_excursion": 0.99, "outside_training_range": 0.0017},
}


def test_a_good_row_passes_every_criterion() -> None:
    assert set(verdict(GOOD)) == set(CRITERIA) and all(verdict(GOOD).values())


@pytest.mark.parametrize("criterion", CRITERIA)
def test_each_criterion_fails_on_its_own_fault(criterion: str) -> None:
    result = verdict(GOOD | BROKEN[criterion])
    assert [k for k, ok in result.items() if not ok] == [criterion]


def test_training_range_limits_excursion_and_size_not_the_4sd_share() -> None:
    """Training poses put 2.1 % of their values beyond 4 SD: a model moving as far as they do
    passes; one wandering past their range, or moving much more on average, does not."""
    assert verdict(GOOD | {"beyond_4sd": 0.021})["training_range"]
    assert verdict(GOOD | {"largest_excursion": EXCURSION_MAX_SD})["training_range"]
    assert not verdict(GOOD | {"largest_excursion": EXCURSION_MAX_SD + 0.01})["training_range"]
    assert not verdict(GOOD | {"mean_abs_z": 1.2})["training_range"]  # everything larger


def test_the_measure_runs_a_bundle_through_the_sdk(tiny_bundle: Path) -> None:  # noqa: F811
    """Random weights (numbers meaningless): every measure is there and finite."""
    with StreamingGenerator(str(tiny_bundle)) as generator:
        audio = load_audio(SAMPLE, generator.manifest.features.sample_rate)[:16000 * 6]
        poses = np.random.default_rng(0).normal(size=(200, MODEL_SKELETON.num_joints, 2))
        training = PoseRange.from_poses([poses], MODEL_SKELETON)
        row = score_sequences(generator, [audio], None, training)
    assert row["sequences"] == 1 and abs(row["seconds"] - 6.0) < 1e-6
    assert np.isfinite([row["psd"], row["mean_pose_psd"], row["confidence"],
                        row["outside_training_range"], row["largest_excursion"]]).all()
    assert set(row["passed"]) == set(CRITERIA)
    json.dumps(row)  # the report is JSON


def test_the_report_names_its_training_range_references() -> None:
    from benchmarks.voices_acceptance import markdown

    row = GOOD | {"sequences": 1, "seconds": 6.0, "style": None, "passed": verdict(GOOD)}
    report = {"rows": {"v": row}, "bundle": "b", "corpus": "c", "sample": "s.flac",
              "machine": {"cpu_model": "cpu", "cpu_cores": 2}, "load": "idle", "seconds": 1.0,
              "training_poses": {"frames": 700.0, "mean_abs_z": 0.55, "beyond_4sd": 0.021},
              "held_out_poses": {"outside_training_range": 5e-5, "largest_excursion": 0.26}}
    text = markdown(report)
    assert "mean |z| 0.55, 2.10 % of values beyond 4 SD" in text
    assert "at most 0.26 SD past it" in text and "| 0.15 | pass |" in text
    assert "no held-out clips" in markdown(report | {"held_out_poses": None})


def test_the_shipped_bundle_carries_the_range_its_acceptance_was_judged_by() -> None:
    """The range export wrote into the shipped manifest (from the corpus, at export) is the
    one every committed acceptance report of that bundle measured from the corpus at
    evaluation time; and the demo's pose-range line in the README (the bundle's own range,
    SDK only) repeats the report's numbers for the sample."""
    import re

    from sdk.bundle import load_bundle

    repo = Path(__file__).resolve().parents[1]
    carried = load_bundle(repo / "sdk" / "data" / "default_bundle").manifest.pose_range
    assert carried is not None, "the shipped bundle was exported without --corpus"
    reports = [p for p in (repo / "benchmarks" / "results" / "voices").glob("acceptance*.json")
               if "synthetic_voice" not in p.name]
    assert len(reports) >= 6
    for path in reports:
        assert json.loads(path.read_text())["training_poses"] == carried.summary(), path.name
    clean = json.loads((repo / "benchmarks" / "results" / "voices" / "acceptance.json")
                       .read_text())
    (sample,) = [r for k, r in clean["rows"].items() if k.startswith("sample:")]
    readme = (repo / "README.md").read_text()
    found = re.search(r"pose range: ([0-9.]+)% of body/hand values outside .*? farthest "
                      r"([0-9.]+) SD past", readme)
    assert found, "the README's demo output has no pose-range line"
    assert float(found[1]) == pytest.approx(100 * sample["outside_training_range"], abs=5e-4)
    assert float(found[2]) == pytest.approx(sample["largest_excursion"], abs=5e-4)
