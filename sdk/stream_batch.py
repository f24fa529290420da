"""StreamBatch: N streams of one StreamingGenerator advanced in lockstep, all work vectorised.

:class:`~sdk.stream.Stream` is the general case: any chunk size, any time, any rate per
stream -- and per-stream Python for every chunk and every step (resampler, MFCC, queue,
noise, PoseFrames), ~50 us a stream-frame, which caps a core at a few hundred streams
whatever the model costs. When streams advance together -- one packet of the same
length from each, at one input rate (a server's tick, a batch job over equal-length
clips) -- a :class:`StreamBatch` does each part once for all of them::

    batch = StreamBatch(gen, seeds=range(1000), sample_rate=48000)
    out = batch.accept(block)        # float32/int16 (N, n): row i is stream i's next n samples
    out.keypoints                    # (N, k, J, 2) pixels of the k frames that became ready
    out = batch.finish()             # no more audio: the tails (trailing silence as Stream)
    batch.close()                    # frees the N state slots (also: with StreamBatch(...) as b)

Per call: one multichannel resample, one batched MFCC (:mod:`sdk.batched_features`), and
per step one noise draw for all seeds, one model call per ``streams_per_call`` streams, one
pixel conversion. The frames are those of :meth:`StreamingGenerator.generate` on each
stream's audio (same accounting, same noise, same model; tested).

**Errors**: a block of the wrong shape, dtype or values raises ``StreamError`` before
anything changes. **Threads**: drive one StreamBatch from one thread; its steps take the
generator's lock, so it may share the generator with other streams and batches.
**BLAS threads**: the batched MFCC's matrix products are small; with numpy's BLAS
(OpenBLAS) on several threads, its threads spin between calls and, on a busy machine, made
the MFCC about 100x slower in a measurement on 2 cores. Hold BLAS to one thread while
serving (``threadpoolctl.threadpool_limits(1, "blas")``, as ``gesturert serve`` does, or
``OPENBLAS_NUM_THREADS=1``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from sdk.batched_features import BatchedFeatureExtractor, BatchedResampler, as_stream_block
from sdk.device_front_end import DeviceBatchFeatures
from sdk.noise import frame_noise_streams
from sdk.stream import StreamError
from sdk.streaming import StreamingGenerator

STEP_BATCH = 64
"""Most streams per model call on the CPU: the one-frame step's time per stream-frame is
lowest near 64 (its (B, S) state, 22 KB a stream, still fits the core's caches; at 512
streams it took 1.7x longer per frame on the 2-core EPYC, benchmarks/results/step_gemm/).
A GPU step takes as many streams per call as it holds (:func:`streams_per_call`)."""


def streams_per_call(generator: StreamingGenerator) -> int | None:
    """Streams per model call for a batching caller (StreamBatch, the server's
    BatchedStreams): a CPU step's best batch (:data:`STEP_BATCH`, or ``max_batch`` if
    lower); a GPU step (``launch_bound``) as many as it holds (``max_batch``; None: all)."""
    if generator._stepper.launch_bound:
        return generator.max_batch
    return min(generator.max_batch or STEP_BATCH, STEP_BATCH)


@dataclass(frozen=True)
class BatchFrames:
    """Frames of every stream of a batch, the same frame indices for all.

    keypoints: float32 (N, k, J, 2) pixels; saliency: float32 (N, k); index: int64 (k,)
    pose frame numbers; time: float64 (k,) seconds (index / fps).
    """

    keypoints: np.ndarray
    saliency: np.ndarray
    index: np.ndarray
    time: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])


class StreamBatch:
    """N lockstep streams on ``generator`` (see the module docstring).

    Args:
        generator: the shared generator (its chunk_frames, backend and bundle are used).
        seeds: one noise seed per stream, ints in [0, 2**63).
        sample_rate: the input rate of every stream, Hz.
        styles: one gesture-style name (or None: the default) per stream, as
            ``create_stream(style=...)``; None: every stream the default style. Streams of
            different styles step in the same model call.
    """

    def __init__(self, generator: StreamingGenerator, seeds: Iterable[int],
                 sample_rate: int, styles: Iterable[str | None] | None = None) -> None:
        self._seeds = np.array(list(seeds), dtype=np.int64)
        if self._seeds.ndim != 1 or self._seeds.size == 0 or (self._seeds < 0).any():
            raise StreamError("seeds must be one or more ints in [0, 2**63)")
        names = [None] * self._seeds.size if styles is None else list(styles)
        if len(names) != self._seeds.size:
            raise StreamError(f"styles must name one style per stream ({self._seeds.size}), "
                              f"got {len(names)}")
        try:
            self._styles = np.array([generator.manifest.generator.style_index(n)
                                     for n in names], dtype=np.int32)
        except ValueError as exc:
            raise StreamError(str(exc)) from exc
        self.generator = generator
        self.num_streams = int(self._seeds.size)
        features = generator.manifest.features
        try:
            self._resampler = BatchedResampler(sample_rate, features.sample_rate,
                                               self.num_streams)
        except ValueError as exc:
            raise StreamError(str(exc)) from exc
        self._fed = 0  # feature frames stepped (the next step's input index)
        self._total: int | None = None  # pose frames per stream, known after finish
        self._noise_dim = generator.manifest.generator.noise_dim
        stepper = generator._stepper
        with generator._lock:
            generator._check_open()
            self._slots = np.array([stepper.allocate_slot() for _ in range(self.num_streams)])
        self._closed = False
        front = generator._device_front_end
        #: the CUDA MFCC's stand-in (features made on the device), or None
        self._device = None if front is None else DeviceBatchFeatures(front, self._slots.tolist())
        self._extractor: BatchedFeatureExtractor | DeviceBatchFeatures
        if self._device is None:
            self._extractor = BatchedFeatureExtractor(features, generator._matrices,
                                                      self.num_streams)
        else:
            self._extractor = self._device
        width = 0 if self._device else features.feature_dim  # device: (N, k, 0) counts
        self._pending = np.zeros((self.num_streams, 0, width), np.float32)

    def accept(self, samples: Any) -> BatchFrames:
        """Append (N, n) samples (row i: stream i; float32/float64 in [-1, 1] or int16) and
        step every stream as far as the audio allows; returns the new frames."""
        self._check_usable("accept")
        try:
            block = as_stream_block(samples, self.num_streams)
        except ValueError as exc:
            raise StreamError(str(exc)) from exc
        features = self._extractor.accept(self._resampler.process(block))
        return self._advance(features)

    def finish(self) -> BatchFrames:
        """No more audio: the remaining frames of every stream (then the batch is done)."""
        self._check_usable("finish")
        gen = self.generator
        features = [self._extractor.accept(self._resampler.flush())]
        total = gen.manifest.features.num_pose_frames(self._extractor.samples_received)
        inputs = 0 if total == 0 else total + gen.lookahead_frames
        inputs = -(-inputs // gen.chunk_frames) * gen.chunk_frames
        features.append(self._extractor.finish(max(inputs, self._extractor.frames_emitted)))
        self._total = total
        return self._advance(np.concatenate(features, axis=1))

    def _advance(self, features: np.ndarray) -> BatchFrames:
        gen = self.generator
        chunk, lookahead = gen.chunk_frames, gen.lookahead_frames
        pending = np.concatenate([self._pending, features], axis=1) if self._pending.shape[1] \
            else features
        steps = pending.shape[1] // chunk
        keypoints, saliency = [], []
        norm = gen.manifest.normalization
        size = streams_per_call(gen) or self.num_streams
        with gen._lock:
            gen._check_open()
            for s in range(steps):
                frames = np.ascontiguousarray(pending[:, s * chunk:(s + 1) * chunk])
                noise = frame_noise_streams(self._seeds, self._fed + s * chunk, chunk,
                                            self._noise_dim)
                poses, sal = [], []
                for first in range(0, self.num_streams, size):
                    part = slice(first, first + size)
                    if self._device is None:
                        out = gen._stepper.step(frames[part], noise[part],
                                                self._slots[part].tolist(), self._styles[part])
                    else:  # the CUDA MFCC writes the features into the engine's input
                        out = self._device.step(part, self._fed + s * chunk, noise[part],
                                                self._styles[part])
                    poses.append(np.array(out.poses))  # copies: stepper buffers are reused
                    sal.append(np.array(out.saliency))
                keypoints.append(norm.canonical_to_pixels(norm.destandardize(
                    np.concatenate(poses))))
                saliency.append(np.concatenate(sal))
        self._pending = pending[:, steps * chunk:]
        index = np.arange(self._fed - lookahead, self._fed - lookahead + steps * chunk,
                          dtype=np.int64)
        self._fed += steps * chunk
        keep = (index >= 0) & (index < (np.inf if self._total is None else self._total))
        j = gen.num_joints
        kp = np.concatenate(keypoints, axis=1)[:, keep] if keypoints \
            else np.zeros((self.num_streams, 0, j, 2), np.float32)
        sal_out = np.concatenate(saliency, axis=1)[:, keep] if saliency \
            else np.zeros((self.num_streams, 0), np.float32)
        return BatchFrames(kp.astype(np.float32, copy=False), sal_out.astype(np.float32,
                                                                              copy=False),
                           index[keep], index[keep] / np.float64(gen.fps))

    def _check_usable(self, what: str) -> None:
        if self._closed:
            raise StreamError(f"{what} on a closed StreamBatch")
        if self._total is not None:
            raise StreamError(f"{what} after finish(); make a new StreamBatch")

    def close(self) -> None:
        """Free the state slots. Idempotent."""
        gen = self.generator
        with gen._lock:
            if not self._closed:
                self._closed = True
                if not gen._closed:
                    for slot in self._slots.tolist():
                        gen._stepper.release_slot(slot)

    def __enter__(self) -> StreamBatch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
