"""The passages the docs quote, each generated from a committed results file.

:data:`REGIONS` maps a region name to a function that returns its Markdown from the
results files of :data:`benchmarks.doc_sources.SOURCES` (re-exported here). The passages
on real voices are in :mod:`benchmarks.voices_passages`. The regions, the checker of
numbers outside them and the command that rewrites them are in
:mod:`benchmarks.doc_results`. A new results file: add it to SOURCES, a generator here (or
in the module of its topic), and mark the passage in the doc with
``<!-- results:NAME -->...<!-- /results -->``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from statistics import median
from typing import Any

from benchmarks import voices_passages as voices
from benchmarks.corpus_minutes import passage as corpus_minutes_passage
from benchmarks.doc_sources import (
    NO_GAIN,
    RANDOM_LEVEL,
    RESULTS,
    ROOT,
    SOURCES,
    load,
    markdown_table,
)
from benchmarks.front_end import RANDOM_LEVEL_RUNS, RANDOM_LEVEL_SEED_1_RUNS
from benchmarks.front_end import passage as front_end_passage
from benchmarks.gpu_passages import gpu_numbers, gpu_status
from benchmarks.resampler_quality import passage as resampler_passage
from benchmarks.voices_acceptance import split_engine_rows

__all__ = ["REGIONS", "ROOT", "SOURCES", "gpu_status", "load"]


# ---------------------------------------------------------------- benchmarks (bench.json)
def bench_run() -> str:
    bench = load("bench")
    machine = bench["machine"]
    start = ", ".join(f"{x:.2f}" for x in machine["load_average"])
    end = ", ".join(f"{x:.2f}" for x in bench["load_average_end"])
    return (f"{machine['cpu_model']}, {machine['cpu_cores']} cores, "
            f"GPU: {', '.join(machine['gpus']) or 'none'}; ONNX Runtime "
            f"{machine['libraries']['onnxruntime']} CPU; git {machine['git_sha'][:7]}, "
            f"{machine['timestamp'][:10]}, `{bench['mode']}` mode; load average (1/5/15 "
            f"min) {start} at the start, {end} at the end")


def _goal_value(goal: dict[str, Any]) -> str:
    value = goal["measured"]
    if value is None:
        return "not measured"
    units = {"one_stream_step_p99_ms": " ms", "cold_start_s": " s",
             "mfcc_chunk_speedup_vs_librosa": "x", "sliding_window_flop_ratio": "x",
             "sliding_window_time_ratio": "x", "streams_in_real_time": " streams"}
    digits = 0 if goal["goal"] in ("streams_in_real_time", "sliding_window_flop_ratio") else 2
    return f"{value:.{digits}f}{units.get(goal['goal'], '')}"


def bench_goals() -> str:
    rows = [[g["target"], _goal_value(g), g["status"], g["where"]]
            for g in load("bench")["goals"]]
    return markdown_table(["goal", "measured", "status", "measured on"], rows)


def bench_latency() -> str:
    chunks = [c for c in load("bench")["chunks"] if c["threads"] == 1]
    header = ["one stream (ORT, 1 thread)"] + [f"{c['chunk_ms']:.4g} ms chunks" for c in chunks]
    return markdown_table(header, [
        ["end-to-end latency p50 (ms)"] + [f"{c['end_to_end_ms']['p50_ms']:.0f}"
                                           for c in chunks],
        ["end-to-end latency p99 (ms)"] + [f"{c['end_to_end_ms']['p99_ms']:.0f}"
                                           for c in chunks],
        ["step p99 (ms)"] + [f"{c['step_ms']['p99_ms']:.2f}" for c in chunks],
        ["real-time factor"] + [f"{c['real_time_factor']:.4f}" for c in chunks],
    ])


def bench_other() -> str:
    bench = load("bench")
    im, ps, cs = bench["imaging"], bench["posesync"], bench["cold_start"]
    split = cs["last_run_split_s"]
    sweep = bench["mfcc"].get("chunk_size_sweep", [])
    lines = [
        f"- pose imaging (numpy): {im['clips_per_second']:.0f} clips/s (batch "
        f"{im['batch_clips']}); PoseSyncNet through ONNX Runtime CPU: "
        f"{ps['clips_per_second']:.0f} clips/s (batch {ps['batch_clips']})",
        f"- cold start to the first frame: {cs['wall_s_median']:.2f} s (median of "
        f"{cs['runs']} fresh processes; import {split['import_s']:.2f} s, load "
        f"{split['load_s']:.2f} s, first frame {split['first_frame_s']:.2f} s)",
        "- MFCC, librosa / sdk time per chunk: " + ", ".join(
            f"{r['speedup']:.1f}x at {r['chunk_ms']:.0f} ms" for r in sweep),
    ]
    cli = bench.get("cli_start")
    lines.append("- CLI start: " + (", ".join(
        f"`{case}` {s:.2f} s" for case, s in cli["wall_s_median"].items())
        + f" (median of {cli['runs']} fresh processes)" if cli else
        "not measured in this run (`gesturert bench` measures it since issue 15)"))
    lines.append(f"- trtexec: {bench['trtexec']['status']}")
    return "\n".join(lines)


def _worst_lookahead() -> dict[str, Any]:
    sw = load("bench")["sliding_window"]
    return min(sw["lookaheads"], key=lambda la: la["ratio"]["time_best_batch"])


def bench_sliding() -> str:
    la = _worst_lookahead()
    r, st, win = la["ratio"], la["stateful"], la["sliding_window"]
    return (f"At lookahead {la['lookahead_frames']} (the worst of those measured) the "
            f"window is W = {la['window_frames']} frames: the stateful step does "
            f"{r['flops']:.0f}x fewer FLOPs per frame but takes only {r['time_best_batch']:.1f}x "
            f"less time best-vs-best (stateful at {st['best_batch']} streams per call, "
            f"the window at {win['best_batch']}); {r['time_batch1']:.1f}x at one stream, "
            f"{r['time_batch16']:.1f}x at 16. Streams per core in real time: "
            f"{st['streams_per_core_real_time']:.0f} stateful vs "
            f"{win['streams_per_core_real_time']:.0f} sliding window. Both give the same "
            f"frames (max difference {la['max_abs_difference']:.1e}).")


def bench_streams() -> str:
    counts = [s["streams_in_real_time"]["estimated"] for s in load("bench")["scaling"]]
    low, high = min(counts), max(counts)
    return f"{low}–{high}" if low != high else f"{low}"


def cli_start() -> str:
    report = load("cli_start")
    machine = report["machine"]
    load_start = ", ".join(f"{x:.1f}" for x in report["load_average_start"])
    times = "; ".join(f"`{case}` {s:.2f} s" for case, s in report["wall_s_median"].items())
    return (f"{times} (fresh processes, medians of {report['runs']}; {machine['cpu_model']}, "
            f"{machine['cpu_cores']} cores, git {machine['git_sha'][:7]}, load average "
            f"{load_start} at the start: a shared, busy machine)")


def serve_pose_range() -> str:
    """The server CPU that ``serve --pose-range`` adds: an interleaved A/B of the same code
    served without and with the option (``serve_ab --baseline HEAD --candidate-args``)."""
    report = load("serve_pose_range")
    if report.get("candidate_args") != ["--pose-range"] or \
            not report["machine"]["git_sha"].startswith(report["baseline_commit"]):
        raise ValueError("serve_pose_range: the A/B must serve one commit without and with "
                         "--pose-range")
    cpu = report["summary"]
    ratio = report["candidate_over_baseline"]["server_cpu_us_per_frame"]
    per_round = [c["server_cpu_us_per_frame"] / b["server_cpu_us_per_frame"] for b, c in zip(
        report["runs"]["baseline"], report["runs"]["candidate"], strict=True)]
    return (f"{100 * (ratio - 1):.0f}% more server CPU per frame delivered "
            f"({cpu['baseline']['server_cpu_us_per_frame']:.0f} -> "
            f"{cpu['candidate']['server_cpu_us_per_frame']:.0f} us, medians of "
            f"{report['rounds']} interleaved rounds; per round x{min(per_round):.2f} to "
            f"x{max(per_round):.2f}) at {report['clients']} real-time clients on the 2-core "
            f"development machine")


# ---------------------------------------------------------------- training and evaluation
EVAL_ROWS = (("generator", "generator"), ("audio_shuffled", "audio-shuffled model"),
             ("other_audio", "other audio"), ("mean_pose", "mean pose"),
             ("ground_truth", "ground truth"))


def _num(value: float | None, fmt: str) -> str:
    """``value`` formatted; "—" for a missing or NaN one (a column a row has no value in)."""
    if value is None or value != value:
        return "—"
    text = format(value, fmt)
    return text.lstrip("-") if float(text) == 0 else text  # no "-0.000"


def eval_table() -> str:
    methods = load("evaluation")["methods"]
    rows = [[name, _num(m["fgd"], ".1f"), _num(m["bc"], ".3f"), _num(m["bc_chance"], ".3f"),
             _num(m["psd"], ".3f"), _num(m["lip_sync"], ".3f"),
             _num(m.get("detector_auc"), ".3f"), _num(m["diversity"], ".1f")]
            for key, name in EVAL_ROWS if (m := methods.get(key))]
    return markdown_table(["", "FGD ↓", "BC ↑", "BC at chance", "PSD ↓", "lip-sync r ↑",
                   "detector frame AUC ↑", "diversity"], rows)


def eval_acceptance() -> str:
    rows = [[c["criterion"], f"{c['value']:.3f}",
             {"passed": "yes", "failed": "NO"}.get(c["status"], c["status"])]
            for c in load("evaluation")["acceptance"]]
    return markdown_table(["acceptance (issue 3)", "value", "passed"], rows)


def _eval(method: str, key: str, fmt: str = ".3f") -> Callable[[], str]:
    return lambda: format(load("evaluation")["methods"][method][key], fmt)


def eval_posesync() -> str:
    ev = load("evaluation")
    zero = ev["methods"]["ground_truth"]["offset_at_zero"]
    return (f"held-out ROC AUC {ev['posesync']['auc']:.3f}; its offset sweep finds 0 on "
            f"{round(zero * ev['sequences'])}/{ev['sequences']} sequences")


def training_minutes() -> str:
    return f"{load('training')['training_seconds'] / 60:.1f} min"


def training_load() -> str:
    return f"{load('training')['machine']['load_average'][0]:.1f}"


def robustness_sample() -> str:
    runs = load("robustness")
    shipped = load("robustness_default")["results"]["sdk/data/samples/speech_en.flac"]
    now = runs["aug_p05_nogain_clean_detector"]["robustness"]["speech_en.flac"]
    before = runs["base"]["robustness"]["speech_en.flac"]
    return (f"mean |z| of body and hand joints {shipped['mean_abs_z']:.2f} on the sample with "
            f"the shipped bundle, {shipped['beyond_4sd']:.2%} of values beyond 4 SD; in the "
            f"experiment that chose this training, {now['mean_abs_z']:.2f} with it and "
            f"{before['mean_abs_z']:.1f} ({before['beyond_4sd']:.0%} beyond 4 SD) without")


CONDITION_LABELS = {"noise_15db": "pink noise, 15 dB SNR",
                    "reverb_0.5s": "room, RT60 0.5 s, DRR 0 dB",
                    "reverb_1.2s": "hall, RT60 1.2 s, DRR 0 dB"}
"""The recording conditions (benchmarks/recording_conditions.py) the README shows."""


def voices_conditions() -> str:
    """Per recording condition, the shipped bundle, the one before it (no random level in
    training) and the same training without audio augmentation (generator sweep), on the
    audios all scored (the held-out voices and the sample): on how many every criterion is
    met, what is missed, the largest PSD / mean pose's, 4-SD share and excursion past the
    training range; and apart, the
    bundles on the engine never heard."""
    rows = []
    plain = voices.STEPS_SWEEP / "steps_4000_audio_augmentation_false"
    for condition, label in CONDITION_LABELS.items():
        for training, path in (("shipped (augmented, random level, hum and DC; judge heard "
                                 "corrupted speech)", RESULTS / "voices"),
                               ("before: augmented, random level", RANDOM_LEVEL / "voices"),
                               ("before that: augmented, no random level", NO_GAIN),
                               ("no audio augmentation (clean-trained judge)", plain)):
            report, engine = split_engine_rows(
                json.loads((path / f"acceptance_{condition}.json").read_text())["rows"])
            missed = voices.missed_criteria(report)
            engine_missed = voices.missed_criteria(engine)
            rows.append([label, training, f"{len(report) - len(missed)} of {len(report)}",
                         f"{max(r['psd'] / r['mean_pose_psd'] for r in report.values()):.2f}",
                         f"{max(r['beyond_4sd'] for r in report.values()):.3%}",
                         voices.excursion(report), "; ".join(missed) or "-",
                         f"{len(engine) - len(engine_missed)} of {len(engine)}"
                         + "".join(f"; {m}" for m in engine_missed) if engine else "not run"])
    return markdown_table(["condition", "training", "all criteria met",
                           "largest PSD / mean pose's", "largest share beyond 4 SD",
                           "farthest past the training range (SD)", "missed",
                           "engine never heard (festival): all criteria met"], rows)


def manifest_psd() -> str:
    return f"{load('manifest')['psd_reference']['value']:.2f}"


# ---------------------------------------------------------------- ablations
def _range(per_seed: dict[str, dict[str, float]], key: str, fmt: str) -> str:
    values = [run[key] for run in per_seed.values()]
    return (f"{median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"
            if len(values) > 1 else format(values[0], fmt))


def _ablation(source: str) -> Callable[[], str]:
    def table() -> str:
        report = load(source)
        rows = []
        for name in report["variant_order"]:
            v = report["variants"][name]
            seeds = v.get("per_seed", {"-": v})
            latency = [f"{v['latency_ms']:.0f}"] if source == "ablation_lookahead" else []
            rows.append([name, *latency, str(len(seeds)), _range(seeds, "detector_auc", ".2f"),
                         _range(seeds, "fgd", ".0f"), _range(seeds, "psd", ".3f"),
                         _range(seeds, "lip_sync", ".4f"), _range(seeds, "bc", ".3f"),
                         _range(seeds, "bc_chance", ".3f")])
        return (f"{report['steps']} steps per training; median (min–max) over training "
                f"seeds\n\n" + markdown_table(["variant", *(["latency ms"] if latency else []),
                                        "seeds", "detector AUC", "FGD", "PSD",
                                        "lip-sync r", "BC", "BC at chance"], rows))
    return table


REGIONS: dict[str, Callable[[], str]] = {
    "gpu_status": lambda: gpu_status(),
    "gpu_numbers": lambda: gpu_numbers(),
    "bench_run": bench_run,
    "bench_goals": bench_goals,
    "bench_latency": bench_latency,
    "bench_other": bench_other,
    "bench_sliding": bench_sliding,
    "bench_streams": bench_streams,
    "cli_start": cli_start,
    "serve_pose_range": serve_pose_range,
    "eval_table": eval_table,
    "eval_acceptance": eval_acceptance,
    "eval_posesync": eval_posesync,
    "eval_sequences": lambda: str(load("evaluation")["sequences"]),
    "eval_generator_psd": _eval("generator", "psd", ".2f"),
    "eval_shuffled_bc": _eval("audio_shuffled", "bc"),
    "eval_truth_bc": _eval("ground_truth", "bc"),
    "eval_truth_bc_chance": _eval("ground_truth", "bc_chance"),
    "eval_generator_bc_all": _eval("generator", "bc_all_joints"),
    "eval_shuffled_bc_all": _eval("audio_shuffled", "bc_all_joints"),
    "training_minutes": training_minutes,
    "training_load": training_load,
    "robustness_sample": robustness_sample,
    "manifest_psd": manifest_psd,
    "voices_acceptance": lambda: voices.voices_acceptance("voices_acceptance"),
    "voices_acceptance_before": lambda: voices.voices_acceptance("voices_acceptance_before"),
    "voices_recorded": voices.recorded_voice,
    "voices_recorded_faults": voices.recorded_faults,
    "voices_languages": voices.languages_never_heard,
    "voices_long_stream": voices.long_stream,
    "line_noise": voices.line_noise,
    "voices_conditions": voices_conditions,
    "voices_level": voices.voices_level,
    "training_voices": voices.training_voices,
    "voices_criteria": voices.voices_criteria,
    "voices_training_poses": lambda: voices.training_poses("voices_acceptance"),
    "eval_before_after": voices.eval_before_after,
    "eval_cross_test_sets": voices.eval_cross_test_sets,
    "eval_steps": voices.eval_steps,
    "corpus_minutes": corpus_minutes_passage,
    "front_end": front_end_passage,
    "front_end_random_level": lambda: front_end_passage(RANDOM_LEVEL_RUNS),
    "front_end_random_level_seed_1": lambda: front_end_passage(RANDOM_LEVEL_SEED_1_RUNS),
    "ablation_topk": _ablation("ablation_topk"),
    "ablation_modules": _ablation("ablation_modules"),
    "ablation_lookahead": _ablation("ablation_lookahead"),
    "resampler_quality": lambda: resampler_passage(load("resampler_quality")),
}
