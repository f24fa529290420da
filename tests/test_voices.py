"""Voiced corpus: real espeak-ng speech, timing as returned by the synthesizer, checked
against the audio; voice registry, licences, held-out voices; the synthetic corpus stays
as it was. Renders a few seconds per test (espeak-ng: `make voices`, run by `make test`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdk.cli import main
from sdk.features import DEFAULT_FEATURES
from train.data import espeak, flite
from train.data.sdt import SDT_CLIP_FRAMES
from train.data.synth import synthesize_corpus
from train.data.synth_script import make_speaker_profile
from train.data.voice_script import KEYWORD_RAMP_S, louder_word
from train.data.voice_text import KEYWORD_GAIN_DB, KEYWORD_PROSODY, KEYWORDS, WORDS
from train.data.voice_timing import check_timing
from train.data.voices import VOICES, VOICES_BY_NAME, held_out_names, select_voices

REPO = Path(__file__).resolve().parents[1]

needs_espeak = pytest.mark.skipif(not espeak.available(),
                                  reason="libespeak-ng not installed (`make voices`)")
needs_flite = pytest.mark.skipif(not flite.available(),
                                 reason="flite not installed (`make voices`)")
FRAMES = 2 * SDT_CLIP_FRAMES  # 8.5 s


def _interval(name: str, seed: int = 0):  # type: ignore[no-untyped-def]
    from train.data.voice_script import HeldOutText, render_voiced_interval

    voice = VOICES_BY_NAME[name]
    profile = dataclasses.replace(make_speaker_profile(seed, 0), name=name, keyword_rate=0.9)
    text = HeldOutText(False, 0, DEFAULT_FEATURES.fps, SDT_CLIP_FRAMES, frozenset())
    return render_voiced_interval(voice, profile, FRAMES, np.random.default_rng(seed),
                                  DEFAULT_FEATURES, text)


def _digest(root: Path) -> str:
    """sha256 over file names, non-npz bytes and npz arrays rounded to 1e-3 (robust to
    last-bit float differences between machines)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        h.update(str(p.relative_to(root)).encode())
        if p.suffix == ".npz":
            with np.load(p) as z:
                for k in sorted(z.files):
                    h.update(k.encode())
                    h.update(np.round(z[k].astype(np.float64), 3).tobytes())
        else:
            h.update(p.read_bytes())
    return h.hexdigest()


def test_synthetic_voice_corpus_is_unchanged(tmp_path: Path) -> None:
    """Digests recorded with the code before voices existed (commit fb874ff)."""
    synthesize_corpus(tmp_path / "a", speakers=2, minutes=0.2, seed=5)
    synthesize_corpus(tmp_path / "b", speakers=1, minutes=0.2, seed=5, articulation=True)
    assert _digest(tmp_path / "a") == \
        "04dbdf13487798268c489c561fae9b8b0de6a5e63911bc7ecc762b775b7dbff8"
    assert _digest(tmp_path / "b") == \
        "caa1b699532c54978ff3b63915a4fa83d30912edf40ba10c8641e5149c4becb7"


def test_registry_has_twelve_voices_both_genders_three_languages_varied_rate_pitch() -> None:
    assert len({(v.engine_voice, v.rate_wpm, v.pitch) for v in VOICES}) >= 12
    assert {v.engine for v in VOICES} == {"espeak-ng", "flite"}
    assert {v.gender for v in VOICES} == {"male", "female"}
    assert len({v.language for v in VOICES}) >= 3
    assert len({v.rate_wpm for v in VOICES}) >= 6 and len({v.pitch for v in VOICES}) >= 6
    assert all(v.licence and isinstance(v.model_distributable, bool) for v in VOICES)
    for lang in {v.language for v in VOICES}:
        train, held = WORDS[lang]
        assert not set(train) & set(held)  # held-out sentences share no word with training
        assert not set(KEYWORDS[lang]) & (set(train) | set(held))


def test_voice_selection_and_held_out_errors() -> None:
    assert [v.language for v in select_voices("de")] == ["de", "de"]
    assert len(select_voices("all")) == len(VOICES)
    assert {v.engine for v in select_voices("flite")} == {"flite"}
    with pytest.raises(ValueError, match="no voice, language or engine 'klingon'"):
        select_voices("klingon")
    de = select_voices("de")
    with pytest.raises(ValueError, match="not among --voices"):
        held_out_names("fr", de)
    with pytest.raises(ValueError, match="nothing is left"):
        held_out_names("de", de)
    assert held_out_names("", de) == frozenset()


@pytest.mark.parametrize("name", [
    pytest.param("espeak-en-us-f2", marks=needs_espeak),
    pytest.param("espeak-de-m4", marks=needs_espeak),
    pytest.param("espeak-it-f4", marks=needs_espeak),
    pytest.param("flite-awb", marks=needs_flite)])
def test_returned_timing_matches_the_audio_and_shifted_labels_fail(name: str) -> None:
    spoken = _interval(name)
    vowels = [(s.vowel_onset_s, s.end_s) for s in spoken.script.syllables]
    assert len(vowels) >= 15
    good = check_timing(spoken.audio, DEFAULT_FEATURES.sample_rate, vowels, spoken.pauses)
    assert good.passed, good
    assert abs(good.lag_s) <= 0.015
    shift = 0.15  # the control: the same labels 150 ms late must fail
    late = check_timing(spoken.audio, DEFAULT_FEATURES.sample_rate,
                        [(a + shift, b + shift) for a, b in vowels],
                        [(a + shift, b + shift) for a, b in spoken.pauses])
    assert not late.passed
    assert abs(late.lag_s - shift) <= 0.02
    assert late.loud_vowel_fraction < good.loud_vowel_fraction - 0.2
    # vowels labelled where the audio is silent (inside the pauses) are not loud
    silent = [(a + 0.05, a + 0.1) for a, b in spoken.pauses if b - a > 0.2]
    swapped = check_timing(spoken.audio, DEFAULT_FEATURES.sample_rate, silent, vowels)
    assert swapped.loud_vowel_fraction == 0.0 and not swapped.passed


@needs_espeak
def test_keywords_sit_on_their_word_and_drive_the_postures() -> None:
    spoken = _interval("espeak-en-us-m1", seed=1)
    keywords = [s for s in spoken.script.syllables if s.keyword >= 0]
    assert keywords and len(keywords) == len(spoken.script.postures)
    profile = make_speaker_profile(1, 0)
    for syl, ev in zip(keywords, spoken.script.postures, strict=True):
        assert ev.posture == syl.keyword
        assert ev.start_frame == math.floor(syl.onset_s * DEFAULT_FEATURES.fps) - \
            profile.lead_frames
        assert syl.accent
    # the keyword (said with emphasis: slower, +6 dB) is louder than an ordinary vowel
    env = spoken.envelope
    sr = DEFAULT_FEATURES.sample_rate

    def peak(s):  # type: ignore[no-untyped-def]
        return float(env[round(s.vowel_onset_s * sr) : round(s.end_s * sr)].max())
    plain = [peak(s) for s in spoken.script.syllables if s.keyword < 0]
    assert np.median([peak(s) for s in keywords]) > 1.3 * np.median(plain)


@needs_espeak
def test_espeak_reports_stress_and_words_of_what_it_spoke() -> None:
    spoken = espeak.render("hello <emphasis>everywhere</emphasis> today.", "en-us+m1", 160, 50)
    names = [p.name for p in spoken.phones if not p.is_pause]
    assert names[:2] == ["h", "@"] and "E" in names
    assert {p.word_position for p in spoken.phones if not p.is_pause} == {1, 17, 39}
    assert [p.stress for p in spoken.phones if p.name == "E"] == [1]
    starts = [p.start_s for p in spoken.phones]
    assert starts == sorted(starts) and all(p.end_s >= p.start_s for p in spoken.phones)
    assert spoken.phones[-1].end_s <= spoken.audio.shape[0] / spoken.sample_rate + 1e-9
    with pytest.raises(ValueError, match="no voice"):
        espeak.render("hello.", "xx-nonexistent", 160, 50)


@needs_espeak
def test_breathy_voice_renders_the_same_audio_whatever_called_rand_before() -> None:
    # espeak-ng's +f variants draw breath noise from libc rand(): render() seeds it per call
    child = ("import ctypes, ctypes.util, hashlib, sys\n"
             "libc = ctypes.CDLL(ctypes.util.find_library('c'))\n"
             "for _ in range(int(sys.argv[1])): libc.rand()\n"
             "from train.data import espeak\n"
             "a = espeak.render('guten Morgen, wie geht es dir?', 'de+f3', 160, 50).audio\n"
             "print(a.shape[0], hashlib.sha256(a.tobytes()).hexdigest())\n")
    runs = [subprocess.run([sys.executable, "-c", child, str(n)], capture_output=True,
                           text=True, check=True, cwd=REPO).stdout for n in (0, 5)]
    assert runs[0] and runs[0] == runs[1]


@needs_espeak
def test_closure_correction_ends_a_vowel_before_a_long_geminate_closure() -> None:
    """Italian "mattina": espeak reports the /tt/ at its release, ~0.1 s after the vowel
    stopped sounding; the corrected vowel must be loud over its whole labelled span."""
    import soxr

    from train.data.voice_timing import FRAME_S, frame_levels_db

    spoken = espeak.render("la mattina casa.", "it+f4", 185, 68)
    audio = soxr.resample(spoken.audio, spoken.sample_rate, 16000)
    level = frame_levels_db(audio, 16000)
    names = [p.name for p in spoken.phones]
    vowel = spoken.phones[names.index("t") - 1]
    assert vowel.name == "a" and vowel.end_s - vowel.start_s < 0.06
    span = level[round(vowel.start_s / FRAME_S) : round(vowel.end_s / FRAME_S)]
    assert span.min() > level.max() - 25.0


@needs_flite
def test_flite_phones_are_split_into_words_and_stressed() -> None:
    """Words from counting each word's phones alone; stress on each word's longest vowel."""
    words = ("the", "market", "everywhere")
    spoken = flite.render(words, "slt", 1.0, 180.0)
    by_word = [[p.name for p in spoken.phones if p.word_position == i + 1]
               for i in range(len(words))]
    assert by_word == [["dh", "ax"], ["m", "aa", "r", "k", "ax", "t"],
                       ["eh", "v", "r", "iy", "w", "eh", "r"]]
    assert spoken.phones[0].name == "_" and spoken.phones[0].start_s == 0.0
    assert spoken.phones[-1].end_s == pytest.approx(spoken.audio.shape[0] / 16000, abs=0.02)
    stressed = [p for p in spoken.phones if p.stress == 1]
    assert {p.word_position for p in stressed} <= {1, 2, 3} and len(stressed) <= 3


def test_flite_keyword_is_louder_by_the_keyword_gain_and_nothing_else_changes() -> None:
    """flite has no emphasis: louder_word raises the keyword's phones by KEYWORD_GAIN_DB
    (espeak's SSML volume), with short ramps, and leaves other words and the timing alone."""
    sr = 16000
    phones = (espeak.SpokenPhone("_", 0.0, 0.1, 0, 0), espeak.SpokenPhone("m", 0.1, 0.3, 0, 1),
              espeak.SpokenPhone("aa", 0.3, 0.5, 1, 2), espeak.SpokenPhone("t", 0.5, 0.6, 0, 2),
              espeak.SpokenPhone("ax", 0.6, 0.8, 0, 3))
    tone = 0.1 * np.sin(2 * np.pi * 200 * np.arange(int(0.8 * sr)) / sr).astype(np.float32)
    spoken = espeak.SpokenPhrase(tone, sr, phones)
    louder = louder_word(spoken, 2, KEYWORD_GAIN_DB)
    assert louder.phones == spoken.phones and louder.audio.shape == tone.shape
    ramp = round(KEYWORD_RAMP_S * sr)

    def level_db(a: np.ndarray) -> float:
        return float(10 * np.log10(np.mean(a.astype(np.float64) ** 2)))

    inside = slice(int(0.3 * sr) + ramp, int(0.6 * sr) - ramp)
    assert level_db(louder.audio[inside]) - level_db(tone[inside]) == pytest.approx(
        KEYWORD_GAIN_DB, abs=0.01)
    outside = np.r_[0:int(0.3 * sr) - ramp, int(0.6 * sr) + ramp:tone.size]
    np.testing.assert_array_equal(louder.audio[outside], tone[outside])
    assert np.abs(np.diff(louder.audio)).max() < 2 * np.abs(np.diff(tone)).max()  # no click
    assert louder_word(spoken, 7, KEYWORD_GAIN_DB) is spoken  # no such word: unchanged
    assert '+6dB' in KEYWORD_PROSODY[0] and KEYWORD_GAIN_DB == 6.0  # one number for both engines


@needs_flite
def test_flite_word_counts_that_do_not_add_up_are_refused(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    real = flite.word_phone_count
    monkeypatch.setattr(flite, "word_phone_count",
                        lambda voice, word: real(voice, word) + (word == "market"))
    with pytest.raises(flite.FliteTimingError, match=r"spoke 15 phones.*the words alone have 16"):
        flite.render(("the", "market", "everywhere"), "slt", 1.0, 180.0)


@needs_espeak
def test_cli_voiced_corpus_records_voices_licences_and_held_out_split(tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert main(["data", "synth", "--out", str(out), "--voices",
                 "espeak-en-us-f2,espeak-es-m6", "--held-out-voices", "espeak-es-m6",
                 "--minutes", "0.15", "--no-progress"]) == 0
    table = json.loads((out / "voices.json").read_text())
    assert set(table) == {"espeak-en-us-f2", "espeak-es-m6"}
    assert table["espeak-es-m6"]["held_out"] and not table["espeak-en-us-f2"]["held_out"]
    meta = json.loads((out / "espeak-es-m6" / "synth_speaker.json").read_text())
    assert meta["voice"]["licence"].startswith("GPL") and meta["voice"]["model_distributable"]
    assert all(c["passed"] for c in meta["timing_checks"])
    es_splits = {line.split(",")[0] for line in
                 (out / "espeak-es-m6" / "processed_137.csv").read_text().splitlines()[1:]}
    en_splits = {line.split(",")[0] for line in
                 (out / "espeak-en-us-f2" / "processed_137.csv").read_text().splitlines()[1:]}
    assert es_splits == {"test"} and "test" not in en_splits
    # a voice never trained on still loads for evaluation (its own pose statistics)
    from train.posesync_data import load_corpus_sequences

    held = [s for s in load_corpus_sequences(out) if s.speaker == "espeak-es-m6"]
    assert held and all(s.held_out for s in held)
    assert main(["data", "synth", "--out", str(out), "--voices", "klingon",
                 "--minutes", "0.1"]) == 2


def test_docs_voice_table_is_the_registry() -> None:
    from train.data.voices import voices_markdown_table

    doc = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    assert voices_markdown_table() in doc, "regenerate the table in docs/training.md from " \
        "train.data.voices.voices_markdown_table()"


def test_mouth_energy_r_sees_a_mouth_that_follows_the_audio() -> None:
    from benchmarks.voices_experiment import mouth_energy_r
    from sdk.skeleton import LIP_BOTTOM, LIP_TOP

    rng = np.random.default_rng(0)
    frames = 150
    loudness = np.abs(np.sin(np.arange(frames) / 4.0)) + 0.05  # per pose frame
    n = round(frames * DEFAULT_FEATURES.sample_rate / DEFAULT_FEATURES.fps)
    per_sample = np.repeat(loudness, -(-n // frames))[:n]
    audio = per_sample * rng.choice([-1.0, 1.0], n)  # |audio| = loudness: RMS = loudness
    poses = np.zeros((frames, 122, 2), np.float32)
    poses[:, LIP_BOTTOM, 1] = 0.1 * loudness
    assert mouth_energy_r(poses, audio) > 0.95
    poses[:, LIP_BOTTOM, 1] = 0.1 * rng.permutation(loudness)
    assert abs(mouth_energy_r(poses, audio)) < 0.3
    assert LIP_TOP != LIP_BOTTOM


def test_styles_are_shared_round_robin_by_the_voices(tmp_path: Path) -> None:
    out = tmp_path / "s"
    voices = "espeak-en-us-m1,espeak-en-us-f2,espeak-en-us-m3"
    assert main(["data", "synth", "--out", str(out), "--voices", voices, "--styles", "2",
                 "--minutes", "0.15", "--no-progress"]) == 0
    meta = {name: json.loads((out / name / "synth_speaker.json").read_text())
            for name in voices.split(",")}
    assert [m["style"] for m in meta.values()] == ["style_0", "style_1", "style_0"]
    first, second, third = (m["profile"] for m in meta.values())
    gesture_fields = ("gesture_scale", "lead_frames", "beat_deg", "posture_weights")
    assert all(first[f] == third[f] for f in gesture_fields)
    assert any(first[f] != second[f] for f in gesture_fields)
    # more styles than voices is refused, nothing written
    assert main(["data", "synth", "--out", str(tmp_path / "t"), "--voices", voices,
                 "--styles", "4", "--minutes", "0.15", "--no-progress"]) == 2
    assert not (tmp_path / "t").exists()
