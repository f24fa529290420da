"""What a ``gesturert serve`` process needs to live in a fleet: readiness, drain, workers.

A fleet is N server processes (one generator each) behind a standard load balancer
(HAProxy, nginx, a Kubernetes Service/Ingress; configurations under ``deploy/``), or N
worker processes sharing one port through ``SO_REUSEPORT`` (``--workers N``). State lives
in the process that holds the connection; nothing is shared between processes.

The contract, for clients and for balancers:

* **Health**: ``GET /livez`` answers 200 while the process runs its event loop (restart
  it when this fails); ``GET /healthz`` (readiness) answers 200 while the process admits
  new streams and 503 while it drains, is full or is overloaded, with a JSON body saying
  why. Balancers send new streams only to ready processes.
* **Drain** (SIGTERM): the process stops admitting at once (a new WebSocket handshake
  gets HTTP 503, which the balancers in ``deploy/`` retry on another backend), lets open
  streams run on until they end or ``--drain-seconds`` pass, then closes the rest with
  close code 1001 (going away) and exits 0.
* **Death** (SIGKILL, a crash, a lost machine): its clients see the connection close
  without a close frame (code 1006).
* **What a client loses** on 1001 or 1006: the stream and its state (the smoothing
  history, the frame counter, audio sent but not yet turned into frames). It reconnects
  and starts a new stream; frames restart at index 0 and the motion restarts from rest.
  With ``?speaker=KEY`` in the URL the balancers route a speaker's reconnects to the same
  backend while that backend is up.

This module is stdlib only, so the server's command-line registration stays light.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

LIVE_PATH = "/livez"  # 200 while the event loop runs: liveness (restart when it fails)
READY_PATH = "/healthz"  # 200 while admitting new streams, else 503: readiness
SPEAKER_PARAM = "speaker"  # the query parameter the balancers hash on
WORKER_ENV = "GESTURERT_WORKER"  # set in each --workers child: its index, 0..N-1
BACKEND_HEADER = "X-Gesturert-Backend"  # handshake response header: which process serves


def backend_id() -> str:
    """This process in the handshake header: ``host:pid`` (and ``/wK`` for worker K)."""
    worker = os.environ.get(WORKER_ENV)
    suffix = f"/w{worker}" if worker is not None else ""
    return f"{os.uname().nodename}:{os.getpid()}{suffix}"


def run_workers(command: Sequence[str], workers: int, *, grace_seconds: float,
                restart_window: float = 2.0, max_quick_failures: int = 3,
                poll_seconds: float = 0.1) -> int:
    """Run ``workers`` copies of ``command`` (each with WORKER_ENV set) and supervise them.

    SIGTERM/SIGINT to this process is passed to every worker (each drains by itself);
    workers still running ``grace_seconds`` later are killed. A worker that exits while
    not asked to is restarted, unless it exits within ``restart_window`` s of its start
    ``max_quick_failures`` times in a row (a bad bundle, a port taken): then all stop.
    Returns 0 when every worker ended with 0 after a stop, else 1 (or the failing
    worker's own exit code, when it kept failing at start).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    stop_requested = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    procs: list[subprocess.Popen[bytes]] = []
    started: list[float] = []
    quick_failures = [0] * workers

    def spawn(index: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, WORKER_ENV: str(index)}
        return subprocess.Popen(list(command), env=env)

    try:
        for index in range(workers):
            procs.append(spawn(index))
            started.append(time.monotonic())
        print(f"gesturert serve: {workers} workers, pids "
              f"{', '.join(str(p.pid) for p in procs)}", file=sys.stderr, flush=True)
        failed_code: int | None = None
        while not stop_requested and failed_code is None:
            time.sleep(poll_seconds)
            for index, proc in enumerate(procs):
                code = proc.poll()
                if code is None or stop_requested:
                    continue
                quick = time.monotonic() - started[index] < restart_window
                quick_failures[index] = quick_failures[index] + 1 if quick else 0
                if quick_failures[index] >= max_quick_failures:
                    print(f"gesturert serve: worker {index} exited with {code} "
                          f"{max_quick_failures} times within {restart_window:g} s of its "
                          "start; stopping all workers", file=sys.stderr, flush=True)
                    failed_code = code if code > 0 else 1
                    break
                print(f"gesturert serve: worker {index} (pid {proc.pid}) exited with {code}; "
                      "restarting it", file=sys.stderr, flush=True)
                procs[index] = spawn(index)
                started[index] = time.monotonic()
        codes = _stop_all(procs, grace_seconds)
        if failed_code is not None:
            return failed_code
        return 0 if all(code == 0 for code in codes) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_all(procs: Sequence[subprocess.Popen[bytes]], grace_seconds: float) -> list[int]:
    """SIGTERM every running worker, wait up to ``grace_seconds``, then SIGKILL by PID."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes
