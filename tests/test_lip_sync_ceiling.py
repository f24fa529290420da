"""benchmarks.lip_sync_ceiling: the lip-sync r of the lips that drove a corpus's keypoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks import lip_sync_ceiling as ceiling
from train.data.sdt import read_index
from train.data.synth import synthesize_corpus


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-minute synthetic corpus rendered with and without jitter (the CLI's run)."""
    work = tmp_path_factory.mktemp("ceiling")
    assert ceiling.main(["--name", "tiny", "--minutes", "1", "--work", str(work / "renders"),
                         "--results", str(work / "results")]) == 0
    return work


def test_the_ceiling_is_below_one_and_the_late_control_far_below(renders: Path) -> None:
    result = json.loads((renders / "results" / "tiny.json").read_text())
    assert result["sequences"] >= 1 and result["min_frames"] == ceiling.min_frames()
    assert 0.9 < result["lip_sync_ceiling"] < 1.0  # the jitter costs r, and only a little
    assert result["one_frame_late_control"] < result["lip_sync_ceiling"] - 0.1
    assert 0.0 < result["max_pose_difference_in_noise_px"] <= ceiling.JITTER_SIGMAS
    assert "lip-sync r ceiling" in (renders / "results" / "tiny.md").read_text()


def test_a_corpus_without_jitter_has_a_ceiling_of_one(renders: Path) -> None:
    clean = renders / "renders" / "clean"
    result = ceiling.measure(clean, clean, ceiling.min_frames())
    assert result["lip_sync_ceiling"] == pytest.approx(1.0, abs=1e-9)


def test_renders_with_other_audio_are_refused(renders: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synthesize_corpus(other, 1, 1.0, seed=1, keypoint_jitter=False)  # another corpus
    with pytest.raises(RuntimeError, match="audio differ"):
        ceiling.measure(renders / "renders" / "jittered", other, ceiling.min_frames())


def test_renders_that_differ_by_more_than_jitter_are_refused(renders: Path,
                                                             tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(renders / "renders" / "clean", moved)
    speaker = next(p.parent for p in moved.glob("*/processed_137.csv"))
    clip = speaker / read_index(speaker)[0].pose_fn
    with np.load(clip) as data:
        arrays = dict(data)
    arrays["pose"][:, 0, 40] += 10.0  # one keypoint moved by 10 px: a motion, not jitter
    np.savez(clip, **arrays)
    with pytest.raises(RuntimeError, match="more than the jitter"):
        ceiling.measure(renders / "renders" / "jittered", moved, ceiling.min_frames())


def test_a_generator_evaluated_on_another_test_set_is_refused(renders: Path,
                                                              tmp_path: Path) -> None:
    result = json.loads((renders / "results" / "tiny.json").read_text())
    report = {"sequences": result["sequences"] + 1,
              "methods": {"generator": {"lip_sync": 0.9}}}
    (tmp_path / "evaluation.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="not the same test set"):
        ceiling.generator_share(result, tmp_path / "evaluation.json")
    report["sequences"] = result["sequences"]
    (tmp_path / "evaluation.json").write_text(json.dumps(report))
    share = ceiling.generator_share(result, tmp_path / "evaluation.json")
    assert share["share_of_ceiling"] == pytest.approx(0.9 / result["lip_sync_ceiling"])
