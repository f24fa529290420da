"""``gesturert serve`` and ``gesturert client``: the live server and a file client.

    gesturert serve BUNDLE [--host 127.0.0.1] [--port 8765] [--backend auto]
                    [--precision P] [--max-streams N] [--threads 1] [--reuse-port]
                    [--drain-seconds 10] [--workers N]
    gesturert client URL AUDIO --out frames.npz [--realtime] [--chunk-ms 20] [--seed 0]
                     [--style NAME] [--format npz|openpose-json]

Light at import (stdlib only): websockets and the SDK load when a command runs. Needs the
``live`` extra: ``pip install 'gesturert[live]'``. ``python -m sdk.live.cli serve ARGS`` is
``gesturert serve ARGS`` without loading any other command's plugin: how the workers of
``--workers N`` start (:mod:`sdk.live.fleet` supervises them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

_SERVE_DOC = """Serve a bundle over WebSocket: speech in, poses out, in real time.

The page at http://HOST:PORT/ streams the microphone (or a file) and draws the skeleton;
the WebSocket is at /ws (protocol: docs/protocol.md); /healthz answers 200 when ready,
503 while draining, full or overloaded; /stats gives global and per-connection numbers.
SIGTERM or Ctrl-C drains: new sessions are refused, running ones get --drain-seconds to
finish, then close with 1001. See docs/serving.md.
"""


def register_serve(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "serve", help="WebSocket server: speech from browsers and apps in, poses out",
        description=_SERVE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="bundle directory or .tar")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    parser.add_argument("--backend", default="auto",
                        help="inference backend (default auto: tensorrt > onnxruntime-gpu > cpu)")
    parser.add_argument("--precision", default=None,
                        help="fp32, fp16 or int8: a TensorRT engine's precision (fp16 preferred "
                             "by default), or on onnxruntime-cpu the bundle's one-frame step "
                             "model (fp32 by default; int8 when the bundle has one)")
    parser.add_argument("--max-streams", type=int, default=256,
                        help="most concurrent streams; more are refused with close 1013 "
                             "(default 256)")
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime intra-op threads (default 1: one serving process "
                             "per core scales better; 0 = onnxruntime's default, all cores)")
    parser.add_argument("--reuse-port", action="store_true",
                        help="bind with SO_REUSEPORT so several processes share the port")
    parser.add_argument("--drain-seconds", type=float, default=10.0,
                        help="on SIGTERM, how long running streams may finish (default 10)")
    parser.add_argument("--pose-range", action="store_true",
                        help="measure each stream's poses against the bundle's training pose "
                             "range (in its end message and /stats; costs server CPU)")
    parser.add_argument("--workers", type=int, default=1,
                        help="run N server processes on the port (SO_REUSEPORT), each with its "
                             "own generator; a worker that dies is restarted (default 1)")
    parser.set_defaults(func=run_serve)


def register_client(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "client", help="stream a speech file to a gesturert server, write its poses",
        description="Stream AUDIO to `gesturert serve` at URL (ws://host:port/ws) and write "
                    "the frames as `gesturert stream` does; prints speech-to-pose latency "
                    "(chunk holding a frame's last sample sent -> frame received, p50/p99) "
                    "and frames/s.")
    parser.add_argument("url", help="server WebSocket URL, e.g. ws://127.0.0.1:8765/ws")
    parser.add_argument("audio", type=Path, help="speech file (wav, flac, ogg, ...)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output .npz (a directory for --format openpose-json)")
    parser.add_argument("--realtime", action="store_true",
                        help="send at the pace of live audio")
    parser.add_argument("--chunk-ms", type=float, default=20.0,
                        help="audio message length in milliseconds (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    parser.add_argument("--style", default=None,
                        help="gesture style (one of the server's, listed in its ready message; "
                             "default: the bundle's default)")
    parser.add_argument("--format", choices=("npz", "openpose-json"), default="npz",
                        help="npz (default) or openpose-json (one file per frame)")
    parser.set_defaults(func=run_client)


def run_serve(args: argparse.Namespace) -> int:
    """The ``serve`` command; returns the exit code."""
    if args.workers != 1:
        return serve_workers(args)
    import asyncio
    import signal

    from sdk.bundle import BundleError
    from sdk.live.config import ServerConfig
    from sdk.live.server import LiveServer
    from sdk.runners.select import BackendConfig, BackendError
    from sdk.streaming import GeneratorConfig, StreamingGenerator

    try:
        config = ServerConfig(host=args.host, port=args.port, max_streams=args.max_streams,
                              reuse_port=args.reuse_port, drain_seconds=args.drain_seconds,
                              pose_range=args.pose_range)
        backend = BackendConfig(args.backend, intra_op_num_threads=args.threads,
                                precision=args.precision)
        generator = StreamingGenerator(GeneratorConfig(args.bundle, backend))
    except (BundleError, BackendError, ValueError) as exc:
        print(f"gesturert serve: {exc}", file=sys.stderr)
        return 2
    try:
        server = LiveServer(generator, config)
    except ValueError as exc:  # a config the bundle cannot serve (e.g. --pose-range)
        generator.close()
        print(f"gesturert serve: {args.bundle}: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        try:
            await server.start()
        except OSError as exc:
            raise SystemExit(f"gesturert serve: cannot listen on {args.host}:{args.port}: "
                             f"{exc}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"gesturert serve: {generator.describe()}", flush=True)
        print(f"gesturert serve: listening on http://{args.host}:{server.port}/ (page), "
              f"ws://{args.host}:{server.port}/ws, /healthz, /stats", flush=True)
        await stop.wait()
        print(f"gesturert serve: draining ({len(server.stats()['connections'])} streams, up "
              f"to {config.drain_seconds:g} s)", flush=True)
        await server.drain()
        print("gesturert serve: stopped", flush=True)

    with generator:
        asyncio.run(main())
    return 0


def run_client(args: argparse.Namespace) -> int:
    """The ``client`` command; returns the exit code (2 for unusable input, 1 for a failure)."""
    import asyncio

    import numpy as np

    from sdk.audio import AudioError, read_audio
    from sdk.live.client import LiveClientError, stream_audio
    from sdk.pose_output import save_frames
    from sdk.pose_range import RangeMeasure
    from sdk.skeleton import Skeleton

    if not args.chunk_ms > 0:
        print(f"gesturert client: --chunk-ms must be > 0, got {args.chunk_ms}", file=sys.stderr)
        return 2
    try:
        audio, rate = read_audio(args.audio)
    except AudioError as exc:
        print(f"gesturert client: cannot read audio {args.audio}: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(stream_audio(args.url, audio, int(rate), realtime=args.realtime,
                                          chunk_ms=args.chunk_ms, seed=args.seed,
                                          style=args.style))
    except (LiveClientError, OSError, TimeoutError) as exc:
        print(f"gesturert client: {args.url}: {exc}", file=sys.stderr)
        return 1
    ready = result.ready
    skeleton = Skeleton.from_dict(ready["skeleton"])
    save_frames(args.out, result.frames, fmt=args.format, fps=int(ready["fps"]),
                backend=str(ready["backend"]), skeleton=skeleton,
                image_size=(int(ready["image_size"][0]), int(ready["image_size"][1])))
    lat = result.latencies * 1e3
    rate_text = (f"{result.frames_per_second:.2f}" if result.frames_per_second is not None
                 else "n/a")
    print(f"server: backend {ready['backend']}, {ready['fps']} fps, lookahead "
          f"{ready['lookahead_frames']} frames, algorithmic latency "
          f"{ready['algorithmic_latency_ms']:.1f} ms")
    print(f"audio: {args.audio} ({audio.shape[0] / rate:.2f} s at {rate} Hz), {args.chunk_ms:g} "
          f"ms chunks, {'real time' if args.realtime else 'as fast as possible'}")
    if lat.size:
        p50, p99 = np.percentile(lat, [50, 99])
        print(f"speech-to-pose latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {lat.size} "
              f"frames")
    print(f"frames: {len(result.frames)} received, {rate_text} frames/s")
    if result.end.get("pose_range") is not None:  # servers of bundles with the range send it
        measure = RangeMeasure.from_dict(result.end["pose_range"])
        print(f"pose range (the server's measure): {measure.describe()}")
    print(f"wrote {args.out}")
    return 0


def serve_workers(args: argparse.Namespace) -> int:
    """``gesturert serve --workers N``: N ``gesturert serve`` processes on one port.

    Each worker is the same command with ``--workers 1 --reuse-port`` (SO_REUSEPORT: the
    kernel spreads new connections over the workers), so each has its own generator and
    streams. Returns the supervisor's exit code (:func:`sdk.live.fleet.run_workers`).
    """
    from sdk.live.fleet import run_workers

    if args.workers < 1:
        print(f"gesturert serve: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.port == 0:
        print("gesturert serve: --workers needs a fixed --port (with 0 every worker would "
              "pick its own)", file=sys.stderr)
        return 2
    argv = serve_argv(args, workers=1, reuse_port=True)
    command = [sys.executable, "-m", "sdk.live.cli", "serve", *argv]
    return run_workers(command, args.workers, grace_seconds=args.drain_seconds + 10.0)


def serve_argv(args: argparse.Namespace, **overrides: object) -> list[str]:
    """The ``gesturert serve`` arguments that give ``args`` (with ``overrides``) back.

    Built from the serve parser itself, so an option added to it travels to the workers.
    """
    subparsers = argparse.ArgumentParser().add_subparsers()
    register_serve(subparsers)
    parser = subparsers.choices["serve"]
    values = {**vars(args), **overrides}
    positional: list[str] = []
    options: list[str] = []
    for action in parser._actions:
        if action.dest in ("help", "func") or action.dest not in values:
            continue
        value = values[action.dest]
        if not action.option_strings:
            positional.append(str(value))
        elif isinstance(action, argparse._StoreTrueAction):
            options += [action.option_strings[-1]] if value else []
        elif value is not None:
            options += [action.option_strings[-1], str(value)]
    return [*positional, *options]


def serve_main(argv: Sequence[str]) -> int:
    """``python -m sdk.live.cli serve ARGS``: ``gesturert serve ARGS``, loading no other
    command's plugin (how the workers start: a worker's start-up is the server's alone)."""
    parser = argparse.ArgumentParser(prog="gesturert")
    register_serve(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(serve_main(sys.argv[1:]))
