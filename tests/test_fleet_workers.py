"""`gesturert serve --workers 2`: two processes on one port (SO_REUSEPORT), each serving
connections with its own generator; a killed worker is restarted while the other keeps
the port; SIGTERM drains both and the command exits 0. Loopback, bounded, by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from helpers_fleet import LOOPBACK, Process, free_port, wait_for
from helpers_fleet_client import SERVER_ENV, FleetClient, wait_ready
from websockets.exceptions import InvalidMessage

from sdk.demo import DEFAULT_BUNDLE


def _pid(backend: str) -> int:
    return int(backend.split(":")[1].split("/")[0])


def _gone(pid: int) -> bool:
    """The process has exited (a zombie holds no sockets any more)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


async def _backends(url: str, connections: int, attempts: int = 3) -> list[str]:
    """The backend of each of ``connections`` new connections. A connection that SO_REUSEPORT
    put in the accept queue of a worker as it died is reset; like a client, retry it (at
    most ``attempts`` times, then the error stands)."""
    seen = []
    for _ in range(connections):
        for attempt in range(attempts):
            client = FleetClient(url)
            try:
                await client.open(seed=0)
                break
            except (InvalidMessage, OSError, EOFError):
                if attempt == attempts - 1:
                    raise
        seen.append(client.backend)
        assert client.ws is not None
        await client.ws.close()
    return seen


@pytest.mark.slow  # the supervisor is the full CLI: ~5-20 s to start on a loaded machine
def test_workers_share_a_port_restart_when_killed_and_drain_on_sigterm(tmp_path: Path
                                                                       ) -> None:
    if not hasattr(os, "sched_getaffinity") or sys.platform != "linux":
        pytest.skip("SO_REUSEPORT load balancing is Linux behaviour")
    port = free_port()
    sup = Process([sys.executable, "-m", "sdk.cli", "serve", str(DEFAULT_BUNDLE), "--host",
                   LOOPBACK, "--port", str(port), "--backend", "onnxruntime-cpu",
                   "--workers", "2", "--drain-seconds", "2"], tmp_path / "serve.log",
                  env=SERVER_ENV)
    url = f"ws://{LOOPBACK}:{port}/ws"
    try:
        wait_ready(port, sup, timeout=120)
        seen: set[str] = set()

        def both_serve() -> bool:  # the kernel spreads connections by their source port
            seen.update(asyncio.run(_backends(url, 4)))
            return len(seen) >= 2
        wait_for(both_serve, 120, "connections to reach both workers", interval=0.5)
        workers = {b.rsplit("/w", 1)[1]: _pid(b) for b in seen}
        assert sorted(workers) == ["0", "1"], seen
        os.kill(workers["1"], signal.SIGKILL)
        # Once it is gone (its sockets closed) the surviving worker holds the port alone;
        # a connection caught in the dying worker's accept queue is reset (clients retry).
        wait_for(lambda: _gone(workers["1"]), 10, f"pid {workers['1']} to exit")
        after = asyncio.run(_backends(url, 6))
        assert all(_pid(b) != workers["1"] for b in after), after

        def restarted() -> bool:
            return any(b.endswith("/w1") and _pid(b) != workers["1"]
                       for b in asyncio.run(_backends(url, 4)))
        wait_for(restarted, 120, "worker 1 to be restarted and serve", interval=0.5)
        assert "restarting it" in sup.log_tail()
        sup.send(signal.SIGTERM)
        assert sup.wait(30) == 0, sup.log_tail()
        for pid in workers.values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        sup.stop()


def test_workers_need_a_fixed_port(capsys: pytest.CaptureFixture[str]) -> None:
    from sdk.cli import main

    assert main(["serve", str(DEFAULT_BUNDLE), "--port", "0", "--workers", "2"]) == 2
    assert "needs a fixed --port" in capsys.readouterr().err


def test_serve_precision_is_checked_and_travels_to_the_workers(
        capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from sdk.cli import main
    from sdk.live.cli import register_serve, serve_argv

    assert main(["serve", str(DEFAULT_BUNDLE), "--precision", "int4"]) == 2
    assert "precision must be one of" in capsys.readouterr().err
    parser = argparse.ArgumentParser()
    register_serve(parser.add_subparsers())
    args = parser.parse_args(["serve", str(DEFAULT_BUNDLE), "--port", "9000", "--workers", "2",
                              "--precision", "int8"])
    argv = serve_argv(args, workers=1, reuse_port=True)
    assert argv[argv.index("--precision") + 1] == "int8"
    assert argv[argv.index("--workers") + 1] == "1" and "--reuse-port" in argv
