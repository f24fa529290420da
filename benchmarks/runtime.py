"""Runtime benchmarks of :class:`sdk.streaming.StreamingGenerator`: latency, streams, cold start.

* :func:`chunk_latency` — one stream fed in chunks of ``chunk_ms``. Arrival is
  *simulated*, not slept: chunk i has fully arrived at virtual time
  ``end_sample(i) / rate``; the virtual clock runs ``max(clock, arrival)`` + the measured
  compute of handling the chunk (resample + MFCC + every ready step + pop). The
  end-to-end latency of pose frame k is ``clock when k was popped - arrival of the last
  audio sample of frame k`` (sample ``ceil((k+1) * rate / fps) - 1``, as in
  ``gesturert stream``): it includes waiting for the lookahead audio, the MFCC window,
  waiting for a whole chunk, and compute. Per-step latency is ``StreamingGenerator.step``
  alone (wall time, and the calling thread's CPU time: with one ONNX Runtime thread all
  of a step's work runs in that thread, so wall - CPU is time the thread was not running,
  e.g. preempted by other processes). Real-time factor = compute seconds / audio seconds.
* :func:`stream_scaling` — N streams, each already holding audio, stepped together by one
  batched ``step`` per frame: per-step p50/p99 and frames/s for every N; "streams in real
  time" is the largest N whose step takes less than one frame period per frame.
* :func:`cold_start` — a fresh interpreter: ``import sdk`` + load the bundle + the first
  pose frame out, wall time measured by the parent from process start.
* :func:`trtexec_numbers` — ``export/trtexec.py``'s commands when ``trtexec`` is on PATH.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO_ROOT, TimingSummary, time_calls
from sdk.audio import load_audio
from sdk.features import DEFAULT_FEATURES
from sdk.runners.select import BackendConfig, BackendError
from sdk.streaming import GeneratorConfig, StreamingGenerator

SPEECH_SAMPLE = REPO_ROOT / "sdk" / "data" / "samples" / "speech_en.flac"
CONCRETE_BACKENDS = ("tensorrt", "onnxruntime-gpu", "onnxruntime-cpu")
FRAME_MS = 1000.0 / DEFAULT_FEATURES.fps  # 66.7 ms per pose frame
CHUNK_MS = (20.0, FRAME_MS, 200.0, 1000.0)
STREAM_COUNTS = (1, 4, 16, 64, 256, 1024)


def speech_audio(seconds: float) -> np.ndarray:
    """``seconds`` of the shipped speech sample at the model rate, looped if longer:
    float32 (N,)."""
    audio = load_audio(SPEECH_SAMPLE, DEFAULT_FEATURES.sample_rate)
    n = round(seconds * DEFAULT_FEATURES.sample_rate)
    return np.resize(audio, n).astype(np.float32)  # np.resize repeats the clip


def open_backends(bundle: str | Path) -> tuple[dict[str, StreamingGenerator], dict[str, str]]:
    """A StreamingGenerator per backend that runs here; the others with the reason why not."""
    opened: dict[str, StreamingGenerator] = {}
    missing: dict[str, str] = {}
    for name in CONCRETE_BACKENDS:
        try:
            opened[name] = StreamingGenerator(GeneratorConfig(bundle, BackendConfig(name)))
        except BackendError as exc:
            missing[name] = str(exc)
    return opened, missing


@dataclass
class ChunkRun:
    """One stream fed in ``chunk_ms`` chunks (see the module docstring)."""

    chunk_ms: float
    step: TimingSummary
    step_cpu: TimingSummary  # calling thread's CPU time per step (all of it with 1 ORT thread)
    end_to_end: TimingSummary
    real_time_factor: float
    frames: int
    audio_seconds: float
    step_samples_ms: np.ndarray  # float64 (steps,) every step's time (for histograms)
    end_to_end_samples_ms: np.ndarray  # float64 (frames,) every frame's latency

    def to_dict(self) -> dict[str, Any]:
        return {"chunk_ms": self.chunk_ms, "step_ms": self.step.to_dict(),
                "step_cpu_ms": self.step_cpu.to_dict(),
                "end_to_end_ms": self.end_to_end.to_dict(),
                "real_time_factor": self.real_time_factor, "frames": self.frames,
                "audio_seconds": self.audio_seconds}


def chunk_latency(generator: StreamingGenerator, audio: np.ndarray, chunk_ms: float,
                  rate: int = DEFAULT_FEATURES.sample_rate) -> ChunkRun:
    """Stream float32 (N,) ``audio`` at ``rate`` Hz in ``chunk_ms`` chunks, simulated arrival."""
    chunk = max(1, round(chunk_ms * rate / 1000.0))
    total = len(audio)
    fps = generator.fps
    step_times: list[float] = []
    step_cpu: list[float] = []  # CPU time of the calling thread per step
    latencies: list[float] = []
    clock = compute = 0.0
    frames = 0

    def handle(stream: Any, work: Any) -> None:
        nonlocal clock, compute, frames
        begin = time.perf_counter()
        work()
        while generator.is_ready(stream):
            t0, c0 = time.perf_counter(), time.thread_time()
            generator.step([stream])
            step_times.append(time.perf_counter() - t0)
            step_cpu.append(time.thread_time() - c0)
        got = stream.pop_frames()
        spent = time.perf_counter() - begin
        clock += spent
        compute += spent
        frames += len(got)
        last = np.minimum(total, -(-(got.index + 1) * rate // fps))  # end sample of frame k
        latencies.extend((clock - last / rate).tolist())

    with generator.create_stream(seed=0) as stream:
        for first in range(0, total, chunk):
            piece = audio[first:first + chunk]
            clock = max(clock, (first + len(piece)) / rate)  # the chunk has arrived
            handle(stream, lambda piece=piece: stream.accept_waveform(piece, rate))
        handle(stream, stream.input_finished)
    return ChunkRun(chunk_ms, TimingSummary.of(step_times), TimingSummary.of(step_cpu),
                    TimingSummary.of(latencies), compute / (total / rate), frames, total / rate,
                    np.asarray(step_times) * 1e3, np.asarray(latencies) * 1e3)


@dataclass
class ScalingPoint:
    """Batched steps over ``streams`` streams."""

    streams: int
    step: TimingSummary
    frames_per_second: float
    real_time: bool
    model_only: TimingSummary | None = None  # the ONNX model call alone, same batch

    def to_dict(self) -> dict[str, Any]:
        return {"streams": self.streams, "step_ms": self.step.to_dict(),
                "frames_per_second": self.frames_per_second, "real_time": self.real_time,
                "model_only_ms": None if self.model_only is None else self.model_only.to_dict()}


def stream_scaling(generator: StreamingGenerator, counts: tuple[int, ...] = STREAM_COUNTS,
                   steps: int = 30, warmup: int = 3, max_seconds: float = 20.0
                   ) -> list[ScalingPoint]:
    """Time ``step(streams)`` for N streams in ``counts`` (see the module docstring), and
    the ONNX model call alone on the same batch (onnxruntime backends; what is left is the
    runtime's per-stream work: queues, noise, state gather/scatter, pixels, PoseFrames).

    Every stream first receives enough audio for ``warmup + steps`` steps (feature
    extraction is not timed here). A count stops early after ``max_seconds`` of steps.
    """
    rate = generator.manifest.features.sample_rate
    chunk = generator.chunk_frames
    period = chunk / generator.fps  # seconds of audio one step covers
    need = (warmup + steps + 2) * chunk + generator.lookahead_frames
    audio = speech_audio(need / generator.fps + 0.1)
    session, model_feed = _model_session(generator)
    points = []
    for n in counts:
        streams = [generator.create_stream(seed=i) for i in range(n)]
        try:
            for stream in streams:
                stream.accept_waveform(audio, rate)
            times: list[float] = []
            for i in range(warmup + steps):
                t0 = time.perf_counter()
                generator.step(streams)
                elapsed = time.perf_counter() - t0
                for stream in streams:
                    stream.pop_frames()
                if i >= warmup:
                    times.append(elapsed)
                if len(times) >= 3 and sum(times) > max_seconds:
                    break
        finally:
            for stream in streams:
                stream.close()
        summary = TimingSummary.of(times)
        model = None
        if session is not None:
            feed = model_feed(n)

            def call_model(feed: dict[str, np.ndarray] = feed) -> None:
                session.run(None, feed)
            model = TimingSummary.of(time_calls(call_model, len(times), warmup=1))
        points.append(ScalingPoint(n, summary, n * chunk / (summary.p50_ms / 1e3),
                                   summary.p50_ms / 1e3 < period, model))
    return points


def _model_session(generator: StreamingGenerator) -> tuple[Any, Any]:
    """An onnxruntime session on the bundle's generator.onnx with the generator's thread
    setting, and a function n -> a feed of n streams (None, None for other backends)."""
    if not generator.backend_name.startswith("onnxruntime"):
        return None, None
    import onnxruntime as ort

    from sdk.runners.onnxrt import CPU_PROVIDER

    spec = generator.manifest.generator
    options = ort.SessionOptions()
    options.intra_op_num_threads = generator.config.backend.intra_op_num_threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(generator.bundle.path(spec.model.file)), options,
                                   providers=[CPU_PROVIDER])
    rng = np.random.default_rng(0)
    dim = generator.manifest.features.feature_dim
    chunk = generator.chunk_frames

    def feed(n: int) -> dict[str, np.ndarray]:
        return {"features": rng.standard_normal((n, chunk, dim), dtype=np.float32),
                "noise": rng.standard_normal((n, chunk, spec.noise_dim), dtype=np.float32),
                "state": np.zeros((n, spec.state_size), np.float32)} | (
            {"style": np.full(n, spec.style_index(None), np.int32)} if spec.styles else {})
    return session, feed


def streams_in_real_time(points: list[ScalingPoint], period_ms: float,
                         per_stream_extra_ms: float = 0.0) -> dict[str, Any]:
    """Largest N whose step (p50, plus ``per_stream_extra_ms`` per stream) fits in
    ``period_ms``: the largest measured N, and N interpolated linearly between the last
    count that fits and the first that does not (None when even the first count fails)."""
    def cost(p: ScalingPoint) -> float:
        return p.step.p50_ms + per_stream_extra_ms * p.streams

    fits = [p for p in points if cost(p) < period_ms]
    if not fits:
        return {"measured": 0, "estimated": None}
    best = max(fits, key=lambda p: p.streams)
    above = [p for p in points if p.streams > best.streams]
    estimate: float = float(best.streams)
    if above:
        nxt = min(above, key=lambda p: p.streams)
        slope = (cost(nxt) - cost(best)) / (nxt.streams - best.streams)
        if slope > 0:
            estimate = best.streams + (period_ms - cost(best)) / slope
    return {"measured": best.streams, "estimated": int(estimate)}


_COLD_START_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import sdk
from sdk.streaming import StreamingGenerator
t1 = time.perf_counter()
gen = StreamingGenerator(sys.argv[1], backend=sys.argv[2])
t2 = time.perf_counter()
rate = gen.manifest.features.sample_rate
audio = np.zeros(rate // 2, np.float32)
audio[::7] = 0.1
with gen.create_stream(seed=0) as stream:
    first = 0
    while True:
        stream.accept_waveform(audio[first:first + rate // 50], rate)
        first += rate // 50
        while gen.is_ready(stream):
            gen.step([stream])
        if len(stream.pop_frames()):
            break
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_frame_s": t3 - t2}))
"""


def cold_start(bundle: str | Path, backend: str, runs: int = 3) -> dict[str, Any]:
    """Fresh-process wall time from launch to the first pose frame, ``runs`` times.

    Returns wall seconds per run (parent-measured, interpreter start included) and the
    child's own split of its last run: import sdk, load bundle + backend, first frame.
    """
    walls: list[float] = []
    split: dict[str, float] = {}
    for _ in range(runs):
        begin = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _COLD_START_CHILD, str(bundle), backend],
                              capture_output=True, text=True, cwd=REPO_ROOT, check=False,
                              timeout=300)
        walls.append(time.perf_counter() - begin)
        if done.returncode != 0:
            raise RuntimeError(f"cold-start child failed ({done.returncode}): "
                               f"{done.stderr.strip()[-2000:]}")
        split = json.loads(done.stdout.strip().splitlines()[-1])
    return {"backend": backend, "runs": runs, "wall_s": walls, "wall_s_median":
            float(np.median(walls)), "wall_s_min": float(min(walls)), "last_run_split_s": split}


def trtexec_numbers(bundle: str | Path, out_dir: Path) -> dict[str, Any]:
    """Build + benchmark the bundle's models with trtexec when it is on PATH."""
    if shutil.which("trtexec") is None:
        return {"status": "skipped: trtexec not found"}
    from export.trtexec import TrtexecError, plans_for_bundle, run_plans

    try:
        plans = plans_for_bundle(bundle, out_dir)
        return {"status": "ran", "records": run_plans(plans)}
    except (TrtexecError, OSError) as exc:
        return {"status": f"failed: {exc}"}
