"""The server pump's model-side work per stream-frame: per-stream ``Stream`` vs ``BatchedStreams``.

    python -m benchmarks.serve_pass [--out DIR] [--quick]

What one pass of ``gesturert serve``'s pump does, without sockets: N streams each
get the audio of one server tick (``ServerConfig.tick_seconds``; 16 kHz pcm16, one block
per stream, offsets staggered so streams reach frame boundaries at different ticks, as
connections do), then every ready stream is stepped and its frames popped. Two
implementations side by side, in alternating rounds: the per-stream path the server used
before (``Stream.accept_waveform``, ``StreamingGenerator.step``, ``Stream.pop_frames``)
and :class:`sdk.live.batched_streams.BatchedStreams` (one vectorised front end and
batched steps). Measured: process CPU time (all threads) per stream-frame, median over
rounds, in a child process pinned to one ONNX Runtime thread and one BLAS thread, as the
server runs. Not measured here: the event loop's per-message WebSocket work (``gesturert
bench --serve`` measures the whole).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    REPO_ROOT,
    load_average,
    machine_id,
    machine_info,
    machine_state,
    write_results,
)
from sdk.live.config import ServerConfig

STREAMS = (8, 64, 200, 512)
RATE = 16000  # Hz, the clients' (and the shipped bundle's) sample rate
TICK_SAMPLES = round(ServerConfig().tick_seconds * RATE)  # audio per stream per server tick
_CHILD_ENV = "GESTURERT_SERVE_PASS_CHILD"


def _measure(streams: int, ticks: int, rounds: int) -> dict[str, list[float]]:
    """CPU microseconds per stream-frame of each path, one value per round (child process)."""
    from sdk.audio import load_audio
    from sdk.demo import DATA_DIR, DEFAULT_BUNDLE
    from sdk.live.batched_streams import BatchedStreams
    from sdk.runners.select import BackendConfig
    from sdk.streaming import GeneratorConfig, StreamingGenerator

    speech = load_audio(DATA_DIR / "samples" / "speech_en.flac", RATE)
    pcm = np.clip(np.rint(speech * 32767), -32768, 32767).astype(np.int16)[:, None]
    span = len(pcm) - TICK_SAMPLES

    def block(tick: int, stream: int) -> np.ndarray:
        first = (tick * TICK_SAMPLES + stream * 37) % span
        return pcm[first:first + TICK_SAMPLES]

    gen = StreamingGenerator(GeneratorConfig(DEFAULT_BUNDLE, BackendConfig(
        "onnxruntime-cpu", intra_op_num_threads=1)))
    frames = streams * ticks * TICK_SAMPLES / RATE * gen.fps  # stream-frames per round

    def per_stream() -> float:
        opened = [gen.create_stream(i) for i in range(streams)]
        began = time.process_time()
        for tick in range(ticks):
            for i, stream in enumerate(opened):
                stream.accept_waveform(block(tick, i), RATE)
            ready = [s for s in opened if gen.is_ready(s)]
            while ready:
                gen.step(ready)
                ready = [s for s in ready if gen.is_ready(s)]
            for stream in opened:
                stream.pop_frames()
        spent = time.process_time() - began
        for stream in opened:
            stream.close()
        return 1e6 * spent / frames

    def batched() -> float:
        batch = BatchedStreams(gen)
        opened = [batch.open(i, RATE) for i in range(streams)]
        began = time.process_time()
        for tick in range(ticks):
            for i, stream in enumerate(opened):
                batch.feed(stream, block(tick, i))
            batch.advance()
            for stream in opened:
                batch.pop_frames(stream)
        spent = time.process_time() - began
        for stream in opened:
            batch.close(stream)
        return 1e6 * spent / frames

    out: dict[str, list[float]] = {"stream": [], "batched_streams": []}
    per_stream(), batched()  # warm-up: sessions, caches
    for _ in range(rounds):
        out["stream"].append(per_stream())
        out["batched_streams"].append(batched())
    gen.close()
    return out


def run(out_dir: Path, quick: bool) -> list[Path]:
    """Every stream count in its own child process; writes serve_pass.json/.md/.png."""
    ticks, rounds = (15, 3) if quick else (45, 5)
    result: dict[str, Any] = {"machine": machine_info(), "ticks_per_round": ticks,
                              "rounds": rounds, "tick_samples": TICK_SAMPLES, "rows": []}
    env = {**os.environ, _CHILD_ENV: "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for streams in STREAMS:
        print(f"[serve_pass] {streams} streams", file=sys.stderr, flush=True)
        load = load_average()
        out = subprocess.run([sys.executable, "-m", "benchmarks.serve_pass", "--child",
                              str(streams), str(ticks), str(rounds)], env=env, cwd=REPO_ROOT,
                             check=True, capture_output=True, text=True).stdout
        values = json.loads(out)
        row: dict[str, Any] = {"streams": streams, "load_average_before": load,
                               "us_per_stream_frame": values}
        row.update({f"{k}_median_us": float(np.median(v)) for k, v in values.items()})
        row["speedup"] = row["stream_median_us"] / row["batched_streams_median_us"]
        result["rows"].append(row)
    result["load_average_end"] = load_average()
    return write_results(out_dir, "serve_pass", result, markdown, plot)


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "# The server pump's model-side work: per-stream Stream vs BatchedStreams", "",
        f"Machine: {machine['cpu_model']}, {machine['cpu_cores']} cores; git "
        f"{machine['git_sha']}; {machine['timestamp']}. The machine was "
        f"{machine_state(machine['load_average'])}; load average at the end "
        f"{result['load_average_end']}. One child process per stream count, ONNX Runtime "
        "and BLAS on one thread each; process CPU time (all threads) per stream-frame, "
        f"median of {result['rounds']} alternating rounds of {result['ticks_per_round']} "
        f"ticks, each tick {result['tick_samples']} samples "
        f"({1e3 * result['tick_samples'] / RATE:.0f} ms at {RATE // 1000} kHz) per stream. "
        "No sockets: the event loop's WebSocket work is not in these numbers.", "",
        "| streams | Stream path, CPU us per stream-frame | BatchedStreams | ratio | rounds "
        "(Stream / BatchedStreams) | load avg (1 min) |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        values = r["us_per_stream_frame"]
        lines.append(
            f"| {r['streams']} | {r['stream_median_us']:.1f} | "
            f"{r['batched_streams_median_us']:.1f} | {r['speedup']:.2f}x | "
            f"{', '.join(f'{v:.0f}' for v in values['stream'])} / "
            f"{', '.join(f'{v:.0f}' for v in values['batched_streams'])} | "
            f"{(r['load_average_before'] or [float('nan')])[0]:.2f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    n = [r["streams"] for r in result["rows"]]
    for key, label in (("stream_median_us", "per-stream Stream path"),
                       ("batched_streams_median_us", "BatchedStreams")):
        ax.plot(n, [r[key] for r in result["rows"]], "-o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("streams in the pass")
    ax.set_ylabel("CPU us per stream-frame (median)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"server pump, {result['machine']['cpu_cores']} cores, load "
                 f"{result['machine']['load_average'][0]:.1f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer ticks and rounds")
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if os.environ.get(_CHILD_ENV) != "1":
            parser.error("--child is internal")
        print(json.dumps(_measure(*args.child)))
        return
    out = args.out or REPO_ROOT / "benchmarks" / "results" / machine_id(machine_info())
    for path in run(out, args.quick):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
