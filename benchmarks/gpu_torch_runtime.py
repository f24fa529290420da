"""The runtime on a GPU without TensorRT: CUDA MFCC -> the PyTorch-CUDA generator step.

What a GPU machine with PyTorch but no TensorRT serves with
(:class:`export.torch_device_stepper.TorchDeviceStepper`): the streams' audio goes to the
GPU once, the CUDA MFCC writes the feature frames into the step's CUDA tensor, the torch
generator steps there with every stream's state in a device table; only the poses come
back. On the benchmark bundle (:mod:`benchmarks.bundle`: the default generator config,
untrained, exported for real; compute cost is the architecture's, the outputs are not a
trained model's), fp32 with TF32 off (the runner's default). Three measurements:

* ``step``: the model step alone (:meth:`TorchGeneratorStepper.step_tensors`, one frame per
  stream, state gathered and scattered on the device) for batches of B streams, CUDA-event
  time per call; streams per GPU at 15 fps = the largest B whose step fits 1/fps;
* ``ticks``: :func:`benchmarks.gpu_runtime.bench_streams`, N live streams through
  ``StreamingGenerator`` (host ``accept_waveform`` per stream, device front end, step, poses
  to the host), wall time per tick against 1/fps;
* ``batch_ticks``: N lockstep streams in one :class:`sdk.stream_batch.StreamBatch` (what a
  server's tick or a batch job uses: one call per tick for all streams);
* ``parity``: stream 0's frames against ONNX Runtime on the CPU (same bundle, same audio).

    python -m benchmarks.gpu_torch_runtime --out DIR   # gpu_torch_runtime.json / .md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bundle import UNTRAINED_NOTE
from benchmarks.gpu_runtime import TICKS, tick_summary
from sdk.runners.base import FEATURES, NOISE

STEP_BATCHES = (1, 64, 256, 1024, 4096)
TICK_STREAMS = (1, 64, 256, 1024)
BATCH_STREAMS = (64, 1024, 4096)
STEP_REPEATS = 20


def step_times(stepper: Any, batch: int, repeats: int = STEP_REPEATS) -> dict[str, Any]:
    """Milliseconds of ``stepper.step_tensors`` for ``batch`` streams, one frame each
    (features and noise already on the device, slots allocated for the batch): CUDA events
    on a GPU, the wall clock on the CPU (the tests' emulated run)."""
    import time

    import torch

    device = stepper.device
    meta = stepper.runner.get_input_metadata()
    features = torch.randn(batch, 1, int(meta[FEATURES].shape[-1]), device=device)
    noise = torch.randn(batch, 1, int(meta[NOISE].shape[-1]), device=device)
    slots = [stepper.allocate_slot() for _ in range(batch)]
    times = []
    try:
        for _ in range(3):  # cuDNN picks its algorithms, the allocator warms up
            stepper.step_tensors(features, noise, slots)
        for _ in range(repeats):
            if device.type == "cuda":
                begin, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                begin.record()
                stepper.step_tensors(features, noise, slots)
                end.record()
                end.synchronize()
                times.append(float(begin.elapsed_time(end)))
            else:
                start = time.perf_counter()
                stepper.step_tensors(features, noise, slots)
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        for slot in slots:
            stepper.release_slot(slot)
    p50 = float(np.median(times))
    return {"batch": batch, "step_p50_ms": p50, "step_p90_ms": float(np.percentile(times, 90)),
            "per_stream_us": p50 * 1e3 / batch}


def batch_ticks(gen: Any, streams: int, audio: np.ndarray, rate: int, ticks: int = TICKS
                ) -> dict[str, Any]:
    """``ticks`` ticks of ``streams`` lockstep streams in one :class:`sdk.stream_batch.
    StreamBatch` (one (N, chunk) block per tick: one resample, one upload, the CUDA MFCC
    and one step call for all); wall seconds per tick, as :func:`bench_streams` reports."""
    import time

    from sdk.stream_batch import StreamBatch

    chunk = -(-rate // gen.fps)
    blocks = [np.repeat(audio[None, t * chunk:(t + 1) * chunk], streams, axis=0)
              for t in range(ticks)]
    times, frames = [], 0
    with StreamBatch(gen, seeds=range(streams), sample_rate=rate) as batch:
        for block in blocks:
            begin = time.perf_counter()
            out = batch.accept(block)
            times.append(time.perf_counter() - begin)
            frames += out.keypoints.shape[1]
    return {**tick_summary(streams, chunk, times, gen.fps), "frames_per_stream": frames}


def run(bundle_dir: Path, step_batches: Sequence[int] = STEP_BATCHES,
        tick_streams: Sequence[int] = TICK_STREAMS, device: str = "cuda:0",
        kernel_runner: Any = None, ticks: int = TICKS,
        batch_streams: Sequence[int] = BATCH_STREAMS) -> dict[str, Any]:
    """Everything above on ``device``; ``kernel_runner`` None: a CudaRunner on torch's
    stream (the tests pass the CPU emulator with device="cpu")."""
    import torch

    from benchmarks.bundle import default_generator, make_benchmark_bundle
    from benchmarks.gpu_runtime import bench_streams, parity
    from export.torch_device_stepper import TorchDeviceStepper
    from export.torch_runner import TorchGeneratorRunner, TorchGeneratorStepper
    from sdk.audio import load_audio
    from sdk.streaming import StreamingGenerator

    bundle = make_benchmark_bundle(bundle_dir)
    model = default_generator()  # the exported weights (same config, same seed)
    stepper = TorchGeneratorStepper(TorchGeneratorRunner(model=model, bundle=bundle,
                                                         device=device))
    try:
        steps = [step_times(stepper, b) for b in step_batches]
    finally:
        stepper.close()
    runner = TorchGeneratorRunner(model=model, bundle=bundle, device=device)
    with StreamingGenerator(bundle, backend=TorchDeviceStepper(
            runner, kernel_runner, max_batch=max(*tick_streams, *batch_streams))) as gen:
        fps = int(gen.fps)
        rate = gen.manifest.features.sample_rate
        sample = Path(__file__).resolve().parents[1] / "sdk/data/samples/speech_en.flac"
        audio = load_audio(sample, rate)[: 2 * rate].astype(np.float32)
        check = parity(gen, bundle, audio, rate)
        rows = [bench_streams(gen, n, audio, rate, ticks) for n in tick_streams]
        batched = [batch_ticks(gen, n, audio, rate, ticks) for n in batch_streams]
        backend = gen.backend_name
    budget_ms = 1e3 / fps
    where = torch.device(device)
    return {"bundle": UNTRAINED_NOTE, "step_backend": backend, "fps": fps,
            "gpu": torch.cuda.get_device_name(where) if where.type == "cuda" else "none (CPU)",
            "torch": torch.__version__, "tf32": runner.allow_tf32,
            "load_average": list(os.getloadavg()), "parity": check, "step": steps,
            "ticks": rows, "batch_ticks": batched,
            "max_batch_streams_in_budget": max((t["streams"] for t in batched
                                                if t["fits_budget"]), default=0),
            "max_step_batch_in_budget": max((s["batch"] for s in steps
                                             if s["step_p50_ms"] <= budget_ms), default=0),
            "max_streams_in_budget": max((t["streams"] for t in rows if t["fits_budget"]),
                                         default=0)}


def _tick_table(ticks: list[dict[str, Any]]) -> list[str]:
    """Markdown rows of :func:`benchmarks.gpu_runtime.tick_summary` results."""
    return ["| streams | tick p50 ms | tick p90 ms | budget ms | fits |", "|---|---|---|---|---|",
            *(f"| {t['streams']} | {t['tick_p50_ms']:.2f} | {t['tick_p90_ms']:.2f} | "
              f"{t['budget_ms']:.1f} | {'yes' if t['fits_budget'] else 'no'} |" for t in ticks)]


def markdown(result: dict[str, Any]) -> str:
    check = result["parity"]
    lines = [f"# The runtime on {result['gpu']} without TensorRT ({result['fps']} fps)", "",
             f"Step: {result['step_backend']} (torch {result['torch']}, fp32, TF32 "
             f"{'on' if result['tf32'] else 'off'}); "
             f"features: CUDA MFCC into the step's CUDA tensor; load average "
             f"{result['load_average'][0]:.2f}. Bundle: {result['bundle']}.", "",
             f"Parity with ONNX Runtime on the CPU (stream 0, {check['frames']} frames): same "
             f"indices {check['same_indices']}, max keypoint difference "
             f"{check['max_keypoint_px']} px, max saliency difference {check['max_saliency']}.",
             "", "## The model step alone (one frame per stream, CUDA events)", "",
             "| streams | step p50 ms | step p90 ms | us per stream |", "|---|---|---|---|"]
    for s in result["step"]:
        lines.append(f"| {s['batch']} | {s['step_p50_ms']:.3f} | {s['step_p90_ms']:.3f} | "
                     f"{s['per_stream_us']:.2f} |")
    lines += ["", f"Largest measured batch whose step fits 1/fps: "
              f"{result['max_step_batch_in_budget']}.", "",
              "## Live streams through StreamingGenerator (wall time per tick)", "",
              *_tick_table(result["ticks"]), "",
              f"Largest measured stream count within the budget: "
              f"{result['max_streams_in_budget']} (median tick).", "",
              "## Lockstep streams in one StreamBatch (wall time per tick)", "",
              *_tick_table(result["batch_ticks"]), "",
              f"Largest measured StreamBatch within the budget: "
              f"{result['max_batch_streams_in_budget']} streams (median tick)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.gpu_preprocessing import gpu_unavailable_reason

    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_torch_runtime",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", type=int, default=0)
    args = parser.parse_args(argv)
    reason = gpu_unavailable_reason(args.device)
    if reason is None:
        import torch

        if not torch.cuda.is_available():
            reason = f"torch {torch.__version__} sees no CUDA GPU"
    if reason is not None:
        print(f"gpu_torch_runtime needs a CUDA GPU: {reason}; nothing was written",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp) / "bundle", device=f"cuda:{args.device}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_torch_runtime.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "gpu_torch_runtime.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
