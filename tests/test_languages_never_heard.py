"""Languages no model heard (benchmarks/languages_never_heard.py): the rows are languages the
corpus does not speak, each is rendered in its own language, and the shipped bundle keeps
sync on every one as the committed report says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import languages_never_heard as languages
from benchmarks.languages_never_heard import LANGUAGES, missing, speak, trained_languages

COMMITTED = (Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "voices"
             / "languages_never_heard.json")


def _needs_espeak() -> None:
    problem = missing()
    if problem:
        pytest.skip(f"needs espeak-ng (the README's test command installs it): {problem}")


def test_no_row_is_a_language_the_corpus_speaks() -> None:
    assert trained_languages() >= {"en", "de", "fr", "es", "it"}
    assert not trained_languages() & {language.code for language in LANGUAGES}
    assert len({language.code for language in LANGUAGES}) == len(LANGUAGES)


def test_a_language_the_corpus_speaks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(languages, "trained_languages", lambda: {"en", "ru"})
    with pytest.raises(ValueError, match=r"\['ru'\]"):
        languages.run(languages.DEFAULT_BUNDLE)


def test_each_row_is_spoken_in_its_language() -> None:
    """espeak-ng's phonemes for each row's first sentence, with the row's voice, come from
    that language's rules, not a fallback to English (which espeak-ng marks ``(en)``, as its
    ``cmn`` voice does for many characters: the reason Mandarin is given in pinyin)."""
    import subprocess

    _needs_espeak()
    for language in LANGUAGES:
        phonemes = subprocess.run(["espeak-ng", "-q", "-x", "-v", language.voice,
                                   language.sentences[0]], capture_output=True, text=True,
                                  check=True).stdout
        assert phonemes.strip() and "(en)" not in phonemes, (language.code, phonemes)
    characters = subprocess.run(["espeak-ng", "-q", "-x", "-v", "cmn", "我们今天讨论"],
                                capture_output=True, text=True, check=True).stdout
    assert "(en)" in characters  # the check above can fail: this is what it catches


def test_speak_renders_every_sentence_with_its_pause() -> None:
    _needs_espeak()
    turkish = next(language for language in LANGUAGES if language.code == "tr")
    audio = speak(turkish, 16000)
    assert audio.dtype == np.float32 and 3.0 < len(audio) / 16000 < 30.0
    tail = round(languages.PAUSE_S * 16000)
    assert not audio[-tail:].any() and np.abs(audio).max() > 0.1


def test_the_shipped_bundle_keeps_sync_in_every_language() -> None:
    _needs_espeak()
    report = languages.run(languages.DEFAULT_BUNDLE)
    committed = json.loads(COMMITTED.read_text())
    assert committed["all_passed"] and sorted(report["rows"]) == sorted(committed["rows"])
    for code, row in report["rows"].items():
        assert all(row["passed"].values()), (code, row["passed"])
        for key in ("psd", "mean_pose_psd", "confidence", "mouth_energy_r"):
            assert row[key] == pytest.approx(committed["rows"][code][key], abs=2e-3), (code, key)
