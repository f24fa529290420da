"""The synthetic speaker corpus: determinism, lip sync, saliency ground truth, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdk.cli import main
from sdk.features import DEFAULT_FEATURES
from sdk.skeleton import LIP_BOTTOM, LIP_TOP, UPPER_BODY_122
from train.data.sdt import INDEX_NAME, clip_sample_range
from train.data.synth import synthesize_corpus, synthesize_interval
from train.data.synth_motion import frame_sample_bounds
from train.data.synth_script import (
    NUM_POSTURES,
    POSTURE_ATTACK_FRAMES,
    make_speaker_profile,
)

MINUTE_FRAMES = 14 * 64  # one interval: 896 pose frames, 59.7 s


def _corpus_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    synthesize_corpus(tmp_path / "a", speakers=2, minutes=0.3, seed=3)
    synthesize_corpus(tmp_path / "b", speakers=2, minutes=0.3, seed=3)
    a, b = _corpus_bytes(tmp_path / "a"), _corpus_bytes(tmp_path / "b")
    assert len(a) == 2 * (4 + 2)  # per speaker: 4 clips, the index and the profile
    assert a == b


def test_different_seeds_give_different_corpora(tmp_path: Path) -> None:
    synthesize_corpus(tmp_path / "a", speakers=1, minutes=0.2, seed=3)
    synthesize_corpus(tmp_path / "b", speakers=1, minutes=0.2, seed=4)
    a, b = _corpus_bytes(tmp_path / "a"), _corpus_bytes(tmp_path / "b")
    clips = [k for k in a if k.endswith(".npz")]
    assert clips and all(a[k] != b[k] for k in clips)


def test_speakers_differ_in_voice_body_and_style() -> None:
    p0, p1 = make_speaker_profile(0, 0), make_speaker_profile(0, 1)
    assert p0.name != p1.name
    assert p0.f0_hz != p1.f0_hz and p0.scale_px != p1.scale_px and p0.neck_px != p1.neck_px
    assert p0.posture_weights != p1.posture_weights


@pytest.mark.parametrize("speaker", [0, 1, 2])
def test_lip_aperture_follows_voiced_envelope(speaker: int) -> None:
    """Envelope on the 15 fps grid: per pose frame, the RMS of the audio low-passed at
    1.5 kHz (the voiced band; unvoiced consonants lie above it) over the frame's samples."""
    profile = make_speaker_profile(0, speaker)
    rendered = synthesize_interval(profile, MINUTE_FRAMES, 0, speaker, 0)
    audio = rendered.audio.astype(np.float64)
    spectrum = np.fft.rfft(audio)
    spectrum[np.fft.rfftfreq(audio.size, 1.0 / DEFAULT_FEATURES.sample_rate) > 1500.0] = 0
    low = np.fft.irfft(spectrum, audio.size)
    bounds = frame_sample_bounds(MINUTE_FRAMES, DEFAULT_FEATURES)
    envelope = np.sqrt(np.add.reduceat(low**2, bounds[:-1]) / np.diff(bounds))
    pixels = UPPER_BODY_122.from_openpose(rendered.motion.pose.transpose(0, 2, 1)[..., :2])
    lips = np.linalg.norm(pixels[:, LIP_TOP] - pixels[:, LIP_BOTTOM], axis=1)
    assert np.ptp(lips) > 5.0  # pixels: the mouth visibly opens
    assert np.corrcoef(lips, envelope)[0, 1] >= 0.9


def test_frame_saliency_is_one_exactly_on_triggered_posture_frames() -> None:
    profile = make_speaker_profile(1, 0)
    full = synthesize_interval(profile, MINUTE_FRAMES, 1, 0, 0)
    plain = synthesize_interval(profile, MINUTE_FRAMES, 1, 0, 0, include_postures=False)
    moved = np.abs(full.motion.pose - plain.motion.pose).max(axis=(1, 2)) > 0
    saliency, posture = full.motion.saliency, full.motion.posture
    assert full.script.postures, "the interval should trigger postures"
    assert set(np.unique(saliency)) == {0.0, 1.0}
    np.testing.assert_array_equal(moved, saliency == 1.0)
    np.testing.assert_array_equal(posture >= 0, saliency == 1.0)
    for event in full.script.postures:
        frames = slice(event.start_frame, event.end_frame)
        assert np.all(posture[frames] == event.posture)
        assert saliency[event.start_frame - 1] == 0.0 or event.start_frame == 0


def test_postures_are_triggered_by_keywords_and_lead_them() -> None:
    profile = make_speaker_profile(0, 0)
    script = synthesize_interval(profile, MINUTE_FRAMES, 0, 0, 0).script
    keywords = [s for s in script.syllables if s.keyword >= 0]
    assert len(keywords) == len(script.postures)
    for syllable, event in zip(keywords, script.postures, strict=True):
        assert syllable.keyword == event.posture
        assert event.keyword_frame == int(syllable.onset_s * DEFAULT_FEATURES.fps)
        assert event.start_frame == event.keyword_frame - profile.lead_frames
        assert event.hold_end_frame > event.start_frame + POSTURE_ATTACK_FRAMES


def test_every_posture_of_the_vocabulary_occurs() -> None:
    profile = make_speaker_profile(0, 0)
    seen = set()
    for interval in range(4):
        seen |= {e.posture for e in synthesize_interval(profile, MINUTE_FRAMES, 0, 0,
                                                         interval).script.postures}
    assert NUM_POSTURES >= 4 and seen == set(range(NUM_POSTURES))


def test_audio_is_finite_bounded_and_not_silent() -> None:
    rendered = synthesize_interval(make_speaker_profile(0, 1), 320, 0, 1, 0)
    audio = rendered.audio
    _, n = clip_sample_range(0, 320, DEFAULT_FEATURES)
    assert audio.dtype == np.float32 and audio.shape == (n,)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() < 1.0
    assert 0.01 < float(np.sqrt(np.mean(audio**2))) < 0.2


def test_clip_audio_holds_exactly_its_frames_samples(tmp_path: Path) -> None:
    synthesize_corpus(tmp_path, speakers=1, minutes=0.3, seed=5)
    clips = sorted((tmp_path / "synth_00" / "clips").glob("*.npz"))
    rendered = synthesize_interval(make_speaker_profile(5, 0), len(clips) * 64, 5, 0, 0)
    joined = np.concatenate([np.load(c)["audio"] for c in clips])
    np.testing.assert_array_equal(joined, rendered.audio)
    for i, c in enumerate(clips):
        a, b = clip_sample_range(64 * i, 64 * (i + 1), DEFAULT_FEATURES)
        assert np.load(c)["audio"].shape == (b - a,)
        assert b - a in (68266, 68267)


def test_cli_synth_writes_a_tiny_corpus_and_refuses_to_overwrite(tmp_path: Path,
                                                                  capsys) -> None:
    args = ["data", "synth", "--out", str(tmp_path), "--speakers", "1", "--minutes", "0.2",
            "--no-progress"]
    assert main(args) == 0
    index = (tmp_path / "synth_00" / INDEX_NAME).read_text().splitlines()
    assert len(index) == 1 + 2  # header + two 64-frame clips in 12 s
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert main(["data", "info", str(tmp_path)]) == 0
    assert "synth_00: 2 clips" in capsys.readouterr().out


def test_cli_synth_rejects_a_corpus_shorter_than_one_clip(tmp_path: Path, capsys) -> None:
    assert main(["data", "synth", "--out", str(tmp_path), "--minutes", "0.01",
                 "--no-progress"]) == 2
    assert "shorter than one 64-frame clip" in capsys.readouterr().err


def _mouth_px(rendered) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """(F, 122, 2) pixels, inner-lip opening (F,) and outer mouth width (F,) in pixels."""
    pixels = UPPER_BODY_122.from_openpose(rendered.motion.pose.transpose(0, 2, 1)[..., :2])
    face0 = UPPER_BODY_122.groups["face"][0]
    width = np.linalg.norm(pixels[:, face0 + 54] - pixels[:, face0 + 48], axis=1)
    return pixels, np.linalg.norm(pixels[:, LIP_TOP] - pixels[:, LIP_BOTTOM], axis=1), width


def test_articulation_shapes_the_mouth_by_vowel_and_changes_nothing_else() -> None:
    profile = make_speaker_profile(0, 0)
    plain = synthesize_interval(profile, MINUTE_FRAMES, 0, 0, 0)
    shaped = synthesize_interval(profile, MINUTE_FRAMES, 0, 0, 0, articulation=True)
    assert np.array_equal(plain.audio, shaped.audio)
    p_px, p_open, p_width = _mouth_px(plain)
    s_px, s_open, s_width = _mouth_px(shaped)
    face0 = UPPER_BODY_122.groups["face"][0]
    mouth = list(range(face0 + 48, face0 + 68))
    others = [j for j in range(UPPER_BODY_122.num_joints) if j not in mouth]
    # the jaw follows the opening too (chin, lower jaw points), everything else is untouched
    jaw = [face0 + j for j in range(4, 13)]
    untouched = [j for j in others if j not in jaw]
    assert np.array_equal(p_px[:, untouched], s_px[:, untouched])
    # per vowel, over the frames where it sounds: /a/ opens wider than /i/ and /u/ for the
    # same loudness; /i/ spreads the lips, /u/ rounds them
    fps = DEFAULT_FEATURES.fps
    centre = (np.arange(MINUTE_FRAMES) + 0.5) / fps
    vowel_of_frame = np.full(MINUTE_FRAMES, -1)
    for syl in shaped.script.syllables:  # the vowel sounding at the frame's centre
        vowel_of_frame[(centre >= syl.vowel_onset_s) & (centre < syl.end_s)] = syl.vowel
    ratio = s_open / np.maximum(p_open, 1e-6)  # opening relative to the loudness-only mouth
    a_, i_, u_ = (vowel_of_frame == v for v in (0, 1, 2))
    assert min(a_.sum(), i_.sum(), u_.sum()) > 20
    assert np.median(ratio[a_]) > 2.0 * np.median(ratio[i_])
    assert np.median(ratio[a_]) > 2.0 * np.median(ratio[u_])
    # both renderings share the keypoint jitter, so the width difference is the shaping
    widen = (s_width - p_width) / np.median(p_width)
    assert np.median(widen[i_]) > 0.1 and np.median(widen[u_]) < -0.1
    assert np.median(np.abs(widen[vowel_of_frame < 0])) < 0.02  # at rest between vowels


def test_cli_synth_articulation_is_recorded_in_the_profile(tmp_path: Path) -> None:
    import json

    assert main(["data", "synth", "--out", str(tmp_path), "--minutes", "0.2", "--no-progress",
                 "--articulation"]) == 0
    meta = json.loads(next(tmp_path.glob("synth_00/*.json")).read_text())
    assert meta["articulation"] is True
