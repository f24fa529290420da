"""The acceptance on a recorded voice (benchmarks/recorded_voice.py): the prompts become the
sequences it says, its controls are what they claim, and the shipped bundle keeps sync on
that voice as the committed report says, each control caught."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from benchmarks import recorded_voice
from benchmarks.recorded_voice import (
    LATE_FRAMES,
    PROMPTS,
    SEQUENCES,
    controls,
    markdown,
    missing,
    passed,
    recorded_speech,
)

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "benchmarks" / "results" / "voices" / "recorded_voice.json"


def _fake_prompts(folder: Path, rate: int = 48000) -> list[int]:
    """One tone per prompt, each of another length; their lengths in samples at ``rate``."""
    lengths = []
    for i, name in enumerate(PROMPTS):
        n = rate + 480 * i
        t = np.arange(n) / rate
        sf.write(folder / f"{name}.wav", 0.3 * np.sin(2 * np.pi * 200 * t), rate)
        lengths.append(n)
    return lengths


def test_a_missing_prompt_names_it_and_the_package(tmp_path: Path) -> None:
    _fake_prompts(tmp_path)
    (tmp_path / "Rear_Left.wav").unlink()
    problem = missing(tmp_path)
    assert problem is not None and "Rear_Left.wav" in problem and "alsa-utils" in problem
    assert "Front_Left" not in problem
    with pytest.raises(FileNotFoundError, match="alsa-utils"):
        recorded_speech(16000, tmp_path)


def test_the_sequences_are_the_prompts_in_order_with_their_pauses(tmp_path: Path) -> None:
    lengths = _fake_prompts(tmp_path)
    audios = recorded_speech(16000, tmp_path)
    assert len(audios) == len(SEQUENCES)
    for audio, (order, pause_s) in zip(audios, SEQUENCES, strict=True):
        assert audio.dtype == np.float32
        expected = sum(lengths[i] // 3 + round(pause_s * 16000) for i in order)
        assert abs(len(audio) - expected) <= len(order)  # resampling rounds per prompt
        # the pause after the first prompt is silence, the prompt itself is not
        first = lengths[order[0]] // 3
        assert np.abs(audio[first + 8:first + round(pause_s * 16000) - 8]).max() == 0.0
        assert np.abs(audio[:first]).max() > 0.2


def test_the_controls_are_other_speech_and_the_same_speech_late() -> None:
    rng = np.random.default_rng(0)
    first, second = (rng.standard_normal(n).astype(np.float32) for n in (16000, 20000))
    checks = controls([first, second], 16000, 15.0)
    judged, motion = checks["other speech"]
    assert len(judged) == len(motion) == 16000
    assert np.array_equal(judged, first) and np.array_equal(motion, second[:16000])
    late, own = checks[f"audio {LATE_FRAMES} frames late"]
    delay = round(LATE_FRAMES * 16000 / 15.0)
    assert np.array_equal(own, first) and len(late) == len(first)
    assert np.array_equal(late[delay:], first[:-delay]) and not late[:delay].any()


def _report(row_ok: bool = True, caught: bool = True) -> dict[str, Any]:
    ok = {"psd": row_ok, "offset": True}
    row = {"condition": "clean", "gain_db": 0.0, "style": None, "psd": 0.2,
           "mean_pose_psd": 1.0, "best_offsets": [0, 0], "confidence": 0.8,
           "mouth_energy_r": 0.9, "mean_abs_z": 0.3, "largest_excursion": 0.1, "passed": ok}
    control = row | {"psd": 1.1, "best_offsets": [-3], "passed": {"psd": False},
                     "caught": caught}
    fault = row | {"fault": "mains_hum", "psd": 0.7, "passed": {"psd": False},
                   "deviation_z": 0.6}
    return {"rows": [row], "faults": [fault, {"fault": "mp3", "unavailable": "no MP3"}],
            "other_speech_deviation_z": 0.4,
            "controls": {"audio 3 frames late": control},
            "sequences": [{"prompts": list(PROMPTS), "pause_s": 0.25, "seconds": 13.4}],
            "bundle": "b", "sounds_dir": "/x", "machine": {"cpu_model": "cpu", "cpu_cores": 2},
            "load": "idle", "seconds": 1.0}


def test_the_verdict_needs_every_row_met_and_every_control_caught() -> None:
    assert passed(_report())
    assert not passed(_report(row_ok=False))
    assert not passed(_report(caught=False))  # a measure blind to a fault is no pass
    assert "| audio 3 frames late | 1.100 |" in markdown(_report())
    assert passed(_report()) and "| mains_hum | 0.700 |" in markdown(_report())  # not required
    assert "| mp3 | not run: no MP3 |" in markdown(_report())
    assert "NOT every row" in markdown(_report(caught=False))


def test_the_shipped_bundle_keeps_sync_on_the_recorded_voice() -> None:
    """Measured now, from the Debian package's prompts: every row meets issue 17's criteria,
    both controls miss one, and the committed report holds these numbers (a bundle changed
    without refreshing it fails here)."""
    problem = missing()
    if problem:
        pytest.skip(f"needs the recorded prompts (the README's test command installs "
                    f"alsa-utils): {problem}")
    report = recorded_voice.run(recorded_voice.DEFAULT_BUNDLE)
    assert passed(report), markdown(report | {"bundle": "b", "sounds_dir": "-", "seconds": 0,
                                              "machine": {"cpu_model": "-", "cpu_cores": 0},
                                              "load": "-"})
    late = report["controls"][f"audio {LATE_FRAMES} frames late"]
    assert late["best_offsets"] == [-LATE_FRAMES]  # the sweep finds the delay itself
    committed = json.loads(COMMITTED.read_text())
    assert committed["all_passed"]
    assert len(committed["rows"]) == len(report["rows"])
    for now, then in zip(report["rows"], committed["rows"], strict=True):
        assert (now["condition"], now["gain_db"], now["style"]) == (
            then["condition"], then["gain_db"], then["style"])
        for key in ("psd", "mean_pose_psd", "confidence", "mouth_energy_r"):
            assert now[key] == pytest.approx(then[key], abs=2e-3), (now["condition"], key)
    assert [f["fault"] for f in report["faults"]] == [f["fault"] for f in committed["faults"]]
    for now, then in zip(report["faults"], committed["faults"], strict=True):
        if "unavailable" not in now and "unavailable" not in then:
            assert now["psd"] == pytest.approx(then["psd"], abs=2e-3), now["fault"]


def test_the_telephone_row_keeps_the_voice_band_and_drops_what_lies_above_4_khz() -> None:
    from benchmarks.recording_conditions import telephone

    t = np.arange(16000) / 16000
    low, high = (np.sin(2 * np.pi * f * t).astype(np.float32) for f in (1000.0, 6000.0))
    kept, dropped = telephone(low, 16000), telephone(high, 16000)
    assert kept.dtype == np.float32 and len(kept) == len(dropped) == 16000
    middle = slice(1000, 15000)  # away from the resampler's edges
    assert np.sqrt(np.mean(kept[middle] ** 2)) == pytest.approx(np.sqrt(0.5), rel=0.02)
    assert np.sqrt(np.mean(dropped[middle] ** 2)) < 1e-3


def test_the_readmes_fault_claims_hold_in_the_committed_report() -> None:
    """README, below the faults table: with the shipped bundle every fault but the quietest
    keeps sync, and that one misses the confidence alone, its PSD within the limit. The
    bundle before it lost sync with DC offset and hum on gated audio, not over the noise
    floor; both its models were moved (the poses further than other speech moves them,
    the judge's mean-pose PSD fell)."""
    from benchmarks.doc_sources import load
    from benchmarks.voices_acceptance import PSD_MAX

    def missed(report: dict[str, Any]) -> dict[str, set[str]]:
        return {f["fault"]: {k for k, ok in f["passed"].items() if not ok}
                for f in report["faults"] if "unavailable" not in f}

    shipped = json.loads(COMMITTED.read_text())
    now = missed(shipped)
    assert {k: m for k, m in now.items() if m} == {"quiet_-30db": {"confidence"}}
    quiet = next(f for f in shipped["faults"] if f["fault"] == "quiet_-30db")
    assert quiet["psd"] <= PSD_MAX
    before = load("recorded_random_level")
    then = missed(before)
    faults = {f["fault"]: f for f in before["faults"] if "unavailable" not in f}
    clean = next(r for r in before["rows"] if r["condition"] == "clean" and r["gain_db"] == 0.0)
    for name in ("dc_offset", "mains_hum"):
        assert "psd" in then[name], name
        assert then[name + "_over_floor"] == set(), name
        assert faults[name]["deviation_z"] > before["other_speech_deviation_z"], name
        assert faults[name]["mean_pose_psd"] < 0.9 * clean["mean_pose_psd"], name


def test_the_readmes_line_noise_claims_hold_in_the_committed_results() -> None:
    """README, below the line-noise table: with hum and DC in the augmentation (the shipped
    bundle) they move the poses about half as far as other speech, every fault but the
    quietest keeps sync, and the test split's ratios and the held-out voices are where the
    bundle before it (random level only) had them."""
    from benchmarks.doc_sources import load

    shipped = load("voices_recorded")
    faults = {f["fault"]: f for f in shipped["faults"] if "unavailable" not in f}
    other = shipped["other_speech_deviation_z"]
    before = load("recorded_random_level")
    before_faults = {f["fault"]: f for f in before["faults"] if "unavailable" not in f}
    for name in ("dc_offset", "mains_hum"):
        assert 0.35 < faults[name]["deviation_z"] / other < 0.65, name
        assert before_faults[name]["deviation_z"] > before["other_speech_deviation_z"], name
    assert {k for k, f in faults.items() if not all(f["passed"].values())} == {"quiet_-30db"}
    assert all(all(r["passed"].values()) for r in shipped["rows"])
    assert all(all(r["passed"].values()) for r in load("voices_acceptance")["rows"].values())
    new, old = (load(s)["methods"] for s in ("evaluation", "evaluation_random_level"))
    for key, reference, tolerance in (("fgd", "mean_pose", 0.01), ("psd", "ground_truth", 0.02),
                                      ("diversity", "ground_truth", 0.02)):
        assert new["generator"][key] / new[reference][key] == pytest.approx(
            old["generator"][key] / old[reference][key], abs=tolerance), key
    for key in ("lip_sync", "detector_auc"):
        assert new["generator"][key] >= old["generator"][key] - 0.002, key
