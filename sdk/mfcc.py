"""Reference MFCC (numpy only), offline and streaming, and the generator's feature frames
of a whole clip (streamed feature frames: :mod:`sdk.feature_frames`).

This is the spec the CUDA kernel matches. For a :class:`~sdk.features.FeatureConfig`
``c`` and float32 mono audio ``y`` at ``c.sample_rate``, MFCC frame ``j`` is::

    x      = y, treated as zeros before sample 0 and after its end (forever)
    frame  = x[j*hop - n_fft//2 : j*hop + n_fft//2]                    (n_fft,)
    power  = |rfft(frame * window)|**2                                 (n_freqs,)
    mel_db = 10 * log10(max(amin, mel @ power))                        (n_mels,)
    mfcc   = dct @ mel_db                                              (n_mfcc,)

with ``window``, ``mel`` and ``dct`` from :class:`MfccMatrices` (made by librosa in
``export/feature_matrices.py`` and shipped in ``sdk/data/mfcc_default.npz``). This is
``librosa.feature.mfcc`` as written in ``sdk/features.py`` (center=True, constant
padding, power_to_db(ref=1, top_db=None), DCT-II ortho); all arithmetic is float32, which
matches librosa (float32 too) to ~5e-7 of the coefficient range on speech and noise
(tests/test_mfcc.py asserts <= 1e-5).

Streaming: :class:`StreamingMfcc` keeps only the unconsumed tail (< n_fft samples plus
the chunk being processed) and emits frame ``j`` as soon as sample
``j*hop + n_fft//2 - 1`` has arrived (``FeatureConfig.samples_needed_for_mfcc``). Offline
and streaming run the same frame kernel with fixed matrix-product shapes, so their
outputs are bit-identical for any chunking, 1-sample chunks included (tested).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdk.features import DEFAULT_FEATURES, FeatureConfig

DEFAULT_MATRICES_PATH = Path(__file__).resolve().parent / "data" / "mfcc_default.npz"
"""The shipped matrices for DEFAULT_FEATURES (regenerate: python -m export.feature_matrices)."""


def _as_readonly_f32(name: str, array: Any, shape: tuple[int, ...]) -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=np.float32)
    if out.shape != shape:
        raise ValueError(f"MfccMatrices.{name}: expected shape {shape}, got {out.shape}")
    if not np.isfinite(out).all():
        raise ValueError(f"MfccMatrices.{name} contains NaN or Inf")
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class MfccMatrices:
    """The constant arrays of the MFCC front end for one FeatureConfig (all float32).

    window: (n_fft,) periodic Hann of ``win_length`` zero-padded centred in ``n_fft``
        (librosa ``pad_center(get_window("hann", win_length, fftbins=True), size=n_fft)``).
    mel: (n_mels, n_freqs) Slaney mel filterbank (``librosa.filters.mel(..., htk=False,
        norm="slaney")``), applied to the power spectrum.
    dct: (n_mfcc, n_mels) first rows of the orthonormal DCT-II matrix.
    provenance: free text naming the library calls and versions that made the arrays.
    """

    config: FeatureConfig
    window: np.ndarray
    mel: np.ndarray
    dct: np.ndarray
    provenance: str = ""
    # derived once for the kernel: the transposed filterbank, and the transposed DCT with
    # the dB factor 10 folded in.
    _mel_t: np.ndarray = field(init=False, repr=False)
    _dct_db_t: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        c = self.config
        set_ = object.__setattr__
        set_(self, "window", _as_readonly_f32("window", self.window, (c.n_fft,)))
        set_(self, "mel", _as_readonly_f32("mel", self.mel, (c.n_mels, c.n_freqs)))
        set_(self, "dct", _as_readonly_f32("dct", self.dct, (c.n_mfcc, c.n_mels)))
        set_(self, "_mel_t", np.ascontiguousarray(self.mel.T))
        set_(self, "_dct_db_t", np.ascontiguousarray((np.float32(10.0) * self.dct).T))

    def save(self, path: str | Path) -> None:
        """Write an .npz (numpy adds the suffix if missing): window, mel, dct, config_json,
        config_hash, provenance. This is the bundle's ``mfcc_matrices.npz``."""
        np.savez(
            path,
            window=self.window,
            mel=self.mel,
            dct=self.dct,
            config_json=np.array(json.dumps(self.config.to_dict(), sort_keys=True)),
            config_hash=np.array(self.config.config_hash()),
            provenance=np.array(self.provenance),
        )

    @classmethod
    def load(cls, path: str | Path, config: FeatureConfig) -> MfccMatrices:
        """Read matrices written by :meth:`save` and check they were made for ``config``.

        Raises:
            ValueError: the file is missing keys, or its FeatureConfig hash differs from
                ``config.config_hash()`` (the matrices belong to other MFCC parameters).
        """
        with np.load(path, allow_pickle=False) as data:
            missing = {"window", "mel", "dct", "config_json", "config_hash"} - set(data.files)
            if missing:
                raise ValueError(
                    f"{path}: not an MFCC matrices file (missing {sorted(missing)}); write it "
                    f"with MfccMatrices.save or python -m export.feature_matrices"
                )
            stored_hash = str(data["config_hash"])
            if stored_hash != config.config_hash():
                raise ValueError(
                    f"{path}: MFCC matrices were computed for FeatureConfig hash {stored_hash} "
                    f"({data['config_json']}), but the config in use has hash "
                    f"{config.config_hash()} ({config.to_dict()}); regenerate them for this "
                    f"config (export.feature_matrices.compute_mfcc_matrices)"
                )
            provenance = str(data["provenance"]) if "provenance" in data.files else ""
            return cls(config, data["window"], data["mel"], data["dct"], provenance)

    @classmethod
    def default(cls) -> MfccMatrices:
        """The shipped matrices for DEFAULT_FEATURES (loaded once, then shared: read-only)."""
        return _load_default()


@functools.lru_cache(maxsize=1)
def _load_default() -> MfccMatrices:
    return MfccMatrices.load(DEFAULT_MATRICES_PATH, DEFAULT_FEATURES)


def _check_matrices(config: FeatureConfig, matrices: MfccMatrices) -> None:
    if matrices.config != config:
        raise ValueError(
            f"MfccMatrices were made for FeatureConfig hash {matrices.config.config_hash()}, "
            f"not for the config given (hash {config.config_hash()}); build matching ones"
        )


def _as_samples(samples: Any, name: str) -> np.ndarray:
    """float (N,) samples as a finite float32 (N,) array (no copy when already one)."""
    array = samples if isinstance(samples, np.ndarray) else np.asarray(samples)
    if array.ndim != 1 or array.dtype.kind != "f":
        raise ValueError(
            f"{name}: expected float mono samples of shape (N,), got dtype {array.dtype} "
            f"shape {array.shape}; convert with sdk.audio.to_float_mono"
        )
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or Inf; audio samples must be finite")
    return array


class _FrameKernel:
    """The MFCC of frames cut from a float32 signal; owns its scratch (one per stream).

    Every frame goes through the same arithmetic whatever batch it came in: the FFT and
    the elementwise steps work row by row, and the two matrix products always run on
    blocks of exactly ``BLAS_ROWS`` rows, frame ``g`` (its index in the stream) always in
    row ``g % BLAS_ROWS`` (the other rows zero). BLAS picks its kernel, and so its
    summation order, by matrix shape (OpenBLAS: a gemv path for one row, a "small matrix"
    kernel below M*N*K = 1e6) and, within a shape, by a row's place in its register tile
    (seen on AMD EPYC with OpenBLAS's Haswell kernels: the same row gave other bits at
    another place in the block). Letting either follow the chunking made streaming and
    offline differ in the last bits; with both fixed they agree exactly for any chunking.
    """

    BLAS_ROWS = 32
    FFT_ROWS = 256  # frames per FFT batch: bounds the scratch (~1.3 MB) for huge chunks

    def __init__(self, config: FeatureConfig, matrices: MfccMatrices) -> None:
        self.matrices = matrices
        self.hop = config.hop_length
        self.n_fft = config.n_fft
        self.amin = np.float32(config.amin)
        self._rows = 0  # scratch capacity in frames, grown on demand up to FFT_ROWS
        self._grow(self.BLAS_ROWS)

    def _grow(self, rows: int) -> None:
        rows = min(max(rows, self._rows), self.FFT_ROWS)
        if rows == self._rows:
            return
        n_freqs = self.matrices.mel.shape[1]
        self._windowed = np.empty((rows, self.n_fft), dtype=np.float32)
        self._spectrum = np.empty((rows, n_freqs), dtype=np.complex64)
        # power rows: up to BLAS_ROWS - 1 leading rows (a frame sits at row g % BLAS_ROWS),
        # then the frames, padded with zeros to whole blocks
        padded = -(-(rows + self.BLAS_ROWS - 1) // self.BLAS_ROWS) * self.BLAS_ROWS
        self._power = np.zeros((padded, n_freqs), dtype=np.float32)
        self._rows = rows

    def _cepstra(self, power: np.ndarray, out: np.ndarray, row: int) -> None:
        """(BLAS_ROWS, n_freqs) power spectra -> MFCC of rows row .. row+len(out)-1 into
        out."""
        mel_power = power @ self.matrices._mel_t  # (BLAS_ROWS, n_mels)
        np.maximum(mel_power, self.amin, out=mel_power)
        np.log10(mel_power, out=mel_power)
        out[:] = (mel_power @ self.matrices._dct_db_t)[row:row + len(out)]

    def __call__(self, signal: np.ndarray, count: int, first_index: int = 0) -> np.ndarray:
        """float32 (count, n_mfcc); frame i is ``signal[i*hop : i*hop + n_fft]``.

        ``signal``: float32 (>= (count-1)*hop + n_fft,), unit stride. ``first_index``: the
        stream's index of frame 0 (it fixes each frame's row in the matrix products).
        """
        self._grow(count)
        out = np.empty((count, self.matrices.dct.shape[0]), dtype=np.float32)
        item = signal.itemsize
        for first in range(0, count, self._rows):
            rows = min(self._rows, count - first)
            frames = np.ndarray((rows, self.n_fft), np.float32, buffer=signal,
                                offset=first * self.hop * item, strides=(self.hop * item, item))
            windowed, spectrum = self._windowed[:rows], self._spectrum[:rows]
            np.multiply(frames, self.matrices.window, out=windowed)
            np.fft.rfft(windowed, axis=1, out=spectrum)  # type: ignore[arg-type]  # stubs: c128 only
            lead = (first_index + first) % self.BLAS_ROWS  # row of this piece's frame 0
            end = lead + rows
            power = self._power[lead:end]
            np.abs(spectrum, out=power)
            np.square(power, out=power)
            padded_rows = -(-end // self.BLAS_ROWS) * self.BLAS_ROWS
            self._power[:lead] = 0.0
            self._power[end:padded_rows] = 0.0
            for block in range(0, padded_rows, self.BLAS_ROWS):
                lo, hi = max(block, lead), min(block + self.BLAS_ROWS, end)
                self._cepstra(self._power[block:block + self.BLAS_ROWS],
                              out[first + lo - lead:first + hi - lead], lo - block)
        return out


def mfcc_offline(audio: Any, config: FeatureConfig, matrices: MfccMatrices,
                 num_frames: int | None = None, first_index: int = 0) -> np.ndarray:
    """MFCC of a whole clip: float32 (M, n_mfcc), time-major.

    Args:
        audio: float (N,) mono at ``config.sample_rate``.
        num_frames: M; default ``config.num_mfcc_frames(N)`` (= librosa's count). Any
            M >= 0 is allowed: frames past the audio are those of trailing silence.
        first_index: where the clip's frame 0 sits in a longer stream that it was cut
            from (frame m0 of the stream: ``m0``); frames then equal that stream's to the
            bit (see ``_FrameKernel``). The values do not depend on it beyond rounding.
    """
    _check_matrices(config, matrices)
    samples = _as_samples(audio, "mfcc_offline audio")
    total = config.num_mfcc_frames(len(samples)) if num_frames is None else int(num_frames)
    if total < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    pad, hop = config.n_fft // 2, config.hop_length
    length = max(pad + len(samples), (total - 1) * hop + config.n_fft)
    padded = np.zeros(length, dtype=np.float32)
    padded[pad:pad + len(samples)] = samples
    return _FrameKernel(config, matrices)(padded, total, first_index)


class StreamingMfcc:
    """MFCC of a stream fed in chunks of any size; output equals :func:`mfcc_offline`.

    ``accept`` returns the frames that became final; ``finish`` returns the rest, so the
    concatenation equals ``mfcc_offline(all_audio, num_frames=max(default, min_frames))``.
    Memory is constant: the unconsumed tail (< n_fft samples) plus one piece of at most
    ``PIECE_FRAMES`` hops; longer chunks are processed piece by piece.
    """

    PIECE_FRAMES = _FrameKernel.FFT_ROWS

    def __init__(self, config: FeatureConfig, matrices: MfccMatrices) -> None:
        _check_matrices(config, matrices)
        self.config = config
        self.matrices = matrices
        self._kernel = _FrameKernel(config, matrices)
        self._piece = self.PIECE_FRAMES * config.hop_length  # samples
        self._buffer = np.zeros(config.n_fft + self._piece, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (keeps the allocated buffer)."""
        self._start = 0  # buffer index where frame `frames_emitted` begins
        self._end = self.config.n_fft // 2  # the centre padding: n_fft//2 leading zeros
        self._buffer[: self._end] = 0.0
        self.frames_emitted = 0  # MFCC frames returned so far
        self.samples_received = 0
        self.finished = False

    def _consume(self, piece: np.ndarray) -> np.ndarray:
        """Append <= self._piece samples, return the frames that became final."""
        if self._end + len(piece) > len(self._buffer):  # move the tail (< n_fft) to the front
            tail = self._end - self._start
            self._buffer[:tail] = self._buffer[self._start:self._end]  # numpy handles overlap
            self._start, self._end = 0, tail
        self._buffer[self._end:self._end + len(piece)] = piece
        self._end += len(piece)
        available = self._end - self._start - self.config.n_fft
        if available < 0:
            return np.zeros((0, self.config.n_mfcc), dtype=np.float32)
        count = available // self.config.hop_length + 1
        out = self._kernel(self._buffer[self._start:], count, self.frames_emitted)
        self._start += count * self.config.hop_length
        self.frames_emitted += count
        return out

    def accept(self, samples: Any) -> np.ndarray:
        """Feed float (n,) samples; returns float32 (m, n_mfcc) newly final frames."""
        if self.finished:
            raise RuntimeError("StreamingMfcc.accept after finish(); call reset() first")
        chunk = _as_samples(samples, "StreamingMfcc.accept samples")
        self.samples_received += len(chunk)
        if len(chunk) <= self._piece:
            return self._consume(chunk)
        step = self._piece
        return np.concatenate([self._consume(chunk[i:i + step])
                               for i in range(0, len(chunk), step)])

    def finish(self, min_frames: int | None = None) -> np.ndarray:
        """End the stream: float32 (m, n_mfcc), the frames up to
        ``max(config.num_mfcc_frames(samples_received), min_frames)`` (trailing silence)."""
        if self.finished:
            raise RuntimeError("StreamingMfcc.finish called twice; call reset() first")
        self.finished = True
        total = max(self.config.num_mfcc_frames(self.samples_received), min_frames or 0)
        parts = [np.zeros((0, self.config.n_mfcc), dtype=np.float32)]
        while self.frames_emitted < total:  # feed exactly the zeros the last frame needs
            last_end = (total - 1 - self.frames_emitted) * self.config.hop_length + \
                self.config.n_fft
            zeros = min(self._piece, last_end - (self._end - self._start))
            parts.append(self._consume(np.zeros(zeros, dtype=np.float32)))
        return np.concatenate(parts)


def feature_frames(mfcc: np.ndarray, config: FeatureConfig, first: int, count: int
                   ) -> np.ndarray:
    """Stack MFCC frames into feature frames ``first .. first+count-1``.

    Args:
        mfcc: float32 (M, n_mfcc), MFCC frames 0..M-1 of the clip; M must be at least
            ``config.mfcc_frames_needed(first + count)``.

    Returns:
        float32 (count, feature_dim): row k-first = ``mfcc[mfcc_start(k) : mfcc_start(k) +
        mfcc_context]`` flattened frame-major (``[c0..c12 of j0, c0..c12 of j0+1, ...]``).
    """
    mfcc = np.asarray(mfcc, dtype=np.float32)
    if mfcc.ndim != 2 or mfcc.shape[1] != config.n_mfcc:
        raise ValueError(f"mfcc: expected shape (M, {config.n_mfcc}), got {mfcc.shape}")
    if first < 0 or count < 0:
        raise ValueError(f"first and count must be >= 0, got first={first}, count={count}")
    needed = config.mfcc_frames_needed(first + count)
    if count and mfcc.shape[0] < needed:
        raise ValueError(
            f"feature frames {first}..{first + count - 1} need {needed} MFCC frames, got "
            f"{mfcc.shape[0]}; compute them with mfcc_offline(..., num_frames={needed})"
        )
    starts = config.mfcc_start(np.arange(first, first + count))
    index = starts[:, None] + np.arange(config.mfcc_context)  # (count, mfcc_context)
    return mfcc[index].reshape(count, config.feature_dim)


def extract_features(audio: Any, config: FeatureConfig, matrices: MfccMatrices,
                     num_frames: int | None = None) -> np.ndarray:
    """Feature frames of a whole clip: float32 (num_frames, feature_dim).

    ``num_frames`` defaults to ``config.num_pose_frames(N)``; frames past the audio are
    built from the MFCC of trailing silence.
    """
    samples = _as_samples(audio, "extract_features audio")
    if num_frames is None:
        num_frames = config.num_pose_frames(len(samples))
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    m = max(config.num_mfcc_frames(len(samples)), config.mfcc_frames_needed(num_frames))
    return feature_frames(mfcc_offline(samples, config, matrices, m), config, 0, num_frames)
