"""Check returned phoneme timing against the audio it labels.

Two measures on the energy of the audio low-passed at LOW_BAND_HZ (vowels carry their
energy there; voiceless consonants do not), in frames of FRAME_S:

* **loud vowels**: the fraction of vowel intervals whose median frame level is more than
  LOUD_MARGIN_DB above the pause level (the PAUSE_PERCENTILE-th percentile of the frames
  labelled pause). Labels shifted later by 150 ms put the phrase starts inside the
  "pauses", so the pause level rises to speech level and the fraction collapses.
* **lag**: the shift (within +-MAX_LAG_S) that maximises the correlation between a
  vowel indicator (1 on vowel frames) and the frame level in dB. Correct labels peak at
  about 0; labels shifted by d peak at about -d.

:func:`check_timing` passes when loud vowels >= MIN_LOUD_FRACTION and |lag| <= MAX_OK_LAG_S.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LOW_BAND_HZ = 900.0
FRAME_S = 0.005
LOUD_MARGIN_DB = 20.0
PAUSE_PERCENTILE = 90.0
MAX_LAG_S = 0.3
MIN_LOUD_FRACTION = 0.9
MAX_OK_LAG_S = 0.03


@dataclass(frozen=True)
class TimingCheck:
    """Result of :func:`check_timing` (``lag_s``: positive = labels late)."""

    loud_vowel_fraction: float
    lag_s: float
    passed: bool

    def to_dict(self) -> dict[str, float | bool]:
        return {"loud_vowel_fraction": round(self.loud_vowel_fraction, 4),
                "lag_ms": round(1000.0 * self.lag_s, 1), "passed": self.passed}


def frame_levels_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Low-band level per FRAME_S frame in dB: float64 (floor(N / hop),); audio float (N,)."""
    n = audio.shape[0]
    spectrum = np.fft.rfft(audio.astype(np.float64))
    spectrum[np.fft.rfftfreq(n, 1.0 / sample_rate) > LOW_BAND_HZ] = 0.0
    low = np.fft.irfft(spectrum, n)
    hop = round(FRAME_S * sample_rate)
    frames = low[: (n // hop) * hop].reshape(-1, hop)
    return 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1e-12)


def _mask(intervals: Sequence[tuple[float, float]], n_frames: int) -> np.ndarray:
    mask = np.zeros(n_frames, dtype=bool)
    for a, b in intervals:
        mask[max(0, round(a / FRAME_S)) : max(0, round(b / FRAME_S))] = True
    return mask


def check_timing(audio: np.ndarray, sample_rate: int, vowels: Sequence[tuple[float, float]],
                 pauses: Sequence[tuple[float, float]]) -> TimingCheck:
    """Check vowel and pause labels (start_s, end_s) against ``audio`` (float (N,)).

    Raises:
        ValueError: no vowel, or no pause frame, to measure.
    """
    level = frame_levels_db(audio, sample_rate)
    pause = _mask(pauses, level.shape[0])
    if not vowels or not pause.any():
        raise ValueError(f"need vowel and pause labels, got {len(vowels)} vowels and "
                         f"{int(pause.sum())} pause frames")
    pause_level = float(np.percentile(level[pause], PAUSE_PERCENTILE))
    loud = []
    for a, b in vowels:
        seg = level[round(a / FRAME_S) : max(round(b / FRAME_S), round(a / FRAME_S) + 1)]
        if seg.size:
            loud.append(float(np.median(seg)) > pause_level + LOUD_MARGIN_DB)
    fraction = float(np.mean(loud)) if loud else 0.0
    indicator = _mask(vowels, level.shape[0]).astype(np.float64)
    max_lag = round(MAX_LAG_S / FRAME_S)
    lags = np.arange(-max_lag, max_lag + 1)
    x = level - level.mean()
    y = indicator - indicator.mean()
    n = level.shape[0]
    corr = [float(np.dot(x[max(0, k) : n + min(0, k)], y[max(0, -k) : n - max(0, k)]))
            for k in lags]  # k > 0: the audio happens k frames after the labels say
    lag = -float(lags[int(np.argmax(corr))]) * FRAME_S
    passed = fraction >= MIN_LOUD_FRACTION and abs(lag) <= MAX_OK_LAG_S
    return TimingCheck(fraction, lag, passed)
