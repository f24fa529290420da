"""step_gemm.{json,md,png} from :func:`benchmarks.step_gemm.run`'s result, with the goals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine_state, write_results
from benchmarks.report import _table, machine_lines

STEP = "step fp32 (GEMM)"
TRACED = "generator.onnx (traced)"
INT8 = "step int8"


def _row(result: dict[str, Any], model: str, batch: int) -> dict[str, Any] | None:
    return next((r for r in result["models"] if r["model"] == model and r["batch"] == batch),
                None)


def goals(result: dict[str, Any]) -> list[list[Any]]:
    """[goal, measured, status, how] rows."""
    from sdk.bundle import StepModelRecord
    from sdk.step_precision import check_step_model

    rows: list[list[Any]] = []

    def add(goal: str, value: float | None, ok: bool | None, how: str) -> None:
        status = "not measured" if ok is None else ("met" if ok else "missed")
        rows.append([goal, value, f"**{status}**", how])

    b64, b1 = _row(result, STEP, 64), _row(result, STEP, 1)
    add(">= 40 % of single-thread sgemm at batch 64 (fp32 step)",
        None if b64 is None else b64["percent_of_sgemm"],
        None if b64 is None else b64["percent_of_sgemm"] >= 40,
        f"{result['flops_per_frame'] / 1e6:.3f} MFLOP/frame; sgemm "
        f"{result['sgemm']['gflops']:.1f} GFLOP/s (numpy 512^3, CPU time, mean of the runs "
        "before and after)")
    one_stream = {r["path"]: r for r in result.get("one_stream", [])}
    bound = one_stream.get("model call (fp32), IO binding made once")
    add("batch-1 step <= 60 us per frame (fp32 step, run as the SDK runs it)",
        None if bound is None else bound["cpu_us_p50"],
        None if bound is None else bound["cpu_us_p50"] <= 60,
        "p50 CPU time, ONNX Runtime 1 thread, inputs and outputs bound once (IO binding, "
        "as HostStateStepper); a fresh run() per call: "
        + ("not measured" if b1 is None else f"{b1['cpu_us_per_frame']:.1f} us"))
    for precision in ("fp32", "int8"):
        sdk_b1 = one_stream.get(f"SDK stepper ({precision}), ping-pong state")
        add(f"batch-1 step <= 60 us per frame through the SDK ({precision} step, "
            "HostStateStepper)",
            None if sdk_b1 is None else sdk_b1["cpu_us_p50"],
            None if sdk_b1 is None else sdk_b1["cpu_us_p50"] <= 60,
            "p50 CPU time of HostStateStepper.step, one stream, ping-pong state buffers")
    sw = result["sliding_window"]
    add("stateful >= 10x less time per frame than sliding window, each at its best batch",
        sw["ratio_best"], sw["ratio_best"] >= 10,
        f"window {sw['best_window_us']:.1f} vs step {sw['best_step_us']:.2f} CPU us per frame")
    batched = [r for r in result["front_end"] if r["path"].startswith("StreamBatch")]
    for rate in sorted({r["rate"] for r in batched}):
        best = max((r for r in batched if r["rate"] == rate), key=lambda r: r["streams_per_core"])
        add(f">= 2000 real-time streams per core with the front end ({rate} Hz input)",
            best["streams_per_core"], best["streams_per_core"] >= 2000,
            f"{best['path']}, {best['streams']} streams, 20 ms packets: "
            f"{best['us_per_stream_frame']:.1f} CPU us per stream-frame")
    lat = {r["model"]: r for r in result["latency"]}
    if "generator.onnx" in lat and "step fp32" in lat:
        delta = lat["step fp32"]["end_to_end_p50_ms"] - lat["generator.onnx"]["end_to_end_p50_ms"]
        add("one-stream end-to-end latency unchanged (p50 within 1 ms)", delta, delta <= 1.0,
            "step model minus generator.onnx, 20 ms chunks (ms)")
    for record in result["bundle"]["step_models"]:
        if record["precision"] == "int8":
            problems = check_step_model(StepModelRecord.from_dict(record), record["measured"])
            add("int8 within its validate tolerances", len(problems), not problems,
                "; ".join(problems) or f"tolerances {record['tolerances']}")
    return rows


def run_summary(result: dict[str, Any]) -> dict[str, Any]:
    """What :func:`goals_in_each_run` keeps of one run: when, the core's sgemm rate and
    every goal's value and status."""
    return {"timestamp": result["machine"]["timestamp"],
            "sgemm_gflops": result["sgemm"]["gflops"],
            "goals": [[goal, value, status] for goal, value, status, _ in goals(result)]}


def goals_in_each_run(result: dict[str, Any]) -> list[str]:
    """Markdown: every goal's value in each run of ``--runs N``, the median and in how many
    runs it was met (empty for a single run)."""
    runs = result.get("runs") or []
    if len(runs) < 2:
        return []
    names = [g[0] for g in runs[-1]["goals"]]
    rows: list[list[Any]] = [["the core's sgemm (GFLOP/s; the machine's speed)",
                              *[r["sgemm_gflops"] for r in runs],
                              float(np.median([r["sgemm_gflops"] for r in runs])), ""]]
    for name in names:
        cells = [next((g for g in r["goals"] if g[0] == name), [name, None, "not measured"])
                 for r in runs]
        values = [c[1] for c in cells if c[1] is not None]
        met = sum(c[2] == "**met**" for c in cells)
        rows.append([name, *[c[1] for c in cells],
                     float(np.median(values)) if values else None,
                     f"{met} of {len(runs)}"])
    return [f"## Goals in each of {len(runs)} runs", "",
            f"The whole benchmark run {len(runs)} times back to back, each a fresh process "
            f"({runs[0]['timestamp']} to {runs[-1]['timestamp']}); the other tables are the "
            "last run's.", "",
            *_table(["goal", *[f"run {i + 1}" for i in range(len(runs))], "median",
                     "met in runs"], rows)]


def overhead_tables(result: dict[str, Any]) -> list[str]:
    """Markdown of the one-stream SDK path, the StreamBatch parts and the resamplers
    (empty for results that predate them)."""
    lines: list[str] = []
    if result.get("one_stream"):
        lines += ["## One stream, one frame per call: the model call and the SDK around it",
                  "", "Interleaved A/B in one run (20 calls in a row per turn); CPU time of "
                  "the calling thread.", ""]
        lines += _table(["path", "CPU us p50", "p25", "p75", "wall us p50", "calls"],
                        [[r["path"], r["cpu_us_p50"], r["cpu_us_p25"], r["cpu_us_p75"],
                          r["wall_us_p50"], r["calls"]] for r in result["one_stream"]])
    if result.get("anatomy"):
        lines += ["## Anatomy of the one-stream model call (fp32, each part its own graph)", "",
                  "Interleaved A/B in one run, batch 1, IO binding made once; CPU us.", ""]
        lines += _table(["part", "CPU us p50", "p25", "p75"],
                        [[r["part"], r["cpu_us_p50"], r["cpu_us_p25"], r["cpu_us_p75"]]
                         for r in result["anatomy"]])
    if result.get("front_end_parts"):
        lines += ["## Where a StreamBatch's time goes (int8 step, CPU us per stream-frame)", ""]
        lines += _table(["input Hz", "streams", "checks", "resample", "MFCC + frames",
                         "steps (noise, model, pixels)", "total"],
                        [[r["rate"], r["streams"], r["checks_us"], r["resample_us"],
                          r["mfcc_us"], r["steps_us"], r["total_us"]]
                         for r in result["front_end_parts"]])
    if result.get("resamplers"):
        lines += ["## Resamplers, 20 ms packets to 16 kHz", "",
                  "Held back: output still inside the resampler after the packets (its "
                  "streaming delay, part of the end-to-end latency).", ""]
        lines += _table(["way", "input Hz", "streams", "CPU us per stream-frame",
                         "held back ms"],
                        [[r["way"], r["rate"], r["streams"], r["us_per_stream_frame"],
                          r["held_back_ms"]] for r in result["resamplers"]])
    return lines


def markdown(result: dict[str, Any]) -> str:
    models = sorted({r["model"] for r in result["models"]})
    lines = ["# The streaming step at the CPU's limit (issue 20)", "",
             *machine_lines({**result, "bundle": {"path": result["bundle"]["source"],
                                                  "note": result["bundle"]["generator"]}}),
             f"Pinned to CPU {result['pinned_cpu']}, ONNX Runtime 1 intra-op thread, numpy "
             "BLAS 1 thread. The machine was "
             f"{machine_state(result['machine'].get('load_average'))}: on a loaded "
             "machine absolute times are pessimistic; the ratios were measured side by "
             "side, call by call, in this one run.", "", "## Goals", "",
             *_table(["goal", "measured", "status", "how"], goals(result)),
             *goals_in_each_run(result),
             "## Step models, time per stream-frame (p50; CPU = calling thread)", ""]
    rows = []
    for batch in sorted({r["batch"] for r in result["models"]}):
        for model in models:
            r = _row(result, model, batch)
            if r is not None:
                rows.append([batch, model, r["cpu_us_per_frame"], r["wall_us_per_frame"],
                             r["gflops"], r["percent_of_sgemm"]])
    lines += _table(["streams/call", "model", "CPU us/frame", "wall us/frame", "GFLOP/s (CPU)",
                     "% of sgemm"], rows)
    lines += ["## ONNX Runtime set-up of the fp32 step", ""]
    lines += _table(["streams/call", "variant", "CPU us/frame", "wall us/frame"],
                    [[r["batch"], r["variant"], r["cpu_us_per_frame"], r["wall_us_per_frame"]]
                     for r in result["ort_variants"]])
    sw = result["sliding_window"]
    lines += [f"## Sliding window (W = {sw['window_frames']} frames) vs the fp32 step", ""]
    lines += _table(["streams/call", "window CPU us/frame", "step CPU us/frame", "ratio"],
                    [[b, v["window"], v["step"], v["window"] / v["step"]]
                     for b, v in sw["batches"].items()])
    lines += ["## Streams per core with the front end (20 ms packets)", ""]
    lines += _table(["path", "input Hz", "streams", "CPU us per stream-frame",
                     "streams per core"],
                    [[r["path"], r["rate"], r["streams"], r["us_per_stream_frame"],
                      r["streams_per_core"]] for r in result["front_end"]])
    lines += overhead_tables(result)
    lines += ["## One stream, 20 ms chunks", ""]
    lines += ["A 48 kHz stream waits, beyond a 16 kHz one, for what its resampler holds back "
              "(the resampler table).", ""]
    lines += _table(["model", "input Hz", "end-to-end p50 ms", "p99 ms", "step p50 ms",
                     "step CPU p50 ms"],
                    [[r["model"], r.get("input_hz", "-"), r["end_to_end_p50_ms"],
                      r["end_to_end_p99_ms"], r["step_p50_ms"], r["step_cpu_p50_ms"]]
                     for r in result["latency"]])
    lines += ["## Step models in the bundle (deltas from generator.onnx, canonical units)", ""]
    keys = ["keypoints_max_abs", "keypoints_mean_abs", "saliency_max_abs", "psd_relative",
            "offset"]
    lines += _table(["file", "precision", *keys, "Gemm layers kept fp32", "tolerances"],
                    [[r["file"], r["precision"], *[r["measured"].get(k) for k in keys],
                      ", ".join(r["measured"].get("fp32_layers", [])) or "-",
                      ", ".join(f"{k} {v:g}" for k, v in r["tolerances"].items())]
                     for r in result["bundle"]["step_models"]])
    lines += _sensitivity_table(result["bundle"]["step_models"])
    lines += ["![step models](step_gemm.png)", ""]
    return "\n".join(lines)


def _sensitivity_table(records: list[dict[str, Any]]) -> list[str]:
    """Each Gemm's int8 sensitivity, when export-step had to search (export/step_int8.py)."""
    lines: list[str] = []
    for r in records:
        sensitivity = r["measured"].get("layer_sensitivity")
        if not sensitivity:
            continue
        kept = r["measured"].get("fp32_layers", [])
        lines += [f"Sensitivity of {r['file']}'s Gemm layers, each quantised alone (largest "
                  "delta / its tolerance; export-step keeps the most sensitive fp32 until the "
                  "model is within half of every tolerance):", ""]
        lines += _table(["Gemm", "sensitivity", "kept fp32"],
                        [[name, value, "yes" if name in kept else ""] for name, value in
                         sorted(sensitivity.items(), key=lambda item: -item[1])])
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.2))
    for model in sorted({r["model"] for r in result["models"]}):
        rows = sorted((r for r in result["models"] if r["model"] == model),
                      key=lambda r: r["batch"])
        left.plot([r["batch"] for r in rows], [r["cpu_us_per_frame"] for r in rows], "o-",
                  label=model)
    left.set(xscale="log", yscale="log", xlabel="streams per call",
             ylabel="CPU us per stream-frame (p50)", title="step models, 1 thread")
    left.legend()
    for way in sorted({r["path"] for r in result["front_end"]}):
        for rate in sorted({r["rate"] for r in result["front_end"]}):
            rows = [r for r in result["front_end"] if r["path"] == way and r["rate"] == rate]
            if rows:
                right.plot([r["streams"] for r in rows], [r["streams_per_core"] for r in rows],
                           "o-" if len(rows) > 1 else "x", label=f"{way}, {rate} Hz")
    right.axhline(2000, ls="--", c="grey")
    right.set(xscale="log", xlabel="streams", ylabel="real-time streams per core",
              title="whole pipeline, 20 ms packets")
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


DOC = Path(__file__).resolve().parents[1] / "docs" / "step_cpu.md"
RESULTS = Path(__file__).resolve().parent / "results" / "step_gemm" / "step_gemm.json"
DOC_START, DOC_END = "<!-- step-gemm-goals:start -->", "<!-- step-gemm-goals:end -->"


def doc_passage(result: dict[str, Any]) -> str:
    """The goals table of docs/step_cpu.md, generated from a result (tests check it)."""
    load = result["machine"].get("load_average") or (float("nan"),) * 3
    lines = [f"Measured {result['machine']['timestamp']} on {result['machine']['cpu_model']} "
             f"({result['machine']['cpu_cores']} cores, {machine_state(load)}, "
             f"{result['load_average_end'][0]:.1f} at the end), "
             f"one pinned core, git {str(result['machine']['git_sha'])[:7]}:", "",
             *_table(["goal", "measured", "status", "how"], goals(result)),
             *[line.replace("## ", "#### ", 1) if line.startswith("## ") else line
               for line in [*goals_in_each_run(result), *overhead_tables(result)]]]
    return "\n".join(lines).rstrip() + "\n"


def write_doc_passage(result_path: Path = RESULTS, doc: Path = DOC) -> None:
    """Replace the generated block of ``doc`` with :func:`doc_passage` of the results."""
    text = doc.read_text()
    head, rest = text.split(DOC_START, 1)
    _, tail = rest.split(DOC_END, 1)
    passage = doc_passage(json.loads(result_path.read_text()))
    doc.write_text(f"{head}{DOC_START}\n{passage}{DOC_END}{tail}")


def write_step_report(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """step_gemm.json, step_gemm.md, step_gemm.png in ``out_dir``; returns the paths."""
    return write_results(out_dir, "step_gemm", result, markdown, plot)


if __name__ == "__main__":
    write_doc_passage()
