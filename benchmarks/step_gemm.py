"""The streaming step at the CPU's limit (issue 20): GEMM-shaped step, ORT set-up, front end,
int8 -- every ratio measured in one run, on one pinned core.

    python -m benchmarks.step_gemm [--bundle DIR] [--generator CKPT] [--quick] [--out DIR]
                                   [--runs N]

What runs (all ONNX Runtime CPU, one intra-op thread, the process pinned to one CPU and
numpy's BLAS to one thread -- the script re-executes itself with OPENBLAS_NUM_THREADS=1).
Every time is the calling thread's **CPU time** (``time.thread_time``; wall time is kept
in the JSON): with one thread it is all of a call's work, and on a shared machine the
wall time also counts the time the thread waited for the core (seen: 6x at 64 streams
under load average 8 on 2 cores), which is not the step's cost.

* **sgemm**: numpy float32 512x512 @ 512x512, GFLOP/s: the core's matrix-product rate.
* **models** at 1, 16, 64, 256 streams per call, run as the runtime runs them (IO binding
  into preallocated outputs): ``generator.onnx`` (the traced step, today's),
  ``generator_step.onnx`` (export/gemm_step.py) and its int8 quantisation;
  time per stream-frame (p50 wall; also the calling thread's CPU time) and GFLOP/s from
  the FLOPs per frame (``torch.utils.flop_counter``, 2 per multiply-add), as % of sgemm.
  Timed round-robin, call by call, so every variant sees the same machine load.
* **ORT variants** of the fp32 step at 1 and 64 streams: graph optimisation levels,
  weight prepacking off, ``run`` vs IO binding into preallocated outputs, and with IO
  binding: thread spinning, memory pattern, CPU arena off.
* **one stream through the SDK** (benchmarks/step_overheads.py): the model call alone, the
  SDK's stepper (ping-pong state buffers) and the stepper as it was before them, A/B
  interleaved, p25/p50/p75.
* **sliding window** (benchmarks/sliding_window.py): the stateless re-run over the
  receptive field at 1, 16, 64 streams; stateful vs window each at its best batch.
* **streams per core with the front end**: :class:`sdk.stream_batch.StreamBatch` of N
  streams fed 20 ms packets at 16 and 48 kHz (resample, MFCC, noise, step, pixels), with the
  fp32 and the int8 step at the same counts -- the whole per-stream-frame cost; and the
  per-stream path (``Stream`` + ``step``) for the ratio.
* **anatomy of the one-stream model call**: ORT's fixed cost per call, the step's Gemms
  alone, its state Split + Concat alone, a chain of Add nodes (cost per node), A/B.
* **front-end parts** of a StreamBatch of 256 streams (checks, resampling, MFCC, steps)
  at 16 and 48 kHz, and **soxr set-ups** at 48 kHz (cost per stream-frame, delay held back).
* **one-stream end-to-end latency** (benchmarks/runtime.py ``chunk_latency``, 20 ms
  chunks) with ``generator.onnx`` and with the step model.
* **int8**: its deltas from ``generator.onnx`` as recorded in the manifest by
  ``gesturert export-step`` (sdk.step_precision) and checked against its tolerances.

**Runs** (``--runs N``, default 1): the whole benchmark N times back to back, each in a
fresh process. The one-stream times and the 48 kHz streams per core moved by more than
their goals' margins between such runs on the shared 2-core machine (its own sgemm rate by
~6 %), so the report gives every goal's value in each run, their median and in how many
runs it was met; the tables are the last run's.

The bundle: ``--bundle`` (default: a copy of sdk/data/default_bundle, the shipped trained
model) gets its step models from ``--generator`` or, without one, from the weights in its
``generator.onnx`` with the default architecture (checked by the parity of export-step).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO_ROOT, load_average, machine_info
from benchmarks.step_overheads import (
    anatomy_rows,
    front_end_parts,
    one_stream_rows,
    resampler_rows,
)
from benchmarks.step_timing import (
    FRAME_MS,
    PACKET_MS,
    _block,
    interleaved,
    iobinding_call,
    ort_session,
    pin_to_one_core,
    run_call,
    sgemm_call,
    step_feed,
)

SHIPPED_BUNDLE = REPO_ROOT / "sdk" / "data" / "default_bundle"
BATCHES = (1, 16, 64, 256)
_PINNED_ENV = "GESTURERT_BENCH_PINNED"


def _style(generator: Any) -> int | None:
    """The default style's index for a generator with styles (its models take one)."""
    return generator.default_style_index if generator.config.styles else None


def prepare_bundle(bundle: Path | None, generator_ckpt: Path | None, work: Path
                   ) -> tuple[Path, Any]:
    """A bundle copy with step models (fp32 + int8) and the torch generator it came from."""
    from export.bundle_writer import load_generator
    from export.gemm_step_check import generator_from_onnx
    from export.step_bundle import add_step_models
    from train.config import load_config
    from train.generator_training import GeneratorTrainingConfig

    root = work / "bundle"
    shutil.copytree(bundle or SHIPPED_BUNDLE, root)
    if generator_ckpt is not None:
        generator, _ = load_generator(generator_ckpt)
    else:
        import dataclasses

        from sdk.bundle import load_bundle

        spec = load_bundle(root).manifest.generator  # the style table is the bundle's
        config = dataclasses.replace(
            load_config(GeneratorTrainingConfig,
                        REPO_ROOT / "train" / "configs" / "generator.yaml", []).model,
            styles=spec.styles, default_style=spec.default_style)
        generator = generator_from_onnx(root / "generator.onnx", config)
    add_step_models(root, generator)
    return root, generator


def model_rows(root: Path, generator: Any, features: np.ndarray, flops: float,
               sgemm_gflops: float, batches: tuple[int, ...], repeats: int
               ) -> list[dict[str, Any]]:
    from export.gemm_step import STEP_FILE, STEP_INT8_FILE

    files = {"generator.onnx (traced)": "generator.onnx", "step fp32 (GEMM)": STEP_FILE,
             "step int8": STEP_INT8_FILE}
    sessions = {k: ort_session(root / f) for k, f in files.items()}
    rows = []
    for batch in batches:
        feed = step_feed(batch, 1, generator.state_size, generator.config.noise_dim, features,
                         _style(generator))
        # as the runtime runs them: IO binding into preallocated outputs (reuse_outputs)
        times = interleaved({k: iobinding_call(s, feed) for k, s in sessions.items()},
                            max(5, repeats // max(1, batch // 16)), block=_block(batch))
        for name, t in times.items():
            per_frame = t["cpu_p50_ms"] * 1e3 / batch  # CPU time: see the module docstring
            gflops = flops / (per_frame * 1e-6) / 1e9
            rows.append({"model": name, "batch": batch, "wall_us_per_frame": t["p50_ms"] * 1e3
                         / batch, "cpu_us_per_frame": per_frame,
                         "call_p50_ms": t["p50_ms"], "call_p90_ms": t["p90_ms"],
                         "gflops": gflops, "percent_of_sgemm": 100 * gflops / sgemm_gflops})
    return rows


def ort_variant_rows(root: Path, generator: Any, features: np.ndarray, repeats: int
                     ) -> list[dict[str, Any]]:
    from export.gemm_step import STEP_FILE

    rows = []
    for batch in (1, 64):
        feed = step_feed(batch, 1, generator.state_size, generator.config.noise_dim, features,
                         _style(generator))
        calls: dict[str, Callable[[], Any]] = {}
        for level in ("disabled", "basic", "extended", "all"):
            calls[f"opt {level}, run()"] = run_call(ort_session(root / STEP_FILE, level), feed)
        calls["opt all, prepacking off, run()"] = run_call(
            ort_session(root / STEP_FILE, "all", prepack=False), feed)
        calls["opt all, IO binding, preallocated outputs"] = iobinding_call(
            ort_session(root / STEP_FILE, "all"), feed)
        for name, flags in (("spinning off", {"spinning": False}),
                            ("memory pattern off", {"memory_pattern": False}),
                            ("CPU arena off", {"arena": False})):
            calls[f"opt all, IO binding, {name}"] = iobinding_call(
                ort_session(root / STEP_FILE, "all", **flags), feed)
        times = interleaved(calls, max(5, repeats // max(1, batch // 16)), block=_block(batch))
        for name, t in times.items():
            rows.append({"variant": name, "batch": batch,
                         "wall_us_per_frame": t["p50_ms"] * 1e3 / batch,
                         "cpu_us_per_frame": t["cpu_p50_ms"] * 1e3 / batch})
    return rows


def sliding_window_rows(generator: Any, work: Path, features: np.ndarray,
                        step_path: Path, repeats: int) -> dict[str, Any]:
    from benchmarks.sliding_window import export_window_model, receptive_field

    window = receptive_field(generator)
    export_window_model(generator, work / "window.onnx", window)
    sliding, stateful = ort_session(work / "window.onnx"), ort_session(step_path)
    out: dict[str, Any] = {"window_frames": window, "batches": {}}
    for batch in (1, 16, 64):
        wfeed = step_feed(batch, window, generator.state_size, generator.config.noise_dim,
                          features)
        wfeed.pop("state")
        sfeed = step_feed(batch, 1, generator.state_size, generator.config.noise_dim, features,
                          _style(generator))
        t = interleaved({"window": run_call(sliding, wfeed), "step": run_call(stateful, sfeed)},
                        max(5, repeats // max(1, batch // 4)), block=_block(batch))
        out["batches"][batch] = {k: v["cpu_p50_ms"] * 1e3 / batch for k, v in t.items()}
    best_window = min(v["window"] for v in out["batches"].values())
    best_step = min(v["step"] for v in out["batches"].values())
    out.update(best_window_us=best_window, best_step_us=best_step,
               ratio_best=best_window / best_step)
    return out


def front_end_rows(root: Path, counts: tuple[int, ...], packets: int) -> list[dict[str, Any]]:
    """CPU us per stream-frame of StreamBatch (whole pipeline; fp32 and int8 step at the
    same stream counts, so each is judged at its best) and of one Stream per speaker + step
    (fp32)."""
    rows = _front_end_rows(root, counts, packets, "fp32", with_streams=True)
    return rows + _front_end_rows(root, counts, packets, "int8", with_streams=False)


def _front_end_rows(root: Path, counts: tuple[int, ...], packets: int, precision: str,
                    with_streams: bool) -> list[dict[str, Any]]:
    from sdk.runners.select import BackendConfig
    from sdk.stream_batch import StreamBatch
    from sdk.streaming import GeneratorConfig, StreamingGenerator

    rng = np.random.default_rng(0)
    rows = []
    config = GeneratorConfig(root, BackendConfig("onnxruntime-cpu", intra_op_num_threads=1,
                                                 precision=precision))
    with StreamingGenerator(config) as gen:
        for rate in (16000, 48000):
            n = rate * PACKET_MS // 1000
            for count in counts:
                audio = (0.1 * rng.standard_normal((count, n * (packets + 8)))).astype(np.float32)
                with StreamBatch(gen, range(count), rate) as batch:
                    for i in range(8):  # warm up: soxr delay, MFCC window, lookahead
                        batch.accept(audio[:, i * n:(i + 1) * n])
                    frames, begin, cpu0 = 0, time.perf_counter(), time.thread_time()
                    for i in range(8, 8 + packets):
                        frames += len(batch.accept(audio[:, i * n:(i + 1) * n]))
                    wall, cpu = time.perf_counter() - begin, time.thread_time() - cpu0
                per = cpu / (frames * count) * 1e6
                rows.append({"path": f"StreamBatch ({precision} step)", "rate": rate,
                             "streams": count,
                             "frames": frames, "wall_us_per_stream_frame":
                             wall / (frames * count) * 1e6, "us_per_stream_frame": per,
                             "streams_per_core": FRAME_MS * 1e3 / per})
            if not with_streams:
                continue
            count = min(counts[-1], 256)
            audio = (0.1 * rng.standard_normal((count, n * (packets // 2 + 8)))).astype(np.float32)
            streams = [gen.create_stream(seed=i) for i in range(count)]
            frames, wall = 0, 0.0
            for i in range(packets // 2 + 8):
                t0 = time.thread_time()
                for b, stream in enumerate(streams):
                    stream.accept_waveform(audio[b, i * n:(i + 1) * n], rate)
                ready = [s for s in streams if gen.is_ready(s)]
                if ready:
                    gen.step(ready)
                got = sum(len(s.pop_frames()) for s in streams)
                if i >= 8:
                    wall += time.thread_time() - t0
                    frames += got
            for stream in streams:
                stream.close()
            per = wall / max(frames, 1) * 1e6
            rows.append({"path": f"Stream per speaker + step ({precision} step)", "rate": rate,
                         "streams": count,
                         "frames": frames, "us_per_stream_frame": per,
                         "streams_per_core": FRAME_MS * 1e3 / per})
    return rows


def latency_rows(root: Path) -> list[dict[str, Any]]:
    import soxr

    from benchmarks.runtime import chunk_latency, speech_audio
    from sdk.features import DEFAULT_FEATURES
    from sdk.runners.select import BackendConfig
    from sdk.streaming import GeneratorConfig, StreamingGenerator

    audio = speech_audio(20.0)
    rate = DEFAULT_FEATURES.sample_rate
    at_48k = soxr.resample(audio, rate, 48000, quality="VHQ").astype(np.float32)
    rows = []
    for name, use_step, clip, clip_rate in (
            ("generator.onnx", False, audio, rate), ("step fp32", True, audio, rate),
            ("step fp32, 48 kHz input (sdk.decimator)", True, at_48k, 48000)):
        config = GeneratorConfig(root, BackendConfig("onnxruntime-cpu", intra_op_num_threads=1,
                                                     use_step_model=use_step))
        with StreamingGenerator(config) as gen:
            run = chunk_latency(gen, clip, 20.0, clip_rate)
        rows.append({"model": name, "input_hz": clip_rate,
                     "end_to_end_p50_ms": run.end_to_end.p50_ms,
                     "end_to_end_p99_ms": run.end_to_end.p99_ms, "step_p50_ms": run.step.p50_ms,
                     "step_cpu_p50_ms": run.step_cpu.p50_ms})
    return rows


def run(bundle: Path | None, generator_ckpt: Path | None, quick: bool) -> dict[str, Any]:
    from benchmarks.sliding_window import flops_per_frame
    from export.bundle_writer import speech_inputs
    from export.gemm_step import STEP_FILE
    from sdk.bundle import load_bundle
    from sdk.features import DEFAULT_FEATURES

    cpu = pin_to_one_core()
    result: dict[str, Any] = {"machine": machine_info(), "pinned_cpu": cpu, "mode":
                              "quick" if quick else "full", "threads": 1}
    repeats = 20 if quick else 200
    with tempfile.TemporaryDirectory(prefix="gesturert-step-") as tmp:
        work = Path(tmp)
        root, generator = prepare_bundle(bundle, generator_ckpt, work)
        result["bundle"] = {"source": str(bundle or "sdk/data/default_bundle (shipped)"),
                            "generator": str(generator_ckpt or "weights of its generator.onnx"),
                            "step_models": [r.to_dict() for r in
                                            load_bundle(root).manifest.step_models]}
        _, features, _ = speech_inputs(DEFAULT_FEATURES, 0)
        flops = float(flops_per_frame(generator, 1)["stateful"])
        sgemm, sgemm_flops = sgemm_call()
        before = interleaved({"sgemm": sgemm}, 10 if quick else 30)["sgemm"]["cpu_p50_ms"]
        result["flops_per_frame"] = flops
        models = model_rows(root, generator, features, flops,
                            sgemm_flops / (before * 1e-3) / 1e9,
                            (1, 64) if quick else BATCHES, repeats)
        after = interleaved({"sgemm": sgemm}, 10 if quick else 30)["sgemm"]["cpu_p50_ms"]
        sgemm_gflops = sgemm_flops / (0.5 * (before + after) * 1e-3) / 1e9
        for row in models:  # % of the mean of the sgemm runs before and after
            row["percent_of_sgemm"] = 100 * row["gflops"] / sgemm_gflops
        result["sgemm"] = {"n": 512, "gflops": sgemm_gflops,
                           "cpu_p50_ms_before": before, "cpu_p50_ms_after": after}
        result["models"] = models
        result["ort_variants"] = ort_variant_rows(root, generator, features, repeats)
        result["sliding_window"] = sliding_window_rows(generator, work, features,
                                                       root / STEP_FILE, repeats // 2)
        result["front_end"] = front_end_rows(root, (64, 256) if quick else (64, 256, 1024),
                                             10 if quick else 30)
        result["one_stream"] = one_stream_rows(root, generator, features, repeats)
        result["anatomy"] = anatomy_rows(root / STEP_FILE, generator.state_size, repeats)
        result["front_end_parts"] = front_end_parts(root, 256, 10 if quick else 30)
        result["resamplers"] = resampler_rows(256, 10 if quick else 50)
        result["latency"] = latency_rows(root)
    result["load_average_end"] = load_average()
    return result


def _repeated(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark ``args.runs`` times, each a fresh process (the pinned environment is
    inherited); the last run's result with ``runs``: every run's goals."""
    from benchmarks.step_gemm_report import run_summary

    base = [*(["--bundle", str(args.bundle)] if args.bundle else []),
            *(["--generator", str(args.generator)] if args.generator else []),
            *(["--quick"] if args.quick else [])]
    summaries, result = [], None
    with tempfile.TemporaryDirectory(prefix="gesturert-step-runs-") as tmp:
        for index in range(args.runs):
            out = Path(tmp) / f"run{index}"
            command = [sys.executable, "-m", "benchmarks.step_gemm", *base, "--runs", "1",
                       "--out", str(out)]
            print(f"run {index + 1} of {args.runs}", flush=True)
            subprocess.run(command, cwd=REPO_ROOT, check=True)
            result = json.loads((out / "step_gemm.json").read_text())
            summaries.append(run_summary(result))
    if result is None:  # runs < 1: main refuses it before
        raise ValueError("no run")
    return {**result, "runs": summaries}


def main(argv: list[str] | None = None) -> int:
    """Re-execute with one BLAS thread, run, write step_gemm.{json,md,png}."""
    if os.environ.get(_PINNED_ENV) != "1":
        env = {**os.environ, _PINNED_ENV: "1", "OPENBLAS_NUM_THREADS": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "benchmarks.step_gemm",
                   *(sys.argv[1:] if argv is None else argv)]
        return subprocess.run(command, env=env, cwd=REPO_ROOT, check=False).returncode
    from benchmarks.step_gemm_report import write_step_report

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--generator", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path,
                        default=REPO_ROOT / "benchmarks" / "results" / "step_gemm")
    parser.add_argument("--runs", type=int, default=1,
                        help="run the whole benchmark this many times, each in a fresh "
                             "process; the goals are reported per run (default 1)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    result = run(args.bundle, args.generator, args.quick) if args.runs == 1 \
        else _repeated(args)
    for path in write_step_report(result, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
