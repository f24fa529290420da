"""A fleet of ``gesturert serve`` processes behind a balancer, and a client that watches it.

:func:`start_fleet` starts N real server processes (the shipped default bundle, CPU) on
free loopback ports and HAProxy or nginx on the shipped configuration in front of them.
:class:`FleetClient` speaks protocol v1 (sdk.live.protocol) on one connection and records
what the fleet tests check: which process served it (the handshake's backend header names
the host and pid), every frame, and how the connection ended (end message, error message,
close code: 1000 end of stream, 1001 drained, 1006 no close frame: the backend died).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from helpers_fleet import (
    LOOPBACK,
    Process,
    free_port,
    http_get,
    start_haproxy,
    start_nginx,
    wait_for,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sdk.demo import DEFAULT_BUNDLE
from sdk.frames import PoseFrames
from sdk.live.fleet import BACKEND_HEADER, READY_PATH, SPEAKER_PARAM
from sdk.live.protocol import StartRequest, decode_frames_binary, encode_audio

SERVER_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def serve_command(port: int, drain_seconds: float, *extra: str) -> list[str]:
    """``gesturert serve`` of the default bundle on 127.0.0.1:``port`` (CPU backend).

    Started as the ``--workers`` supervisor starts its workers (``python -m
    sdk.live.cli serve``): the serve command without loading the other commands.
    """
    return [sys.executable, "-m", "sdk.live.cli", "serve", str(DEFAULT_BUNDLE),
            "--host", LOOPBACK, "--port", str(port), "--backend", "onnxruntime-cpu",
            "--drain-seconds", f"{drain_seconds:g}", *extra]


def wait_ready(port: int, proc: Process, timeout: float = 60.0) -> None:
    """Until the server on ``port`` answers 200 on its readiness path (it loads a bundle)."""
    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"server exited with {proc.returncode}:\n{proc.log_tail()}")
        got = http_get(port, READY_PATH, timeout=1.0)
        return got is not None and got[0] == 200
    wait_for(ready, timeout, f"the server on :{port} to be ready", interval=0.1)


@dataclass
class Fleet:
    """Running servers (name -> process, port) and the balancer in front of them."""

    servers: dict[str, Process]
    ports: dict[str, int]
    balancer: Process
    balancer_port: int
    stats_port: int | None = None  # HAProxy's stats page
    processes: list[Process] = field(default_factory=list)

    def url(self, speaker: str | None = None) -> str:
        query = f"?{SPEAKER_PARAM}={speaker}" if speaker is not None else ""
        return f"ws://{LOOPBACK}:{self.balancer_port}/ws{query}"

    def name_of(self, backend: str) -> str:
        """The server name of a backend header value (``host:pid[/wK]``)."""
        pid = int(backend.split(":")[1].split("/")[0])
        for name, proc in self.servers.items():
            if proc.pid == pid:
                return name
        raise KeyError(f"backend {backend!r} is none of the fleet's pids "
                       f"{ {n: p.pid for n, p in self.servers.items()} }")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


def start_fleet(workdir: Path, balancer: str, servers: int, drain_seconds: float = 10.0
                ) -> Fleet:
    """``servers`` processes and ``balancer`` ("haproxy" or "nginx") on loopback."""
    procs: dict[str, Process] = {}
    ports: dict[str, int] = {}
    started: list[Process] = []
    try:
        for k in range(1, servers + 1):
            name = f"serve{k}"
            ports[name] = free_port()
            procs[name] = Process(serve_command(ports[name], drain_seconds),
                                  workdir / f"{name}.log", env=SERVER_ENV)
            started.append(procs[name])
        for name, proc in procs.items():
            wait_ready(ports[name], proc)
        port = free_port()
        backends = list(ports.items())
        if balancer == "haproxy":
            stats = free_port()
            front = start_haproxy(workdir / "haproxy", port, stats, backends)
        else:
            stats = None
            front = start_nginx(workdir / "nginx", port, backends)
        started.append(front)
    except BaseException:
        for proc in started:
            proc.stop()
        raise
    return Fleet(procs, ports, front, port, stats, started)


@dataclass
class Outcome:
    """How one connection went."""

    backend: str
    frames: PoseFrames
    end: dict[str, Any] | None = None    # the server's end message (None: closed before)
    error: dict[str, Any] | None = None  # the server's error message, if one came
    close_code: int | None = None        # 1000, 1001, 1006 (no close frame), ...


class FleetClient:
    """One protocol-v1 connection: :meth:`open` (handshake, start, ready), :meth:`stream`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        self.backend = ""
        self.ready: dict[str, Any] = {}
        self.frames_seen = 0  # frames received so far (tests wait on it)

    async def open(self, seed: int, sample_rate: int = 16000, timeout: float = 20.0) -> None:
        self.ws = await connect(self.url, compression=None, max_size=None, open_timeout=timeout)
        self.backend = self.ws.response.headers.get(BACKEND_HEADER, "")
        await self.ws.send(StartRequest(sample_rate=sample_rate, sample_format="float32",
                                        seed=seed).to_json())
        self.ready = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if self.ready.get("type") != "ready":
            raise RuntimeError(f"expected ready, got {self.ready}")

    async def stream(self, audio: np.ndarray, sample_rate: int = 16000, realtime: bool = True,
                     chunk_ms: float = 20.0, timeout: float = 60.0) -> Outcome:
        """Send ``audio`` (float32 (N,)), then end; collect until end or close."""
        ws = self.ws
        if ws is None:
            raise RuntimeError("FleetClient.open() first")
        fps, joints = int(self.ready["fps"]), int(self.ready["num_joints"])
        chunk = max(1, round(chunk_ms * sample_rate / 1000))
        parts: list[PoseFrames] = []
        outcome = Outcome(self.backend, PoseFrames.empty(joints))

        async def send_all() -> None:
            began = time.monotonic()
            with contextlib.suppress(ConnectionClosed):
                for offset in range(0, len(audio), chunk):
                    if realtime:
                        due = began + min(offset + chunk, len(audio)) / sample_rate
                        await asyncio.sleep(max(0.0, due - time.monotonic()))
                    await ws.send(encode_audio(audio[offset:offset + chunk, None], "float32"))
                await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send_all())
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                except ConnectionClosed as exc:
                    outcome.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
                    break
                if isinstance(message, bytes):
                    got = decode_frames_binary(message, joints, fps)
                    parts.append(got)
                    self.frames_seen += len(got)
                    continue
                decoded = json.loads(message)
                if decoded.get("type") == "end":
                    outcome.end = decoded
                elif decoded.get("type") == "error":
                    outcome.error = decoded
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await sender
        outcome.frames = PoseFrames.concatenate(parts, joints)
        return outcome


async def wait_frames(clients: list[FleetClient], at_least: int, timeout: float = 20.0) -> None:
    """Until every client has received ``at_least`` frames (bounded)."""
    deadline = time.monotonic() + timeout
    while any(c.frames_seen < at_least for c in clients):
        if time.monotonic() > deadline:
            raise TimeoutError(f"frames seen {[c.frames_seen for c in clients]} < {at_least} "
                               f"after {timeout:g} s")
        await asyncio.sleep(0.02)


async def clients_on_each_backend(fleet: Fleet, per_backend: int, seed: int,
                                  tries: int = 40) -> list[FleetClient]:
    """``per_backend`` open clients on every server of ``fleet`` (keyless connections, as
    the balancer spreads them: round robin or at random); extra connections are closed."""
    clients: list[FleetClient] = []
    count = dict.fromkeys(fleet.servers, 0)
    for _ in range(tries):
        client = FleetClient(fleet.url())
        await client.open(seed)
        name = fleet.name_of(client.backend)
        if count[name] < per_backend:
            count[name] += 1
            clients.append(client)
        elif client.ws is not None:
            await client.ws.close()
        if all(n == per_backend for n in count.values()):
            return clients
    raise AssertionError(f"{tries} connections gave {count}, wanted {per_backend} each")
