"""A `gesturert serve` server in a background thread (its own asyncio loop), for tests.

Loopback only; every wait is bounded. The shipped default bundle keeps start-up at ~0.3 s.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np

from sdk.demo import DEFAULT_BUNDLE
from sdk.live.config import ServerConfig
from sdk.live.server import LiveServer
from sdk.streaming import StreamingGenerator

TOLERANCE_PX = 1e-3
"""Keypoints of the server's pass (BatchedStreams) vs Stream's for the same audio and seed:
float32 rounding of matrix products of other shapes (batch sizes, rows)."""
DECIMATED_TOLERANCE_PX = 1e-2
"""The same for audio decimated on the way in (48, 32, 96 kHz): the server decimates all
connections' blocks in shared products (sdk.ragged_decimator), whose rounding, carried
through MFCC and model, reached 1.04e-3 px (StreamBatch's lockstep decimator against
generate(): 5.2e-4 px). Measured faults are far above it: the audio one input sample late
at 48 kHz moves keypoints by 0.27 px, one output sample late by 0.81 px."""


class ServerThread:
    """Start a LiveServer on a free port in a thread; :meth:`stop` drains it."""

    def __init__(self, config: ServerConfig | None = None,
                 generator: StreamingGenerator | None = None) -> None:
        self.generator = generator or StreamingGenerator(DEFAULT_BUNDLE,
                                                         backend="onnxruntime-cpu")
        self.server = LiveServer(self.generator, config or ServerConfig(port=0))
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not started.wait(30):
            raise RuntimeError("the test server did not start within 30 s")
        self.port = self.server.port
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.http = f"http://127.0.0.1:{self.port}"

    def call(self, func: Callable[[], Any]) -> Any:
        """Run ``func`` on the server's loop (thread-safe reads of its state)."""
        async def wrapper() -> Any:
            return func()
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)

    def stats(self) -> dict[str, Any]:
        return dict(self.call(self.server.stats))

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
                 ) -> dict[str, Any]:
        """Poll stats until ``predicate(stats)``; the last stats (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while not predicate(stats):
            if time.monotonic() > deadline:
                raise AssertionError(f"server state not reached within {timeout} s: {stats}")
            time.sleep(0.05)
            stats = self.stats()
        return stats

    def stop(self, drain_seconds: float = 0.0) -> None:
        asyncio.run_coroutine_threadsafe(self.server.drain(drain_seconds), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.generator.close()


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def http_json(url: str) -> tuple[int, dict[str, Any]]:
    status, body = http_get(url)
    return status, json.loads(body)


def robust_slope(y: np.ndarray, x: np.ndarray | None = None) -> float:
    """The Theil-Sen slope of ``y`` against ``x`` (default 0, 1, 2, ...): the median of every
    pair's slope. A stall the system then catches up on, or one at the end of a run, bends
    few pairs and moves it little; a steady shortfall moves it by its whole size. Timing
    checks of the live tests use it so that one hiccup of a loaded 2-core CI machine is
    not read as a slow server (a whole-run rate, (T - 1) / (last - first), was)."""
    y = np.asarray(y, np.float64)
    x = np.arange(len(y), dtype=np.float64) if x is None else np.asarray(x, np.float64)
    i, j = np.triu_indices(len(y), k=1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))
