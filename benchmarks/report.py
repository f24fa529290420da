"""Benchmark results as files: ``bench.json``, ``bench.md`` (tables + goals) and PNG plots.

Plots (matplotlib, Agg backend): ``latency_vs_streams.png`` (step p50/p99 vs concurrent
streams, log-log, with the 66.7 ms frame period), ``latency_histogram.png`` (end-to-end
latency per chunk size and per-step latency), ``sliding_window.png`` (time per output
frame, stateful vs sliding window, per lookahead).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO_ROOT, json_default, machine_id, machine_info

GOALS = {  # name -> (target text, comparison, limit)
    "one_stream_step_p99_ms": ("one-stream step p99 <= 2 ms per 66.7 ms frame", "<=", 2.0),
    "streams_in_real_time": (">= 200 concurrent streams in real time", ">=", 200.0),
    "mfcc_chunk_speedup_vs_librosa": ("MFCC per 200 ms chunk >= 20x faster than librosa",
                                      ">=", 20.0),
    "cold_start_s": ("cold start to first frame <= 1 s", "<=", 1.0),
    "sliding_window_flop_ratio": ("stateful >= 10x fewer FLOPs per frame than sliding "
                                  "window (issue 9; worst lookahead)", ">=", 10.0),
    "sliding_window_time_ratio": ("stateful >= 10x less time per frame than sliding window "
                                  "(issue 9; worst lookahead)", ">=", 10.0),
}


def default_out_dir() -> Path:
    """benchmarks/results/<machine-id>/ for this machine."""
    return REPO_ROOT / "benchmarks" / "results" / machine_id(machine_info())


def goal_rows(measured: dict[str, tuple[float | None, str]]) -> list[dict[str, Any]]:
    """One row per goal: target, measured value, where/how it was measured, met/missed."""
    rows = []
    for name, (value, where) in measured.items():
        target, op, limit = GOALS[name]
        if value is None:
            status = "not measured"
        else:
            met = value <= limit if op == "<=" else value >= limit
            status = "met" if met else "missed"
        rows.append({"goal": name, "target": target, "measured": value, "where": where,
                     "status": status})
    return rows


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:.0f}"
        if 0 < abs(value) < 0.01:
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _goal_table(goals: list[dict[str, Any]]) -> list[str]:
    return _table(["goal", "measured", "status", "measured on"],
                  [[g["target"], g["measured"], f"**{g['status']}**", g["where"]]
                   for g in goals])


def machine_lines(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    load = m.get("load_average")
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    return [f"- machine: {m['cpu_model']}, {m['cpu_cores']} cores, GPU: "
            f"{'; '.join(m['gpus']) or 'none'} ({m['platform']}, Python {m['python']})",
            f"- load average at start (1/5/15 min): "
            f"{'n/a' if load is None else ' / '.join(f'{v:.2f}' for v in load)}"
            + (f"; at end: {' / '.join(f'{v:.2f}' for v in result['load_average_end'])}"
               if result.get("load_average_end") else ""),
            f"- git {m['git_sha']}, {m['timestamp']}, mode: {result['mode']}",
            f"- libraries: {libs}",
            f"- bundle: {result['bundle']['path']} ({result['bundle']['note']})", ""]


def sliding_window_lines(sw: dict[str, Any]) -> list[str]:
    rows = []
    for r in sw["lookaheads"]:
        s, w = r["stateful"], r["sliding_window"]
        one_s, one_w = s["batches"]["1"]["step_ms"], w["batches"]["1"]["step_ms"]
        per_batch = " / ".join(f"{r['ratio'][f'time_batch{b}']:.1f}" for b in r["batches"])
        rows.append([r["lookahead_frames"], r["window_frames"], _fmt(r["max_abs_difference"]),
                     s["flops_per_frame"], w["flops_per_frame"], r["ratio"]["flops"],
                     one_s["p50_ms"], one_s["p99_ms"], one_w["p50_ms"], one_w["p99_ms"],
                     f"{s['best_ms_per_frame']:.4f} ({s['best_batch']})",
                     f"{w['best_ms_per_frame']:.4f} ({w['best_batch']})",
                     per_batch, r["ratio"]["time_best_batch"],
                     s["streams_per_core_real_time"], w["streams_per_core_real_time"]])
    batches = "/".join(str(b) for b in sw["lookaheads"][0]["batches"]) if sw["lookaheads"] \
        else ""
    header = ["L", "W (frames)", "max diff", "FLOPs/frame stateful", "FLOPs/frame window",
              "FLOP ratio", "stateful step p50 ms (1 stream)", "p99",
              "window step p50 ms (1 stream)", "p99", "stateful best ms/frame (streams)",
              "window best ms/frame (streams)", f"time ratio at {batches} streams",
              "time ratio, best vs best", "stateful streams/core", "window streams/core"]
    return ["## Stateful streaming vs sliding-window re-inference (issue 9)", "",
            f"Method: {sw['method']}.", ""] + _table(header, rows)


def markdown(result: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    out = ["# gesturert benchmarks", ""] + machine_lines(result)
    out += ["## Goals", ""] + _goal_table(result["goals"])
    rows = [[r["backend"], r["threads"], r["chunk_ms"], r["step_ms"]["p50_ms"],
             r["step_ms"]["p90_ms"], r["step_ms"]["p99_ms"], r["step_cpu_ms"]["p99_ms"],
             r["end_to_end_ms"]["p50_ms"], r["end_to_end_ms"]["p90_ms"],
             r["end_to_end_ms"]["p99_ms"], r["real_time_factor"]] for r in result["chunks"]]
    out += ["## One stream: latency per chunk size", "",
            "Arrival simulated (no sleeping); end-to-end = frame out - arrival of the last "
            "audio sample of the frame (lookahead, MFCC window, chunk wait and compute "
            "included). Step = one `StreamingGenerator.step`, wall time; step CPU = the "
            "calling thread's CPU time per step (all of the step's work with 1 ORT thread; "
            "wall >> CPU means the thread was waiting, e.g. preempted).", ""]
    out += _table(["backend", "ORT threads (0 = all)", "chunk ms", "step p50 ms", "p90", "p99",
                   "step CPU p99 ms", "end-to-end p50 ms", "p90", "p99", "real-time factor"],
                  rows)
    out += ["Backends not run: " + "; ".join(f"{k}: {v}" for k, v in
                                              result["backends_unavailable"].items()), ""]
    rows = [[s["backend"], s["threads"], p["streams"], p["step_ms"]["p50_ms"],
             p["step_ms"]["p99_ms"], (p["model_only_ms"] or {}).get("p50_ms"),
             p["frames_per_second"], "yes" if p["real_time"] else "no"]
            for s in result["scaling"] for p in s["points"]]
    out += ["## Concurrent streams (one batched step per frame)", ""]
    out += _table(["backend", "ORT threads (0 = all)", "streams", "step p50 ms", "step p99 ms",
                   "model call alone p50 ms", "frames/s", "step < 66.7 ms"], rows)
    for s in result["scaling"]:
        rt = s["streams_in_real_time"]
        out.append(f"- {s['backend']}, threads {s['threads']}: streams in real time: "
                   f"{rt['measured']} measured, ~{rt['estimated']} interpolated; with "
                   f"each stream's MFCC front end counted too: "
                   f"~{s['streams_in_real_time_with_features']['estimated']}")
    mf = result["mfcc"]
    rows = [[name, mf["per_chunk_ms"].get(name, {}).get("p50_ms"),
             mf["per_chunk_ms"].get(name, {}).get("p99_ms"),
             mf["speedup_per_chunk"].get(name)] for name in mf["per_chunk_ms"]]
    out += ["", "## MFCC (same run, same audio)", ""]
    out += _table(["per 200 ms chunk", "p50 ms", "p99 ms", "x slower than sdk"], rows)
    out += _table(["per minute of audio", "seconds", "x slower than sdk offline"],
                  [[k, v, mf["speedup_per_minute"].get(k)] for k, v in
                   mf["per_minute_s"].items()])
    out += _table(["chunk ms", "sdk p50 ms", "librosa p50 ms", "librosa / sdk"],
                  [[r["chunk_ms"], r["sdk_numpy_p50_ms"], r["librosa_p50_ms"], r["speedup"]]
                   for r in mf.get("chunk_size_sweep", [])])
    if "torchaudio" in mf:
        out += [f"torchaudio: {mf['torchaudio']}", ""]
    im, ps, cs = result["imaging"], result["posesync"], result["cold_start"]
    cli = result.get("cli_start")  # absent in results from before issue 15
    out += ["## PSD path and cold start", ""]
    out += _table(["measurement", "value"], [
        [f"pose imaging (numpy), clips/s (batch {im['batch_clips']})", im["clips_per_second"]],
        [f"PoseSyncNet ONNX Runtime CPU, clips/s (batch {ps.get('batch_clips')})",
         ps.get("clips_per_second")],
        [f"cold start ({cs['backend']}), median s of {cs['runs']}", cs["wall_s_median"]],
        ["cold start split (import / load / first frame) s", " / ".join(
            f"{v:.3f}" for v in cs["last_run_split_s"].values())],
        *([[f"start of `{case}` (fresh process), median s of {cli['runs']}", seconds]
           for case, seconds in cli["wall_s_median"].items()] if cli else []),
    ])
    out += [f"trtexec: {result['trtexec']['status']}", ""]
    for record in result["trtexec"].get("records", []):
        out.append(f"- {record['model']} {record['precision']}: {record['throughput_qps']} qps, "
                   f"latency median {record['latency_ms'].get('median')} ms")
    if result.get("sliding_window"):
        out += sliding_window_lines(result["sliding_window"])
    out += ["## Plots", "", "![latency vs streams](latency_vs_streams.png)", "",
            "![latency histogram](latency_histogram.png)", ""]
    if result.get("sliding_window"):
        out += ["![sliding window](sliding_window.png)", ""]
    return "\n".join(out)


def plot_latency_vs_streams(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in result["scaling"]:
        n = [p["streams"] for p in s["points"]]
        label = f"{s['backend']} threads={s['threads']}"
        ax.plot(n, [p["step_ms"]["p50_ms"] for p in s["points"]], "o-", label=f"{label} p50")
        ax.plot(n, [p["step_ms"]["p99_ms"] for p in s["points"]], "x--", label=f"{label} p99")
    ax.axhline(1000.0 / 15, color="grey", lw=1, ls=":", label="frame period 66.7 ms")
    ax.set(xscale="log", yscale="log", xlabel="concurrent streams (one batched step)",
           ylabel="step latency (ms)", title="Step latency vs concurrent streams")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency_histogram(samples: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """samples: label -> {"end_to_end": ms array, "step": ms array}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.concatenate([d["step"] for d in samples.values()] or [np.ones(1)])
    step_bins = np.logspace(np.log10(max(steps.min(), 1e-3)), np.log10(steps.max() * 1.01), 40)
    e2e = np.concatenate([d["end_to_end"] for d in samples.values()] or [np.ones(1)])
    e2e_bins = np.linspace(0.0, e2e.max() * 1.01, 60)
    for label, data in samples.items():
        left.hist(data["end_to_end"], bins=e2e_bins, alpha=0.5, label=label)
        right.hist(data["step"], bins=step_bins, histtype="step", lw=1.5, label=label)
    right.xaxis.set_major_locator(LogLocator(base=10))
    right.xaxis.set_major_formatter(ScalarFormatter())
    right.xaxis.set_minor_formatter(NullFormatter())
    left.set(xlabel="end-to-end latency (ms)", ylabel="frames", title="End-to-end latency")
    right.set(xscale="log", xlabel="step latency (ms)", ylabel="steps", title="Step latency")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sliding_window(sw: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sw["lookaheads"]
    batches = rows[0]["batches"]
    x = np.arange(len(rows))
    width = 0.8 / (2 * len(batches))
    fig, ax = plt.subplots(figsize=(8, 4))
    bars = [(name, key, b) for name, key in (("stateful", "stateful"),
                                             ("sliding window", "sliding_window"))
            for b in batches]
    for i, (name, key, b) in enumerate(bars):
        ax.bar(x + (i - (len(bars) - 1) / 2) * width,
               [r[key]["batches"][str(b)]["ms_per_frame"] for r in rows], width,
               label=f"{name}, {b} stream(s)/call", hatch="" if key == "stateful" else "//")
    ax.set_xticks(x, [f"L={r['lookahead_frames']}" for r in rows])
    ax.set(yscale="log", ylabel="ms per output frame (1 thread)",
           title="Stateful step vs sliding-window re-inference")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict[str, Any], samples: dict[str, dict[str, np.ndarray]],
                 out_dir: Path) -> list[Path]:
    """Write bench.json, bench.md and the PNGs into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "bench.json", out_dir / "bench.md", out_dir / "latency_vs_streams.png",
             out_dir / "latency_histogram.png"]
    paths[0].write_text(json.dumps(result, indent=1, default=json_default) + "\n")
    paths[1].write_text(markdown(result))
    plot_latency_vs_streams(result, paths[2])
    plot_latency_histogram(samples, paths[3])
    if result.get("sliding_window"):
        paths.append(out_dir / "sliding_window.png")
        plot_sliding_window(result["sliding_window"], paths[-1])
    return paths


def sliding_window_goals(sw: dict[str, Any]) -> dict[str, tuple[float | None, str]]:
    """The issue-9 goal values: worst FLOP ratio and worst batched time ratio."""
    rows = sw["lookaheads"]
    looks = ", ".join(str(r["lookahead_frames"]) for r in rows)
    return {"sliding_window_flop_ratio": (min(r["ratio"]["flops"] for r in rows),
                                          f"torch.utils.flop_counter, lookaheads {looks}"),
            "sliding_window_time_ratio": (min(r["ratio"]["time_best_batch"] for r in rows),
                                          "each way at its fastest streams per call, ONNX "
                                          f"Runtime 1 thread, lookaheads {looks}")}


def write_sliding_window_report(sw: dict[str, Any], out_dir: Path) -> list[Path]:
    """The issue-9 comparison alone: sliding_window.json, .md and .png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    doc: dict[str, Any] = {"machine": info, "sliding_window": sw,
                           "goals": goal_rows(sliding_window_goals(sw))}
    paths = [out_dir / "sliding_window.json", out_dir / "sliding_window.md",
             out_dir / "sliding_window.png"]
    paths[0].write_text(json.dumps(doc, indent=1, default=json_default) + "\n")
    header = ["# Stateful vs sliding window", "",
              f"- machine: {info['cpu_model']}, {info['cpu_cores']} cores; load average "
              f"{' / '.join(f'{v:.2f}' for v in info['load_average'] or ())}; git "
              f"{info['git_sha']}; {info['timestamp']}", ""]
    goals = _goal_table(doc["goals"])
    paths[1].write_text("\n".join(header + goals + sliding_window_lines(sw)
                                  + ["![sliding window](sliding_window.png)", ""]))
    plot_sliding_window(sw, paths[2])
    return paths
