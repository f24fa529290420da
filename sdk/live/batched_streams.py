"""The server's streams, advanced together: ragged audio in, one vectorised pass per tick.

:class:`~sdk.stream.Stream` does its front end and its share of a step in per-stream
Python (~40 numpy calls per chunk, a lock, a PoseFrames per step): at a few hundred
connections that costs a core, more than the model. :class:`~sdk.stream_batch.StreamBatch`
vectorises it, but only for streams in lockstep (a fixed set, equal packets). A server's
connections are neither: they come and go, and each tick brings each one whatever audio
arrived. :class:`BatchedStreams` keeps each connection's small state (samples not yet
framed, recent MFCC frames, queued feature frames, counters) and per :meth:`advance`
does the arithmetic once for all of them:

* MFCC: every complete window of every stream cut from one concatenated buffer as one
  (F, n_fft) gather, then :class:`~sdk.batched_features.FrameMfcc` (one float32 rFFT,
  grouped mel products, one DCT product: StreamBatch's arithmetic);
* feature stacking: one gather of ``mfcc_context`` MFCC rows per new feature frame;
* the step: per :func:`~sdk.stream_batch.streams_per_call` ready streams (the CPU
  step's best batch; all a GPU step holds) one feature stack, one noise draw
  (:func:`~sdk.noise.frame_noise_at`), one model call, one pixel conversion.

The frame accounting is :class:`~sdk.stream.Stream`'s (see :mod:`sdk.streaming`): the
same frames for the same audio and seed, to float32 rounding of the matrix products
(tested against ``StreamingGenerator.generate``). Input at an integer multiple of the
model's rate (48, 32, 96 kHz ...) is decimated for all streams at once
(:class:`~sdk.ragged_decimator.RaggedDecimator`: every block the tick's audio completes, of
every stream, as rows of one matrix product); other rates go through one soxr
:class:`~sdk.audio.StreamingResampler` per stream.

**Errors**: bad audio raises :class:`~sdk.stream.StreamError` from :meth:`feed` before
anything changes. **Threads**: one thread drives a BatchedStreams (the server's loop);
model calls take the generator's lock, so it may share the generator with other streams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.audio import AudioError, StreamingResampler, check_sample_rate, to_float_mono
from sdk.batched_features import FrameMfcc
from sdk.decimator import decimation_factor
from sdk.frames import PoseFrames
from sdk.noise import frame_noise_at
from sdk.ragged_decimator import DecimatorInput, RaggedDecimator
from sdk.stream import StreamError
from sdk.stream_batch import streams_per_call
from sdk.streaming import StreamingGenerator


@dataclass(eq=False)
class BatchedStream:
    """One connection's state in :class:`BatchedStreams` (callers read, never write).

    ``samples``: float32 model-rate audio from the next MFCC window's first sample on (the
    first window starts with ``n_fft // 2`` zeros of centre padding). ``history``: float32
    (h, n_mfcc) MFCC frames from MFCC index ``history_first`` on. ``queue``: float32
    (q, feature_dim) feature frames not yet stepped. Audio not at the model rate goes
    through ``decimator`` (its input ``decimated``) or, at other rates, ``resampler``.
    """

    seed: int
    slot: int
    sample_rate: int
    resampler: StreamingResampler | None
    samples: np.ndarray
    history: np.ndarray
    queue: np.ndarray
    model_samples: int = 0  # model-rate samples received (without the padding)
    mfcc_emitted: int = 0
    history_first: int = 0
    features_emitted: int = 0
    fed: int = 0  # feature frames stepped: the next step's first input frame
    total_frames: int | None = None  # pose frames in all, known once finished
    finish_inputs: int = 0  # feature frames to emit in all once finished (with trailing silence)
    emitted: int = 0  # pose frames produced
    closed: bool = False
    style_index: int = 0  # the model's style input (the manifest's style table)
    new_samples: list[np.ndarray] = field(default_factory=list)
    decimator: RaggedDecimator | None = None
    decimated: DecimatorInput | None = None
    # produced, not yet popped: (index of the first, keypoints (n, J, 2), saliency (n,)) runs,
    # consecutive (a stream's frames come in index order without gaps)
    frames: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def num_feature_frames_queued(self) -> int:
        """Feature frames waiting for a step (a server's backlog: / fps seconds)."""
        return int(self.queue.shape[0])

    @property
    def is_finished(self) -> bool:
        return self.total_frames is not None

    @property
    def is_done(self) -> bool:
        """Input finished and every frame produced."""
        return self.total_frames is not None and self.emitted == self.total_frames


class BatchedStreams:
    """Every connection's stream on ``generator``, advanced together (module docstring).

    ``open(seed, sample_rate)`` -> a :class:`BatchedStream`; ``feed`` audio and ``finish``
    it; ``advance()`` computes every stream's features and steps every ready stream until
    none is; ``pop_frames`` hands out the frames; ``close`` frees the state slot.
    """

    def __init__(self, generator: StreamingGenerator) -> None:
        self.generator = generator
        manifest = generator.manifest
        self.config = c = manifest.features
        self.fps = generator.fps
        self._chunk = generator.chunk_frames
        self._lookahead = generator.lookahead_frames
        self._noise_dim = manifest.generator.noise_dim
        self._norm = manifest.normalization
        self._frame_mfcc = FrameMfcc(c, generator._matrices)
        self._context_offsets = np.arange(c.mfcc_context)
        self._batch = streams_per_call(generator)  # None: every ready stream in one call
        self.streams: dict[BatchedStream, None] = {}  # open streams, in order of opening
        self._decimators: dict[int, RaggedDecimator] = {}  # by factor
        self._undecimated: dict[BatchedStream, None] = {}  # fed since the last advance

    # ---- streams ----
    def open(self, seed: int, sample_rate: int, style: str | None = None) -> BatchedStream:
        """A new stream (noise ``frame_noise(seed, ...)``) for audio at ``sample_rate`` Hz in
        gesture style ``style`` (None: the bundle's default; unknown: StreamError)."""
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) \
                or not 0 <= seed < 2**63:
            raise StreamError(f"seed must be an int in [0, 2**63), got {seed!r}")
        try:
            style_index = self.generator.manifest.generator.style_index(style)
        except ValueError as exc:
            raise StreamError(str(exc)) from exc
        try:
            rate = check_sample_rate("sample_rate", sample_rate)
        except AudioError as exc:
            raise StreamError(str(exc)) from exc
        c, gen = self.config, self.generator
        factor = decimation_factor(rate, c.sample_rate)
        decimator = None
        if factor:  # one per factor, shared by its streams (made once: its filter design)
            decimator = self._decimators.get(factor) or self._decimators.setdefault(
                factor, RaggedDecimator(factor))
        resampler = None if rate == c.sample_rate or decimator \
            else StreamingResampler(rate, c.sample_rate)
        with gen._lock:
            gen._check_open()
            gen._release_dropped()
            slot = gen._stepper.allocate_slot()
        stream = BatchedStream(
            seed=int(seed), slot=slot, sample_rate=rate, resampler=resampler,
            style_index=style_index, decimator=decimator,
            decimated=decimator.open() if decimator else None,
            samples=np.zeros(c.n_fft // 2, np.float32),
            history=np.zeros((0, c.n_mfcc), np.float32),
            queue=np.zeros((0, c.feature_dim), np.float32))
        self.streams[stream] = None
        return stream

    def close(self, stream: BatchedStream) -> None:
        """Free the stream's state slot. Idempotent."""
        gen = self.generator
        with gen._lock:
            if not stream.closed:
                stream.closed = True
                self.streams.pop(stream, None)
                self._undecimated.pop(stream, None)
                if not gen._closed:
                    gen._stepper.release_slot(stream.slot)

    def feed(self, stream: BatchedStream, samples: Any) -> None:
        """Queue (N,) or (N, C) audio at the stream's rate (any dtype ``Stream`` takes) for the
        next :meth:`advance`. StreamError (nothing changed) on bad audio or a finished stream."""
        if stream.closed or stream.total_frames is not None:
            raise StreamError("audio for a closed or finished stream")
        if isinstance(samples, np.ndarray) and samples.ndim == 2 and samples.shape[1] == 1:
            samples = samples[:, 0]  # one channel: its "mean" is itself
        try:
            mono = to_float_mono(samples, name="samples")
        except AudioError as exc:
            raise StreamError(str(exc)) from exc
        if not mono.size:
            return
        if stream.decimator is not None and stream.decimated is not None:
            stream.decimator.append(stream.decimated, mono)  # copied; decimated at advance()
            self._undecimated[stream] = None
            return
        # resampled: a new array; else a copy (``mono`` may be the caller's buffer, which a
        # server refills before advance() reads it)
        mono = stream.resampler.process(mono) if stream.resampler is not None \
            else np.array(mono, np.float32)
        stream.new_samples.append(mono)
        stream.model_samples += mono.size

    def finish(self, stream: BatchedStream) -> None:
        """No more audio: the next :meth:`advance` emits the tail (trailing silence as
        :meth:`Stream.input_finished`). Idempotent."""
        if stream.closed:
            raise StreamError("finish on a closed stream")
        if stream.total_frames is not None:
            return
        tails: list[np.ndarray] = []
        if stream.resampler is not None:
            tails.append(stream.resampler.flush())
        if stream.decimator is not None and stream.decimated is not None:
            self._undecimated.pop(stream, None)
            tails += [*stream.decimator.make([stream.decimated]),
                      stream.decimator.flush(stream.decimated)]
        for tail in tails:
            stream.new_samples.append(tail)
            stream.model_samples += tail.size
        c, gen = self.config, self.generator
        total = c.num_pose_frames(stream.model_samples)
        inputs = 0 if total == 0 else total + gen.lookahead_frames
        stream.finish_inputs = -(-inputs // self._chunk) * self._chunk
        stream.total_frames = total

    def samples_for_next_step(self, stream: BatchedStream) -> int | None:
        """How many samples (at the stream's rate, counted from its start) the stream must
        have been fed before :meth:`advance` can step it again: 0 when it can now, None when
        unknown (audio resampled by soxr on the way in; a rate that is an integer multiple
        of the model's is decimated, whose output count is known in advance). A server
        feeds a stream only once its audio reaches this (the frames are the same for any
        split of the audio), so the per-stream work -- resampling included -- runs once per
        pose frame, not once per message."""
        c = self.config
        if stream.total_frames is not None or len(stream.queue) >= self._chunk:
            return 0
        needed = c.samples_needed_for_mfcc(c.mfcc_frames_needed(stream.fed + self._chunk))
        if stream.decimator is not None:
            return stream.decimator.input_needed(needed)
        if stream.resampler is not None:
            return stream.resampler.input_needed(needed)
        return needed

    def pop_frames(self, stream: BatchedStream) -> PoseFrames:
        """The frames produced since the last pop (possibly none), oldest first."""
        parts, stream.frames = stream.frames, []
        if not parts:
            return PoseFrames.concatenate([], self.generator.num_joints)
        count = sum(len(p[2]) for p in parts)
        index = np.arange(parts[0][0], parts[0][0] + count, dtype=np.int64)
        return PoseFrames(
            keypoints=np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1],
            saliency=np.concatenate([p[2] for p in parts]) if len(parts) > 1 else parts[0][2],
            time=index / np.float64(self.fps), index=index)

    # ---- the pass ----
    def advance(self) -> list[int]:
        """Features of all fed audio, then step every ready stream until none is ready.
        Returns the batch size of each model call."""
        self._decimate()
        self._front_end([s for s in self.streams if s.new_samples or (
            s.total_frames is not None and s.features_emitted < s.finish_inputs)])
        return self._step_all()

    def _decimate(self) -> None:
        """The blocks the audio fed since the last pass completes, per decimation factor
        one product over every stream fed."""
        if not self._undecimated:
            return
        groups: dict[RaggedDecimator, list[BatchedStream]] = {}
        for s in self._undecimated:
            if s.decimator is not None:
                groups.setdefault(s.decimator, []).append(s)
        self._undecimated.clear()
        for decimator, streams in groups.items():
            made = decimator.make([s.decimated for s in streams if s.decimated is not None])
            for s, out in zip(streams, made, strict=True):
                if out.size:
                    s.new_samples.append(out)
                    s.model_samples += out.size

    def _front_end(self, streams: list[BatchedStream]) -> None:
        """Every complete MFCC window of ``streams``, then their new feature frames."""
        if not streams:
            return
        c = self.config
        hop, n_fft = c.hop_length, c.n_fft
        pieces: list[np.ndarray] = []
        sizes = []
        for s in streams:
            pieces.append(s.samples)
            pieces += s.new_samples
            size = len(s.samples) + sum(len(p) for p in s.new_samples)
            s.new_samples = []
            if s.total_frames is not None:  # exactly the zeros the last window needs
                mfcc_total = max(c.num_mfcc_frames(s.model_samples),
                                 c.mfcc_frames_needed(max(s.finish_inputs, s.features_emitted)))
                need = (mfcc_total - s.mfcc_emitted - 1) * hop + n_fft - size
                if mfcc_total > s.mfcc_emitted and need > 0:
                    pieces.append(np.zeros(need, np.float32))
                    size += need
            sizes.append(size)
        signal = np.concatenate(pieces)
        size_array = np.asarray(sizes, np.int64)
        ends = np.cumsum(size_array)
        begins = ends - size_array
        counts = np.maximum(0, (size_array - n_fft) // hop + 1)
        mfcc = self._mfcc(signal, begins, counts)
        for s, first, last in zip(streams, (begins + counts * hop).tolist(), ends.tolist(),
                                  strict=True):
            s.samples = signal[first:last]  # the rest, from the next window's start
        self._stack(streams, mfcc, counts)

    def _mfcc(self, signal: np.ndarray, begins: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """MFCC (sum(counts), n_mfcc) float32: ``counts[i]`` windows, ``hop`` apart, from
        ``signal[begins[i]:]`` (float32), stream after stream."""
        c = self.config
        total = int(counts.sum())
        if total == 0:
            return np.zeros((0, c.n_mfcc), np.float32)
        before = np.cumsum(counts) - counts
        starts = np.repeat(begins - before * c.hop_length, counts) + \
            np.arange(total) * c.hop_length
        return self._frame_mfcc(np.lib.stride_tricks.sliding_window_view(signal, c.n_fft)[starts])

    def _stack(self, streams: list[BatchedStream], mfcc: np.ndarray, counts: np.ndarray
               ) -> None:
        """Keep each stream's new MFCC rows (``counts[i]`` of ``mfcc``, in order) and queue
        the feature frames that became computable, all streams in one gather."""
        c = self.config
        emitted = np.fromiter((s.features_emitted for s in streams), np.int64, len(streams))
        first = np.fromiter((s.history_first for s in streams), np.int64, len(streams))
        mfcc_emitted = np.fromiter((s.mfcc_emitted for s in streams), np.int64,
                                   len(streams)) + counts
        keep_from = c.mfcc_start(emitted) - first  # old history rows no longer needed
        end = c.feature_frames_ready(mfcc_emitted)
        for i, s in enumerate(streams):
            if s.total_frames is not None:
                end[i] = max(s.finish_inputs, s.features_emitted)
        pieces, lengths = [], []
        row = 0
        for s, drop, count in zip(streams, keep_from.tolist(), counts.tolist(), strict=True):
            pieces.append(s.history[drop:])
            pieces.append(mfcc[row:row + count])
            lengths.append(len(s.history) - drop + count)
            row += count
        history = np.concatenate(pieces)
        length_array = np.asarray(lengths, np.int64)
        base = np.cumsum(length_array) - length_array
        first += keep_from
        new = np.maximum(end - emitted, 0)
        total = int(new.sum())
        features = np.zeros((0, c.feature_dim), np.float32)
        if total:
            owner = np.repeat(np.arange(len(streams)), new)
            frame = np.repeat(emitted - (np.cumsum(new) - new), new) + np.arange(total)
            rows = base[owner] + c.mfcc_start(frame) - first[owner]
            features = history[rows[:, None] + self._context_offsets].reshape(total, -1)
        offset = 0
        for i, s in enumerate(streams):
            s.history = history[base[i]:base[i] + lengths[i]]
            s.history_first = int(first[i])
            s.mfcc_emitted = int(mfcc_emitted[i])
            count = int(new[i])
            if count:
                part = features[offset:offset + count]
                s.queue = np.concatenate([s.queue, part]) if len(s.queue) else part
                s.features_emitted += count
                offset += count

    def _step_all(self) -> list[int]:
        chunk = self._chunk
        ready = [s for s in self.streams if len(s.queue) >= chunk]
        batches = []
        while ready:
            batches.append(len(ready))
            size = self._batch or len(ready)
            for first in range(0, len(ready), size):
                self._step(ready[first:first + size])
            ready = [s for s in ready if len(s.queue) >= chunk]
        return batches

    def _step(self, streams: list[BatchedStream]) -> None:
        chunk, gen = self._chunk, self.generator
        features = np.stack([s.queue[:chunk] for s in streams])  # (B, chunk, feature_dim)
        fed = np.fromiter((s.fed for s in streams), np.int64, len(streams))
        seeds = np.fromiter((s.seed for s in streams), np.int64, len(streams))
        noise = frame_noise_at(seeds, fed, chunk, self._noise_dim)
        with gen._lock:
            gen._check_open()
            styles = np.fromiter((s.style_index for s in streams), np.int32, len(streams))
            out = gen._stepper.step(features, noise, [s.slot for s in streams], styles)
            keypoints = self._norm.canonical_to_pixels(self._norm.destandardize(out.poses))
            saliency = np.array(out.saliency, dtype=np.float32)  # a copy: out may be reused
        for b, s in enumerate(streams):
            first = s.fed - self._lookahead  # pose index of the step's first output
            s.queue = s.queue[chunk:]
            s.fed += chunk
            # keep indices in [0, total_frames): the lookahead's leading outputs and the
            # trailing silence's are not frames
            low = max(first, 0)
            high = first + chunk if s.total_frames is None else min(first + chunk,
                                                                    s.total_frames)
            if high > low:
                s.frames.append((low, keypoints[b, low - first:high - first],
                                 saliency[b, low - first:high - first]))
                s.emitted += high - low
