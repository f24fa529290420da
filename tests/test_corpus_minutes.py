"""benchmarks.corpus_minutes: the corpus-size table refuses runs of different test sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import corpus_minutes


def _run_files(tmp_path: Path, probe_sequences: int) -> tuple[Path, Path, Path]:
    method = {"fgd": 2.0, "psd": 0.2, "diversity": 50.0, "detector_auc": 0.9, "lip_sync": 0.95}
    evaluation = {"sequences": 10, "methods": {
        "generator": method, "mean_pose": method | {"fgd": 8.0},
        "ground_truth": method | {"psd": 0.25, "diversity": 100.0}}}
    breakdown = {"sequences": 10, "lip_sync_training_voices": 0.96,
                 "lip_sync_held_out_voices": 0.9}
    groups = {g: {"sequences": probe_sequences, "lip_sync": 0.97}
              for g in ("all held-out", "held-out sentences", "held-out voices")}
    probe = {"name": "p", "rows": [{"features": f, "shuffle_audio": s, "groups": groups}
                                   for f in ("mfcc", "logmel") for s in (False, True)]}
    paths = tuple(tmp_path / n for n in ("evaluation.json", "breakdown.json", "probe.json"))
    for path, data in zip(paths, (evaluation, breakdown, probe), strict=True):
        path.write_text(json.dumps(data))
    return paths  # type: ignore[return-value]


def test_a_row_reads_ratios_to_the_runs_own_references(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus_minutes, "RUNS", {7: _run_files(tmp_path, 10)})
    assert corpus_minutes.row(7) == ["7", "10", "0.250", "0.80", "0.50", "0.900",
                                     "0.950 / 0.960 / 0.900", "0.970 / 0.970 / 0.970",
                                     "0.970 / 0.970 / 0.970"]


def test_a_probe_of_another_test_set_is_refused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus_minutes, "RUNS", {7: _run_files(tmp_path, 11)})
    with pytest.raises(ValueError, match=r"score \[10, 11\] sequences: not the same test set"):
        corpus_minutes.row(7)
