"""``gesturert bench``: latency, streams, MFCC, PSD path, cold start, trtexec -> JSON/MD/PNG.

    gesturert bench [--quick] [--out DIR] [--bundle BUNDLE] [--compare-sliding-window]
    gesturert bench --serve [--serve-seconds 6] [--serve-workers 2] [--out DIR]
    gesturert bench --serve --fleet [--serve-seconds 6] [--out DIR]

Without ``--bundle`` a benchmark bundle is made (once, then reused from --bundle-cache)
from a freshly initialised generator of the DEFAULT config exported through export/:
representative compute, untrained outputs (benchmarks/bundle.py). Results go to
``--out`` (default ``benchmarks/results/<machine-id>/``): ``bench.json``, ``bench.md``,
``latency_vs_streams.png``, ``latency_histogram.png`` (+ ``sliding_window.png``).
The Goals of issue 6 (and 9) are reported as met/missed with the measured number.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BenchPlan:
    """How much to measure: quick (CI, < 60 s) or full."""

    audio_seconds: float
    stream_counts: tuple[int, ...]
    scaling_steps: int
    cpu_threads: tuple[int, ...]  # ORT intra-op threads to run the CPU backend with
    mfcc_minute_seconds: float
    mfcc_chunks: int
    imaging_batch: int
    posesync_batch: int
    cold_start_runs: int
    sliding_lookaheads: tuple[int, ...]
    sliding_batches: tuple[int, ...]
    sliding_repeats: int


QUICK = BenchPlan(3.0, (1, 16, 256), 5, (0,), 10.0, 50, 16, 16, 1, (2,), (1, 16), 10)
FULL = BenchPlan(30.0, (1, 4, 16, 64, 256, 1024), 40, (0, 1), 60.0, 300, 64, 64, 5,
                 (0, 2, 4, 8), (1, 16, 64), 100)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gesturert" / "benchmark-bundle"


def register_bench(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmarks: latency, concurrent streams, MFCC, PSD path, cold start",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized run (< 60 s): fewer repeats, streams and audio")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default benchmarks/results/<machine-id>/)")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle to benchmark (default: make an untrained default-config "
                        "bundle, see --bundle-cache)")
    parser.add_argument("--bundle-cache", type=Path, default=None,
                        help=f"where the made bundle is kept (default {_cache_dir()})")
    parser.add_argument("--compare-sliding-window", action="store_true",
                        help="also run stateful vs sliding-window re-inference (issue 9)")
    parser.add_argument("--serve", action="store_true",
                        help="instead: real-time WebSocket clients against `gesturert serve` "
                        "(1..512 clients, 1 and --serve-workers processes; default bundle: "
                        "the shipped one); writes serve.json/.md/.png")
    parser.add_argument("--serve-seconds", type=float, default=6.0,
                        help="speech each client streams per point of --serve (default 6)")
    parser.add_argument("--serve-workers", type=int, default=2,
                        help="SO_REUSEPORT processes for --serve's scaling run (default 2)")
    parser.add_argument("--fleet", action="store_true",
                        help="with --serve: the fleet instead: server processes behind the "
                        "shipped HAProxy and nginx configs (added latency; clients vs 1 and 2 "
                        "processes through HAProxy); writes serve_fleet.json/.md/.png")
    parser.set_defaults(func=run_bench)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _bundle(args: argparse.Namespace) -> tuple[Path, str]:
    from benchmarks.bundle import UNTRAINED_NOTE, make_benchmark_bundle

    if args.bundle is not None:
        if not (args.bundle / "manifest.json").is_file() and not args.bundle.is_file():
            raise FileNotFoundError(f"--bundle {args.bundle}: no manifest.json there; pass a "
                                    "bundle directory or .tar, or omit --bundle to make one")
        return args.bundle, "given with --bundle"
    cache = args.bundle_cache or _cache_dir()
    _log(f"benchmark bundle in {cache} (made once; export takes ~30 s)")
    return make_benchmark_bundle(cache), UNTRAINED_NOTE


def measure(bundle: Path, plan: BenchPlan, out_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run every benchmark; returns (result dict, histogram samples)."""
    from benchmarks import features, runtime
    from benchmarks.cli_start import cli_start
    from sdk.runners.select import BackendConfig
    from sdk.streaming import GeneratorConfig, StreamingGenerator

    result: dict[str, Any] = {}
    generators, result["backends_unavailable"] = runtime.open_backends(bundle)
    variants = []  # (backend, ORT intra-op threads (0 = all), generator)
    for name, generator in generators.items():
        variants.append((name, 0, generator))
        if name == "onnxruntime-cpu":
            variants += [(name, n, StreamingGenerator(GeneratorConfig(
                bundle, BackendConfig(name, intra_op_num_threads=n))))
                for n in plan.cpu_threads if n != 0]
    audio = runtime.speech_audio(plan.audio_seconds)
    chunks, samples = [], {}
    for name, threads, generator in variants:
        for chunk_ms in runtime.CHUNK_MS:
            _log(f"{name} (threads {threads}): one stream, {chunk_ms:.1f} ms chunks")
            run = runtime.chunk_latency(generator, audio, chunk_ms)
            chunks.append({"backend": name, "threads": threads, **run.to_dict()})
            if threads == 0:
                samples[f"{name} {chunk_ms:.0f} ms"] = {
                    "end_to_end": run.end_to_end_samples_ms, "step": run.step_samples_ms}
    result["chunks"] = chunks
    _log("MFCC vs librosa")
    result["mfcc"] = features.mfcc_benchmark(plan.mfcc_minute_seconds, plan.mfcc_chunks)
    mfcc_ms_per_frame = result["mfcc"]["per_chunk_ms"]["sdk_numpy"]["p50_ms"] * (
        1000.0 / 15) / features.CHUNK_MS  # one stream's MFCC front end per pose frame
    scaling = []
    for name, threads, generator in variants:
        _log(f"{name} (threads {threads}): concurrent streams {plan.stream_counts}")
        points = runtime.stream_scaling(generator, plan.stream_counts, plan.scaling_steps)
        period = 1000.0 / generator.fps * generator.chunk_frames
        scaling.append({
            "backend": name, "threads": threads, "points": [p.to_dict() for p in points],
            "streams_in_real_time": runtime.streams_in_real_time(points, period),
            "streams_in_real_time_with_features": runtime.streams_in_real_time(
                points, period, mfcc_ms_per_frame * generator.chunk_frames)})
    result["scaling"] = scaling
    _log("pose imaging, PoseSyncNet")
    result["imaging"] = features.imaging_benchmark(plan.imaging_batch)
    result["posesync"] = features.posesync_benchmark(bundle, plan.posesync_batch)
    main_backend = variants[0][0]
    for _, _, generator in variants:
        generator.close()
    _log(f"cold start x{plan.cold_start_runs}")
    result["cold_start"] = runtime.cold_start(bundle, main_backend, plan.cold_start_runs)
    _log(f"CLI start x{plan.cold_start_runs}")
    result["cli_start"] = cli_start(plan.cold_start_runs)
    result["trtexec"] = runtime.trtexec_numbers(bundle, out_dir / "trtexec")
    return result, samples


def goals(result: dict[str, Any]) -> dict[str, tuple[float | None, str]]:
    """The issue-6 goal measurements, each the best over backends and thread settings,
    with where it was measured."""
    from benchmarks.runtime import FRAME_MS

    def where(entry: dict[str, Any]) -> str:
        threads = entry["threads"]
        return f"{entry['backend']}, {'all cores' if threads == 0 else f'{threads} thread(s)'}"

    frame_chunk = [c for c in result["chunks"] if abs(c["chunk_ms"] - FRAME_MS) < 1e-6]
    best_step = min(frame_chunk, key=lambda c: c["step_ms"]["p99_ms"], default=None)
    best_scaling = max(result["scaling"], default=None,
                       key=lambda s: s["streams_in_real_time"]["estimated"] or 0)
    return {
        "one_stream_step_p99_ms": (None, "not run") if best_step is None else
        (best_step["step_ms"]["p99_ms"], f"{where(best_step)}, {best_step['step_ms']['count']}"
         f" steps, 66.7 ms chunks; the calling thread's CPU time p99 "
         f"{best_step['step_cpu_ms']['p99_ms']:.3f} ms"),
        "streams_in_real_time": (None, "not run") if best_scaling is None else
        (float(best_scaling["streams_in_real_time"]["estimated"] or 0),
         f"{where(best_scaling)}, step p50, interpolated between measured counts"),
        "mfcc_chunk_speedup_vs_librosa": (result["mfcc"]["speedup_per_chunk"]["librosa"],
                                          "p50 / p50, same audio"),
        "cold_start_s": (result["cold_start"]["wall_s_median"],
                         f"median of {result['cold_start']['runs']} fresh processes"),
    }


def run_bench(args: argparse.Namespace) -> int:
    """The ``bench`` command; 0 when every report was written, 2 for unusable input."""
    from benchmarks.common import load_average, machine_info
    from benchmarks.report import default_out_dir, goal_rows, sliding_window_goals, write_report

    if args.serve and args.fleet:
        from benchmarks.serve import default_out_dir as serve_out_dir
        from benchmarks.serve_fleet import run_fleet_bench
        from sdk.demo import DEFAULT_BUNDLE

        for path in run_fleet_bench(args.bundle or DEFAULT_BUNDLE, args.out or serve_out_dir(),
                                    args.serve_seconds):
            print(f"wrote {path}")
        return 0
    if args.fleet:
        print("gesturert bench: --fleet goes with --serve", file=sys.stderr)
        return 2
    if args.serve:
        from benchmarks.serve import default_out_dir as serve_out_dir
        from benchmarks.serve import run_serve_bench
        from sdk.demo import DEFAULT_BUNDLE

        for path in run_serve_bench(args.bundle or DEFAULT_BUNDLE, args.out or serve_out_dir(),
                                    args.serve_seconds, args.serve_workers):
            print(f"wrote {path}")
        return 0
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    try:
        bundle, note = _bundle(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"gesturert bench: {exc}", file=sys.stderr)
        return 2
    out_dir = args.out or default_out_dir()
    result: dict[str, Any] = {"machine": machine_info(), "mode": "quick" if args.quick else "full",
                              "bundle": {"path": str(bundle), "note": note}}
    measured, samples = measure(bundle, plan, out_dir)
    result.update(measured)
    goal_values = goals(result)
    if args.compare_sliding_window:
        from benchmarks.sliding_window import run_comparison

        _log(f"sliding window vs stateful, lookaheads {plan.sliding_lookaheads}")
        result["sliding_window"] = run_comparison(plan.sliding_lookaheads,
                                                  plan.sliding_batches, plan.sliding_repeats)
        goal_values.update(sliding_window_goals(result["sliding_window"]))
    result["goals"] = goal_rows(goal_values)
    result["load_average_end"] = load_average()
    result["wall_seconds"] = time.perf_counter() - started
    for path in write_report(result, samples, out_dir):
        print(f"wrote {path}")
    for goal in result["goals"]:
        value = goal["measured"]
        print(f"goal: {goal['target']}: {goal['status']} "
              f"({'n/a' if value is None else f'{value:.4g}'})")
    print(f"bench: {result['wall_seconds']:.1f} s wall, load average "
          f"{np.round(result['machine']['load_average'] or (), 2).tolist()}")
    return 0
