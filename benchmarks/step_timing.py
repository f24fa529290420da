"""Timing helpers of the issue-20 benchmark (benchmarks/step_gemm.py): one pinned core,
interleaved A/B timing in thread-CPU time, ONNX Runtime sessions and feeds of the step."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

FRAME_MS = 1000.0 / 15
PACKET_MS = 20


def pin_to_one_core() -> int:
    """Pin this process to the CPU it runs on; returns the CPU number."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def interleaved(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int = 5,
                block: int = 1) -> dict[str, dict[str, float]]:
    """Time every call ``repeats`` times round-robin, ``block`` calls in a row per turn (so
    a small model's weights stay in the cache between its own calls, as in a server that
    runs one model, while all variants still share the machine's load): p50/p90 wall and
    p25/p50/p75 thread-CPU milliseconds per call."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(max(1, repeats // block)):
        for name, fn in calls.items():
            for _ in range(block):
                t0, c0 = time.perf_counter(), time.thread_time()
                fn()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.thread_time() - c0)
    return {k: {"p50_ms": 1e3 * float(np.median(wall[k])),
                "p90_ms": 1e3 * float(np.percentile(wall[k], 90)),
                "cpu_p50_ms": 1e3 * float(np.median(cpu[k])),
                "cpu_p25_ms": 1e3 * float(np.percentile(cpu[k], 25)),
                "cpu_p75_ms": 1e3 * float(np.percentile(cpu[k], 75)), "calls": len(cpu[k])}
            for k in calls}


def _block(batch: int) -> int:
    """Calls in a row per turn: 20 for small batches (a call is ~0.1 ms), 1 from 64 up."""
    return 20 if batch < 64 else 1


def sgemm_call(n: int = 512) -> tuple[Callable[[], Any], float]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return (lambda: a @ b), 2.0 * n ** 3


def ort_session(path: Path, level: str = "all", prepack: bool = True,
                spinning: bool = True, memory_pattern: bool = True, arena: bool = True
                ) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_mem_pattern = memory_pattern
    options.enable_cpu_mem_arena = arena
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def step_feed(batch: int, frames: int, state_size: int, noise_dim: int,
              features: np.ndarray, style: int | None = None) -> dict[str, np.ndarray]:
    """Random step inputs; ``style``: every stream's style index for a model with styles."""
    rng = np.random.default_rng(batch)
    rows = rng.integers(0, len(features) - frames, batch)[:, None] + np.arange(frames)
    return {"features": np.ascontiguousarray(features[rows]),
            "noise": rng.standard_normal((batch, frames, noise_dim), dtype=np.float32),
            "state": (0.3 * rng.standard_normal((batch, state_size))).astype(np.float32)
            } | ({} if style is None else {"style": np.full(batch, style, np.int32)})


def run_call(session: Any, feed: dict[str, np.ndarray]) -> Callable[[], Any]:
    return lambda: session.run(None, feed)


def iobinding_call(session: Any, feed: dict[str, np.ndarray]) -> Callable[[], Any]:
    """IO binding: inputs bound once, outputs into preallocated numpy arrays."""
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_cpu_input(name, array)
    batch, size = feed["state"].shape
    outputs = {"poses": np.empty((batch, feed["features"].shape[1], 122, 2), np.float32),
               "saliency": np.empty((batch, feed["features"].shape[1]), np.float32),
               "state_out": np.empty((batch, size), np.float32)}
    for name, array in outputs.items():
        binding.bind_output(name, "cpu", element_type=np.float32, shape=array.shape,
                            buffer_ptr=array.ctypes.data)

    def call(outputs: dict[str, np.ndarray] = outputs) -> None:  # keeps the buffers alive
        session.run_with_iobinding(binding)
    return call
