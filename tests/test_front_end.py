"""benchmarks.front_end: the front-end table reads each run against its own references and
its probe on the same features, and refuses files of different test sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_corpus_minutes import _run_files

from benchmarks import front_end


def test_a_row_reads_the_run_and_the_probe_of_its_own_features(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluation, breakdown, probe = _run_files(tmp_path, 10)
    monkeypatch.setattr(front_end, "RUNS", {"x": ("7 x 40", evaluation, breakdown, probe,
                                                  "logmel")})
    assert front_end.row("x") == ["x", "7 x 40", "0.250", "0.80", "0.50", "0.900",
                                  "0.950 / 0.960 / 0.900", "0.970 / 0.970 / 0.970"]
    monkeypatch.setattr(front_end, "RUNS", {"x": ("7 x 40", evaluation, breakdown, probe,
                                                  "mfcc40")})
    with pytest.raises(ValueError, match="no mfcc40 row"):  # the probe of other features
        front_end.row("x")


def test_a_probe_of_another_test_set_is_refused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    evaluation, breakdown, probe = _run_files(tmp_path, 11)
    monkeypatch.setattr(front_end, "RUNS", {"x": ("7 x 13", evaluation, breakdown, probe,
                                                  "mfcc")})
    with pytest.raises(ValueError, match=r"x: .* score \[10, 11\] sequences"):
        front_end.row("x")


def test_the_readmes_front_end_claims_hold_in_the_committed_results() -> None:
    """README, above the front-end table: 40 MFCCs lose on the probe and the generator; the
    log-mel bands lift the generator's lip sync (most for the held-out voices) and its
    detector, with FGD above the shipped bundle's."""
    rows = {name: front_end.row(name) for name in front_end.RUNS}
    shipped, mfcc40, logmel = (rows[n] for n in ("13 MFCCs (shipped)", "40 MFCCs",
                                                 "40 log-mel bands"))

    def lips(row: list[str], column: int) -> list[float]:
        return [float(v) for v in row[column].split(" / ")]

    generator, probe = 6, 7  # columns: generator lip-sync r, probe
    assert all(a < b for a, b in zip(lips(mfcc40, probe), lips(shipped, probe), strict=True))
    assert all(a < b for a, b in zip(lips(mfcc40, generator), lips(shipped, generator),
                                     strict=True))
    gains = [a - b for a, b in zip(lips(logmel, generator), lips(shipped, generator),
                                   strict=True)]  # all, training voices, held-out voices
    assert min(gains) > 0 and gains[2] == max(gains)
    assert float(logmel[5]) > float(shipped[5])  # detector AUC
    assert float(logmel[2]) > float(shipped[2])  # FGD / mean pose's
