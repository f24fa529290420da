"""Stream: one speaker's audio in, pose frames out, on a shared StreamingGenerator.

Made by :meth:`sdk.streaming.StreamingGenerator.create_stream`; the frame accounting, the
error rules and the thread-safety rules are in :mod:`sdk.streaming`'s docstring. Per
stream: a resampler to the bundle rate (sdk.audio) -> a streaming MFCC feature extractor -> a
FIFO of feature frames (:class:`_FeatureQueue`) that the generator's ``step`` takes
``chunk_frames`` at a time, plus the frames produced and not yet popped.
"""

from __future__ import annotations

import numbers
import threading
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sdk.audio import AudioError, StreamingResampler, check_sample_rate, to_float_mono
from sdk.feature_frames import StreamingFeatureExtractor
from sdk.frames import PoseFrames
from sdk.noise import frame_noise

if TYPE_CHECKING:
    import queue

    from sdk.device_front_end import DeviceFeatureQueue, DeviceFrontEnd
    from sdk.manifest import Manifest
    from sdk.mfcc import MfccMatrices
    from sdk.runners.base import GeneratorStepper

_MAX_BLOCK_SECONDS = 10  # long chunks are processed in blocks of this many input seconds
_NOISE_BLOCK_FRAMES = 256  # frame_noise is drawn per stream this many frames at a time


class StreamError(ValueError):
    """Bad input to a stream or a misuse of one; the stream is unchanged and still usable."""


class _FeatureQueue:
    """FIFO of feature frames (float32 rows of ``dim``) fed in blocks, taken in chunks."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._blocks: list[np.ndarray] = []
        self._offset = 0  # rows of _blocks[0] already taken
        self.size = 0

    def push(self, frames: np.ndarray) -> None:
        if len(frames):
            self._blocks.append(frames)
            self.size += len(frames)

    def peek(self, n: int) -> np.ndarray:
        """The first ``n`` rows (n <= size), float32 (n, dim), without removing them."""
        parts, need, offset = [], n, self._offset
        for block in self._blocks:
            part = block[offset:offset + need]
            parts.append(part)
            need -= len(part)
            offset = 0
            if need == 0:
                break
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def drop(self, n: int) -> None:
        self.size -= n
        n += self._offset
        while self._blocks and n >= len(self._blocks[0]):
            n -= len(self._blocks.pop(0))
        self._offset = n

    def clear(self) -> None:
        self._blocks, self._offset, self.size = [], 0, 0


def _check_rate(sample_rate: Any) -> int:
    try:
        return check_sample_rate("sample_rate", sample_rate)
    except AudioError as exc:
        raise StreamError(str(exc)) from exc


class StreamOwner(Protocol):
    """What a :class:`Stream` uses of the generator that made it (``StreamingGenerator``
    is one; this module does not import it, so the two do not import each other).

    manifest: the bundle's; num_joints: J of the output keypoints; lookahead_frames,
    chunk_frames: feature frames of lookahead and per step; _lock: held while the
    generator steps or frees slots; _closed: the generator was closed; _stepper: frees the
    stream's state slot; _slots_dropped: slots of streams garbage-collected unclosed, freed
    by the generator later; _matrices: the MFCC matrices (host features);
    _device_front_end: the CUDA MFCC, or None for host features.
    """

    @property
    def manifest(self) -> Manifest: ...

    num_joints: int
    lookahead_frames: int
    chunk_frames: int
    _lock: threading.RLock
    _closed: bool
    _stepper: GeneratorStepper
    _slots_dropped: queue.SimpleQueue[int]
    _matrices: MfccMatrices
    _device_front_end: DeviceFrontEnd | None


class Stream:
    """One speaker's audio in, pose frames out. Made by :meth:`StreamingGenerator.create_stream`.

    A context manager: leaving the ``with`` block (or :meth:`close`) frees its state slot.
    ``seed`` and ``style`` (the gesture-style name; ``style_index`` its model input value)
    are fixed for the stream's life.
    """

    def __init__(self, generator: StreamOwner, seed: int, slot: int,
                 style: str | None = None) -> None:
        self._generator = generator
        self.seed = seed
        spec = generator.manifest.generator
        self.style_index = spec.style_index(style)
        self.style = spec.style_names[self.style_index]
        self._slot = slot
        self._lock = threading.Lock()
        features = generator.manifest.features
        self._extractor: StreamingFeatureExtractor | DeviceFeatureQueue
        self._queue: _FeatureQueue | DeviceFeatureQueue
        front = generator._device_front_end
        if front is None:
            self._extractor = StreamingFeatureExtractor(features, generator._matrices)
            self._queue = _FeatureQueue(features.feature_dim)
        else:  # the CUDA MFCC computes the features on the device (sdk.device_front_end)
            self._extractor = self._queue = front.queue(slot)
        self._closed = False
        self._finalizer = weakref.finalize(self, generator._slots_dropped.put, slot)
        self._start_over()

    def _start_over(self) -> None:
        """Forget all input and output (caller holds the lock or owns the stream)."""
        self._extractor.reset()
        self._queue.clear()
        self._resampler: StreamingResampler | None = None
        self._input_rate: int | None = None
        self._input_samples = 0  # at the input rate
        self._model_samples = 0  # at the model rate, after resampling
        self._fed = 0  # feature frames already stepped (the next step's input index t)
        self._total_frames: int | None = None  # pose frames in all, known after input_finished
        self._pending: list[PoseFrames] = []
        self._emitted = 0
        self._noise = np.zeros((0, self._generator.manifest.generator.noise_dim), np.float32)
        self._noise_first = 0  # feature frame of _noise[0]

    def _noise_for(self, first: int, count: int) -> np.ndarray:
        """``frame_noise(seed, first, count, noise_dim)``, drawn in blocks (a pure function of
        (seed, frame), so blocks change nothing but the number of calls)."""
        offset = first - self._noise_first
        if offset < 0 or offset + count > len(self._noise):
            size = max(count, _NOISE_BLOCK_FRAMES)
            self._noise = frame_noise(self.seed, first, size, self._noise.shape[1])
            self._noise_first, offset = first, 0
        return self._noise[offset:offset + count]

    # ---- input ----
    def accept_waveform(self, samples: Any, sample_rate: int) -> None:
        """Append audio.

        Args:
            samples: (N,) mono or (N, C) channels-last (C <= 32, averaged); int16
                (/32768), int32 (/2**31), float32 or float64 (in [-1, 1]); finite. N may be 0
                (nothing happens) or any length (long input is processed in 10 s blocks).
            sample_rate: int Hz in [4000, 768000] (``sdk.audio.MIN_SAMPLE_RATE``,
                ``MAX_SAMPLE_RATE``); the same for every chunk until ``reset``.
        Raises:
            StreamError: bad dtype/shape/values/rate, a rate change, input after
                ``input_finished``, or a closed stream. Nothing is changed then.
        """
        if isinstance(samples, numbers.Integral) and hasattr(sample_rate, "__len__"):
            raise StreamError(
                f"accept_waveform(samples, sample_rate) takes the audio first; got the number "
                f"{samples} as samples and audio as sample_rate (sherpa-onnx's order is the "
                f"other way round): call accept_waveform(audio, {samples})")
        rate = _check_rate(sample_rate)
        try:
            mono = to_float_mono(samples, name="samples")
        except AudioError as exc:
            raise StreamError(str(exc)) from exc
        with self._lock:
            self._check_usable("accept_waveform")
            if self._input_rate is not None and rate != self._input_rate:
                raise StreamError(
                    f"sample_rate changed from {self._input_rate} to {rate} Hz within a stream; "
                    f"resample the audio yourself or reset(stream) to start at a new rate"
                )
            if mono.size == 0:
                return
            if self._resampler is None:
                self._input_rate = rate
                self._resampler = StreamingResampler(rate, self._generator.manifest.features
                                                     .sample_rate)
            block = _MAX_BLOCK_SECONDS * rate
            for first in range(0, mono.size, block):
                self._push_model_rate(self._resampler.process(mono[first:first + block]))
            self._input_samples += mono.size

    def _push_model_rate(self, samples: np.ndarray) -> None:
        self._model_samples += samples.size
        self._queue.push(self._extractor.accept(samples))

    def input_finished(self) -> None:
        """No more audio: the stream will emit the frames of its tail. Idempotent."""
        with self._lock:
            if self._closed:
                raise StreamError("input_finished on a closed stream")
            if self._total_frames is not None:
                return
            if self._resampler is not None:
                self._push_model_rate(self._resampler.flush())
            gen = self._generator
            total = gen.manifest.features.num_pose_frames(self._model_samples)
            inputs = 0 if total == 0 else total + gen.lookahead_frames
            chunk = gen.chunk_frames
            inputs = -(-inputs // chunk) * chunk  # whole steps; outputs past the end dropped
            self._queue.push(self._extractor.finish(inputs))
            self._total_frames = total

    def _check_usable(self, what: str) -> None:
        if self._closed:
            raise StreamError(f"{what} on a closed stream; create a new one")
        if self._total_frames is not None:
            raise StreamError(f"{what} after input_finished(); reset(stream) to start over")

    # ---- output ----
    def pop_frames(self) -> PoseFrames:
        """All frames produced since the last pop (possibly none), oldest first."""
        with self._lock:
            frames = PoseFrames.concatenate(self._pending, self._generator.num_joints)
            self._pending = []
        return frames

    # ---- state ----
    @property
    def sample_rate(self) -> int | None:
        """The input rate fixed by the first non-empty chunk (None before)."""
        return self._input_rate

    @property
    def num_samples_accepted(self) -> int:
        """Input samples (per channel) accepted since creation or reset."""
        return self._input_samples

    @property
    def num_model_samples(self) -> int:
        """Samples at the model rate so far (final after ``input_finished``)."""
        return self._model_samples

    @property
    def num_frames_emitted(self) -> int:
        """Pose frames produced so far (popped or not)."""
        return self._emitted

    @property
    def num_frames_total(self) -> int | None:
        """Pose frames the stream will produce in all; None until ``input_finished``."""
        return self._total_frames

    @property
    def num_feature_frames_queued(self) -> int:
        """Feature frames accepted and not yet consumed by a step (a server's per-stream
        backlog: ``num_feature_frames_queued / fps`` seconds of audio wait for the model)."""
        with self._lock:
            return self._queue.size

    @property
    def is_closed(self) -> bool:
        """True after :meth:`close` (the stream can no longer be used)."""
        return self._closed

    @property
    def is_input_finished(self) -> bool:
        return self._total_frames is not None

    @property
    def is_done(self) -> bool:
        """Input finished and every frame produced."""
        return self._total_frames is not None and self._emitted == self._total_frames

    def close(self) -> None:
        """Free the stream's state slot; the stream cannot be used afterwards. Idempotent."""
        with self._generator._lock, self._lock:
            if not self._closed:
                self._closed = True
                self._finalizer.detach()
                if not self._generator._closed:
                    self._generator._stepper.release_slot(self._slot)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
