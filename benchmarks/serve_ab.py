"""A/B of ``gesturert serve``'s cost: a baseline commit against this tree, interleaved.

    python -m benchmarks.serve_ab --baseline REF [--clients 200] [--seconds 12] [--rounds 3]
                                  [--candidate-args "--pose-range"]
                                  [--out benchmarks/results/serve_ab] [--name serve_ab]

Absolute capacity (``gesturert bench --serve``) needs an idle machine. This benchmark is
for a shared one: it compares two servers under the same load, alternating A B, B A, ...
so that whatever else runs on the machine weighs on both alike, and it reports **process
CPU time** (less sensitive to other load than latency) per client-second and per frame
delivered, split into the event-loop thread (the process's main thread) and the other
threads (the pump's worker, onnxruntime), with latency alongside.

The baseline is ``git archive REF sdk`` unpacked in a temporary directory; the candidate
is this checkout's ``sdk/`` (uncommitted changes included: the report says ``-dirty``).
Both serve the same bundle (``--bundle``, default the shipped one) to the same load
generator (:mod:`benchmarks.serve_load` of this checkout: N real-time clients, 20 ms
pcm16 messages), one server process each, ``--threads 1`` as ``bench --serve``.
``--candidate-args`` adds ``gesturert serve`` options to the candidate's server only: with
``--baseline HEAD`` that measures what an option costs, the code being the same.
Per round and variant: a fresh server, one load run of ``--seconds``, then the server is
stopped. Reported per variant: medians over rounds; the load average before every run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    REPO_ROOT,
    load_average,
    machine_info,
    machine_state,
    write_results,
)
from benchmarks.serve import run_point, start_servers, stop_servers
from benchmarks.serve_load import RATE as LOAD_RATE
from sdk.demo import DEFAULT_BUNDLE

VARIANTS = ("baseline", "candidate")
GOAL_EXTRA_MS = 50.0


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each thread of a live process, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def unpack_baseline(ref: str, into: Path) -> str:
    """``sdk/`` of commit ``ref`` under ``into``; returns the full commit hash."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=REPO_ROOT,
                         check=True, capture_output=True, text=True).stdout.strip()
    archive = into / "sdk.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", sha, "sdk"], cwd=REPO_ROOT, check=True, stdout=out)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return sha


def measure(tree: Path, bundle: Path, clients: int, seconds: float, fps: int,
            algorithmic_ms: float, rate: int = LOAD_RATE, extra_args: Sequence[str] = ()
            ) -> dict[str, Any]:
    """One server from ``tree`` (with ``extra_args``), one load run: run_point's row plus
    the thread split."""
    procs, port = start_servers(bundle, 1, tree=tree, extra_args=extra_args)
    try:
        pid = procs[0].pid
        before = thread_cpu_seconds(pid)
        row = run_point(procs, port, clients, seconds, fps, algorithmic_ms, rate=rate)
        after = thread_cpu_seconds(pid)
    finally:
        stop_servers(procs)
    loop = after.get(pid, 0.0) - before.get(pid, 0.0)
    other = sum(v - before.get(t, 0.0) for t, v in after.items() if t != pid)
    client_seconds = clients * seconds
    frames = max(row["frames"], 1)
    row.update({
        "loop_thread_cpu_ms_per_client_second": 1e3 * loop / client_seconds,
        "other_threads_cpu_ms_per_client_second": 1e3 * other / client_seconds,
        "server_cpu_us_per_frame": 1e6 * (loop + other) / frames,
        "loop_thread_cpu_us_per_frame": 1e6 * loop / frames,
    })
    return row


METRICS = ("server_cpu_ms_per_client_second", "loop_thread_cpu_ms_per_client_second",
           "other_threads_cpu_ms_per_client_second", "server_cpu_us_per_frame",
           "latency_p50_ms", "latency_p99_ms", "fps_min")


def summarise(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Median over rounds of each metric (None where a round lacks it)."""
    out: dict[str, float | None] = {}
    for key in METRICS:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(np.median(values)) if len(values) == len(rows) and values else None
    out["errors"] = float(sum(r["errors"] for r in rows))
    return out


def run_ab(ref: str, bundle: Path, clients: int, seconds: float, rounds: int,
           rate: int = LOAD_RATE, candidate_args: Sequence[str] = ()) -> dict[str, Any]:
    from sdk.streaming import StreamingGenerator

    machine = machine_info()  # at the start: its load average says how busy the machine was
    with StreamingGenerator(bundle, backend="onnxruntime-cpu") as generator:
        fps, algorithmic_ms = generator.fps, generator.algorithmic_latency_seconds * 1e3
    with tempfile.TemporaryDirectory(prefix="serve_ab_") as tmp:
        sha = unpack_baseline(ref, Path(tmp))
        trees = {"baseline": Path(tmp), "candidate": REPO_ROOT}
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for index in range(rounds):
            order = VARIANTS if index % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                print(f"[serve_ab {time.strftime('%H:%M:%S')}] round {index + 1}/{rounds}: "
                      f"{variant}, {clients} clients x {seconds:g} s", file=sys.stderr,
                      flush=True)
                row = measure(trees[variant], bundle, clients, seconds, fps, algorithmic_ms,
                              rate, candidate_args if variant == "candidate" else ())
                row["round"] = index
                runs[variant].append(row)
    summary = {v: summarise(runs[v]) for v in VARIANTS}
    ratios = {}
    for key in METRICS[:4]:
        old, new = summary["baseline"][key], summary["candidate"][key]
        ratios[key] = None if not old or new is None else new / old
    return {"machine": machine, "baseline_commit": sha, "bundle": str(bundle),
            "clients": clients, "seconds": seconds, "rounds": rounds, "fps": fps,
            "candidate_args": list(candidate_args),
            "sample_rate": rate,
            "algorithmic_latency_ms": algorithmic_ms,
            "goal_p99_ms": algorithmic_ms + GOAL_EXTRA_MS, "niceness": os.nice(0),
            "runs": runs, "summary": summary, "candidate_over_baseline": ratios,
            "load_average_end": load_average()}


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    loads = [r["load_average_before"][0] for rows in result["runs"].values() for r in rows
             if r.get("load_average_before")]
    lines = [
        "# `gesturert serve` A/B: server CPU per client, baseline vs candidate", "",
        f"Machine: {machine['cpu_model']}, {machine['cpu_cores']} cores; "
        f"{machine['timestamp']}. The machine was {machine_state(machine['load_average'])}; "
        f"1-minute load average before each run: {min(loads):.2f} to {max(loads):.2f} "
        "(the previous run's own load included), at the end "
        f"{result['load_average_end'][0]:.2f}. Server and load generator share the cores, "
        "and other engineers' jobs may run on them: absolute latencies and capacity here "
        "are not the idle machine's (`gesturert bench --serve` measures those); compare the "
        "two columns, which ran interleaved under the same conditions.", "",
        f"Baseline: commit `{result['baseline_commit'][:12]}`; candidate: "
        f"`{machine['git_sha']}`"
        + (f" served with `{' '.join(result['candidate_args'])}`"
           if result.get("candidate_args") else "")
        + f". {result['clients']} real-time clients x "
        f"{result['seconds']:g} s per run (20 ms pcm16 messages at "
        f"{result.get('sample_rate', LOAD_RATE)} Hz, 15 frames/s back), "
        f"{result['rounds']} rounds alternating the order; medians over rounds. CPU = the "
        "server process's user + system time (/proc), per client-second of audio and per "
        "frame delivered; loop = the asyncio (main) thread, other = every other thread "
        "(a pump worker thread, onnxruntime's, if any).", "",
        "| metric | baseline | candidate | candidate / baseline |",
        "|---|---|---|---|",
    ]
    base, cand = result["summary"]["baseline"], result["summary"]["candidate"]
    names = {"server_cpu_ms_per_client_second": "server CPU ms per client-second",
             "loop_thread_cpu_ms_per_client_second": "  loop thread",
             "other_threads_cpu_ms_per_client_second": "  other threads",
             "server_cpu_us_per_frame": "server CPU us per frame delivered",
             "latency_p50_ms": "speech-to-pose p50 ms (loaded machine)",
             "latency_p99_ms": "speech-to-pose p99 ms (loaded machine)",
             "fps_min": "slowest client's frames/s"}
    for key, name in names.items():
        ratio = result["candidate_over_baseline"].get(key)
        lines.append(f"| {name} | {_num(base[key])} | {_num(cand[key])} | "
                     f"{_num(ratio) if ratio is not None else ''} |")
    lines += [f"| errors (all rounds) | {base['errors']:.0f} | {cand['errors']:.0f} | |", "",
              "Every run:", "",
              "| round | variant | load avg | CPU ms/client-s | loop | other | us/frame | "
              "p50 ms | p99 ms | fps min |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows = sorted((r["round"], v, r) for v, rs in result["runs"].items() for r in rs)
    for index, variant, r in rows:
        lines.append(
            f"| {index + 1} | {variant} | {_num((r['load_average_before'] or [None])[0])} | "
            f"{_num(r['server_cpu_ms_per_client_second'])} | "
            f"{_num(r['loop_thread_cpu_ms_per_client_second'])} | "
            f"{_num(r['other_threads_cpu_ms_per_client_second'])} | "
            f"{_num(r['server_cpu_us_per_frame'], 1)} | {_num(r['latency_p50_ms'], 1)} | "
            f"{_num(r['latency_p99_ms'], 1)} | {_num(r['fps_min'])} |")
    lines.append("")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu_ax, lat_ax) = plt.subplots(1, 2, figsize=(9, 3.8))
    x = np.arange(len(VARIANTS))
    loop = [result["summary"][v]["loop_thread_cpu_ms_per_client_second"] or 0 for v in VARIANTS]
    other = [result["summary"][v]["other_threads_cpu_ms_per_client_second"] or 0
             for v in VARIANTS]
    cpu_ax.bar(x, loop, label="loop thread")
    cpu_ax.bar(x, other, bottom=loop, label="worker + onnxruntime")
    cpu_ax.set_xticks(x, VARIANTS)
    cpu_ax.set_ylabel("server CPU ms per client-second")
    cpu_ax.legend(fontsize=8)
    for offset, key in ((-0.2, "latency_p50_ms"), (0.2, "latency_p99_ms")):
        lat_ax.bar(x + offset, [result["summary"][v][key] or 0 for v in VARIANTS], 0.4,
                   label=key[8:11])
    lat_ax.axhline(result["goal_p99_ms"], color="grey", ls=":", lw=1, label="goal p99")
    lat_ax.set_xticks(x, VARIANTS)
    lat_ax.set_ylabel("speech-to-pose ms (loaded machine)")
    lat_ax.legend(fontsize=8)
    fig.suptitle(f"gesturert serve A/B, {result['clients']} clients, medians of "
                 f"{result['rounds']} interleaved rounds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git commit (or ref) to compare to")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=LOAD_RATE,
                        help="the clients' audio rate, Hz (default the model's 16000)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results"
                        / "serve_ab")
    parser.add_argument("--name", default="serve_ab", help="results file name (no suffix)")
    parser.add_argument("--candidate-args", default="", metavar="OPTIONS",
                        help="more `gesturert serve` options for the candidate only, e.g. "
                             "\"--pose-range\" (with --baseline HEAD: the option's cost)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--clients, --seconds and --rounds must be positive")
    result = run_ab(args.baseline, args.bundle.resolve(), args.clients, args.seconds,
                    args.rounds, args.rate, shlex.split(args.candidate_args))
    for path in write_results(args.out, args.name, result, markdown, plot):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
