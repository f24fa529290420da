"""Streams per GPU at 15 fps: the runtime's GPU front end, and the batched step where a
GPU backend is installed.

Every tick (1/fps s of audio per stream) the runtime's GPU path does, for N streams at
once: the chunk of each stream goes host -> device once (``CudaMfcc.accept``), the CUDA
MFCC advances every stream, and the newest feature frame of each stream is written into
the step's input buffer (``write_features``, the engine's ``features`` binding). This
measures that tick on the GPU (CUDA events) for N up to 8192 streams and reports how many
streams fit in the 1/fps budget. The generator step itself needs TensorRT
(:class:`sdk.runners.tensorrt_stepper.TensorRTStepper`); where it is not installed the
report says so instead of a number.

    python -m benchmarks.gpu_streams --out DIR      # gpu_streams.json / .md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_preprocessing import DeviceBuffer, gpu_unavailable_reason, time_on_stream
from sdk.features import DEFAULT_FEATURES, FeatureConfig

STREAM_COUNTS = (64, 512, 1024, 2048, 4096, 8192)
FPS = 15


def bench_tick(runner: Any, config: FeatureConfig, streams: int, repeats: int,
               rng: np.random.Generator) -> dict[str, Any]:
    """One tick for ``streams`` streams: host chunks in, feature frames out (GPU time)."""
    from sdk.cuda.mfcc import CudaMfcc
    from sdk.mfcc import MfccMatrices

    chunk = -(-config.sample_rate // FPS)  # samples per stream per tick
    mfcc = CudaMfcc(config, MfccMatrices.default(), max_streams=streams,
                    max_chunk_samples=chunk, history_frames=64, runner=runner)
    ids = np.arange(streams)
    chunks = list((rng.standard_normal((streams, chunk)) * 0.1).astype(np.float32))
    features = DeviceBuffer(runner, (streams, 1, config.feature_dim))
    for _ in range(4):  # enough audio for the first feature frames
        mfcc.accept(ids, chunks)

    def tick() -> None:
        mfcc.accept(ids, chunks)
        newest = mfcc.feature_frames_ready(ids) - 1
        mfcc.write_features(ids, newest.tolist(), 1, features)
    try:
        gpu_s, wall_s = time_on_stream(runner, tick, repeats)
    finally:
        mfcc.close()
        features.free()
    budget = 1.0 / FPS
    return {"streams": streams, "chunk_samples": chunk,
            "gpu_p50_ms": float(np.median(gpu_s) * 1e3),
            "wall_p50_ms": float(np.median(wall_s) * 1e3),
            "budget_ms": budget * 1e3,
            "fits_budget": bool(np.median(wall_s) <= budget)}


def step_backend_status() -> dict[str, Any]:
    """Whether the batched step can run on this GPU (TensorRT), and why not."""
    from sdk.runners.base import RunnerError
    from sdk.runners.tensorrt import tensorrt_version

    try:
        return {"available": True, "tensorrt": tensorrt_version()}
    except RunnerError as exc:
        return {"available": False, "reason": f"the batched step was not measured: {exc}"}


def run(device: int = 0, streams: tuple[int, ...] = STREAM_COUNTS, repeats: int = 20
        ) -> dict[str, Any]:
    from sdk.cuda.launch import CudaRunner

    runner = CudaRunner(device=device)
    rng = np.random.default_rng(0)
    try:
        ticks = [bench_tick(runner, DEFAULT_FEATURES, n, repeats, rng) for n in streams]
    finally:
        runner.close()
    fitting = [t["streams"] for t in ticks if t["fits_budget"]]
    return {"fps": FPS, "ticks": ticks, "max_streams_front_end": max(fitting, default=0),
            "step": step_backend_status()}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Streams per GPU at {result['fps']} fps", "",
             "Per tick: every stream's chunk host -> device, CUDA MFCC, newest feature frame "
             "into the step input (CUDA events for GPU time, wall clock for the whole call).",
             "", "| streams | chunk samples | GPU p50 ms | wall p50 ms | budget ms | fits |",
             "|---|---|---|---|---|---|"]
    for t in result["ticks"]:
        lines.append(f"| {t['streams']} | {t['chunk_samples']} | {t['gpu_p50_ms']:.3f} | "
                     f"{t['wall_p50_ms']:.3f} | {t['budget_ms']:.1f} | "
                     f"{'yes' if t['fits_budget'] else 'no'} |")
    lines += ["", f"Front end keeps up with {result['max_streams_front_end']} streams "
              "(largest measured count within budget)."]
    step = result["step"]
    lines.append(f"Batched step: TensorRT {step['tensorrt']}" if step["available"]
                 else step["reason"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_streams")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    reason = gpu_unavailable_reason(args.device)
    if reason is not None:
        print(f"gpu_streams needs a CUDA GPU: {reason}; nothing was written", file=sys.stderr)
        return 2
    result = run(args.device, repeats=args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_streams.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "gpu_streams.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
