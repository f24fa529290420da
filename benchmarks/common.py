"""What every benchmark shares: the machine it ran on, and timing with warm-up and spread.

Timings are wall-clock ``time.perf_counter`` seconds of the calling thread; a benchmark
first runs ``warmup`` untimed calls (allocations, ORT's first-run graph work, caches),
then times each call separately, so the spread (p50/p90/p99) is per call.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("numpy", "onnxruntime", "onnxruntime-gpu", "torch", "librosa", "torchaudio",
             "soxr", "scipy", "onnx", "tensorrt", "matplotlib")
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class TimingSummary:
    """Per-call times of one measurement, in milliseconds (float64).

    count: timed calls; mean/p50/p90/p99/min/max in ms.
    """

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float] | np.ndarray) -> TimingSummary:
        """Summary of per-call durations given in seconds (at least one)."""
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        if ms.size == 0:
            raise ValueError("TimingSummary.of needs at least one timed call, got none")
        p50, p90, p99 = np.percentile(ms, PERCENTILES)
        return cls(int(ms.size), float(ms.mean()), float(p50), float(p90), float(p99),
                   float(ms.min()), float(ms.max()))

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)

    def text(self) -> str:
        return (f"p50 {self.p50_ms:.3f} ms, p90 {self.p90_ms:.3f}, p99 {self.p99_ms:.3f} "
                f"(n={self.count})")


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 3,
               min_seconds: float = 0.0) -> np.ndarray:
    """Call ``fn`` ``warmup`` times untimed, then time it ``repeats`` times (or more, until
    ``min_seconds`` of timed calls have passed). Returns float64 (n,) seconds per call."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats or spent < min_seconds:
        begin = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - begin
        times.append(elapsed)
        spent += elapsed
    return np.asarray(times)


def best_of(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Seconds of the fastest of ``repeats`` timed calls (for long, bulk operations)."""
    return float(time_calls(fn, repeats, warmup).min())


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    """GPU names from nvidia-smi (empty when there is none or no driver)."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] \
        if done.returncode == 0 else []


def library_versions() -> dict[str, str | None]:
    """Installed version of each of LIBRARIES (None when not installed)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


GIT_SHA_ENV = "GESTURERT_GIT_SHA"
"""Names the commit where the tree was copied without its history (a lent GPU machine gets
the working tree with the git metadata of the session's start): ``make gpu-check
GESTURERT_GIT_SHA=$(git rev-parse HEAD)``. Results record it with ``(stated)``."""


def git_sha() -> str | None:
    """The repository's HEAD commit (with ``-dirty`` if tracked files changed), or None;
    ``$GESTURERT_GIT_SHA (stated)`` where that is set (:data:`GIT_SHA_ENV`)."""
    if stated := os.environ.get(GIT_SHA_ENV, "").strip():
        return f"{stated} (stated)"
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def json_default(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists (``json.dumps(default=...)``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json_and_markdown(out_dir: Path, name: str, result: dict[str, Any],
                            markdown: Callable[[dict[str, Any]], str]) -> list[Path]:
    """``NAME.json`` (every number of ``result``) and ``NAME.md`` (``markdown(result)``)
    in ``out_dir`` (made if missing); returns their paths in that order."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    paths[0].write_text(json.dumps(result, indent=1, default=json_default) + "\n")
    paths[1].write_text(markdown(result))
    return paths


def write_results(out_dir: Path, name: str, result: dict[str, Any],
                  markdown: Callable[[dict[str, Any]], str],
                  plot: Callable[[dict[str, Any], Path], None]) -> list[Path]:
    """A benchmark's three results files in ``out_dir``: :func:`write_json_and_markdown`'s
    and ``NAME.png`` (``plot(result, path)``); returns their paths in that order."""
    paths = write_json_and_markdown(out_dir, name, result, markdown) + [out_dir / f"{name}.png"]
    plot(result, paths[2])
    return paths


IDLE_LOAD = 1.0  # 1-minute load average below which a run counts as started on an idle machine


def machine_state(load: Sequence[float] | None) -> str:
    """How busy the machine was when a run started, for a report's prose: "idle" or
    "shared and loaded", with the 1-minute load average (None: unknown)."""
    if not load:
        return "of unknown load (no load average)"
    state = "idle" if load[0] < IDLE_LOAD else "shared and loaded"
    return f"{state} (load average {load[0]:.2f} at the start)"


def load_average() -> tuple[float, float, float] | None:
    """1, 5 and 15 minute load averages (other processes compete for the cores)."""
    try:
        return os.getloadavg()
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Where and when: host, CPU model and cores, GPUs, libraries, git SHA, load, time."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "gpus": _gpus(),
        "libraries": library_versions(),
        "git_sha": git_sha(),
        "load_average": load_average(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def machine_id(info: dict[str, Any]) -> str:
    """A directory name for the machine: ``<cores>core-<cpu>`` (+ ``-<gpu>``), lower case."""
    def slug(text: str) -> str:
        text = re.sub(r"\(R\)|\(TM\)|CPU|Processor|@.*$", "", text)
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")

    name = f"{info['cpu_cores']}core-{slug(info['cpu_model'])}"
    if info["gpus"]:
        name += "-" + slug(info["gpus"][0].split(",")[0])
    return name
