"""Random corruption of a training window's audio before its MFCC (training only).

:class:`AudioAugmentation` draws, per window, gain, spectral tilt, a resonance, a noise
floor and a vocal-tract-length warp of the mel filterbank (:func:`warped_filterbank`);
:class:`train.data.windows.WindowDataset` applies it to the audio of a share of its
training windows and computes their MFCC from the result, as serving would from a
recording.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve, iirpeak, lfilter

from sdk.mfcc import MfccMatrices

WARP_KNEE_HZ = 4800.0  # VTLP's F_hi: the warp is linear in frequency below it (x min(1, 1/a))


@dataclass(frozen=True)
class AudioAugmentation:
    """Random corruption of a training window's audio before the MFCC (so training sees
    features the way serving computes them from a recording). A share ``probability`` of
    the windows is corrupted (the rest stay clean); per corrupted window, independently:

    * gain: uniform in +-``gain_db`` dB;
    * tilt: ``y[n] = x[n] - a x[n-1]``, ``a`` uniform in ``tilt`` (pre-/de-emphasis: the
      spectral slope of another voice, microphone or room);
    * peak: with probability ``peak_probability``, ``x + g * bandpass(x)`` with ``g``
      uniform in [-0.7, 2], centre 150-5000 Hz (log-uniform), Q 0.7-3 (a resonance);
    * noise: with probability ``noise_probability``, white noise through a random tilt
      filter at an SNR uniform in ``snr_db`` against the sequence's RMS (so pauses get a
      noise floor as in a recording);
    * reverb: with probability ``reverb_probability`` (default 0: off, nothing drawn),
      the window through a room (:func:`room_impulse`) of RT60 uniform in ``reverb_rt60_s``
      and direct-to-reverberant ratio uniform in ``reverb_drr_db``, RMS kept, before the
      noise (the noise is the microphone's, not the room's);
    * warp: a vocal-tract-length factor uniform in ``warp`` (default (1, 1): off, nothing
      drawn), applied to the MFCC's mel filterbank (:func:`warped_filterbank`), as another
      speaker's formants: the corrupted audio's features are computed with it.
    * hum: with probability ``hum_probability`` (default 0: off, nothing drawn), mains hum
      after the noise (an amplifier's or a converter's, on the pauses too, digitally silent
      or not; :func:`mains_hum`) at a level uniform in ``hum_db`` dB against the
      sequence's RMS;
    * DC: with probability ``dc_probability`` (default 0: off, nothing drawn), a constant
      offset of either sign at a level uniform in ``dc_db`` dB against the sequence's RMS.
    """

    probability: float = 1.0
    gain_db: float = 12.0
    tilt: tuple[float, float] = (-0.6, 0.95)
    peak_probability: float = 0.5
    noise_probability: float = 0.5
    snr_db: tuple[float, float] = (15.0, 40.0)
    warp: tuple[float, float] = (1.0, 1.0)
    reverb_probability: float = 0.0
    reverb_rt60_s: tuple[float, float] = (0.2, 0.9)
    reverb_drr_db: tuple[float, float] = (-3.0, 12.0)
    hum_probability: float = 0.0
    hum_db: tuple[float, float] = (-40.0, -10.0)
    dc_probability: float = 0.0
    dc_db: tuple[float, float] = (-40.0, -6.0)

    def apply(self, audio: np.ndarray, sequence_rms: float, sample_rate: int,
              rng: np.random.Generator) -> np.ndarray:
        """audio float32 (N,) -> float32 (N,) corrupted copy (``audio`` untouched)."""
        x = np.asarray(audio, dtype=np.float64)
        if rng.random() >= self.probability:
            return x.astype(np.float32)
        x = lfilter([1.0, -rng.uniform(*self.tilt)], [1.0], x)
        if rng.random() < self.peak_probability:
            centre = np.exp(rng.uniform(np.log(150.0), np.log(5000.0)))
            b, a = iirpeak(centre, rng.uniform(0.7, 3.0), fs=sample_rate)
            x = x + rng.uniform(-0.7, 2.0) * lfilter(b, a, x)
        x = x * 10.0 ** (rng.uniform(-self.gain_db, self.gain_db) / 20.0)
        if self.reverb_probability > 0 and rng.random() < self.reverb_probability:
            ir = room_impulse(rng.uniform(*self.reverb_rt60_s), sample_rate, rng,
                              rng.uniform(*self.reverb_drr_db))
            x = through_room(x, ir)
        if rng.random() < self.noise_probability and sequence_rms > 0:
            noise = lfilter([1.0, -rng.uniform(-0.5, 0.99)], [1.0], rng.standard_normal(x.size))
            noise *= sequence_rms / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)
            x = x + noise * 10.0 ** (-rng.uniform(*self.snr_db) / 20.0)
        if self.hum_probability > 0 and rng.random() < self.hum_probability:
            x = x + mains_hum(x.size, sample_rate, rng) * sequence_rms * 10.0 ** (
                rng.uniform(*self.hum_db) / 20.0)
        if self.dc_probability > 0 and rng.random() < self.dc_probability:
            x = x + rng.choice((-1.0, 1.0)) * sequence_rms * 10.0 ** (
                rng.uniform(*self.dc_db) / 20.0)
        return x.astype(np.float32)

    def __post_init__(self) -> None:
        low, high = self.warp
        if not 0.5 <= low <= high <= 2.0:
            raise ValueError(f"warp range {self.warp}: need 0.5 <= low <= high <= 2")

    def warp_factor(self, rng: np.random.Generator) -> float:
        """A corrupted window's warp factor: uniform in ``warp``; 1.0, drawing nothing,
        when the range is (1, 1) (so configs without a warp keep their random stream)."""
        low, high = self.warp
        return 1.0 if low == high == 1.0 else float(rng.uniform(low, high))


def mains_hum(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """float64 (n,) hum of unit RMS: 50 or 60 Hz (even odds) and its 2nd and 3rd harmonics,
    each harmonic's amplitude uniform in [0, 1] of the fundamental's, random phases."""
    t = np.arange(n) / sample_rate
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    weights = np.concatenate([[1.0], rng.uniform(0.0, 1.0, 2)])
    hum = sum(w * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
              for k, w in enumerate(weights, start=1))
    return np.asarray(hum) / max(float(np.sqrt(np.mean(np.asarray(hum) ** 2))), 1e-30)


def room_impulse(rt60_s: float, sample_rate: int, rng: np.random.Generator,
                 direct_to_reverberant_db: float) -> np.ndarray:
    """float64 (round(rt60 * rate),) impulse response: the direct sound, 1 at t = 0, then a
    Gaussian tail whose amplitude envelope is exp(-ln(1000) t / rt60) (60 dB of energy in
    ``rt60_s``) with 10 ** (-DRR / 10) times the direct sound's energy."""
    t = np.arange(1, max(2, round(rt60_s * sample_rate))) / sample_rate
    tail = rng.standard_normal(t.size) * np.exp(-np.log(1000.0) * t / rt60_s)
    tail *= np.sqrt(10.0 ** (-direct_to_reverberant_db / 10.0) / np.sum(tail ** 2))
    return np.concatenate([[1.0], tail])


def through_room(audio: np.ndarray, impulse: np.ndarray) -> np.ndarray:
    """(N,) audio convolved with a room ``impulse``, cut to N samples (the tail past the
    end is dropped), scaled to the input's RMS: float64 (N,)."""
    x = np.asarray(audio, dtype=np.float64)
    y = fftconvolve(x, impulse)[: x.size]
    return y * (np.sqrt(np.mean(x ** 2)) / max(float(np.sqrt(np.mean(y ** 2))), 1e-30))


def warped_filterbank(matrices: MfccMatrices, factor: float) -> MfccMatrices:
    """``matrices`` with the mel filterbank read on a warped frequency axis (VTLP, Jaitly
    & Hinton 2013): filter m's weight at FFT bin frequency f is the original filter's at
    w(f) = factor * f up to WARP_KNEE_HZ * min(1, 1/factor), then linear to the Nyquist
    frequency (fixed), so no band leaves the spectrum. A formant at F Hz then lands in the
    band that held factor * F: factor > 1 makes a voice look like one with a shorter vocal
    tract (higher formants), < 1 a longer one. 1.0: ``matrices`` itself.
    """
    if factor == 1.0:
        return matrices
    cfg = matrices.config
    nyquist = cfg.sample_rate / 2.0
    f = np.linspace(0.0, nyquist, cfg.n_freqs)
    knee = min(WARP_KNEE_HZ, 0.9 * nyquist) * min(1.0, 1.0 / factor)
    warped = np.where(f <= knee, factor * f,
                      factor * knee + (nyquist - factor * knee) * (f - knee) / (nyquist - knee))
    mel = np.stack([np.interp(warped, f, row) for row in matrices.mel.astype(np.float64)])
    return dataclasses.replace(matrices, mel=mel.astype(np.float32),
                               provenance=f"{matrices.provenance}; mel warped x{factor:.4f}")
