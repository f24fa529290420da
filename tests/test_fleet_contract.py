"""sdk.live.fleet on its own: the worker supervisor of ``gesturert serve --workers N``."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers_fleet import Process, wait_for

from sdk.live.fleet import WORKER_ENV

# ---------------------------------------------------------------- the worker supervisor
# Children are small Python programs standing in for `gesturert serve` workers: they
# record their worker index and pid, and exit 0 on SIGTERM.
_WORKER = """
import os, signal, sys, time
path = sys.argv[1] + "/" + os.environ["{env}"] + "." + str(os.getpid())
open(path, "w").close()
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
for _ in range(600):
    time.sleep(0.1)
sys.exit(3)
""".replace("{env}", WORKER_ENV)

_SUPERVISOR = """
import sys
from sdk.live.fleet import run_workers
code = run_workers([sys.executable, "-c", sys.argv[1], sys.argv[2]], int(sys.argv[3]),
                   grace_seconds=5.0)
sys.exit(code)
"""


def _supervisor(tmp_path: Path, worker_code: str, workers: int) -> Process:
    marks = tmp_path / "marks"
    marks.mkdir()
    return Process([sys.executable, "-c", _SUPERVISOR, worker_code, str(marks), str(workers)],
                   tmp_path / "supervisor.log", cwd=Path(__file__).resolve().parents[1])


def _marks(tmp_path: Path) -> list[tuple[str, int]]:
    return sorted((p.name.split(".")[0], int(p.name.split(".")[1]))
                  for p in (tmp_path / "marks").iterdir())


def test_workers_start_with_their_index_restart_when_killed_and_stop_on_sigterm(
        tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, _WORKER, 2)
    try:
        wait_for(lambda: len(_marks(tmp_path)) == 2, 20, "2 workers to start")
        assert [index for index, _ in _marks(tmp_path)] == ["0", "1"]
        time.sleep(2.2)  # past the restart window: a kill now is not a failure at start
        victim = dict(_marks(tmp_path))["1"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(_marks(tmp_path)) == 3, 20, "worker 1 to be restarted")
        assert [index for index, _ in _marks(tmp_path)] == ["0", "1", "1"]
        sup.send(signal.SIGTERM)
        assert sup.wait(15) == 0, sup.log_tail()
        for _, pid in _marks(tmp_path):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        sup.stop()


def test_workers_that_keep_failing_at_start_stop_the_supervisor(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, "import sys; sys.exit(2)", 2)
    try:
        assert sup.wait(30) == 2
        assert "times within" in sup.log_tail()
    finally:
        sup.stop()
