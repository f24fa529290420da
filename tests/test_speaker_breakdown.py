"""benchmarks.speaker_breakdown: lip sync per speaker, held-out voices marked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_training import TinyRun, make_tiny_run

from benchmarks import speaker_breakdown
from benchmarks.lip_sync_ceiling import min_frames
from train.evaluation import load_held_out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


def test_rows_per_speaker_with_the_voice_held_out_flag_and_ceiling(tiny: TinyRun,
                                                                   tmp_path: Path) -> None:
    n = len(load_held_out(tiny.corpus, min_frames()))
    ceiling = tmp_path / "ceiling.json"
    ceiling.write_text(json.dumps({"sequences": n, "per_speaker": {"synth_00": 0.99}}))
    assert speaker_breakdown.main([str(tiny.generator), "--data", str(tiny.corpus), "--out",
                                   str(tmp_path), "--ceiling", str(ceiling)]) == 0
    result = json.loads((tmp_path / "speaker_breakdown.json").read_text())
    row = result["speakers"]["synth_00"]
    assert result["sequences"] == row["sequences"] == n
    assert row["held_out_voice"] is None  # the synthetic corpus names no held-out voice
    assert -1.0 <= row["lip_sync"] <= 1.0 and row["l1"] > 0
    assert row["share_of_ceiling"] == pytest.approx(row["lip_sync"] / 0.99)
    assert result["lip_sync_all"] == pytest.approx(row["lip_sync"])
    assert result["lip_sync_held_out_voices"] is None
    assert "| synth_00 | - |" in (tmp_path / "speaker_breakdown.md").read_text()


def test_a_held_out_voice_is_marked_and_pooled_apart(tiny: TinyRun, tmp_path: Path) -> None:
    profile = tiny.corpus / "synth_00" / "synth_speaker.json"
    saved = profile.read_text()
    try:
        profile.write_text(json.dumps(json.loads(saved) | {"held_out": True}))
        result = speaker_breakdown.breakdown(tiny.generator, tiny.corpus, None)
    finally:
        profile.write_text(saved)
    assert result["speakers"]["synth_00"]["held_out_voice"] is True
    assert result["lip_sync_held_out_voices"] == pytest.approx(result["lip_sync_all"])
    assert result["lip_sync_training_voices"] is None


def test_a_ceiling_of_another_test_set_is_refused(tiny: TinyRun) -> None:
    with pytest.raises(ValueError, match="not the same test set"):
        speaker_breakdown.breakdown(tiny.generator, tiny.corpus,
                                    {"sequences": 10_000, "per_speaker": {}})
