"""benchmarks.recording_conditions: noise at its SNR and spectrum, a room at its RT60."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.recording_conditions import (
    DIRECT_TO_REVERBERANT_DB,
    HALL_RT60_S,
    NOISE_SNR_DB,
    REVERB_RT60_S,
    apply_condition,
    pink_noise,
    room_impulse,
)

SR = 16000


def _octave_power(x: np.ndarray, low_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1.0 / SR)
    return float(spectrum[(f >= low_hz) & (f < 2 * low_hz)].sum())


def _is_pink(x: np.ndarray) -> bool:
    """Equal power per octave (white noise has twice as much in each higher octave)."""
    ratios = [_octave_power(x, f) / _octave_power(x, 2 * f) for f in (250.0, 500.0, 1000.0)]
    return all(0.85 < r < 1.15 for r in ratios)


def test_noise_is_pink_and_added_at_its_snr() -> None:
    rng = np.random.default_rng(0)
    assert _is_pink(pink_noise(SR * 10, rng))
    assert not _is_pink(rng.standard_normal(SR * 10))  # the spectrum check can fail
    speech = np.sin(2 * np.pi * 220 * np.arange(SR * 2) / SR) * 0.3
    noisy = apply_condition(speech, "noise_15db", SR, seed=1).astype(np.float64)
    snr = 10 * np.log10(np.mean(speech ** 2) / np.mean((noisy - speech) ** 2))
    assert snr == pytest.approx(NOISE_SNR_DB, abs=0.01)


@pytest.mark.parametrize("rt60", [REVERB_RT60_S, HALL_RT60_S])
def test_the_room_decays_60_db_in_its_rt60_with_its_direct_to_reverberant_ratio(
        rt60: float) -> None:
    ir = room_impulse(rt60, SR, np.random.default_rng(0), DIRECT_TO_REVERBERANT_DB)
    assert ir[0] == 1.0
    drr = 10 * np.log10(1.0 / np.sum(ir[1:] ** 2))
    assert drr == pytest.approx(DIRECT_TO_REVERBERANT_DB, abs=1e-9)
    schroeder = np.cumsum(ir[1:][::-1] ** 2)[::-1]  # energy decay curve of the tail
    edc = 10 * np.log10(schroeder / schroeder[0])
    t5, t35 = np.argmax(edc <= -5) / SR, np.argmax(edc <= -35) / SR
    assert 2 * (t35 - t5) == pytest.approx(rt60, rel=0.1)  # T30 x 2


def test_reverb_keeps_length_and_level_and_smears_a_click() -> None:
    click = np.zeros(SR)
    click[100] = 1.0
    wet = apply_condition(click, "reverb_0.5s", SR, seed=0)
    assert wet.shape == click.shape and wet.dtype == np.float32
    assert np.sqrt(np.mean(wet ** 2)) == pytest.approx(np.sqrt(np.mean(click ** 2)), rel=1e-5)
    assert np.abs(wet[100 + SR // 10:]).max() > 0  # energy 100 ms after the click


def test_clean_is_the_audio_and_conditions_are_reproducible() -> None:
    x = np.random.default_rng(3).standard_normal(4000).astype(np.float32)
    np.testing.assert_array_equal(apply_condition(x, "clean", SR, 0), x)
    for condition in ("noise_15db", "reverb_0.5s", "reverb_1.2s"):
        a, b = apply_condition(x, condition, SR, 5), apply_condition(x, condition, SR, 5)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, apply_condition(x, condition, SR, 6))
    with pytest.raises(ValueError, match="unknown recording condition 'rain'"):
        apply_condition(x, "rain", SR, 0)
