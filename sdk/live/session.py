"""One client connection of ``gesturert serve``: its stream, queues, latency and counters.

Threading: everything here runs on the server's asyncio loop. :meth:`Session.process`
and :meth:`Session.collect` are the pump pass's side (feeding audio to the server's
:class:`~sdk.live.batched_streams.BatchedStreams`, finishing the input, popping and
encoding frames); the connection's side hands audio over through :meth:`take_audio`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.frames import PoseFrames
from sdk.live.batched_streams import BatchedStream, BatchedStreams
from sdk.live.protocol import (
    StartRequest,
    decode_audio,
    encode_frames_binary,
    encode_frames_json,
    last_sample_of_frame,
)
from sdk.manifest import Manifest
from sdk.pose_range import PoseRangeMonitor, update_monitors
from sdk.stream import StreamError

LATENCY_WINDOW = 512  # latencies kept per session and (x8) for the server


@dataclass
class CloseRequest:
    """Outbox item: close the WebSocket with ``code`` and ``reason``."""

    code: int
    reason: str


@dataclass
class Session:
    """A connection's state. ``stream`` is set once the start message is accepted.

    Attributes:
        id: server-unique number.
        peer: "host:port" of the client.
        outbox: (message, frames in it) for the sender task, a CloseRequest last.
        outbound_frames: frames queued in ``outbox`` and not yet written to the socket
            (messages are written at once while nothing is queued and the socket takes
            them: then they never count here).
    """

    id: int
    peer: str
    connected_at: float = field(default_factory=time.monotonic)
    fps: int = 15  # the generator's, set by the server
    chunk_frames: int = 1
    start: StartRequest | None = None
    stream: BatchedStream | None = None
    outbox: asyncio.Queue[tuple[bytes | str, int] | CloseRequest] = field(
        default_factory=asyncio.Queue)
    outbound_frames: int = 0
    outbound_frames_peak: int = 0
    room: asyncio.Event = field(default_factory=asyncio.Event)  # set while backlog is under cap
    end_requested: bool = False
    finished: bool = False  # input_finished called (pump)
    done: bool = False  # every frame produced (pump)
    closing: bool = False
    websocket: Any = None  # the connection (server side)
    sender: asyncio.Task[Any] | None = None  # the task writing ``outbox`` to the socket
    sending: bool = False  # the sender task is writing an item (later ones must queue)
    reading_paused: bool = False  # the socket is not read: backlog over the cap
    frames_sent: int = 0
    frames_produced: int = 0
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    audio_messages: int = 0
    samples_received: int = 0
    queued_feature_frames: int = 0  # stream backlog after the last step (pump)
    # samples received from which the stream can step again (pump; 0: any audio): audio
    # is handed over once it reaches this, so per-stream work runs once per pose frame
    feed_at: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    # the frames against the bundle's training pose range (serve --pose-range; else None)
    pose_monitor: PoseRangeMonitor | None = None
    _pending: list[bytes] = field(default_factory=list)  # checked audio messages
    _pending_samples: int = 0
    _arrivals: deque[tuple[int, float]] = field(default_factory=deque)  # (end sample, time)
    _end_at: float = 0.0

    # ---- loop side ----
    def add_audio(self, payload: bytes, samples: int, now: float) -> None:
        """Queue a checked audio message (``samples`` sample frames, see
        :func:`~sdk.live.protocol.check_audio`) received at ``now`` (monotonic seconds)."""
        if samples == 0:
            return
        self._pending.append(payload)
        self._pending_samples += samples
        self.samples_received += samples
        self.audio_messages += 1
        self._arrivals.append((self.samples_received, now))

    def request_end(self, now: float) -> None:
        self.end_requested = True
        self._end_at = now

    def backlog_seconds(self) -> float:
        """Audio received and not yet turned into frames: pending + queued feature frames."""
        if self.start is None or self.stream is None:
            return 0.0
        return (self._pending_samples / self.start.sample_rate
                + self.queued_feature_frames / self.fps)

    def has_work(self) -> bool:
        """Whether the pump has something to do for this session."""
        return self.stream is not None and not self.done and not self.closing and (
            (bool(self._pending) and self.samples_received >= self.feed_at)
            or (self.end_requested and not self.finished)
            or self.queued_feature_frames >= self.chunk_frames)

    def take_audio(self) -> tuple[np.ndarray | None, bool]:
        """Hand the pending audio to the pump as one decoded (N, C) block (None when there
        is none), and whether ``end`` came before it (then the pump finishes the input
        after it)."""
        ended = self.end_requested  # read before the audio: all audio precedes end
        if not self._pending:
            return None, ended
        assert self.start is not None  # internal: audio is only queued after start
        payload = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._pending_samples = [], 0
        return decode_audio(payload, self.start), ended

    def latency_of(self, frames: PoseFrames, now: float) -> list[float]:
        """Receive-to-ready latency (s) of ``frames``, also kept in :attr:`latencies`: from the
        arrival of the audio message holding each frame's last sample (or of ``end``, for
        the tail) to ``now``."""
        assert self.start is not None and self.stream is not None  # internal: started sessions
        rate, fps = self.start.sample_rate, self.fps
        found = []
        for k in frames.index:
            last = last_sample_of_frame(int(k), rate, fps)
            while self._arrivals and self._arrivals[0][0] <= last:
                self._arrivals.popleft()
            arrived = self._arrivals[0][1] if self._arrivals else self._end_at
            found.append(now - arrived)
        self.latencies.extend(found)
        return found

    def frames_written(self, count: int) -> None:
        """A message holding ``count`` frames went to the socket."""
        if count:
            self.frames_sent += count
            self.last_frame_at = time.monotonic()
            self.first_frame_at = self.first_frame_at or self.last_frame_at

    # ---- pump side ----
    def process(self, streams: BatchedStreams, audio: np.ndarray | None, ended: bool) -> None:
        """Feed ``audio`` and, if ``ended``, finish the input (the pump pass; the arguments
        are :meth:`take_audio`'s).
        The features and frames follow in ``streams.advance()``."""
        assert self.start is not None and self.stream is not None
        if audio is not None:
            streams.feed(self.stream, audio)
        if ended and not self.finished:
            streams.finish(self.stream)
            self.finished = True

    def collect(self, streams: BatchedStreams
                ) -> tuple[PoseFrames | None, bytes | str | None]:
        """Pop the produced frames and encode them (the pump pass); (None, None) if none."""
        assert self.start is not None and self.stream is not None
        stream = self.stream
        self.queued_feature_frames = stream.num_feature_frames_queued
        self.done = stream.is_done
        self.feed_at = streams.samples_for_next_step(stream) or 0
        if not stream.frames:
            return None, None
        frames = streams.pop_frames(stream)
        if self.start.frame_format == "json":
            return frames, encode_frames_json(frames)
        return frames, encode_frames_binary(frames)

    # ---- stats ----
    def stats(self, now: float) -> dict[str, object]:
        span = (self.last_frame_at or now) - (self.first_frame_at or now)
        lat = np.asarray(self.latencies) * 1e3
        return {
            "id": self.id, "peer": self.peer,
            "seconds": round(now - self.connected_at, 3),
            "sample_rate": None if self.start is None else self.start.sample_rate,
            "audio_seconds": (0.0 if self.start is None
                              else round(self.samples_received / self.start.sample_rate, 3)),
            "frames_sent": self.frames_sent,
            "frames_per_second": round((self.frames_sent - 1) / span, 2) if span > 0 else None,
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
            "backlog_seconds": round(self.backlog_seconds(), 3),
            "outbound_frames": self.outbound_frames,
            "outbound_frames_peak": self.outbound_frames_peak,
            "pose_range": self.pose_range(),
        }

    def pose_range(self) -> dict[str, Any] | None:
        """The frames so far against the training pose range (``RangeMeasure.to_dict``), or
        None (no range in the bundle, or no frame yet)."""
        measure = None if self.pose_monitor is None else self.pose_monitor.result()
        return None if measure is None else measure.to_dict()


def pose_monitor_for(manifest: Manifest) -> PoseRangeMonitor | None:
    """A new session's monitor of the bundle's training pose range (None: it has none).
    Every session's shares the manifest's range and normalisation (one batched update)."""
    if manifest.pose_range is None:
        return None
    return PoseRangeMonitor(manifest.pose_range, manifest.normalization)


#: A pass's outcome for one session: (session, frames or None, encoded message or None,
#: error message or None).
PassResult = tuple[Session, PoseFrames | None, bytes | str | None, str | None]


def run_pass(streams: BatchedStreams, sessions: list[Session]
             ) -> tuple[list[PassResult], list[int]]:
    """One pump pass: hand over each session's pending audio (and end), feed it, step every
    ready stream of ``streams`` batched, pop and encode each session's frames. Returns the
    results (a session whose audio the stream refused gets its error, nothing else) and
    the batch size of each model call."""
    results: list[PassResult] = []
    live = []
    for session in sessions:
        audio, ended = session.take_audio()
        try:
            session.process(streams, audio, ended)
            live.append(session)
        except StreamError as exc:
            results.append((session, None, None, str(exc)))
    batches = streams.advance()
    collected: list[PassResult] = [(s, *s.collect(streams), None) for s in live]
    update_monitors([(s.pose_monitor, frames.keypoints) for s, frames, _, _ in collected
                     if s.pose_monitor is not None and frames is not None])
    return results + collected, batches
