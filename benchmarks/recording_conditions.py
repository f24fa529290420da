"""Recording conditions a clean synthesized voice never has, applied to test audio:
background noise and a room's reverberation (for ``benchmarks.voices_acceptance
--condition``).

Every condition is a function of the audio, its rate and a seed (numpy's
``default_rng(seed)``), so a row is reproducible:

* ``noise_15db``: pink noise (power falling 3 dB per octave, as most room and crowd noise)
  added at 15 dB SNR against the audio's RMS over the whole clip;
* ``reverb_0.5s``: a room impulse response of reverberation time RT60 = 0.5 s (a living
  room or small office): the direct sound (1 at t = 0) plus Gaussian noise decaying by
  60 dB over RT60, as much energy in that tail as in the direct sound (direct-to-
  reverberant ratio 0 dB: a talker a metre or two from the microphone); the output
  scaled so its RMS equals the input's. The tail past the clip's end is cut (the stream
  ends there too);
* ``reverb_1.2s``: the same with RT60 = 1.2 s (a hall or a bare stairwell): outside the
  range the optional room augmentation of training draws from (RT60 0.2-0.9 s), so a
  model trained with it still meets a room it never heard.

Neither is the training augmentation (:mod:`train.data.audio_augmentation`: tilt,
resonance and white noise through a tilt filter, SNR 20-45 dB): these test conditions
are harsher or of another kind (the default training has no reverberation; the optional
room augmentation, off by default, draws RT60 0.2-0.9 s).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from train.data.audio_augmentation import room_impulse, through_room

NOISE_SNR_DB = 15.0  # the noise condition's signal-to-noise ratio
REVERB_RT60_S = 0.5  # the reverb condition's reverberation time (60 dB decay)
HALL_RT60_S = 1.2  # the second room's: longer than any training room
DIRECT_TO_REVERBERANT_DB = 0.0  # the reverb condition's direct / tail energy


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """float64 (n,) noise with power spectral density ~ 1/f (above DC), unit RMS."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=np.float64)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-30)


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """(N,) audio + pink noise at ``snr_db`` dB below the audio's RMS (float64 (N,))."""
    x = np.asarray(audio, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x ** 2)))
    return x + pink_noise(x.size, rng) * rms * 10.0 ** (-snr_db / 20.0)


def reverberate(audio: np.ndarray, rt60_s: float, sample_rate: int,
                rng: np.random.Generator) -> np.ndarray:
    """(N,) audio through :func:`room_impulse`, cut to N samples, RMS kept (float64 (N,))."""
    return through_room(audio, room_impulse(rt60_s, sample_rate, rng, DIRECT_TO_REVERBERANT_DB))


CONDITIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "clean": lambda x, sr, rng: np.asarray(x, dtype=np.float64),
    "noise_15db": lambda x, sr, rng: add_noise(x, NOISE_SNR_DB, rng),
    "reverb_0.5s": lambda x, sr, rng: reverberate(x, REVERB_RT60_S, sr, rng),
    "reverb_1.2s": lambda x, sr, rng: reverberate(x, HALL_RT60_S, sr, rng),
}


TELEPHONE_RATE = 8000  # a narrowband call's sample rate (G.711 and most VoIP at 8 kHz)


def telephone(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """float32 (N,) ``audio`` as a narrowband call delivers it: resampled to
    :data:`TELEPHONE_RATE` and back with soxr (nothing above 4 kHz left; what the SDK does
    with 8 kHz input), cut or padded to N samples. Not one of :data:`CONDITIONS`, the set
    every committed voices report shares; :mod:`benchmarks.recorded_voice` scores it."""
    import soxr

    x = np.asarray(audio, dtype=np.float32)
    down = soxr.resample(x, sample_rate, TELEPHONE_RATE)
    back = np.asarray(soxr.resample(down, TELEPHONE_RATE, sample_rate), dtype=np.float32)
    return np.pad(back[:x.size], (0, max(0, x.size - back.size)))


def apply_condition(audio: np.ndarray, condition: str, sample_rate: int,
                    seed: int) -> np.ndarray:
    """float32 (N,) ``audio`` (float (N,) at ``sample_rate`` Hz) under ``condition``."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown recording condition {condition!r}; choose one of "
                         f"{', '.join(CONDITIONS)}")
    out = CONDITIONS[condition](audio, sample_rate, np.random.default_rng(seed))
    return out.astype(np.float32)
