"""festival as the engine no model hears (train/data/festival.py): it renders held-out
phrases with the pauses asked for, deterministically, and a missing voice is refused by
name before any work (also by benchmarks.voices_acceptance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from train.data import festival

RATE = 16000


def _installed(voice: festival.FestivalVoice) -> None:
    problem = festival.missing(voice)
    if problem:
        pytest.skip(f"needs festival and its voice (the README's test command installs them "
                    f"through `make debs`): {problem}")


def test_voice_names_are_checked() -> None:
    assert [v.name for v in festival.select("all")] == [v.name for v in festival.VOICES]
    assert [v.name for v in festival.select("festival-slt-hts")] == ["festival-slt-hts"]
    with pytest.raises(ValueError, match=r"no festival voice 'festival-kal'.*festival-ked"):
        festival.select("festival-kal")
    with pytest.raises(ValueError, match="no festival voice named"):
        festival.select(" , ")


def test_a_voice_that_is_not_installed_names_its_package(tmp_path: Path) -> None:
    absent = festival.FestivalVoice("festival-x", "(voice_x)", "festvox-x",
                                    str(tmp_path / "x"), "male", "none")
    problem = festival.missing(absent)
    assert problem is not None and "festvox-x" in problem
    with pytest.raises(festival.FestivalUnavailable, match="festvox-x"):
        festival.synthesize(absent, ["hello"], RATE)


@pytest.mark.parametrize("voice", festival.VOICES, ids=lambda v: v.name)
def test_each_voice_speaks_held_out_phrases_with_pauses(voice: festival.FestivalVoice) -> None:
    _installed(voice)
    first = festival.held_out_speech(voice, sequences=2, seconds=4.0, rate=RATE, seed=3)
    assert len(first) == 2
    for audio in first:
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 4.0 <= len(audio) / RATE < 12.0  # whole phrases, at least the length asked
        frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)  # 10 ms frames
        rms_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
        assert rms_db.max() > -30  # speech
        assert (rms_db < rms_db.max() - 50).mean() > 0.05  # and the pauses between phrases
    again = festival.held_out_speech(voice, sequences=2, seconds=4.0, rate=RATE, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other = festival.held_out_speech(voice, sequences=1, seconds=4.0, rate=RATE, seed=4)
    assert not np.array_equal(first[0][: len(other[0])], other[0][: len(first[0])])


def test_text_with_quotes_reaches_festival_intact() -> None:
    voice = festival.VOICES[0]
    _installed(voice)
    plain, quoted, slashed = festival.synthesize(
        voice, ["she said hello", 'she said "hello"', "she said hello \\"], RATE)
    assert abs(len(plain) - len(quoted)) < 0.1 * len(plain)  # the same words were spoken
    assert len(slashed) > len(plain)  # festival reads the backslash out: it arrived


def test_the_acceptance_refuses_a_missing_engine_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import voices_acceptance

    monkeypatch.setattr(festival, "missing", lambda voice: f"{voice.name} is not installed")
    with pytest.raises(ValueError, match=r"festival-ked is not installed.*"
                                         r"--engine-never-heard none"):
        # the corpus does not exist: the refusal comes first
        voices_acceptance.run(tmp_path / "bundle", tmp_path / "no-corpus", tmp_path / "x.flac")
    with pytest.raises(ValueError, match="no festival voice 'espeak-en-us-f4'"):
        voices_acceptance.run(tmp_path / "bundle", tmp_path / "no-corpus", tmp_path / "x.flac",
                              engine_voices="espeak-en-us-f4")
