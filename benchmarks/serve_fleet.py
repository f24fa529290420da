"""``gesturert bench --serve --fleet``: `gesturert serve` processes behind a load balancer.

Everything on loopback, on this machine, with the shipped configurations (deploy/):

1. **The balancer's added latency.** One server process; the same ``latency_clients``
   real-time clients (:mod:`benchmarks.serve_load`) straight to it, through HAProxy and
   through nginx, alternating, ``rounds`` times. Meanwhile a probe connection sends a
   WebSocket ping every 20 ms on the same path and times the pong: the round trip through
   the balancer's tunnel and the server's loop, which only the path changes. *Added* =
   through the balancer minus direct, per round (back to back), median over the rounds,
   for the ping round trip (the goal's measure) and for speech-to-pose latency (context:
   its run-to-run noise is larger than the goal). Also the balancer's own CPU.
2. **Clients vs processes through HAProxy.** 1 and 2 server processes on their own ports
   (each its own generator) behind HAProxy; the client ladder of ``bench --serve``
   (:data:`benchmarks.serve.COUNTS`), stopping after the first count not kept up with;
   the most clients kept up with / held to the latency goal, for each process count.

The load generator shares the cores with the servers and the balancer; the report records
the load average before each point and says when the machine was not idle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import numpy as np

from benchmarks.balancers import BALANCERS, balancer_command
from benchmarks.common import REPO_ROOT, load_average, machine_info, write_results
from benchmarks.serve import (
    COUNTS,
    _cpu_seconds,
    _free_port,
    run_point,
    stop_servers,
    summarise,
)
from benchmarks.serve_fleet_report import markdown, plot
from benchmarks.serve_load import CHUNK_MS

LATENCY_CLIENTS = 16
ROUNDS = 3


def _log(message: str) -> None:
    print(f"[bench --serve --fleet {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr,
          flush=True)


def _wait_http(port: int, path: str, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered 200 on :{port}{path} within {timeout:g} s")


PROBE_INTERVAL_S = 0.02


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (nginx's and HAProxy's workers)."""
    total = _cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[1]) == pid:  # field 4: the parent's pid
            total += _cpu_seconds(int(stat.parent.name))
    return total


async def _probe(url: str, seconds: float) -> list[float]:
    """Ping round trips (ms) on one connection to ``url`` for ``seconds``."""
    import asyncio

    from websockets.asyncio.client import connect

    from sdk.live.protocol import StartRequest

    rtts: list[float] = []
    async with connect(url, compression=None, open_timeout=30) as ws:
        await ws.send(StartRequest(sample_rate=16000).to_json())
        await ws.recv()  # ready; the stream then idles (no audio): only pings flow
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            pong = await ws.ping()
            await asyncio.wait_for(pong, 10)
            rtts.append((time.perf_counter() - sent) * 1e3)
            await asyncio.sleep(PROBE_INTERVAL_S)
    return rtts


def start_probe(port: int, seconds: float) -> subprocess.Popen[str]:
    """The ping probe in its own process (``python -m benchmarks.serve_fleet URL S``)."""
    return subprocess.Popen([sys.executable, "-m", "benchmarks.serve_fleet",
                             f"ws://127.0.0.1:{port}/ws", str(seconds)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)


def probe_result(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    rtts = np.asarray(json.loads(out)["rtt_ms"]) if proc.returncode == 0 else np.zeros(0)
    if not rtts.size:
        return {"ping_p50_ms": None, "ping_p99_ms": None, "pings": 0}
    p50, p99 = np.percentile(rtts, [50, 99])
    return {"ping_p50_ms": float(p50), "ping_p99_ms": float(p99), "pings": int(rtts.size)}


def settle(port: int, timeout: float = 30.0) -> float | None:
    """Wait until ``port`` answers /healthz with 200 (through a balancer: a backend is
    ready and the balancer has it up again); the seconds waited, None on timeout.

    Each point starts from a ready fleet: a server still counting the slow pump passes of
    the previous point reports "overloaded", and the balancer takes it out (that is the
    readiness contract), which would refuse the next point's clients."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.2)
    return None


class LoopbackFleet:
    """``servers`` `gesturert serve` processes on their own ports, balancers in front."""

    def __init__(self, bundle: Path, servers: int, balancers: tuple[str, ...]) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="gesturert_fleet_"))
        self.servers: list[subprocess.Popen[str]] = []
        self.balancers: dict[str, tuple[subprocess.Popen[str], int]] = {}
        self.ports: list[int] = []
        self._logs: list[IO[str]] = []
        try:
            for k in range(servers):
                port = _free_port()
                self.servers.append(self._start(
                    [sys.executable, "-m", "sdk.live.cli", "serve", str(bundle), "--port",
                     str(port), "--backend", "onnxruntime-cpu", "--max-streams", "1024",
                     "--drain-seconds", "0"], f"serve{k}"))
                self.ports.append(port)
            for proc, port in zip(self.servers, self.ports, strict=True):
                _wait_http(port, "/healthz", proc, 120)
            backends = [(f"serve{k}", port) for k, port in enumerate(self.ports)]
            for kind in balancers:
                port = _free_port()
                proc = self._start(balancer_command(kind, self.workdir / kind, port, backends,
                                                    stats_port=_free_port()), kind)
                self.balancers[kind] = (proc, port)
                _wait_http(port, "/healthz", proc, 30)  # through it, a backend answers
        except BaseException:
            self.stop()
            raise

    def _start(self, command: list[str], name: str) -> subprocess.Popen[str]:
        log = open(self.workdir / f"{name}.log", "w")
        self._logs.append(log)
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True,
                                cwd=REPO_ROOT)

    def stop(self) -> None:
        """SIGTERM every process (by its Popen, so by PID), SIGKILL after 30 s."""
        stop_servers([p for p, _ in self.balancers.values()] + self.servers)
        for log in self._logs:
            log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)  # configs and logs of this run


def balancer_overhead(bundle: Path, clients: int, seconds: float, rounds: int, fps: int,
                      algorithmic_ms: float, balancers: tuple[str, ...]) -> dict[str, Any]:
    """Direct vs each balancer, alternating; per-round rows and the median added latency."""
    fleet = LoopbackFleet(bundle, 1, balancers)
    rows: list[dict[str, Any]] = []
    try:
        paths = [("direct", fleet.ports[0], None)] + [
            (kind, port, proc.pid) for kind, (proc, port) in fleet.balancers.items()]
        for round_ in range(rounds):
            for name, port, pid in paths:
                _log(f"round {round_ + 1}/{rounds}: {clients} clients, {name}")
                before = tree_cpu_seconds(pid) if pid else 0.0
                waited = settle(port)
                probe = start_probe(port, seconds)
                row = run_point(fleet.servers, port, clients, seconds, fps, algorithmic_ms)
                row["settle_seconds"] = waited
                row.update(probe_result(probe, 120))
                row.update(path=name, round=round_,
                           balancer_cpu_percent=(100 * (tree_cpu_seconds(pid) - before)
                                                 / row["wall_seconds"]) if pid else None)
                rows.append(row)
    finally:
        fleet.stop()
    direct_p99 = [r["ping_p99_ms"] for r in rows
                  if r["path"] == "direct" and r["ping_p99_ms"] is not None]
    # How much the direct path's own p99 moves between rounds: the resolution of any
    # "added p99" on this machine at this load (None with fewer than two rounds).
    noise = float(max(direct_p99) - min(direct_p99)) if len(direct_p99) >= 2 else None
    added: dict[str, Any] = {}
    keys = ("ping_p50_ms", "ping_p99_ms", "latency_p50_ms", "latency_p99_ms")
    for kind in balancers:
        per_round: dict[str, list[float]] = {key: [] for key in keys}
        for round_ in range(rounds):
            direct = next(r for r in rows if r["path"] == "direct" and r["round"] == round_)
            via = next(r for r in rows if r["path"] == kind and r["round"] == round_)
            for key, values in per_round.items():
                if direct[key] is not None and via[key] is not None:
                    values.append(via[key] - direct[key])
        cpu = [r["balancer_cpu_percent"] for r in rows if r["path"] == kind]
        added[kind] = {f"added_{key}": float(np.median(values)) if values else None
                       for key, values in per_round.items()}
        added[kind].update({f"added_{key}_per_round": values
                            for key, values in per_round.items()})
        added[kind]["balancer_cpu_percent_median"] = float(np.median(cpu)) if cpu else None
        added[kind]["direct_ping_p99_spread_ms"] = noise
    return {"clients": clients, "rounds": rounds, "rows": rows, "added": added}


def sweep_through(bundle: Path, servers: int, counts: tuple[int, ...], seconds: float, fps: int,
                  algorithmic_ms: float, balancer: str = "haproxy") -> list[dict[str, Any]]:
    """The client ladder through ``balancer`` in front of ``servers`` processes."""
    fleet = LoopbackFleet(bundle, servers, (balancer,))
    rows = []
    try:
        port = fleet.balancers[balancer][1]
        for clients in counts:
            _log(f"{servers} process(es) behind {balancer}, {clients} clients x {seconds:g} s")
            waited = settle(port)
            row = run_point(fleet.servers, port, clients, seconds, fps, algorithmic_ms)
            row["settle_seconds"] = waited
            _log(f"  p50 {row['latency_p50_ms']} ms, p99 {row['latency_p99_ms']} ms, fps min "
                 f"{row['fps_min']}, errors {row['errors']}")
            rows.append(row)
            if not row["keeps_up"]:
                break
    finally:
        fleet.stop()
    return rows


def run_fleet_bench(bundle: Path, out_dir: Path, seconds: float, *,
                    counts: tuple[int, ...] = COUNTS, latency_clients: int = LATENCY_CLIENTS,
                    rounds: int = ROUNDS, balancers: tuple[str, ...] = BALANCERS) -> list[Path]:
    """The whole fleet benchmark; writes serve_fleet.json/.md/.png under ``out_dir``."""
    from sdk.streaming import StreamingGenerator

    with StreamingGenerator(bundle, backend="onnxruntime-cpu") as generator:
        fps, algorithmic_ms = generator.fps, generator.algorithmic_latency_seconds * 1e3
    started = time.monotonic()
    result: dict[str, Any] = {
        "machine": machine_info(), "bundle": str(bundle), "seconds_per_point": seconds,
        "chunk_ms": CHUNK_MS,
        "fps": fps, "algorithmic_latency_ms": algorithmic_ms, "niceness": os.nice(0),
        "goal_p99_ms": algorithmic_ms + 50.0,
        "overhead": balancer_overhead(bundle, latency_clients, seconds, rounds, fps,
                                      algorithmic_ms, balancers),
        "runs": {str(n): sweep_through(bundle, n, counts, seconds, fps, algorithmic_ms)
                 for n in (1, 2)},
    }
    result["summary"] = {n: summarise(rows) for n, rows in result["runs"].items()}
    result["load_average_end"] = load_average()
    result["wall_seconds"] = time.monotonic() - started
    return write_results(out_dir, "serve_fleet", result, markdown, plot)


if __name__ == "__main__":  # the ping probe: URL SECONDS -> {"rtt_ms": [...]}
    import asyncio

    print(json.dumps({"rtt_ms": asyncio.run(_probe(sys.argv[1], float(sys.argv[2])))}))
