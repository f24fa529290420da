"""The runtime's GPU front end: streams' audio to the device, CUDA MFCC into the engine input.

When :class:`sdk.streaming.StreamingGenerator` runs on a stepper that takes its features
on the device (:class:`DeviceFeatureStepper`: :class:`sdk.runners.tensorrt_stepper.
TensorRTStepper`), a :class:`DeviceFrontEnd` replaces the per-stream numpy MFCC:

* ``Stream.accept_waveform`` resamples on the host as before (sdk.audio's resampler, soxr
  or sdk.decimator: CPU code, and the input rate's samples would be more bytes to move)
  and appends the model-rate samples to the stream's :class:`DeviceFeatureQueue`, a host
  backlog of float32 samples. No device call happens there: producers run on any thread,
  device work only under the generator's lock.
* ``StreamingGenerator.step`` hands the batch to :meth:`DeviceFrontEnd.step`: each
  stream's backlog goes host -> device once (one upload for the whole batch,
  :meth:`sdk.cuda.mfcc.CudaMfcc.accept`), the CUDA MFCC advances every stream on the
  engine's stream, ``write_features`` writes the step's feature frames straight into the
  engine's ``features`` binding, and :meth:`~DeviceFeatureStepper.step_device_features`
  runs the step (its CUDA graph copies no features from the host; state stays on the
  device). Poses and saliency come back as on the host path.

Frame accounting is the host path's, computed from sample counts: a stream holds
``feature_frames_ready(mfcc_frames_ready(samples)) - consumed`` feature frames (capped at
the ``input_finished`` total), where ``mfcc_frames_ready(p) = (p - n_fft/2) // hop + 1``
for ``p >= n_fft/2`` -- the count :class:`sdk.mfcc.StreamingMfcc` emits. ``input_finished``
appends the zeros (trailing silence) the last input frame's MFCC window reaches, as
``StreamingMfcc.finish`` does.

Bounded device memory: each stream slot keeps a ring of ``ring_frames`` MFCC frames on the
device. A step uploads only as much of a backlog as leaves the step's first MFCC frame in
the ring; the rest (a 10-minute chunk) waits on the host and goes up in later steps --
still once per sample. Stream slots are the stepper's slots; the device state grows (by
doubling, copied through the host) when a slot beyond it is used.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import numpy as np

from sdk.features import FeatureConfig
from sdk.mfcc import MfccMatrices
from sdk.runners.base import StepOutputs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sdk.bundle import Manifest
    from sdk.cuda.launch import KernelRunner
    from sdk.cuda.mfcc import CudaMfcc
    from sdk.cuda.pose import CudaPoseImager
    from sdk.pose_image import ImagingConfig
    from sdk.skeleton import Skeleton

INITIAL_STREAMS = 64  # stream slots of the device MFCC state before it first grows


@runtime_checkable
class DeviceFeatureStepper(Protocol):
    """A generator stepper whose features can be written on the device.

    ``kernel_runner`` launches on the stepper's CUDA stream; ``features_binding`` is the
    device address of its ``features`` input, float32 (batch, frames, feature_dim)
    C-contiguous; ``step_device_features(noise, slots)`` runs a step on what was written
    there (rows 0..len(slots)-1).
    """

    kernel_runner: Any

    @property
    def features_binding(self) -> int: ...

    def step_device_features(self, noise: np.ndarray, slots: Sequence[int],
                             styles: np.ndarray | None = None) -> StepOutputs: ...


def mfcc_frames_ready(config: FeatureConfig, samples: int) -> int:
    """MFCC frames final after ``samples`` samples: frame j's window ends at sample
    ``j * hop + n_fft // 2`` (centred frames), so ``(samples - n_fft//2) // hop + 1``."""
    half = config.n_fft // 2
    return (samples - half) // config.hop_length + 1 if samples >= half else 0


class DeviceFeatureQueue:
    """One stream's features on the device path.

    Stands in for both the host path's ``StreamingFeatureExtractor`` (``accept``,
    ``finish``, ``reset``) and its feature queue (``push``, ``drop``, ``clear``, ``size``):
    the audio waits here on the host until a step takes it to the device, and the feature
    frames exist only in the engine's input. ``accept``/``finish`` return no host frames.
    The backlog has its own lock (the innermost: a step takes it without the stream's).
    """

    def __init__(self, config: FeatureConfig, slot: int) -> None:
        self.config = config
        self.slot = slot
        self._lock = threading.Lock()
        self._none = np.zeros((0, config.feature_dim), dtype=np.float32)
        self.reset()

    # ---- the extractor's role ----
    def reset(self) -> None:
        """Start over: the backlog is dropped and the slot's device MFCC state is reset
        at the next step (device work happens only under the generator's lock)."""
        with self._lock:
            self._backlog: list[np.ndarray] = []
            self.samples = 0  # model-rate samples accepted, zeros of finish included
            self.on_device = 0  # of which uploaded
            self.consumed = 0  # feature frames stepped (dropped)
            self.limit: int | None = None  # feature frames in all, after finish
            self.reset_pending = True

    def accept(self, samples: Any) -> np.ndarray:
        """Append float (n,) model-rate samples; returns no frames (0, feature_dim). The
        samples are copied: they wait in the backlog past the call, and a caller may refill
        its buffer (a view of it here once carried the next packet's samples, or NaN)."""
        array = np.array(samples, dtype=np.float32).reshape(-1)
        if array.size:
            with self._lock:
                self._backlog.append(array)
                self.samples += array.size
        return self._none

    def finish(self, total_frames: int) -> np.ndarray:
        """End of input: ``total_frames`` feature frames in all (trailing silence appended
        for the MFCC windows they reach); returns no frames (0, feature_dim)."""
        c = self.config
        with self._lock:
            ready = self._frames_ready()
            if total_frames < ready:
                raise ValueError(f"total_frames={total_frames} but {ready} feature frames "
                                 f"were already computable; pass total_frames >= {ready}")
            needed = c.samples_needed_for_mfcc(c.mfcc_frames_needed(total_frames))
            if needed > self.samples:
                self._backlog.append(np.zeros(needed - self.samples, dtype=np.float32))
                self.samples = needed
            self.limit = total_frames
        return self._none

    # ---- the queue's role ----
    def _frames_ready(self) -> int:
        ready = int(self.config.feature_frames_ready(mfcc_frames_ready(self.config,
                                                                       self.samples)))
        return ready if self.limit is None else min(ready, self.limit)

    @property
    def size(self) -> int:
        """Feature frames accepted and not yet stepped."""
        with self._lock:
            return self._frames_ready() - self.consumed

    def push(self, frames: np.ndarray) -> None:
        if len(frames):
            raise RuntimeError("DeviceFeatureQueue.push: host feature frames on the device "
                               "path (the CUDA MFCC computes them)")

    def peek(self, n: int) -> np.ndarray:
        raise RuntimeError("the device path's feature frames live in the engine's input; "
                           "DeviceFrontEnd.step writes them there")

    def drop(self, n: int) -> None:
        with self._lock:
            self.consumed += n

    def clear(self) -> None:
        self.reset()

    # ---- for DeviceFrontEnd.step ----
    def take_upload(self, max_samples: int) -> np.ndarray:
        """Up to ``max_samples`` of the backlog, oldest first, float32 (n,), now counted as
        on the device (the caller uploads them)."""
        with self._lock:
            parts, need = [], max(max_samples, 0)
            while self._backlog and need:
                head = self._backlog[0]
                if head.size <= need:
                    parts.append(self._backlog.pop(0))
                else:
                    parts.append(head[:need])
                    self._backlog[0] = head[need:]
                need -= parts[-1].size
            out = np.concatenate(parts) if len(parts) > 1 else (
                parts[0] if parts else np.zeros(0, np.float32))
            self.on_device += out.size
            return out

    def take_reset(self) -> bool:
        with self._lock:
            pending, self.reset_pending = self.reset_pending, False
            return pending


class DeviceFrontEnd:
    """The CUDA MFCC of every stream of one generator, on its stepper's CUDA stream.

    Args:
        stepper: the generator's :class:`DeviceFeatureStepper`.
        config: the bundle's FeatureConfig; matrices: its MfccMatrices.
        chunk_frames: feature frames per step (sizes the device MFCC ring).
        streams: stream slots of the device state to start with (it grows; None:
            ``INITIAL_STREAMS``).
    """

    def __init__(self, stepper: DeviceFeatureStepper, config: FeatureConfig,
                 matrices: MfccMatrices, chunk_frames: int,
                 streams: int | None = None) -> None:
        self.stepper = stepper
        self.config = config
        self.matrices = matrices
        self.chunk_frames = chunk_frames
        self.runner: KernelRunner = stepper.kernel_runner
        # MFCC frames one step reads: mfcc_start(k + chunk - 1) + context - mfcc_start(k)
        span = (chunk_frames - 1) * config.sample_rate // (config.fps * config.hop_length)
        self.history_frames = span + 1 + config.mfcc_context
        #: samples per stream per accept launch: one step's audio plus a window
        self.max_chunk_samples = -(-chunk_frames * config.sample_rate // config.fps) \
            + config.n_fft
        self._imagers: dict[tuple[str, str], CudaPoseImager] = {}
        self.mfcc = self._make_mfcc(streams or INITIAL_STREAMS)

    def _make_mfcc(self, streams: int) -> CudaMfcc:
        from sdk.cuda.mfcc import CudaMfcc

        return CudaMfcc(self.config, self.matrices, max_streams=streams,
                        max_chunk_samples=self.max_chunk_samples,
                        history_frames=self.history_frames, runner=self.runner)

    def queue(self, slot: int) -> DeviceFeatureQueue:
        """The features of a new stream on stepper slot ``slot``."""
        return DeviceFeatureQueue(self.config, slot)

    def _ensure_streams(self, highest_slot: int) -> None:
        if highest_slot < self.mfcc.max_streams:
            return
        size = self.mfcc.max_streams
        while size <= highest_slot:
            size *= 2
        grown = self._make_mfcc(size)
        grown.copy_streams_from(self.mfcc)
        self.mfcc.close()
        self.mfcc = grown

    def upload_limit(self, queue: DeviceFeatureQueue, first_frame: int) -> int:
        """Most samples ``queue``'s slot may hold on the device so that the ring still
        keeps MFCC frame ``mfcc_start(first_frame)`` (the next step's first)."""
        c = self.config
        newest = int(c.mfcc_start(first_frame)) + self.mfcc.ring_frames  # frames ready, max
        return c.n_fft // 2 + newest * c.hop_length - 1

    def step(self, queues: Sequence[object], first_frames: Sequence[int],
             noise: np.ndarray, slots: Sequence[int],
             styles: np.ndarray | None = None) -> StepOutputs:
        """One step of ``len(queues)`` streams: their audio up, MFCC, feature frames
        ``first_frames[b] .. + frames`` into the engine's input, the engine.

        Args:
            queues: the streams' DeviceFeatureQueues (their slots are ``slots``).
            first_frames: int feature frame of each stream's first input this step.
            noise: float32 (B, frames, noise_dim), as for ``GeneratorStepper.step``.
            slots: the streams' stepper slots.
            styles: int32 (B,) style indices, as for ``GeneratorStepper.step``.
        """
        if not all(isinstance(q, DeviceFeatureQueue) for q in queues):
            raise RuntimeError("DeviceFrontEnd.step: streams made before the device front end "
                               "(their features are on the host)")
        queues = cast("list[DeviceFeatureQueue]", list(queues))
        if not queues:
            return self.stepper.step_device_features(noise, slots, styles)
        self._ensure_streams(max(q.slot for q in queues))
        ids = [q.slot for q in queues]
        fresh = [q.slot for q in queues if q.take_reset()]
        if fresh:
            self.mfcc.reset(fresh)
        pieces = [q.take_upload(self.upload_limit(q, first) - q.on_device)
                  for q, first in zip(queues, first_frames, strict=True)]
        self.mfcc.accept(ids, pieces)
        frames = int(noise.shape[1])
        self.mfcc.write_features(ids, list(first_frames), frames, self.stepper.features_binding)
        return self.stepper.step_device_features(noise, slots, styles)

    def pose_imager(self, skeleton: Skeleton, imaging: ImagingConfig) -> CudaPoseImager:
        """A :class:`sdk.cuda.pose.CudaPoseImager` on the stepper's stream (made once per
        skeleton and imaging; closed with this front end): PSD's pose images on the GPU."""
        from sdk.cuda.pose import CudaPoseImager

        key = (repr(skeleton), repr(imaging))
        imager = self._imagers.get(key)
        if imager is None:
            imager = CudaPoseImager(skeleton, imaging, runner=self.runner)
            self._imagers[key] = imager
        return imager

    def psd_imager(self, manifest: Manifest) -> CudaPoseImager:
        """:meth:`pose_imager` for the bundle's skeleton and imaging: pass it to
        :func:`sdk.bundle_psd.frames_psd` as ``imager``."""
        from sdk.pose_image import ImagingConfig

        return self.pose_imager(manifest.skeleton, ImagingConfig.from_dict(manifest.imaging))

    def close(self) -> None:
        """Free the device MFCC state and the pose imagers (not the stepper). Idempotent."""
        for imager in self._imagers.values():
            imager.close()
        self._imagers = {}
        self.mfcc.close()


class DeviceBatchFeatures:
    """:class:`sdk.stream_batch.StreamBatch`'s front end on the device path.

    Stands in for :class:`sdk.batched_features.BatchedFeatureExtractor` (``accept``,
    ``finish``, ``samples_received``, ``frames_emitted``): each row of a block goes to its
    stream's :class:`DeviceFeatureQueue`, and the "features" returned are (N, k, 0) float32
    -- the count of newly computable frames, their values being made on the device by
    :meth:`step` (which :class:`StreamBatch` calls instead of the stepper's ``step``).
    """

    def __init__(self, front: DeviceFrontEnd, slots: Sequence[int]) -> None:
        self.front = front
        self.slots = [int(s) for s in slots]
        self.queues = [front.queue(s) for s in self.slots]
        self.samples_received = 0
        self.frames_emitted = 0

    def _frames(self, end: int) -> np.ndarray:
        count, self.frames_emitted = end - self.frames_emitted, end
        return np.zeros((len(self.queues), count, 0), np.float32)

    def accept(self, block: np.ndarray) -> np.ndarray:
        """float32 (N, n) model-rate samples -> (N, k, 0): k frames became computable."""
        for queue, row in zip(self.queues, block, strict=True):
            queue.accept(row)
        self.samples_received += int(block.shape[1])
        ready = self.queues[0].size + self.queues[0].consumed
        return self._frames(ready)

    def finish(self, total_frames: int) -> np.ndarray:
        """End of input for every stream: ``total_frames`` frames in all -> (N, k, 0)."""
        for queue in self.queues:
            queue.finish(total_frames)
        return self._frames(total_frames)

    def step(self, part: slice, first_frame: int, noise: np.ndarray,
             styles: np.ndarray | None = None) -> StepOutputs:
        """Step streams ``part`` (a slice of the batch) at feature frame ``first_frame``
        (``styles``: int32 indices of those streams)."""
        queues = self.queues[part]
        out = self.front.step(queues, [first_frame] * len(queues), noise, self.slots[part],
                              styles)
        for queue in queues:
            queue.drop(int(noise.shape[1]))
        return out
