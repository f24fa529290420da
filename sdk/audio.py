"""Audio input: files and arrays to float32 mono at the model rate, and resampling.

Everything the models see is float32 mono in [-1, 1] at ``FeatureConfig.sample_rate``
(16 kHz). Files are read through soundfile (libsndfile: wav, flac, ogg, ...), arrays
are converted by :func:`to_float_mono`, and rates are changed by a streaming resampler,
so that :func:`resample` over a whole clip and :class:`StreamingResampler` over any
chunking of it give the same output (``tests/test_audio.py`` checks random chunkings down
to 1-sample chunks):

* an input rate that is an integer multiple (2..16) of the output rate (48 kHz, 32 kHz,
  96 kHz -> 16 kHz) is decimated by :class:`sdk.decimator.Decimator`, a FIR low-pass run
  as matrix products over all streams, cheaper than soxr and holding back 2-3 ms instead of
  soxr's 21 ms (benchmarks/results/step_gemm/); bit-identical over any chunking too;
* every other rate by soxr (a polyphase resampler) through its streaming API: bit-identical
  over any chunking, because soxr's state after a chunk does not depend on where chunks
  were cut.

Every problem with the input raises :class:`AudioError` naming the file or array and
what was wrong.
"""

from __future__ import annotations

import numbers
import os
import re
from typing import Any

import numpy as np
import soundfile
import soxr

from sdk.decimator import Decimator, decimation_factor
from sdk.features import DEFAULT_FEATURES

MAX_CHANNELS = 32
"""Most channels accepted in an (N, C) array; more almost always means (C, N) was passed."""

MIN_SAMPLE_RATE = 4000
"""Lowest sample rate accepted, Hz. Lower rates in files are corrupt headers in practice,
and resampling them to 16 kHz multiplies memory by 16000 / rate (a WAV claiming 1 Hz
asked for 10 GB)."""

MAX_SAMPLE_RATE = 768000
"""Highest sample rate accepted, Hz (the top rate of audio interfaces; soxr does not
return for rates near 2**63)."""

RESAMPLE_QUALITY = "HQ"
"""soxr quality preset (soxr's own default: 20-bit precision, steep low-pass); used for the
rates that are not an integer multiple of the output rate (see the module docstring)."""

_INT_SCALE = {np.dtype(np.int16): 1.0 / 32768.0, np.dtype(np.int32): 1.0 / 2.0**31}
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# libsndfile's open log says "data : <declared> (should be <present>)" for a short WAV.
_SHORT_DATA_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMED_SIZE_MARKERS = (0, 0xFFFFFFFF)  # sizes written by writers that stream to a pipe
_MISLEADING_OPEN_ERROR = "File does not exist or is not a regular file"


class AudioError(ValueError):
    """Audio input that cannot be used; the message names the input and the problem."""


def check_sample_rate(name: str, rate: Any) -> int:
    """``rate`` as an int, or :class:`AudioError` unless it is an integer number of Hz in
    [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]; ``name`` is what the message calls it."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral) or rate <= 0:
        shape = getattr(rate, "shape", None)  # audio passed as the rate: no 1000-value repr
        shown = (f"an array of shape {tuple(shape)}" if shape
                 else f"a {type(rate).__name__} of length {len(rate)}"
                 if isinstance(rate, (list, tuple, bytes)) else repr(rate))
        raise AudioError(f"{name} must be a positive integer number of Hz, got {shown}")
    rate = int(rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{name} {rate} Hz is outside the supported {MIN_SAMPLE_RATE}.."
                         f"{MAX_SAMPLE_RATE} Hz; resample the audio to a common rate first")
    return rate


def _first_non_finite(samples: np.ndarray) -> int | None:
    """Index (along axis 0) of the first NaN/Inf sample, or None when all are finite."""
    finite = np.isfinite(samples)
    if finite.all():
        return None
    if finite.ndim > 1:
        finite = finite.all(axis=tuple(range(1, finite.ndim)))
    return int(np.argmin(finite))


def to_float_mono(samples: Any, name: str = "samples") -> np.ndarray:
    """Convert an audio array to float32 mono.

    Args:
        samples: shape (N,) mono or (N, C) with channels LAST (C <= MAX_CHANNELS).
            dtype int16 (scaled by 1/32768), int32 (scaled by 1/2**31), float32 or
            float64 (taken as already in [-1, 1]). Must be finite.
        name: what to call the input in error messages.

    Returns:
        float32 (N,): the mean of the channels. May be ``samples`` itself when it is
        already a float32 1-D array (no copy); do not modify it if you need the input.

    Raises:
        AudioError: non-numeric or unsupported dtype, ndim not 1 or 2, too many
            channels (looks like (C, N)), or NaN/Inf values.
    """
    array = np.asarray(samples)
    dtype = array.dtype
    if dtype not in _INT_SCALE and dtype not in _FLOAT_DTYPES:
        raise AudioError(
            f"{name}: expected int16, int32, float32 or float64 audio samples, got dtype "
            f"{dtype}; convert it with numpy first (e.g. x.astype(np.float32) for "
            f"values in [-1, 1])"
        )
    if array.ndim not in (1, 2):
        raise AudioError(
            f"{name}: expected shape (N,) or (N, channels), got shape {array.shape}"
        )
    if array.ndim == 2:
        if array.shape[1] == 0 or array.shape[1] > MAX_CHANNELS:
            raise AudioError(
                f"{name}: expected shape (N, channels) with channels last and 1..{MAX_CHANNELS} "
                f"channels, got shape {array.shape}; if channels come first, pass samples.T"
            )
    if dtype in _INT_SCALE:
        mono = array.astype(np.float32) if array.ndim == 1 else array.mean(axis=1, dtype=np.float64)
        return np.multiply(mono, _INT_SCALE[dtype], dtype=np.float32)
    bad = _first_non_finite(array)
    if bad is not None:
        raise AudioError(
            f"{name}: contains NaN or Inf (first at sample {bad} of {array.shape[0]}); "
            f"audio samples must be finite"
        )
    if array.ndim == 2:
        array = array.mean(axis=1, dtype=np.float64 if dtype == np.float64 else np.float32)
    return np.ascontiguousarray(array, dtype=np.float32)


class StreamingResampler:
    """Resample a mono stream chunk by chunk; output independent of chunking.

    ``process(x)`` returns the output samples that became available (the filter keeps
    its length of input, so early calls may return fewer samples than
    ``len(x) * out_rate / in_rate``); ``flush()`` returns the rest at the end of the
    stream. Integer-multiple rates go through :class:`sdk.decimator.Decimator`, the others
    through soxr (module docstring). When ``in_rate == out_rate`` both are the identity
    (no delay, no filter).
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = check_sample_rate("in_rate", in_rate)
        self.out_rate = check_sample_rate("out_rate", out_rate)
        self._stream: soxr.ResampleStream | None = None
        self._decimator: Decimator | None = None
        factor = decimation_factor(self.in_rate, self.out_rate)
        if factor is not None:
            self._decimator = Decimator(factor, 1)
        elif self.in_rate != self.out_rate:
            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )
        self._flushed = False

    @property
    def is_identity(self) -> bool:
        """True when in_rate == out_rate (samples pass through unchanged)."""
        return self._stream is None and self._decimator is None

    def input_needed(self, outputs: int) -> int | None:
        """Input samples from the start after which ``process`` has returned ``outputs``
        output samples in all; None where that is not known in advance (soxr)."""
        if self._decimator is not None:
            return self._decimator.input_needed(outputs)
        return max(0, outputs) if self._stream is None else None

    def process(self, samples: Any) -> np.ndarray:
        """Feed input samples at ``in_rate`` (any form :func:`to_float_mono` accepts).

        Returns float32 (n,) output samples at ``out_rate`` that are now final.
        """
        if self._flushed:
            raise RuntimeError("StreamingResampler.process after flush(); call reset() first")
        mono = to_float_mono(samples, name="resampler input")
        if self._decimator is not None:
            return self._decimator.process(mono[None, :])[0]
        if self._stream is None:
            return mono.copy()
        return self._stream.resample_chunk(mono)

    def flush(self) -> np.ndarray:
        """End the stream: float32 (n,) remaining output samples. Then reset() to reuse."""
        if self._flushed:
            raise RuntimeError("StreamingResampler.flush called twice; call reset() first")
        self._flushed = True
        if self._decimator is not None:
            return self._decimator.flush()[0]
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def reset(self) -> None:
        """Start a new stream with the same rates."""
        if self._stream is not None:
            self._stream.clear()
        if self._decimator is not None:
            self._decimator.reset()
        self._flushed = False


def resample(samples: Any, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole clip: float32 (floor(N * out_rate / in_rate + 1/2),) mono.

    ``samples``: anything :func:`to_float_mono` accepts, at ``in_rate`` Hz. Defined as
    :class:`StreamingResampler` over one chunk plus ``flush()``, so offline and streaming
    resampling agree exactly.
    """
    resampler = StreamingResampler(in_rate, out_rate)
    head = resampler.process(samples)
    return np.concatenate([head, resampler.flush()])


def _describe_open_failure(path: str, exc: Exception) -> str:
    detail = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
    if detail.startswith(_MISLEADING_OPEN_ERROR):
        # libsndfile's last-resort message after every format probe failed (the file
        # exists: load_audio checked); saying it may not exist would mislead.
        detail = "format not recognised"
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"is a text file, not audio (starts with {head[:24]!r}); libsndfile: {detail}"
    if head.startswith((b"RIFF", b"RIFX", b"RF64")):
        return f"has a broken or truncated WAV header ({detail})"
    return f"is not a readable audio file in a format libsndfile knows ({detail})"


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read an audio file as it is: float32 (N, C) samples and the file's rate in Hz.

    Any format libsndfile reads (wav, flac, ogg/vorbis, ...); integer PCM is scaled to
    [-1, 1]. Channels and rate are left as they are (a stream mixes and resamples them).

    Raises:
        AudioError: the file is missing, a directory, unreadable, empty (0 bytes or no
            samples), not audio, truncated, declares a rate outside
            [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE], or contains NaN/Inf. The message names the file.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise AudioError(f"audio file {name!r} does not exist")
    if os.path.isdir(name):
        raise AudioError(f"audio file {name!r} is a directory, expected a file")
    if not os.access(name, os.R_OK):
        raise AudioError(f"audio file {name!r} is not readable (permission denied)")
    if os.path.getsize(name) == 0:
        raise AudioError(f"audio file {name!r} is empty (0 bytes)")
    try:
        sound = soundfile.SoundFile(name)
    except soundfile.LibsndfileError as exc:
        raise AudioError(f"audio file {name!r} {_describe_open_failure(name, exc)}") from exc
    with sound:
        declared_frames, rate, log = sound.frames, sound.samplerate, sound.extra_info
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise AudioError(
                f"audio file {name!r} declares a sample rate of {rate} Hz, outside the "
                f"supported {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz; its header is probably "
                f"corrupt (or resample the file to a common rate first)"
            )
        try:
            data = sound.read(dtype="float32", always_2d=True)
        except (soundfile.SoundFileError, RuntimeError) as exc:
            raise AudioError(
                f"audio file {name!r} could not be decoded, it is probably truncated or "
                f"corrupt ({exc})"
            ) from exc
    short = _SHORT_DATA_CHUNK.search(log)
    if short is not None and int(short.group(1)) not in _STREAMED_SIZE_MARKERS:
        raise AudioError(
            f"audio file {name!r} is truncated: its header declares {short.group(1)} bytes "
            f"of samples but the file holds {short.group(2)}; re-export or re-download it"
        )
    if data.shape[0] < declared_frames:
        raise AudioError(
            f"audio file {name!r} is truncated: header declares {declared_frames} frames, "
            f"only {data.shape[0]} could be read"
        )
    if data.shape[0] == 0:
        hint = " (the stream ends unexpectedly: truncated?)" if "unexpectedly" in log else ""
        raise AudioError(f"audio file {name!r} contains no audio samples{hint}")
    bad = _first_non_finite(data)
    if bad is not None:
        raise AudioError(
            f"audio file {name!r}: contains NaN or Inf (first at sample {bad} of "
            f"{data.shape[0]}); audio samples must be finite"
        )
    return data, int(rate)


def load_audio(path: str | os.PathLike[str], target_rate: int = DEFAULT_FEATURES.sample_rate
               ) -> np.ndarray:
    """Read an audio file as float32 mono at ``target_rate`` Hz.

    :func:`read_audio` (every check), then channels are averaged and the rate is changed
    with :func:`resample`.

    Returns:
        float32 (N,) samples at ``target_rate``.

    Raises:
        AudioError: as :func:`read_audio`, naming the file.
    """
    target_rate = check_sample_rate("target_rate", target_rate)
    data, rate = read_audio(path)
    mono = to_float_mono(data, name=f"audio file {os.fspath(path)!r}")
    return resample(mono, rate, target_rate)
