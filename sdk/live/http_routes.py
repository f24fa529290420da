"""The HTTP side of ``gesturert serve``: the browser page, health, liveness and stats.

Served by websockets' ``process_request`` hook on the WebSocket's own port; a request for
``/ws`` returns None and goes on to the upgrade (or 503 while the server drains). The
numbers come from the server's state (:class:`~sdk.live.server.LiveServer`), read on its
loop.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from sdk.live.fleet import BACKEND_HEADER, LIVE_PATH, READY_PATH, backend_id
from sdk.live.protocol import WEBSOCKET_PATH

if TYPE_CHECKING:
    from sdk.live.config import ServerConfig
    from sdk.live.session import Session
    from sdk.streaming import StreamingGenerator


class RoutedServer(Protocol):
    """What the routes read of the server (:class:`sdk.live.server.LiveServer`, which
    imports this module; this module does not import it): its config, generator, drain
    flag, counters, sessions and the rolling windows behind ``/stats``."""

    generator: StreamingGenerator
    config: ServerConfig
    draining: bool
    counters: Counter[str]
    _sessions: dict[int, Session]
    _started_at: float  # time.monotonic() at start
    _latencies: deque[float]  # seconds, speech-to-pose of recent frames
    _produced: deque[tuple[float, int]]  # (monotonic time, frames) of the last 5 s
    _pass_seconds: deque[float]
    _batch_sizes: deque[int]
    _closed_streams: int
    _outbound_peak: int

    def status(self) -> str: ...

    def stats(self) -> dict[str, Any]: ...

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
                "/worklet.js": ("worklet.js", "text/javascript")}


def route(server: RoutedServer, connection: ServerConnection, request: Request
          ) -> Response | None:
    """``process_request``: the page, ``/livez``, ``/healthz``, ``/stats``; None lets ``/ws``
    upgrade."""
    path = request.path.split("?", 1)[0]
    if path == WEBSOCKET_PATH:
        if server.draining:  # refused before the upgrade: balancers retry elsewhere
            refusal = b"draining: this server takes no new streams; connect to another\n"
            return response(HTTPStatus.SERVICE_UNAVAILABLE, refusal, "text/plain")
        return None
    if path == LIVE_PATH:  # liveness: the loop answers (never 503 while draining or full)
        return response(HTTPStatus.OK, json.dumps({"alive": True, "backend": backend_id()})
                        .encode(), "application/json")
    if path == READY_PATH:
        status = server.status()
        body = json.dumps({"status": status, "streams": len(server._sessions),
                           "max_streams": server.config.max_streams})
        code = HTTPStatus.OK if status == "ready" else HTTPStatus.SERVICE_UNAVAILABLE
        return response(code, body.encode(), "application/json")
    if path == "/stats":
        return response(HTTPStatus.OK, json.dumps(server.stats()).encode(), "application/json")
    if path in STATIC_FILES:
        name, kind = STATIC_FILES[path]
        return response(HTTPStatus.OK, (STATIC_DIR / name).read_bytes(),
                        f"{kind}; charset=utf-8")
    return connection.respond(HTTPStatus.NOT_FOUND, f"no such path {path}; the WebSocket "
                              f"is at {WEBSOCKET_PATH}, the page at /\n")


def server_stats(server: RoutedServer) -> dict[str, Any]:
    """Global and per-connection numbers (the ``/stats`` JSON)."""
    now = time.monotonic()
    while server._produced and server._produced[0][0] < now - 5:
        server._produced.popleft()
    lat = np.asarray(server._latencies) * 1e3
    passes = np.asarray(server._pass_seconds) * 1e3
    sessions = list(server._sessions.values())
    return {
        "status": server.status(), "streams": len(sessions),
        "max_streams": server.config.max_streams,
        "uptime_seconds": round(now - server._started_at, 3),
        "backend": server.generator.backend_name,
        "frames_per_second": round(sum(n for _, n in server._produced) / 5.0, 2),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "pump_pass_ms_p50": round(float(np.percentile(passes, 50)), 2) if passes.size else None,
        "pump_pass_ms_p95": round(float(np.percentile(passes, 95)), 2) if passes.size else None,
        "batch_mean": (round(float(np.mean(server._batch_sizes)), 2) if server._batch_sizes
                       else None),
        "backlog_seconds": round(sum(s.backlog_seconds() for s in sessions), 3),
        "outbound_frames": sum(s.outbound_frames for s in sessions),
        "streams_open": server.counters["streams_created"] - server._closed_streams,
        "outbound_frames_peak": server._outbound_peak,
        "counters": dict(server.counters),
        "connections": [s.stats(now) for s in sessions[:1000]],
    }


def name_backend(connection: ServerConnection, request: Request, response: Response) -> None:
    """Name this process (host:pid) in every handshake response: which backend serves."""
    response.headers[BACKEND_HEADER] = backend_id()


def response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store")])
    return Response(status.value, status.phrase, headers, body)
