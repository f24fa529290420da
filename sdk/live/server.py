"""``gesturert serve``: a WebSocket server on one shared StreamingGenerator.

Library: ``websockets`` (asyncio, C speed-ups, no dependencies; its ``process_request``
hook serves the browser page, ``/healthz`` and ``/stats`` on the WebSocket's own port:
:mod:`sdk.live.http_routes`). Each connection is an :class:`~sdk.live.connection.AudioConnection`:
after ``start``, audio messages reach :meth:`LiveServer._audio_in` as they are parsed, and
messages out are written at once while nothing is queued before them (the per-message
cost of the loop is what limits a process: docs/serving.md).

**Process model.** One asyncio loop, one :class:`~sdk.streaming.StreamingGenerator`, one
stream of :class:`~sdk.live.batched_streams.BatchedStreams` per connection. A pump task
wakes every ``tick_seconds`` and, on the loop's own thread, feeds each session's coalesced
audio, computes every stream's features in one vectorised pass, steps all ready streams
as one batch (again while any stays ready), pops and encodes their frames. The pass
blocks the loop for its duration (a few ms at 200 streams on the 2-core machine). It ran
in a worker thread before, so that the loop could read sockets while ONNX Runtime ran
without the GIL; but the two threads handed the GIL back and forth at every socket call,
and 200 clients cost more server CPU that way (benchmarks/results/serve_ab/
thread_vs_loop.md, an interleaved A/B). For more cores, add processes.

**Bounded queues.** Inbound: a message may hold at most ``max_message_bytes``; while a
session has more than ``max_backlog_seconds`` of audio not yet turned into frames, its
socket is not read (TCP pushes back on the client; nothing is dropped). Outbound: at most
``max_outbound_frames`` frames wait per connection; a client that stops reading past that
is closed (error ``slow_consumer``, close 1008) and its stream freed: frames are never
silently dropped.

**Refusal and shutdown.** At ``max_streams`` sessions, or while the pump is overloaded
(p95 over the last 64 ticks of the time per pass, idle ticks counting 0, over
``overload_seconds``), a new connection gets error ``server_full``
and close 1013. :meth:`LiveServer.drain` (SIGTERM/SIGINT in the CLI) reports not-ready
on ``/healthz``, refuses new sessions, lets running ones finish for ``drain_seconds``,
then sends their queued frames, error ``shutting_down`` and close 1001.

**In a fleet** (:mod:`sdk.live.fleet`): while draining, a new handshake on ``/ws`` gets
HTTP 503 before the upgrade, so a load balancer retries it on another backend;
``/livez`` answers 200 while the loop runs (liveness, unlike ``/healthz`` never 503 when
full or draining); every handshake response names the process in ``X-Gesturert-Backend``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import socket
import time
from collections import Counter, deque
from typing import Any, cast

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from sdk.live.batched_streams import BatchedStreams
from sdk.live.config import ServerConfig
from sdk.live.connection import AudioConnection
from sdk.live.http_routes import name_backend, route, server_stats
from sdk.live.protocol import (
    CLOSE_CODES,
    ProtocolError,
    check_audio,
    error_message,
    parse_json_message,
    parse_start,
    ready_fields,
    refusal_for,
)
from sdk.live.session import (
    LATENCY_WINDOW,
    CloseRequest,
    PassResult,
    Session,
    pose_monitor_for,
    run_pass,
)
from sdk.streaming import StreamError, StreamingGenerator


class LiveServer:
    """The server: ``await start()``, serve, then ``await drain()``; one asyncio loop."""

    def __init__(self, generator: StreamingGenerator, config: ServerConfig) -> None:
        if config.pose_range and generator.manifest.pose_range is None:
            raise ValueError("--pose-range (pose_range): the bundle carries no training pose "
                             "range; export it with `gesturert export --corpus`")
        self.generator = generator
        self.config = config
        self.draining = False
        self._sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self._to_close: list[Any] = []
        self._streams = BatchedStreams(generator)  # touched by the pump and stream open only
        self._server: Server | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._blas_limits: Any = None  # threadpoolctl's limits while serving
        self._stopping = False
        self._started_at = time.monotonic()
        self._latencies: deque[float] = deque(maxlen=8 * LATENCY_WINDOW)
        self._produced: deque[tuple[float, int]] = deque()  # (time, frames) of the last 5 s
        self._pass_seconds: deque[float] = deque(maxlen=64)
        self._batch_sizes: deque[int] = deque(maxlen=64)
        self.counters: Counter[str] = Counter()
        self._closed_streams = 0
        self._outbound_peak = 0  # most frames ever queued for one connection
        self._ready_fields = ready_fields(generator)

    # ---- lifecycle ----
    async def start(self) -> None:
        """Bind and start serving (``config.port`` 0 picks a free port: see :attr:`port`).

        numpy's BLAS is held to one thread while the server runs: the pump's matrix products
        over all streams are big enough for OpenBLAS to start its threads, which spin
        between calls and take the CPU the loop needs (a process is one core's work; run
        several processes for more cores)."""
        from threadpoolctl import threadpool_limits

        self._blas_limits = threadpool_limits(limits=1, user_api="blas")
        cfg = self.config
        self._server = await serve(
            self._handle, cfg.host, cfg.port, process_request=functools.partial(route, self),
            max_size=4 * cfg.max_message_bytes, max_queue=4, compression=None,
            close_timeout=cfg.close_timeout_seconds, reuse_port=cfg.reuse_port or None,
            process_response=name_backend, create_connection=AudioConnection)
        self._pump_task = asyncio.create_task(self._pump())

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("LiveServer.start() first")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def drain(self, drain_seconds: float | None = None) -> None:
        """Graceful stop: not ready, let sessions finish, close the rest with 1001, stop."""
        loop = asyncio.get_running_loop()
        self.draining = True
        wait = self.config.drain_seconds if drain_seconds is None else drain_seconds
        deadline = loop.time() + wait
        while self._sessions and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self._sessions.values()):
            self._fail(session, "shutting_down", "the server is shutting down; reconnect to "
                       "another server (the stream's state is lost)")
        deadline = loop.time() + self.config.close_timeout_seconds + 2
        while self._sessions and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._stopping = True
        if self._pump_task is not None:
            await self._pump_task
        self._close_streams(self._take_to_close())
        if self._blas_limits is not None:
            self._blas_limits.restore_original_limits()

    # ---- HTTP: page, health, stats (sdk.live.http_routes) ----
    def status(self) -> str:
        """"ready", or why not: "draining", "full", "overloaded"."""
        if self.draining:
            return "draining"
        if len(self._sessions) >= self.config.max_streams:
            return "full"
        if len(self._pass_seconds) >= 8 and \
                np.percentile(self._pass_seconds, 95) > self.config.overload_seconds:
            return "overloaded"
        return "ready"

    def stats(self) -> dict[str, Any]:
        """Global and per-connection numbers (the ``/stats`` JSON)."""
        return server_stats(self)

    # ---- connections ----
    async def _handle(self, connection: ServerConnection) -> None:
        ws = cast(AudioConnection, connection)  # serve(create_connection=AudioConnection)
        self.counters["connections"] += 1
        cfg_close = self.config.close_timeout_seconds
        refusal = refusal_for(self.status(), self.config.max_streams)
        if refusal is not None:
            self.counters[f"refused_{refusal[0]}"] += 1
            try:
                await ws.send(error_message(*refusal))
                await ws.close(CLOSE_CODES[refusal[0]], refusal[0])
            except ConnectionClosed:
                pass
            return
        peer = ws.remote_address
        session = Session(next(self._ids), f"{peer[0]}:{peer[1]}" if peer else "?",
                          fps=self.generator.fps, chunk_frames=self.generator.chunk_frames,
                          pose_monitor=pose_monitor_for(self.generator.manifest)
                          if self.config.pose_range else None)
        self._sessions[session.id] = session
        session.websocket = ws
        sock = ws.transport.get_extra_info("socket")
        if self.config.socket_send_buffer_bytes and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                            self.config.socket_send_buffer_bytes)
        session.sender = asyncio.create_task(self._send_loop(session, ws))
        try:
            await self._converse(session, ws)
        except ProtocolError as exc:
            self._fail(session, exc.code, exc.message)
        except ConnectionClosed:
            pass
        except StreamError as exc:  # open refused (e.g. generator closed)
            self._fail(session, "internal", str(exc))
        finally:
            if session.closing:
                await asyncio.wait([session.sender], timeout=cfg_close + 1)
            session.sender.cancel()
            if not session.done and session.start is not None:
                self.counters["disconnected_mid_stream"] += 1
            del self._sessions[session.id]
            self.counters["audio_messages_parsed_here"] += ws.messages_parsed_here
            if session.stream is not None:
                self._to_close.append(session.stream)

    async def _converse(self, session: Session, ws: AudioConnection) -> None:
        cfg = self.config
        try:
            first = await asyncio.wait_for(ws.recv(), cfg.start_timeout_seconds)
        except TimeoutError:
            raise ProtocolError("start_timeout", f"no start message within "
                                f"{cfg.start_timeout_seconds:g} s") from None
        if isinstance(first, bytes):
            raise ProtocolError("audio_before_start", "binary audio before the start message; "
                                'send {"type": "start", ...} first')
        self._check_size(first)
        start = parse_start(parse_json_message(first))
        if start.style is not None and start.style not in self.generator.styles:
            raise ProtocolError("unknown_style", f"style {start.style!r:.60} is not one of "
                                f"this bundle's styles {list(self.generator.styles)}")
        stream = self._streams.open(start.seed, start.sample_rate, start.style)
        session.start, session.stream = start, stream
        self.counters["streams_created"] += 1
        self._send(session, (json.dumps({**self._ready_fields, "stream_id": session.id,
                                         "frame_format": start.frame_format,
                                         "style": self.generator.manifest.generator
                                         .style_names[stream.style_index]}), 0))
        session.room.set()
        while True:
            while session.backlog_seconds() > cfg.max_backlog_seconds and not session.closing:
                session.room.clear()
                await session.room.wait()
            if ws.fast_path_allowed and ws.audio_sink is None and ws.receive_queue_empty() \
                    and not session.closing and not session.end_requested:
                # from now on audio goes to _audio_in as it arrives (connection module)
                ws.audio_sink = functools.partial(self._audio_in, session)
            message = await ws.recv()
            if session.closing:
                continue
            self._check_size(message)
            if isinstance(message, bytes):
                if session.end_requested:
                    raise ProtocolError("unexpected_message", "audio after the end message")
                session.add_audio(message, check_audio(message, start), time.monotonic())
                continue
            kind = parse_json_message(message)["type"]
            if kind == "end":
                session.request_end(time.monotonic())
            else:
                raise ProtocolError("unexpected_message", f"unexpected {kind!r} message after "
                                    f"start; expected binary audio or end")

    def _audio_in(self, session: Session, payload: bytes) -> None:
        """An audio message, straight from the connection's ``data_received`` (the fast
        path of :mod:`sdk.live.connection`): checked and queued as ``_converse`` would, and
        reading paused while the session's backlog is over the cap."""
        ws = session.websocket
        if session.closing:
            return
        assert session.start is not None  # internal: the sink is set after start
        try:
            self._check_size(payload)
            session.add_audio(payload, check_audio(payload, session.start), time.monotonic())
        except ProtocolError as exc:
            ws.audio_sink = None
            self._fail(session, exc.code, exc.message)
            return
        self.counters["audio_messages_fast"] += 1
        if session.backlog_seconds() > self.config.max_backlog_seconds \
                and not session.reading_paused:
            session.reading_paused = True
            self.counters["reading_paused"] += 1
            ws.pause_reading()

    def _room(self, session: Session) -> None:
        """The session may take audio again (backlog under the cap, or closing)."""
        session.room.set()
        if session.reading_paused:
            session.reading_paused = False
            session.websocket.resume_reading()

    def _check_size(self, message: str | bytes) -> None:
        if len(message) > self.config.max_message_bytes:
            raise ProtocolError("message_too_big", f"a message of {len(message)} bytes is over "
                                f"the limit of {self.config.max_message_bytes}; send smaller "
                                f"chunks")

    def _fail(self, session: Session, code: str, message: str) -> None:
        """Queue an error message and the close (after the frames already queued)."""
        if session.closing:
            return
        session.closing = True
        self._room(session)
        self.counters[f"error_{code}"] += 1
        self._send(session, (error_message(code, message), 0))
        self._send(session, CloseRequest(CLOSE_CODES[code], code))

    def _send(self, session: Session, item: tuple[bytes | str, int] | CloseRequest) -> None:
        """Send a message (and the frames in it) or close, in order: written at once when
        nothing waits before it and the socket takes it, else queued for the sender task."""
        ws = session.websocket
        if isinstance(item, tuple) and session.outbox.empty() and not session.sending \
                and ws.can_write_now():
            payload, count = item
            if ws.write_message(payload):
                session.frames_written(count)
            return
        if isinstance(item, tuple):
            session.outbound_frames += item[1]
            session.outbound_frames_peak = max(session.outbound_frames_peak,
                                               session.outbound_frames)
            self._outbound_peak = max(self._outbound_peak, session.outbound_frames)
        session.outbox.put_nowait(item)

    async def _send_loop(self, session: Session, ws: ServerConnection) -> None:
        try:
            while True:
                item = await session.outbox.get()
                if isinstance(item, CloseRequest):
                    await ws.close(item.code, item.reason)
                    return
                payload, count = item
                session.sending = True
                await ws.send(payload)
                session.sending = False
                session.outbound_frames -= count
                session.frames_written(count)
        except ConnectionClosed:
            return

    def _slow_consumer(self, session: Session) -> None:
        """The client stopped reading: stop sending, close 1008, free the stream."""
        session.closing = True
        self._room(session)
        self.counters["error_slow_consumer"] += 1
        if session.sender is not None:
            session.sender.cancel()
        if session.websocket is not None:
            session.sender = asyncio.create_task(session.websocket.close(
                CLOSE_CODES["slow_consumer"], "slow_consumer"))

    # ---- the pump ----
    def _take_to_close(self) -> list[Any]:
        streams, self._to_close = self._to_close, []
        return streams

    def _close_streams(self, streams: list[Any]) -> None:
        """Free the streams of ended connections."""
        for stream in streams:
            self._streams.close(stream)
        self._closed_streams += len(streams)

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            began = loop.time()
            sessions = [s for s in self._sessions.values() if s.has_work()]
            if sessions or self._to_close:
                started = time.perf_counter()
                self._close_streams(self._take_to_close())
                results, batches = run_pass(self._streams, sessions)
                self._pass_seconds.append(time.perf_counter() - started)
                self._batch_sizes.extend(batches)
                self._deliver(results)
            else:
                self._pass_seconds.append(0.0)  # idle ticks count, so old load fades
            await asyncio.sleep(max(0.0, self.config.tick_seconds - (loop.time() - began)))

    def _deliver(self, results: list[PassResult]) -> None:
        now = time.monotonic()
        cfg = self.config
        for session, frames, message, error in results:
            if error is not None:
                self._fail(session, "bad_audio", error)
                continue
            if session.closing or session.id not in self._sessions:
                continue
            if message is not None and frames is not None:
                count = len(frames)
                if session.outbound_frames + count > cfg.max_outbound_frames:
                    self._slow_consumer(session)
                    continue
                self._latencies.extend(session.latency_of(frames, now))
                self._produced.append((now, count))
                session.frames_produced += count
                self._send(session, (message, count))
            if session.done:
                self._finish(session)
            elif session.backlog_seconds() <= cfg.max_backlog_seconds:
                self._room(session)

    def _finish(self, session: Session) -> None:
        session.closing = True
        self._room(session)
        pose_range = session.pose_range()
        self._send(session, (json.dumps({
            "type": "end", "frames": session.frames_produced,
            "audio_seconds": session.stats(time.monotonic())["audio_seconds"]}
            | ({} if pose_range is None else {"pose_range": pose_range})), 0))
        self._send(session, CloseRequest(1000, "end of stream"))

