"""The runtime's GPU path end to end: StreamingGenerator with its CUDA front end.

N live streams, each fed 1/fps s of audio per tick (``accept_waveform``, resampled on the
host), then one ``step`` over every ready stream: the generator's
:class:`sdk.device_front_end.DeviceFrontEnd` takes the audio to the GPU once, runs the
CUDA MFCC and writes the feature frames into the step's device input. Reports the wall
time per tick (median, p90) against the 1/fps budget, and checks stream 0's frames
against the CPU path (numpy MFCC, ONNX Runtime) on the same audio.

The step: TensorRT (:class:`sdk.runners.tensorrt_stepper.TensorRTStepper`) when TensorRT
and an engine for this GPU are present; otherwise :class:`DeviceBufferStepper`, ONNX
Runtime on the CPU reading the features back from the device buffer the CUDA MFCC wrote.
The report says which ran: without TensorRT the tick includes a device -> host copy of
the features and a CPU step, so it measures the front end inside the runtime, not the
TensorRT step.

    python -m benchmarks.gpu_runtime --out DIR      # gpu_runtime.json / .md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdk.runners.base import GeneratorStepper, StepOutputs

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "sdk" / "data" / "default_bundle"
STREAM_COUNTS = (1, 16, 64, 256)
TICKS = 30  # 2 s of audio at 15 fps


class DeviceBufferStepper(GeneratorStepper):
    """A host stepper behind the device-features interface (for GPUs without TensorRT).

    ``features_binding`` is a device buffer of (max_batch, max_frames, feature_dim)
    float32; :meth:`step_device_features` copies its first rows to the host (after the
    kernels on ``kernel_runner``'s stream) and runs ``host.step`` on them. Everything else
    is ``host``'s.
    """

    def __init__(self, host: GeneratorStepper, kernel_runner: Any, feature_dim: int,
                 max_batch: int = 256, max_frames: int = 64) -> None:
        self.host = host
        self.runner = host.runner
        self.backend = f"{host.backend} (features from the CUDA MFCC, read back)"
        self.kernel_runner = kernel_runner
        self.feature_dim = feature_dim
        self._capacity = (max_batch, max_frames)
        self._binding = kernel_runner.alloc(max_batch * max_frames * feature_dim * 4)

    @property
    def max_batch(self) -> int | None:
        limit = self.host.max_batch
        return self._capacity[0] if limit is None else min(limit, self._capacity[0])

    @property
    def features_binding(self) -> int:
        return int(self._binding)

    def allocate_slot(self) -> int:
        return self.host.allocate_slot()

    def release_slot(self, slot: int) -> None:
        self.host.release_slot(slot)

    def reset_slot(self, slot: int) -> None:
        self.host.reset_slot(slot)

    def read_state(self, slot: int) -> np.ndarray:
        return self.host.read_state(slot)

    def step(self, features: np.ndarray, noise: np.ndarray, slots: Sequence[int],
             styles: np.ndarray | None = None) -> StepOutputs:
        return self.host.step(features, noise, slots, styles)

    def step_device_features(self, noise: np.ndarray, slots: Sequence[int],
                             styles: np.ndarray | None = None) -> StepOutputs:
        batch, frames = int(noise.shape[0]), int(noise.shape[1])
        if batch > self._capacity[0] or frames > self._capacity[1]:
            raise ValueError(f"DeviceBufferStepper holds {self._capacity} (batch, frames), "
                             f"got ({batch}, {frames})")
        features = np.empty((batch, frames, self.feature_dim), np.float32)
        self.kernel_runner.download(features, self._binding)  # waits for the kernels
        return self.host.step(features, noise, slots, styles)

    def close(self) -> None:
        if self._binding:
            self.kernel_runner.synchronize()
            self.kernel_runner.free(self._binding)
            self._binding = 0
        self.host.close()


def device_generator(bundle: Path, kernel_runner: Any) -> Any:
    """A StreamingGenerator whose features come from the CUDA MFCC: TensorRT when it can
    run here (its own stream), else ONNX Runtime on the CPU behind :class:`DeviceBufferStepper`
    on ``kernel_runner``."""
    from sdk.bundle import load_bundle
    from sdk.runners.select import BackendConfig, BackendError, create_stepper
    from sdk.streaming import StreamingGenerator

    loaded = load_bundle(bundle)
    try:
        stepper, _ = create_stepper(loaded, BackendConfig("tensorrt"), None)
    except BackendError:
        host, _ = create_stepper(loaded, BackendConfig("onnxruntime-cpu", use_step_model=False))
        stepper = DeviceBufferStepper(host, kernel_runner, loaded.manifest.features.feature_dim)
    return StreamingGenerator(bundle, backend=stepper)


def bench_streams(gen: Any, streams: int, audio: np.ndarray, rate: int, ticks: int = TICKS
                  ) -> dict[str, Any]:
    """``ticks`` ticks of ``streams`` live streams on ``gen``; wall seconds per tick."""
    chunk = -(-rate // gen.fps)
    handles = [gen.create_stream(seed=i) for i in range(streams)]
    times = []
    try:
        for t in range(ticks):
            piece = audio[t * chunk:(t + 1) * chunk]
            begin = time.perf_counter()
            for stream in handles:
                stream.accept_waveform(piece, rate)
            while ready := [s for s in handles if gen.is_ready(s)]:
                gen.step(ready)
            for stream in handles:
                stream.pop_frames()
            times.append(time.perf_counter() - begin)
    finally:
        for stream in handles:
            stream.close()
    return tick_summary(streams, chunk, times, gen.fps)


def tick_summary(streams: int, chunk: int, times: Sequence[float], fps: float
                 ) -> dict[str, Any]:
    """Wall seconds per tick -> median / p90 ms against the 1/fps budget; the first 3 ticks
    (graph capture, the lookahead filling) are left out."""
    wall = np.array(times[3:] or times)
    budget = 1.0 / fps
    return {"streams": streams, "chunk_samples": chunk, "tick_p50_ms": float(np.median(wall) * 1e3),
            "tick_p90_ms": float(np.percentile(wall, 90) * 1e3), "budget_ms": budget * 1e3,
            "fits_budget": bool(np.median(wall) <= budget)}


def parity(gen: Any, bundle: Path, audio: np.ndarray, rate: int) -> dict[str, Any]:
    """Stream 0's frames on the GPU path against the CPU path: max differences."""
    from sdk.streaming import StreamingGenerator

    chunks = [-(-rate // gen.fps)] * (len(audio) // 100 + 1)
    got = gen.generate(audio, rate, seed=0, chunk_samples=chunks)
    with StreamingGenerator(bundle, backend="onnxruntime-cpu") as cpu:
        want = cpu.generate(audio, rate, seed=0)
    same = got.index.shape == want.index.shape and bool((got.index == want.index).all())
    return {"frames": len(got), "same_indices": same,
            "max_keypoint_px": float(np.abs(got.keypoints - want.keypoints).max()) if same
            else None,
            "max_saliency": float(np.abs(got.saliency - want.saliency).max()) if same else None}


def run(bundle: Path = DEFAULT_BUNDLE, streams: Sequence[int] = STREAM_COUNTS,
        device: int = 0, ticks: int = TICKS) -> dict[str, Any]:
    from sdk.audio import load_audio
    from sdk.cuda.launch import CudaRunner

    runner = CudaRunner(device=device)
    try:
        with device_generator(bundle, runner) as gen:
            rate = gen.manifest.features.sample_rate
            sample = Path(__file__).resolve().parents[1] / "sdk/data/samples/speech_en.flac"
            audio = load_audio(sample, rate)[: 2 * rate].astype(np.float32)
            check = parity(gen, bundle, audio, rate)
            rows = [bench_streams(gen, n, audio, rate, ticks) for n in streams]
            step = gen.backend_name
    finally:
        runner.close()
    fitting = [t["streams"] for t in rows if t["fits_budget"]]
    return {"bundle": bundle.name, "step_backend": step, "fps": int(gen.fps),
            "load_average": list(os.getloadavg()), "parity": check, "ticks": rows,
            "max_streams_in_budget": max(fitting, default=0)}


def markdown(result: dict[str, Any]) -> str:
    check = result["parity"]
    lines = [f"# The runtime's GPU path end to end ({result['fps']} fps)", "",
             f"Step: {result['step_backend']}; features: CUDA MFCC into the step's device "
             f"input; load average {result['load_average'][0]:.2f}.", "",
             f"Parity with the CPU path (stream 0, {check['frames']} frames): same indices "
             f"{check['same_indices']}, max keypoint difference {check['max_keypoint_px']} px, "
             f"max saliency difference {check['max_saliency']}.", "",
             "| streams | chunk samples | tick p50 ms | tick p90 ms | budget ms | fits |",
             "|---|---|---|---|---|---|"]
    for t in result["ticks"]:
        lines.append(f"| {t['streams']} | {t['chunk_samples']} | {t['tick_p50_ms']:.2f} | "
                     f"{t['tick_p90_ms']:.2f} | {t['budget_ms']:.1f} | "
                     f"{'yes' if t['fits_budget'] else 'no'} |")
    lines += ["", f"Largest measured stream count within the budget: "
              f"{result['max_streams_in_budget']} (wall time per tick, median)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.gpu_preprocessing import gpu_unavailable_reason

    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_runtime")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--device", type=int, default=0)
    args = parser.parse_args(argv)
    reason = gpu_unavailable_reason(args.device)
    if reason is not None:
        print(f"gpu_runtime needs a CUDA GPU: {reason}; nothing was written", file=sys.stderr)
        return 2
    result = run(args.bundle, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_runtime.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "gpu_runtime.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
