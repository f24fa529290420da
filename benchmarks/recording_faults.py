"""Faults of real recordings, applied to test audio (for :mod:`benchmarks.recorded_voice`):
what a cheap sound card, a mains-powered amplifier, a distant or an overdriven microphone
and a lossy codec do to speech. Measured, not required: the report shows where the shipped
models keep sync and where they lose it.

Every fault is a function of the audio (float, (N,), at ``sample_rate`` Hz) and a seed
(numpy's ``default_rng(seed)``), so a row is reproducible. Levels are in dB relative to
full scale (dBFS, a sample of 1.0 is 0 dBFS):

* ``noise_floor``: pink noise at :data:`FLOOR_DBFS` RMS (a microphone's own floor: real
  recordings are never digitally silent, edited or gated ones are);
* ``dc_offset`` / ``dc_offset_over_floor``: a constant :data:`DC_OFFSET` added (a sound
  card's offset), on the audio as it is and over the noise floor;
* ``mains_hum`` / ``mains_hum_over_floor``: a 50 Hz sine of amplitude :data:`HUM_AMPLITUDE`
  (a ground loop), likewise;
* ``quiet_-20db``, ``quiet_-30db``: the audio scaled down (a distant microphone);
* ``clipped_+12db``, ``clipped_+18db``: scaled up and clipped at full scale (an
  overdriven input);
* ``opus``, ``vorbis``, ``mp3``: encoded and decoded by libsndfile (soundfile) at its
  default quality, in memory: what a call, a web page or a podcast delivers.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from benchmarks.recording_conditions import pink_noise

FLOOR_DBFS = -60.0  # the noise floor's RMS
DC_OFFSET = 0.01  # -40 dBFS: a cheap sound card's offset
HUM_AMPLITUDE = 0.01  # the 50 Hz hum's peak
HUM_HZ = 50.0


def _floor(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x + pink_noise(x.size, rng) * 10.0 ** (FLOOR_DBFS / 20.0)


def _hum(x: np.ndarray, sample_rate: int) -> np.ndarray:
    return x + HUM_AMPLITUDE * np.sin(2 * np.pi * HUM_HZ * np.arange(x.size) / sample_rate)


def _level(x: np.ndarray, db: float) -> np.ndarray:
    return np.clip(x * 10.0 ** (db / 20.0), -1.0, 1.0)


def codec_round_trip(audio: np.ndarray, sample_rate: int, container: str,
                     subtype: str) -> np.ndarray:
    """float64 (N,) ``audio`` encoded to ``container``/``subtype`` by libsndfile and decoded
    again, cut or zero-padded to N samples (codecs add priming samples)."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(audio, dtype=np.float32), sample_rate, format=container,
             subtype=subtype)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float64")
    n = np.asarray(audio).size
    return np.pad(decoded[:n], (0, max(0, n - decoded.size)))


CODECS = {"opus": ("OGG", "OPUS"), "vorbis": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}
"""The codec faults' libsndfile (container, subtype)."""


def _through(container: str, subtype: str
             ) -> Callable[[np.ndarray, int, np.random.Generator], np.ndarray]:
    return lambda x, sr, rng: codec_round_trip(x, sr, container, subtype)


FAULTS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "noise_floor": lambda x, sr, rng: _floor(x, rng),
    "dc_offset": lambda x, sr, rng: x + DC_OFFSET,
    "dc_offset_over_floor": lambda x, sr, rng: _floor(x, rng) + DC_OFFSET,
    "mains_hum": lambda x, sr, rng: _hum(x, sr),
    "mains_hum_over_floor": lambda x, sr, rng: _hum(_floor(x, rng), sr),
    "quiet_-20db": lambda x, sr, rng: _level(x, -20.0),
    "quiet_-30db": lambda x, sr, rng: _level(x, -30.0),
    "clipped_+12db": lambda x, sr, rng: _level(x, 12.0),
    "clipped_+18db": lambda x, sr, rng: _level(x, 18.0),
    **{name: _through(*codec) for name, codec in CODECS.items()},
}


def unavailable(fault: str) -> str | None:
    """Why ``fault`` cannot run here (a codec this libsndfile lacks), or None."""
    if fault not in CODECS:
        return None
    import soundfile as sf

    container, subtype = CODECS[fault]
    if container in sf.available_formats() and subtype in sf.available_subtypes(container):
        return None
    return f"libsndfile {sf.__libsndfile_version__} has no {container}/{subtype}"


def apply_fault(audio: np.ndarray, fault: str, sample_rate: int, seed: int) -> np.ndarray:
    """float32 (N,) ``audio`` (float (N,) at ``sample_rate`` Hz) with ``fault``."""
    if fault not in FAULTS:
        raise ValueError(f"unknown recording fault {fault!r}; choose one of {', '.join(FAULTS)}")
    x = np.asarray(audio, dtype=np.float64)
    return FAULTS[fault](x, sample_rate, np.random.default_rng(seed)).astype(np.float32)
