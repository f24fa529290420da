"""Processes for the fleet tests: servers and load balancers on loopback, stopped by PID.

Everything here is bounded: every wait has a deadline and says what it waited for when it
runs out; every process is started in its own session (process group) and stopped by its
PID (SIGTERM, then SIGKILL after a bound), so a failing test leaves nothing behind.

The balancer configurations are the shipped files under deploy/; the tests change only
their addresses (benchmarks.balancers), so what is tested is what ships.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.balancers import (
    HAPROXY_CFG,
    LOOPBACK,
    NGINX_CONF,
    balancer_binary,
    balancer_command,
    render_haproxy,
    render_nginx,
)

__all__ = ["HAPROXY_CFG", "NGINX_CONF", "balancer_binary", "render_haproxy", "render_nginx"]



def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             interval: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(interval)


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
    """(status, body) of GET http://127.0.0.1:port/path; None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError):
        return None


class Process:
    """A child process in its own session, logging to ``log``, stopped by its PID."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            self._popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                           start_new_session=True)
        self.pid = self._popen.pid

    def alive(self) -> bool:
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def send(self, sig: int) -> None:
        """Send ``sig`` to this process (by PID), if it still runs."""
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """The exit status; TimeoutError (with the log's tail) if it runs past ``timeout`` s."""
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"pid {self.pid} ({self.argv[0]}) still runs after "
                               f"{timeout:g} s; log:\n{self.log_tail()}") from None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` s; the process group too (its children)."""
        if self.alive():
            self.send(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # the session we created: same id as pid
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(grace)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"


def balancer_missing(name: str) -> str | None:
    """None when ``haproxy``/``nginx`` is installed, else a skip reason naming the fix."""
    if balancer_binary(name) is not None:
        return None
    package = "nginx-light" if name == "nginx" else name
    return f"{name} is not installed; `make test` installs it (apt-get install -y {package})"


def start_haproxy(workdir: Path, listen_port: int, stats_port: int,
                  backends: Sequence[tuple[str, int]], timeout: float = 10.0) -> Process:
    """HAProxy in the foreground on the shipped config; returns once it accepts."""
    command = balancer_command("haproxy", workdir, listen_port, backends, stats_port)
    proc = Process(command, workdir / "haproxy.log")
    _wait_listening(proc, listen_port, timeout, "haproxy")
    return proc


def start_nginx(workdir: Path, listen_port: int, backends: Sequence[tuple[str, int]],
                timeout: float = 10.0) -> Process:
    """nginx in the foreground on the shipped gesturert.conf; returns once it accepts."""
    proc = Process(balancer_command("nginx", workdir, listen_port, backends),
                   workdir / "nginx.log")
    _wait_listening(proc, listen_port, timeout, "nginx")
    return proc


def _wait_listening(proc: Process, port: int, timeout: float, what: str) -> None:
    try:
        wait_for(lambda: port_open(port) or not proc.alive(), timeout, f"{what} on :{port}")
    except TimeoutError:
        proc.stop()
        raise
    if not proc.alive():
        raise RuntimeError(f"{what} exited with {proc.returncode}:\n{proc.log_tail()}")


def haproxy_server_status(stats_port: int, backend: str = "gesturert_serve") -> dict[str, str]:
    """{server name: status} from HAProxy's CSV stats (UP, DOWN, MAINT, 'UP 1/2', ...)."""
    got = http_get(stats_port, "/stats;csv")
    if got is None or got[0] != 200:
        raise RuntimeError(f"HAProxy stats on :{stats_port} answered {got!r}")
    lines = got[1].decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    status: dict[str, str] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
            status[row["svname"]] = row["status"]
    return status
