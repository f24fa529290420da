"""``gesturert stream``: stream a speech file through a bundle as if it arrived live.

    gesturert stream BUNDLE speech.wav --out poses.npz [--realtime] [--chunk-ms 20]
                     [--backend auto] [--precision P] [--seed 0] [--style NAME]
                     [--chunk-frames N]

The file is cut into ``--chunk-ms`` chunks at its own sample rate and channel count (the
stream resamples and mixes down). With ``--realtime`` each chunk is handed over when it
would have finished arriving from a microphone; without it, as fast as possible. After
every chunk the generator steps while the stream is ready. Printed: the backend and why,
frames and lookahead, per-step compute latency (p50/p99), and end-to-end latency per
frame: from the moment the last audio sample of frame k was handed over to the moment
frame k was out (with ``--realtime`` this includes waiting for the lookahead audio); and,
when the bundle carries its training poses' range (:mod:`sdk.pose_range`), how far the
body and hands strayed past it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from sdk.audio import AudioError, read_audio
from sdk.bundle import BundleError
from sdk.frames import PoseFrames
from sdk.pose_output import OUTPUT_FORMATS, save_frames
from sdk.pose_range import describe_range
from sdk.runners.select import BACKENDS, PRECISIONS, BackendConfig, BackendError
from sdk.streaming import GeneratorConfig, Stream, StreamError, StreamingGenerator


def register_stream(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "stream",
        help="stream a speech file through a bundle (simulated real-time), write poses",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path, help="bundle directory or .tar")
    parser.add_argument("audio", type=Path, help="speech file (wav, flac, ogg, ...)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output .npz of PoseFrames (a directory for --format openpose-json)")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="npz",
                        help="npz (default; with joint names, bones, fps) or openpose-json "
                             "(one OpenPose 137-point JSON file per frame)")
    parser.add_argument("--realtime", action="store_true",
                        help="hand chunks over at the pace of live audio")
    parser.add_argument("--chunk-ms", type=float, default=20.0,
                        help="audio chunk length in milliseconds (default 20)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="inference backend (default auto: tensorrt > onnxruntime-gpu > cpu)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="model precision: a TensorRT engine's (fp16 preferred by default), "
                             "or on onnxruntime-cpu the bundle's one-frame step model (fp32 by "
                             "default; int8 when the bundle has one, one frame per step)")
    parser.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    parser.add_argument("--style", default=None,
                        help="gesture style, one of the bundle's (manifest generator.styles; "
                             "default: its default style)")
    parser.add_argument("--chunk-frames", type=int, default=None,
                        help="feature frames per step (default: the bundle's)")
    parser.set_defaults(func=run_stream)


def _percentiles(values: list[float]) -> str:
    if not values:
        return "n/a (no samples)"
    p50, p99 = np.percentile(np.asarray(values) * 1e3, [50, 99])
    return f"p50 {p50:.3f} ms, p99 {p99:.3f} ms over {len(values)}"


def run_stream(args: argparse.Namespace) -> int:
    """The ``stream`` command; returns the exit code (2 for unusable input)."""
    if not args.chunk_ms > 0:
        print(f"gesturert stream: --chunk-ms must be > 0, got {args.chunk_ms}", file=sys.stderr)
        return 2
    try:  # the checks of load_audio (truncated files, NaN, absurd rates), at the file's rate
        audio, rate = read_audio(args.audio)
    except AudioError as exc:
        print(f"gesturert stream: cannot read audio {args.audio}: {exc}", file=sys.stderr)
        return 2
    try:
        config = GeneratorConfig(args.bundle, BackendConfig(args.backend,
                                                            precision=args.precision),
                                 chunk_frames=args.chunk_frames)
        generator = StreamingGenerator(config)
    except (BundleError, BackendError, ValueError) as exc:
        print(f"gesturert stream: {exc}", file=sys.stderr)
        return 2
    with generator:
        try:
            report = _simulate(generator, audio, int(rate), args)
        except (StreamError, AudioError) as exc:
            print(f"gesturert stream: {args.audio}: {exc}", file=sys.stderr)
            return 2
    frames, step_times, latencies, wall = report
    manifest = generator.manifest
    save_frames(args.out, frames, fmt=args.format, fps=generator.fps,
                backend=generator.backend_name, skeleton=manifest.skeleton,
                image_size=manifest.normalization.image_size)
    seconds = audio.shape[0] / rate
    print(f"backend: {generator.backend.describe()}")
    print(f"style: {args.style or generator.default_style} (of {', '.join(generator.styles)})")
    print(f"audio: {args.audio} ({seconds:.2f} s at {rate} Hz, {audio.shape[1]} channel(s)), "
          f"{args.chunk_ms:g} ms chunks, {'real time' if args.realtime else 'as fast as possible'}")
    print(f"frames: {len(frames)} at {generator.fps} fps, lookahead {generator.lookahead_frames} "
          f"frames, {generator.chunk_frames} frame(s)/step, algorithmic latency "
          f"{generator.algorithmic_latency_seconds * 1e3:.1f} ms")
    print(f"step latency (compute): {_percentiles(step_times)} steps")
    print(f"end-to-end latency: {_percentiles(latencies)} frames")
    print(f"wall time {wall:.3f} s for {seconds:.2f} s of audio (real-time factor "
          f"{wall / max(seconds, 1e-9):.3f})")
    print(describe_range(manifest.pose_range, manifest.normalization, frames.keypoints))
    print(f"wrote {args.out}")
    return 0


def _simulate(generator: StreamingGenerator, audio: np.ndarray, rate: int,
              args: argparse.Namespace) -> tuple[PoseFrames, list[float], list[float], float]:
    """Feed ``audio`` (N, C) in chunks; returns (frames, step seconds, e2e seconds, wall)."""
    fps = generator.fps
    chunk = max(1, round(args.chunk_ms * rate / 1000))
    total = audio.shape[0]
    step_times: list[float] = []
    latencies: list[float] = []
    parts: list[PoseFrames] = []

    def drain(stream: Stream) -> None:
        while generator.is_ready(stream):
            begin = time.perf_counter()
            generator.step([stream])
            step_times.append(time.perf_counter() - begin)
        got = stream.pop_frames()
        done = time.perf_counter()
        for k in got.index:  # the chunk holding frame k's last sample
            last_sample = min(total, -(-(int(k) + 1) * rate // fps)) - 1
            latencies.append(done - handed_at[max(last_sample, 0) // chunk])
        parts.append(got)

    start = time.perf_counter()
    starts = range(0, total, chunk)
    handed_at = np.zeros(max(len(starts), 1))  # wall time each chunk was handed over
    with generator.create_stream(seed=args.seed, style=getattr(args, "style", None)) as stream:
        for i, first in enumerate(starts):
            if args.realtime:
                due = start + min(first + chunk, total) / rate
                time.sleep(max(0.0, due - time.perf_counter()))
            handed_at[i] = time.perf_counter()
            stream.accept_waveform(audio[first:first + chunk], rate)
            drain(stream)
        stream.input_finished()
        drain(stream)
    wall = time.perf_counter() - start
    return PoseFrames.concatenate(parts, generator.num_joints), step_times, latencies, wall
