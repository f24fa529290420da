"""Faults of real recordings (benchmarks/recording_faults.py): each does what its name says,
and each is a fault: the audio it returns is not the audio it was given."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.recording_faults import (
    CODECS,
    DC_OFFSET,
    FAULTS,
    FLOOR_DBFS,
    HUM_AMPLITUDE,
    HUM_HZ,
    apply_fault,
    unavailable,
)

RATE = 16000


@pytest.fixture(scope="module")
def speech_like() -> np.ndarray:
    """2 s: a 0.4-amplitude 220 Hz vowel with an envelope, then 1 s of digital silence."""
    t = np.arange(RATE) / RATE
    voiced = 0.4 * np.sin(2 * np.pi * 220 * t) * np.sin(np.pi * t) ** 2
    return np.concatenate([voiced, np.zeros(RATE)]).astype(np.float32)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_every_fault_keeps_the_length_and_changes_the_audio(fault: str,
                                                            speech_like: np.ndarray) -> None:
    if unavailable(fault):
        pytest.skip(f"{fault}: {unavailable(fault)}")
    out = apply_fault(speech_like, fault, RATE, seed=0)
    assert out.dtype == np.float32 and out.shape == speech_like.shape
    assert np.isfinite(out).all() and np.abs(out - speech_like).max() > 1e-4
    again = apply_fault(speech_like, fault, RATE, seed=0)
    assert np.array_equal(out, again)  # a function of audio and seed


def test_the_additive_faults_add_what_they_say(speech_like: np.ndarray) -> None:
    silence = slice(RATE + 100, 2 * RATE)
    dc = apply_fault(speech_like, "dc_offset", RATE, 0)
    assert np.allclose(dc - speech_like, DC_OFFSET, atol=1e-6)
    hum = apply_fault(speech_like, "mains_hum", RATE, 0)[silence]
    spectrum = np.abs(np.fft.rfft(hum))
    peak_hz = np.argmax(spectrum) * RATE / hum.size
    assert peak_hz == pytest.approx(HUM_HZ, abs=2) and np.abs(hum).max() == pytest.approx(
        HUM_AMPLITUDE, rel=1e-3)
    floor = apply_fault(speech_like, "noise_floor", RATE, 0)[silence]
    assert 20 * np.log10(np.sqrt(np.mean(floor ** 2))) == pytest.approx(FLOOR_DBFS, abs=1.5)
    over = apply_fault(speech_like, "dc_offset_over_floor", RATE, 0)[silence]
    assert over.mean() == pytest.approx(DC_OFFSET, abs=1e-3) and over.std() > 1e-4


def test_the_level_faults_scale_and_clip(speech_like: np.ndarray) -> None:
    quiet = apply_fault(speech_like, "quiet_-20db", RATE, 0)
    assert np.allclose(quiet, speech_like * 0.1, atol=1e-7)
    loud = apply_fault(speech_like, "clipped_+18db", RATE, 0)
    assert np.abs(loud).max() == 1.0  # clipped at full scale
    assert (np.abs(loud) == 1.0).mean() > 0.1


@pytest.mark.parametrize("fault", sorted(CODECS))
def test_a_codec_keeps_the_voice_and_is_lossy(fault: str, speech_like: np.ndarray) -> None:
    if unavailable(fault):
        pytest.skip(f"{fault}: {unavailable(fault)}")
    out = apply_fault(speech_like, fault, RATE, 0)
    voiced = slice(RATE // 4, 3 * RATE // 4)
    # codecs may shift by their priming; the voice's level and pitch survive
    assert np.sqrt(np.mean(out[voiced] ** 2)) == pytest.approx(
        np.sqrt(np.mean(speech_like[voiced] ** 2)), rel=0.1)
    peak_hz = np.argmax(np.abs(np.fft.rfft(out[voiced]))) * RATE / (RATE // 2)
    assert peak_hz == pytest.approx(220, abs=4)


def test_an_unknown_fault_is_named() -> None:
    with pytest.raises(ValueError, match=r"'hiss'.*noise_floor"):
        apply_fault(np.zeros(10, np.float32), "hiss", RATE, 0)
