"""The detector experiments' table (benchmarks/detector_variants.py) is its JSON files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import detector_variants


def test_committed_table_is_the_json_files() -> None:
    assert detector_variants.main(["--check"]) == 0


def test_a_changed_result_makes_the_table_stale(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "labels"
    shutil.copytree(detector_variants.DIR, copy)
    monkeypatch.setattr(detector_variants, "DIR", copy)
    path = copy / "breakdown" / "complete_labels.json"
    report = json.loads(path.read_text())
    report["pooled_auc"] = 0.5
    path.write_text(json.dumps(report))
    assert detector_variants.main(["--check"]) == 1
    assert detector_variants.main([]) == 0
    assert "| complete_labels | `data.detector_label=complete` | 0.500 |" in (
        copy / "README.md").read_text()
