"""The front end of many streams in one call: resampling, MFCC and feature stacking.

:class:`sdk.stream.Stream` runs one soxr resampler and one
:class:`~sdk.feature_frames.StreamingFeatureExtractor` per stream: ~40 numpy calls of
Python per stream per chunk, which at 1000+ streams costs more than the model. When N
streams advance in *lockstep* -- the same input rate and the same number of samples per
call, as a server does that takes one packet per connection per tick -- the work has the
same shape for every stream, and this module does it for all of them at once:

* :class:`BatchedResampler`: at an integer multiple of the model rate (48 kHz), one
  :class:`~sdk.decimator.Decimator` over all streams (one matrix product per 16 output
  samples); else one multichannel ``soxr.ResampleStream`` (channel = stream). Either
  filters every stream alike, so each row equals that stream through
  :class:`sdk.audio.StreamingResampler` (bit for bit with soxr, to float32 rounding with
  the decimator).
* :class:`BatchedFeatureExtractor`: a (N, samples) buffer, every MFCC frame of every
  stream cut as one strided (N, frames, n_fft) view, one rFFT, one mel and one DCT matrix
  product; the feature frames (N, k, feature_dim) stacked with one fancy index. The
  spec and the frame accounting are :mod:`sdk.mfcc`'s and
  :class:`~sdk.feature_frames.StreamingFeatureExtractor`'s: for the same audio the frames
  equal theirs (to float32 rounding of the matrix products, ~1e-6 of the range; tested).

Shapes: samples are float32 (N, n) stream-major; features float32 (N, k, feature_dim).
Not thread-safe: one thread drives an instance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr

from sdk.audio import RESAMPLE_QUALITY, check_sample_rate
from sdk.decimator import Decimator, decimation_factor
from sdk.features import FeatureConfig
from sdk.mfcc import MfccMatrices


def as_stream_block(samples: Any, num_streams: int, name: str = "samples") -> np.ndarray:
    """float32 (num_streams, n) from a (num_streams, n) array; ValueError naming the problem
    (shape, dtype, NaN/Inf) otherwise. int16 is scaled by 1/32768. A float32 input comes
    back as itself, strided or not (the resamplers and the MFCC copy it into their own
    buffers; a copy here cost ~1.5 CPU us per stream-frame at 48 kHz): do not modify it."""
    array = np.asarray(samples)
    if array.ndim != 2 or array.shape[0] != num_streams:
        raise ValueError(f"{name}: expected shape ({num_streams}, n) (one row per stream), got "
                         f"{array.shape}")
    if array.dtype == np.int16:
        return np.multiply(array, np.float32(1.0 / 32768.0), dtype=np.float32)
    if array.dtype.kind != "f":
        raise ValueError(f"{name}: expected float32/float64 or int16 samples, got {array.dtype}")
    out = array.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise ValueError(f"{name}: contains NaN or Inf; audio samples must be finite")
    return out


class BatchedResampler:
    """Resample N lockstep streams from ``in_rate`` to ``out_rate`` in one call per block.

    ``process`` (N, n) -> (N, m) float32, ``flush`` -> the tails; identity when the rates
    match. Each row equals :class:`sdk.audio.StreamingResampler` over that stream.
    """

    def __init__(self, in_rate: int, out_rate: int, num_streams: int) -> None:
        self.in_rate = check_sample_rate("in_rate", in_rate)
        self.out_rate = check_sample_rate("out_rate", out_rate)
        self.num_streams = num_streams
        self._stream: soxr.ResampleStream | None = None
        self._decimator: Decimator | None = None
        factor = decimation_factor(self.in_rate, self.out_rate)
        if factor is not None:
            self._decimator = Decimator(factor, num_streams)
        elif self.in_rate != self.out_rate:
            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, num_streams,
                                               dtype="float32", quality=RESAMPLE_QUALITY)

    def process(self, block: np.ndarray) -> np.ndarray:
        """float32 (N, n) at in_rate -> float32 (N, m) at out_rate, the samples now final."""
        if self._decimator is not None:
            return self._decimator.process(block)
        if self._stream is None:
            return block
        out = self._stream.resample_chunk(np.ascontiguousarray(block.T))  # (m, N)
        return np.ascontiguousarray(out.T)

    def flush(self) -> np.ndarray:
        """The remaining output of every stream, float32 (N, m)."""
        if self._decimator is not None:
            return self._decimator.flush()
        if self._stream is None:
            return np.zeros((self.num_streams, 0), np.float32)
        tail = self._stream.resample_chunk(np.zeros((0, self.num_streams), np.float32),
                                           last=True)
        return np.ascontiguousarray(tail.T)


MEL_GROUP = 8
"""Mel bands per matrix product in the batched MFCC, each over only the FFT bins its
triangles read: 5 products of 8 of the default 40 bands took 1.1 CPU us per stream-frame
against 2.8 for the dense (514, 40) product (256 streams, one thread)."""


class FrameMfcc:
    """MFCC of many analysis frames in one pass, the arithmetic both batched front ends share
    (this module's extractor and the live server's ``BatchedStreams``): float32 (F, n_fft)
    frames -> float32 (F, n_mfcc). Window, scipy's float32 rFFT over all frames at once,
    the power spectrum as the squares of the interleaved Re/Im parts (never materialised as
    |X|^2), the mel product in ``MEL_GROUP``-band groups over only the bins they read, log10
    floored at ``amin``, the DCT in dB. :mod:`sdk.mfcc` is the spec (tested equal to float32
    rounding)."""

    def __init__(self, config: FeatureConfig, matrices: MfccMatrices) -> None:
        from scipy import fft  # imported here: `import sdk` stays numpy-only

        self._rfft = fft.rfft
        self._n_freqs = config.n_fft // 2 + 1
        self._n_mels = config.n_mels
        self._window = matrices.window.astype(np.float32)
        # |X|^2 @ mel.T == [Re X, Im X]^2 (interleaved, as complex64 lies in memory) @ each
        # mel.T row twice. The mel matrix is ~95 % zeros (triangles): MEL_GROUP bands at a
        # time, only over the bins they read
        mel2_t = np.repeat(matrices.mel.T.astype(np.float32), 2, axis=0)  # (2 n_freqs, n_mels)
        self._mel_groups: list[tuple[int, int, int, int, np.ndarray]] = []
        for first in range(0, mel2_t.shape[1], MEL_GROUP):
            last = min(first + MEL_GROUP, mel2_t.shape[1])
            used = np.flatnonzero(mel2_t[:, first:last].any(axis=1))
            lo, hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
            self._mel_groups.append((first, last, lo, hi,
                                     np.ascontiguousarray(mel2_t[lo:hi, first:last])))
        self._dct_db_t = np.ascontiguousarray((np.float32(10.0) * matrices.dct).T)
        self._amin = np.float32(config.amin)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """float32 (..., n_fft) frames (a strided view is fine) -> float32 (F, n_mfcc), F the
        number of frames, in C order."""
        # scipy's float32 rFFT vectorises across the frames (pocketfft, SIMD): ~0.5 us per
        # 512-point frame here against ~1.1 us for numpy's float64 one, ~3 us float32
        windowed = np.multiply(frames, self._window)  # a new float32 array
        spectrum = self._rfft(windowed, axis=-1, overwrite_x=True).reshape(-1, self._n_freqs)
        parts = spectrum.view(np.float32)  # (F, 2 n_freqs): Re, Im interleaved (complex64)
        np.square(parts, out=parts)
        mel = np.empty((parts.shape[0], self._n_mels), np.float32)  # (F, n_mels) mel power
        for first, last, lo, hi, block in self._mel_groups:
            np.matmul(parts[:, lo:hi], block, out=mel[:, first:last])
        np.maximum(mel, self._amin, out=mel)
        np.log10(mel, out=mel)
        return np.asarray(mel @ self._dct_db_t, np.float32)


class BatchedFeatureExtractor:
    """Streaming MFCC + feature stacking for N lockstep streams (see the module docstring).

    ``accept(samples (N, n) at the model rate)`` returns the feature frames (N, k, F) that
    became computable; ``finish(total_frames)`` the rest, up to ``total_frames`` (frames
    past the audio are those of trailing silence), as the per-stream extractor does.
    """

    def __init__(self, config: FeatureConfig, matrices: MfccMatrices, num_streams: int) -> None:
        if num_streams < 1:
            raise ValueError(f"num_streams must be >= 1, got {num_streams}")
        self.config = config
        self.num_streams = num_streams
        self._frame_mfcc = FrameMfcc(config, matrices)
        pad = config.n_fft // 2
        self._buffer = np.zeros((num_streams, 4 * config.n_fft), np.float32)
        self._start, self._end = 0, pad  # buffer columns: frame `mfcc_emitted` starts at _start
        self.mfcc_emitted = 0
        self.samples_received = 0
        self.frames_emitted = 0
        self._history = np.zeros((num_streams, 0, config.n_mfcc), np.float32)
        self._history_first = 0  # MFCC index of _history[:, 0]

    def _append(self, block: np.ndarray) -> None:
        n = block.shape[1]
        tail, capacity = self._end - self._start, self._buffer.shape[1]
        oversized = capacity > 64 * self.config.n_fft and 4 * (tail + n) < capacity
        if self._end + n > capacity or oversized:  # full, or far too big after a long block
            size = max(4 * self.config.n_fft, 2 * (tail + n))
            grown = np.zeros((self.num_streams, size), np.float32)
            grown[:, :tail] = self._buffer[:, self._start:self._end]
            self._buffer, self._start, self._end = grown, 0, tail
        self._buffer[:, self._end:self._end + n] = block
        self._end += n

    def _mfcc(self) -> np.ndarray:
        """MFCC frames whose windows are complete: float32 (N, m, n_mfcc)."""
        c = self.config
        available = self._end - self._start - c.n_fft
        if available < 0:
            return np.zeros((self.num_streams, 0, c.n_mfcc), np.float32)
        count = available // c.hop_length + 1
        item = self._buffer.itemsize
        frames = np.lib.stride_tricks.as_strided(
            self._buffer[:, self._start:], (self.num_streams, count, c.n_fft),
            (self._buffer.strides[0], c.hop_length * item, item), writeable=False)
        out = self._frame_mfcc(frames).reshape(self.num_streams, count, c.n_mfcc)
        self._start += count * c.hop_length
        self.mfcc_emitted += count
        return out

    def _features(self, new_mfcc: np.ndarray, end: int) -> np.ndarray:
        """Store new MFCC frames; return feature frames frames_emitted .. end-1."""
        c = self.config
        keep_from = int(c.mfcc_start(self.frames_emitted)) - self._history_first
        self._history = np.concatenate([self._history[:, keep_from:], new_mfcc], axis=1)
        self._history_first += keep_from
        count = end - self.frames_emitted
        if count <= 0:
            return np.zeros((self.num_streams, 0, c.feature_dim), np.float32)
        starts = c.mfcc_start(np.arange(self.frames_emitted, end)) - self._history_first
        index = starts[:, None] + np.arange(c.mfcc_context)  # (k, context)
        self.frames_emitted = end
        return self._history[:, index].reshape(self.num_streams, count, c.feature_dim)

    def accept(self, block: np.ndarray) -> np.ndarray:
        """float32 (N, n) samples at the model rate -> float32 (N, k, feature_dim)."""
        self._append(block)
        self.samples_received += block.shape[1]
        mfcc = self._mfcc()
        return self._features(mfcc, self.config.feature_frames_ready(self.mfcc_emitted))

    def finish(self, total_frames: int) -> np.ndarray:
        """End every stream: feature frames up to ``total_frames``, float32 (N, k, F)."""
        c = self.config
        if total_frames < self.frames_emitted:
            raise ValueError(f"total_frames={total_frames} but {self.frames_emitted} feature "
                             f"frames were already emitted")
        mfcc_total = max(c.num_mfcc_frames(self.samples_received),
                         c.mfcc_frames_needed(total_frames))
        mfcc = np.zeros((self.num_streams, 0, c.n_mfcc), np.float32)
        if mfcc_total > self.mfcc_emitted:  # exactly the zeros the last frame's window needs
            need = (mfcc_total - self.mfcc_emitted - 1) * c.hop_length + c.n_fft \
                - (self._end - self._start)
            self._append(np.zeros((self.num_streams, max(0, need)), np.float32))
            mfcc = self._mfcc()
        return self._features(mfcc, total_frames)
