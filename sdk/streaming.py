"""StreamingGenerator: speech chunks in, pose frames out, many streams batched per step.

The shape is sherpa-onnx's: one shared generator (bundle, backend session or engine)
and one light :class:`Stream` per speaker::

    gen = StreamingGenerator("bundle/", backend="auto")
    s = gen.create_stream(seed=0)                    # style="..." : one of gen.styles
    s.accept_waveform(samples, sample_rate=48000)   # any size, rate, dtype; (N,) or (N, C)
    while gen.is_ready(s):
        gen.step([s])                                # or many ready streams at once
    frames = s.pop_frames()                          # PoseFrames
    s.input_finished()                               # then step until not ready: the tail

Per stream: a resampler to the bundle rate (:mod:`sdk.audio`) -> a streaming MFCC feature
extractor -> a queue of feature frames. A step takes ``chunk_frames`` feature frames from each
stream (streams may be at different positions), adds ``frame_noise(seed, t, ...)``,
gathers the streams' states, runs the model, scatters the states back, drops the first
``lookahead_frames`` outputs of a stream (negative frame indices), and turns standardised
poses into pixels with the manifest's PoseNormalization.

**Frame accounting.** ``sample_rate``-Hz input of N samples becomes
``model_rate_samples(N, sample_rate, model_rate) = floor(N * model_rate / sample_rate + 1/2)``
samples at the model rate (the resampler's output length; identity at the model rate).
After ``input_finished`` a stream yields exactly ``FeatureConfig.num_pose_frames`` of that many
frames, numbered 0, 1, ... with ``time = index / fps``. To get the last one out, the
runtime feeds features of trailing silence for ``lookahead_frames`` more input frames
(rounded up to whole steps; outputs past the end are dropped).

**Errors.** Bad input raises :class:`StreamError` (a ValueError) naming the problem,
before anything changes: the stream stays usable and keeps everything it had accepted.
An empty chunk is accepted and does nothing. Multi-channel (N, C) input is averaged.
A stream's sample rate is fixed by its first non-empty chunk until ``reset``.

**Thread safety.** All methods of :class:`StreamingGenerator` and :class:`Stream` may
be called from any thread. ``step``/``reset``/``create_stream``/``generate`` serialise on
the generator's lock (one model call at a time). A stream's own methods take that
stream's lock, so a producer thread may ``accept_waveform`` and a consumer thread
``pop_frames`` while a third thread steps; feed one stream from one thread at a time
(chunks from two threads interleave in an unspecified order). The lock order is
generator, then stream; stream methods never take the generator's lock except
``Stream.close``. Output arrays are the caller's (fresh copies).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np

from sdk.bundle import Bundle, BundleError, Manifest, load_bundle
from sdk.device_front_end import DeviceFeatureStepper, DeviceFrontEnd
from sdk.frames import PoseFrames
from sdk.mfcc import MfccMatrices
from sdk.runners.base import FEATURES, NOISE, STATE, STYLE, GeneratorStepper
from sdk.runners.select import BackendChoice, BackendConfig, create_stepper
from sdk.stream import Stream, StreamError

__all__ = ["GeneratorConfig", "Stream", "StreamError", "StreamingGenerator",
           "model_rate_samples"]


def model_rate_samples(n_samples: int, sample_rate: int, model_rate: int) -> int:
    """Samples at ``model_rate`` that ``n_samples`` at ``sample_rate`` resample to.

    ``floor(n * model_rate / sample_rate + 1/2)`` (round half up), the total output of
    :class:`sdk.audio.StreamingResampler` after ``flush`` (exactly ``n`` when the rates match).
    """
    return (2 * n_samples * model_rate + sample_rate) // (2 * sample_rate)


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything :class:`StreamingGenerator` needs.

    Attributes:
        bundle: bundle directory or .tar.
        backend: backend choice and set-up (``BackendConfig(backend="auto")``).
        chunk_frames: feature frames each stream contributes per step (None: the
            manifest's ``generator.chunk_frames``). Larger = fewer model calls, more latency.
        max_batch: most streams per model call; larger ``step`` calls are split (None:
            the backend's limit, if any).
        verify_bundle: check every file's sha256 at load.
        device_front_end: on a backend that takes features on the GPU (tensorrt), compute
            them with the CUDA MFCC straight into the engine's input
            (:mod:`sdk.device_front_end`); False keeps the numpy MFCC on the host.
    """

    bundle: str | os.PathLike[str]
    backend: BackendConfig = field(default_factory=BackendConfig)
    chunk_frames: int | None = None
    max_batch: int | None = None
    verify_bundle: bool = True
    device_front_end: bool = True

    def __post_init__(self) -> None:
        for name in ("chunk_frames", "max_batch"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value <= 0):
                raise ValueError(f"GeneratorConfig.{name} must be a positive int or None, "
                                 f"got {value!r}")


class StreamingGenerator:
    """The shared generator: a bundle's model on one backend, stepping many streams.

    Args:
        source: a bundle path, or a :class:`GeneratorConfig`.
        backend: "auto" | "onnxruntime" | "onnxruntime-cpu" | "onnxruntime-gpu" |
            "tensorrt", or a :class:`BackendConfig`; overrides the config's backend.
            Or a ready :class:`~sdk.runners.base.GeneratorStepper` of this bundle's model
            (e.g. ``export.torch_runner.TorchGeneratorStepper``): it is used as is, checked
            against the manifest, and closed with the generator.
    Raises:
        BundleError: the bundle is missing, corrupt, or inconsistent with its model.
        BackendError: the requested backend cannot run here.
    """

    def __init__(self, source: str | os.PathLike[str] | GeneratorConfig,
                 backend: str | BackendConfig | GeneratorStepper | None = None) -> None:
        config = source if isinstance(source, GeneratorConfig) else GeneratorConfig(source)
        supplied: GeneratorStepper | None = None
        if isinstance(backend, GeneratorStepper):
            supplied = backend
        elif backend is not None:
            config = dataclasses.replace(config, backend=BackendConfig(backend)
                                         if isinstance(backend, str) else backend)
        self.config = config
        self.bundle: Bundle = load_bundle(config.bundle, verify=config.verify_bundle)
        # a .tar bundle's unpacked copy goes when the generator is garbage-collected (not at
        # close: callers may still read the bundle's files, e.g. the demo scores with posesync)
        self._remove_unpacked = None if self.bundle.unpacked_dir is None else weakref.finalize(
            self, shutil.rmtree, self.bundle.unpacked_dir, ignore_errors=True)
        manifest = self.manifest
        spec = manifest.generator
        try:
            self._matrices = MfccMatrices.load(self.bundle.path(manifest.mfcc_matrices),
                                               manifest.features)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{self.bundle.path(manifest.mfcc_matrices)}: {exc}") from exc
        self.num_joints = manifest.normalization.num_joints
        if manifest.skeleton.num_joints != self.num_joints:
            raise BundleError(f"{self.bundle.root}: skeleton has {manifest.skeleton.num_joints} "
                              f"joints, normalisation {self.num_joints}; re-export")
        self.lookahead_frames = spec.lookahead_frames
        self.chunk_frames = config.chunk_frames or spec.chunk_frames
        self._lock = threading.RLock()
        self._slots_dropped: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._closed = True
        #: the GPU front end (None: features are computed on the host)
        self._device_front_end: DeviceFrontEnd | None = None
        self._stepper: GeneratorStepper
        self.backend: BackendChoice
        if supplied is not None:
            self._stepper = supplied
            self.backend = BackendChoice(supplied.backend, "a stepper supplied by the caller")
        else:
            self._stepper, self.backend = create_stepper(self.bundle, config.backend,
                                                         self.chunk_frames)
        self._closed = False
        self._check_model()
        if config.device_front_end and isinstance(self._stepper, DeviceFeatureStepper):
            try:
                self._device_front_end = DeviceFrontEnd(self._stepper, manifest.features,
                                                        self._matrices, self.chunk_frames)
            except Exception:
                self.close()
                raise
        limits = [b for b in (config.max_batch, self._stepper.max_batch) if b is not None]
        self.max_batch: int | None = min(limits) if limits else None

    def _check_model(self) -> None:
        """The model's inputs must agree with the manifest (feature, noise and state sizes)."""
        meta = self._stepper.runner.get_input_metadata()
        spec, features = self.manifest.generator, self.manifest.features
        expected = {FEATURES: features.feature_dim, NOISE: spec.noise_dim, STATE: spec.state_size}
        for name, size in expected.items():
            last = meta[name].shape[-1]
            if isinstance(last, int) and last != size:
                self.close()
                raise BundleError(f"{self.bundle.root}: generator input {name} has last axis "
                                  f"{last}, the manifest says {size}; re-export the bundle")
        if (STYLE in meta) != bool(spec.styles):
            self.close()
            has = "has" if STYLE in meta else "lacks"
            raise BundleError(f"{self.bundle.root}: the generator model {has} a {STYLE} "
                              f"input but the manifest lists styles "
                              f"{list(spec.styles)}; re-export the bundle")

    @property
    def device_front_end(self) -> DeviceFrontEnd | None:
        """The CUDA MFCC feeding the engine's input (and PSD's pose imager), or None when
        features are computed on the host."""
        return self._device_front_end

    @property
    def manifest(self) -> Manifest:
        """The bundle's manifest (every value training used and serving needs)."""
        return self.bundle.manifest

    @property
    def fps(self) -> int:
        return int(self.manifest.features.fps)

    @property
    def backend_name(self) -> str:
        """"tensorrt" | "onnxruntime-gpu" | "onnxruntime-cpu", or a supplied stepper's
        ``backend`` (e.g. "torch-cuda")."""
        return self.backend.backend

    @property
    def algorithmic_latency_seconds(self) -> float:
        """Longest wait, over frames, from the end of a frame's audio to the step that
        can produce it: lookahead + the MFCC window + waiting for a whole chunk (compute
        time not included)."""
        return self.manifest.features.algorithmic_latency_seconds(
            self.lookahead_frames, self.chunk_frames
        )

    @property
    def styles(self) -> tuple[str, ...]:
        """The gesture styles a stream may ask for (the manifest's; a bundle from before
        styles has one, "default")."""
        return self.manifest.generator.style_names

    @property
    def default_style(self) -> str:
        """The style of a stream created without one."""
        return self.manifest.generator.default_style_name

    # ---- streams ----
    def create_stream(self, seed: int = 0, style: str | None = None) -> Stream:
        """A new stream whose noise is ``frame_noise(seed, ...)``; seed in [0, 2**63).

        ``style``: one of :attr:`styles` (None: :attr:`default_style`); an unknown name
        raises StreamError listing the styles.
        """
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) \
                or not 0 <= seed < 2**63:
            raise StreamError(f"seed must be an int in [0, 2**63), got {seed!r}")
        try:
            self.manifest.generator.style_index(style)
        except ValueError as exc:
            raise StreamError(str(exc)) from exc
        with self._lock:
            self._check_open()
            self._release_dropped()
            return Stream(self, int(seed), self._stepper.allocate_slot(), style)

    def is_ready(self, stream: Stream) -> bool:
        """True when ``stream`` has a whole step of features queued."""
        with stream._lock:
            return not stream._closed and stream._queue.size >= self.chunk_frames

    def reset(self, stream: Stream) -> None:
        """Start ``stream`` over (same seed): input, state and unpopped frames are dropped."""
        self._check_own(stream)
        with self._lock, stream._lock:
            self._check_open()
            if stream._closed:
                raise StreamError("reset on a closed stream; create a new one")
            self._stepper.reset_slot(stream._slot)
            stream._start_over()

    def step(self, streams: Iterable[Stream]) -> None:
        """Advance every stream by one step of ``chunk_frames`` frames, batched.

        Raises:
            StreamError: a stream is not ready, closed, repeated, or from another generator.
                Checked before anything runs: no stream is changed then.
        """
        streams = list(streams)
        for stream in streams:
            self._check_own(stream)
        if len({id(s) for s in streams}) != len(streams):
            raise StreamError("step got the same stream twice")
        with self._lock:
            self._check_open()
            self._release_dropped()
            chunk = self.chunk_frames
            for i, stream in enumerate(streams):
                with stream._lock:
                    if stream._closed or stream._queue.size < chunk:
                        raise StreamError(
                            f"stream {i} of {len(streams)} is not ready (it has "
                            f"{stream._queue.size} of the {chunk} feature frames a step needs"
                            f"{', and is closed' if stream._closed else ''}); step only streams "
                            f"for which is_ready() is True"
                        )
            size = self.max_batch or len(streams) or 1
            for first in range(0, len(streams), size):
                self._step_batch(streams[first:first + size])

    def _step_batch(self, streams: Sequence[Stream]) -> None:
        chunk = self.chunk_frames
        front = self._device_front_end
        features, noise, starts = [], [], []
        for stream in streams:
            with stream._lock:
                if front is None:
                    features.append(stream._queue.peek(chunk))
                starts.append(stream._fed)
                noise.append(stream._noise_for(stream._fed, chunk))
        slots = [s._slot for s in streams]
        styles = np.array([s.style_index for s in streams], dtype=np.int32)
        if front is None:
            out = self._stepper.step(np.stack(features), np.stack(noise), slots, styles)
        else:  # audio up, CUDA MFCC into the engine's input, the step
            out = front.step([s._queue for s in streams],
                             starts, np.stack(noise), slots, styles)
        norm = self.manifest.normalization
        keypoints = norm.canonical_to_pixels(norm.destandardize(out.poses))  # (B, Tc, J, 2)
        saliency = np.array(out.saliency, dtype=np.float32)  # a copy: out may be reused
        for b, stream in enumerate(streams):
            index = np.arange(starts[b] - self.lookahead_frames,
                              starts[b] - self.lookahead_frames + chunk, dtype=np.int64)
            with stream._lock:
                stream._queue.drop(chunk)
                stream._fed += chunk
                end = stream._total_frames
                keep = (index >= 0) & (index < (end if end is not None else np.inf))
                if keep.any():
                    stream._pending.append(PoseFrames(
                        keypoints=keypoints[b][keep], saliency=saliency[b][keep],
                        time=index[keep] / np.float64(self.fps), index=index[keep]))
                    stream._emitted += int(keep.sum())

    def generate(self, audio: Any, sample_rate: int, seed: int = 0,
                 chunk_samples: Iterable[int] | None = None, style: str | None = None
                 ) -> PoseFrames:
        """All frames of ``audio`` (samples, any shape ``accept_waveform`` takes) in one
        stream: offline (one chunk) by default; with ``chunk_samples`` (sizes in samples, used
        in turn until the audio ends) fed chunk by chunk, stepping as frames become ready,
        as a live source would. The frames are the same either way (chunk invariance).
        ``style``: as :meth:`create_stream`."""
        array = np.asarray(audio)
        with self.create_stream(seed, style) as stream:
            parts = []
            if chunk_samples is None:
                stream.accept_waveform(array, sample_rate)
            else:
                sizes, first = iter(chunk_samples), 0
                while first < len(array):
                    size = next(sizes, None)
                    if size is None or int(size) < 1:
                        raise ValueError(
                            f"chunk_samples: expected sizes >= 1 covering the audio, got "
                            f"{size!r} after {first} of {len(array)} samples")
                    stream.accept_waveform(array[first:first + int(size)], sample_rate)
                    first += int(size)
                    while self.is_ready(stream):
                        self.step([stream])
                    parts.append(stream.pop_frames())
            stream.input_finished()
            while self.is_ready(stream):
                self.step([stream])
            parts.append(stream.pop_frames())
            return PoseFrames.concatenate(parts, self.num_joints)

    # ---- lifecycle ----
    def _check_own(self, stream: Any) -> None:
        if not isinstance(stream, Stream) or stream._generator is not self:
            raise StreamError(f"expected a Stream made by this generator's create_stream, got "
                              f"{type(stream).__name__}")

    def _check_open(self) -> None:
        if self._closed:
            raise StreamError("the StreamingGenerator is closed")

    def _release_dropped(self) -> None:
        """Free slots of streams garbage-collected without close() (caller holds the lock)."""
        while True:
            try:
                slot = self._slots_dropped.get_nowait()
            except queue.Empty:
                return
            self._stepper.release_slot(slot)

    def close(self) -> None:
        """Free the backend; streams of this generator cannot step afterwards. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._device_front_end is not None:
                    self._device_front_end.close()
                self._stepper.close()

    def __enter__(self) -> StreamingGenerator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def describe(self) -> str:
        """One line: bundle, backend and why, lookahead, chunking."""
        return (f"bundle {self.bundle.root} | backend {self.backend.describe()} | lookahead "
                f"{self.lookahead_frames} frames | {self.chunk_frames} frame(s)/step at "
                f"{self.fps} fps")

