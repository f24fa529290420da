"""train.data.audio_augmentation: the mel filterbank warp and the room reverberation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sdk.features import DEFAULT_FEATURES as CFG
from sdk.mfcc import MfccMatrices
from train.data.audio_augmentation import AudioAugmentation, warped_filterbank


def _loudest_band(mel: np.ndarray, tone_hz: float) -> int:
    """The mel band (n_mels,) that a pure tone's power spectrum excites most."""
    n = CFG.n_fft
    t = np.arange(n) / CFG.sample_rate
    power = np.abs(np.fft.rfft(np.hanning(n) * np.sin(2 * np.pi * tone_hz * t))) ** 2
    return int(np.argmax(mel @ power))


def test_a_warp_moves_a_formant_to_the_band_of_factor_times_its_frequency() -> None:
    plain = MfccMatrices.default()
    assert warped_filterbank(plain, 1.0) is plain
    for factor in (0.85, 1.2):
        warped = warped_filterbank(plain, factor).mel
        for tone in (500.0, 1000.0, 2500.0):
            assert _loudest_band(warped, tone) == _loudest_band(plain.mel, factor * tone)
            assert _loudest_band(warped, tone) != _loudest_band(plain.mel, tone)


def test_the_warp_keeps_every_band_inside_the_spectrum() -> None:
    plain = MfccMatrices.default()
    for factor in (0.8, 1.25):
        warped = warped_filterbank(plain, factor).mel
        assert warped.shape == plain.mel.shape and np.all(warped >= 0)
        assert np.all(warped.sum(axis=1) > 0)  # no band warped off the top or bottom


def test_the_warp_factor_draws_nothing_when_off_and_refuses_a_bad_range() -> None:
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    assert AudioAugmentation().warp_factor(rng) == 1.0
    assert rng.bit_generator.state == before
    factors = [AudioAugmentation(warp=(0.9, 1.1)).warp_factor(rng) for _ in range(50)]
    assert 0.9 <= min(factors) < max(factors) <= 1.1
    with pytest.raises(ValueError, match="warp range"):
        AudioAugmentation(warp=(1.2, 0.9)).warp_factor(rng)


def test_reverb_augmentation_smears_a_click_and_draws_nothing_when_off() -> None:
    click = np.zeros(CFG.sample_rate, dtype=np.float32)
    click[100] = 1.0
    plain = AudioAugmentation(gain_db=0.0, tilt=(0.0, 0.0), peak_probability=0.0,
                              noise_probability=0.0)
    dry = plain.apply(click, 1.0, CFG.sample_rate, np.random.default_rng(0))
    wet = dataclasses.replace(plain, reverb_probability=1.0).apply(
        click, 1.0, CFG.sample_rate, np.random.default_rng(0))
    late = slice(100 + CFG.sample_rate // 10, None)  # 100 ms after the click
    assert np.abs(dry[late]).max() == 0 and np.abs(wet[late]).max() > 0
    assert np.sqrt(np.mean(wet ** 2)) == pytest.approx(np.sqrt(np.mean(dry ** 2)), rel=1e-4)
    rng = np.random.default_rng(1)
    plain.apply(click, 1.0, CFG.sample_rate, rng)
    other = np.random.default_rng(1)
    for draw in (other.random, other.uniform, other.random, other.uniform, other.random):
        draw()  # what apply draws without reverb: no draw more
    assert rng.bit_generator.state == other.bit_generator.state


def test_hum_and_dc_fill_the_silence_at_their_level_and_draw_nothing_when_off() -> None:
    from train.data.audio_augmentation import mains_hum

    silence = np.zeros(CFG.sample_rate, dtype=np.float32)
    plain = AudioAugmentation(gain_db=0.0, tilt=(0.0, 0.0), peak_probability=0.0,
                              noise_probability=0.0)
    hum = dataclasses.replace(plain, hum_probability=1.0, hum_db=(-20.0, -20.0)).apply(
        silence, 1.0, CFG.sample_rate, np.random.default_rng(0))
    assert np.sqrt(np.mean(hum ** 2)) == pytest.approx(0.1, rel=1e-3)  # -20 dB of RMS 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(hum))) * CFG.sample_rate / hum.size
    assert peak_hz in (50.0, 60.0)  # the fundamental is the loudest harmonic
    dc = dataclasses.replace(plain, dc_probability=1.0, dc_db=(-6.0, -6.0)).apply(
        silence, 1.0, CFG.sample_rate, np.random.default_rng(0))
    assert np.ptp(dc) == 0 and abs(dc[0]) == pytest.approx(10 ** (-6 / 20), rel=1e-5)
    assert np.sqrt(np.mean(mains_hum(8000, 16000, np.random.default_rng(3)) ** 2)) == (
        pytest.approx(1.0))
    rng = np.random.default_rng(1)
    plain.apply(silence, 1.0, CFG.sample_rate, rng)
    other = np.random.default_rng(1)
    for draw in (other.random, other.uniform, other.random, other.uniform, other.random):
        draw()  # what apply draws with hum and DC off: no draw more
    assert rng.bit_generator.state == other.bit_generator.state
