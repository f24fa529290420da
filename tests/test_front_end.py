"""benchmarks.front_end: the front-end table reads each run against its own references and
its probe on the same features, and refuses files of different test sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_corpus_minutes import _run_files

from benchmarks import front_end


def _voices(directory: Path, failing: dict[str, int]) -> Path:
    """acceptance[_CONDITION].json for every condition: two audios, ``failing[condition]``
    of them missing a criterion."""
    directory.mkdir()
    for condition in front_end.CONDITIONS:
        rows = {a: {"passed": {"psd": True, "training_range": i >= failing.get(condition, 0)}}
                for i, a in enumerate(("voice-a", "sample:s.flac"))}
        name = "acceptance.json" if condition == "clean" else f"acceptance_{condition}.json"
        (directory / name).write_text(json.dumps({"condition": condition, "rows": rows}))
    return directory


def _run(tmp_path: Path, probe_sequences: int, kind: str) -> front_end.FrontEndRun:
    evaluation, breakdown, probe = _run_files(tmp_path, probe_sequences)
    voices = _voices(tmp_path / "voices", {"noise_15db": 1, "reverb_1.2s": 2})
    return front_end.FrontEndRun("7 x 40", evaluation, breakdown, probe, kind, voices)


def test_a_row_reads_the_run_and_the_probe_of_its_own_features(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path, 10, "logmel")
    monkeypatch.setattr(front_end, "RUNS", {"x": run})
    assert front_end.row("x") == ["x", "7 x 40", "0.250", "0.80", "0.50", "0.900",
                                  "0.950 / 0.960 / 0.900", "0.970 / 0.970 / 0.970",
                                  "2 / 1 / 2 / 0 of 2", "training_range"]
    monkeypatch.setitem(front_end.RUNS, "x", front_end.FrontEndRun(
        run.values, run.evaluation, run.breakdown, run.probe, "mfcc40", run.voices))
    with pytest.raises(ValueError, match="no mfcc40 row"):  # the probe of other features
        front_end.row("x")


def test_a_probe_of_another_test_set_is_refused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(front_end, "RUNS", {"x": _run(tmp_path, 11, "mfcc")})
    with pytest.raises(ValueError, match=r"x: .* score \[10, 11\] sequences"):
        front_end.row("x")


def test_voices_results_of_another_condition_or_other_audios_are_refused(
        tmp_path: Path) -> None:
    voices = _voices(tmp_path / "voices", {})
    room = voices / "acceptance_reverb_0.5s.json"
    result = json.loads(room.read_text())
    room.write_text(json.dumps(result | {"condition": "clean"}))  # a clean run, misfiled
    with pytest.raises(ValueError, match=r"condition 'clean', expected 'reverb_0\.5s'"):
        front_end.voices_cells(voices)
    del result["rows"]["voice-a"]  # the room scored one audio fewer
    room.write_text(json.dumps(result))
    with pytest.raises(ValueError, match="the conditions scored different audios"):
        front_end.voices_cells(voices)


def test_the_readmes_front_end_claims_hold_in_the_committed_results() -> None:
    """README, above the front-end table: 40 MFCCs lose on the probe and the generator; on
    each seed the log-mel bands lift the generator's lip sync (most for the held-out voices)
    and its detector, meet every sync criterion of issue 17 in every recording condition
    (missing only the training range) where the shipped bundle misses one, and leave FGD
    above the shipped bundle's; with the spread loss they pass its FGD and diversity and
    keep the lip and detector gains, but one seed misses the training range on clean
    speech."""
    rows = {name: front_end.row(name) for name in front_end.RUNS}
    shipped, mfcc40 = rows[front_end.BASELINE], rows["40 MFCCs"]
    logmel = [row for name, row in rows.items()
              if name.startswith("40 log-mel bands") and "spread" not in name]
    spread = [row for name, row in rows.items() if "spread_weight" in name]
    assert len(logmel) == 3 and len(spread) == 2

    def lips(row: list[str], column: int) -> list[float]:
        return [float(v) for v in row[column].split(" / ")]

    generator, probe = 6, 7  # columns: generator lip-sync r, probe
    assert all(a < b for a, b in zip(lips(mfcc40, probe), lips(shipped, probe), strict=True))
    assert all(a < b for a, b in zip(lips(mfcc40, generator), lips(shipped, generator),
                                     strict=True))
    assert shipped[9] not in ("-", "training_range")  # a sync criterion missed somewhere
    for row in logmel:
        gains = [a - b for a, b in zip(lips(row, generator), lips(shipped, generator),
                                       strict=True)]  # all, training voices, held-out voices
        assert min(gains) > 0 and gains[2] == max(gains)
        assert float(row[5]) > float(shipped[5])  # detector AUC
        assert float(row[2]) > float(shipped[2])  # FGD / mean pose's
        assert row[9] in ("-", "training_range")  # every sync criterion met everywhere
    # with the spread loss: FGD and diversity past the shipped bundle's, lip sync and the
    # detector still above it; one seed's poses leave the training range on clean speech
    for row in spread:
        assert float(row[2]) < float(shipped[2]) and float(row[4]) > float(shipped[4])
        assert lips(row, generator)[0] > lips(shipped, generator)[0]
        assert float(row[5]) > float(shipped[5])
    assert any(int(row[8].split(" / ")[0]) < int(row[8].split(" of ")[1]) for row in spread)



def test_the_engine_never_heard_is_left_out_of_the_comparison(tmp_path: Path) -> None:
    """Only the shipped bundle's report scores festival's voices: the cells compare the
    audios every run scored, so a failing festival row changes nothing here."""
    voices = _voices(tmp_path / "voices", {"noise_15db": 1})
    before = front_end.voices_cells(voices)
    for path in voices.glob("acceptance*.json"):
        result = json.loads(path.read_text())
        result["rows"]["festival-ked"] = {"passed": {"psd": False},
                                          "voice": {"held_out": "engine never heard"}}
        path.write_text(json.dumps(result))
    assert front_end.voices_cells(voices) == before == ["2 / 1 / 2 / 2 of 2", "training_range"]
