"""Ten minutes of talk through one stream, chunk by chunk: does sync hold minute after minute,
and does the body settle when the talker stops?

    python -m benchmarks.long_stream [BUNDLE] [--minutes 10] [--chunk-ms 20] \\
        [--out benchmarks/results/voices]

The talk is assembled, without a corpus, from speech no model heard: the shipped sample,
the recorded voice's two sequences (:mod:`benchmarks.recorded_voice`, alsa-utils) and the
six languages never heard (:mod:`benchmarks.languages_never_heard`, espeak-ng), drawn in a
seeded random order (:data:`SEED`), each followed by a pause uniform in :data:`PAUSE_S`;
at :data:`SILENCE_AT_S` the talker stops for :data:`SILENCE_S` of digital silence. The
draw goes on until the talk is ``--minutes`` long (then cut), so a shorter talk is the
longer one's beginning.

It runs through one stream as an app runs it (``StreamingGenerator.generate`` with
``chunk_samples``: ``create_stream``, ``accept_waveform`` of ``--chunk-ms`` chunks, ``step``
while ready, ``pop_frames``; ``input_finished`` at the end).
Measured (the bundle's own PoseSyncNet and training range, default gesture style):

* per whole minute (900 pose frames at 15 fps, the audio of exactly those frames): issue
  17's criteria (:func:`benchmarks.voices_acceptance.score_sequences`);
* at rest: the body and hands' mean speed (canonical units per frame) over the silence,
  from 1 s after it starts (the lookahead and the last gesture's end), against their
  mean speed over the speech; a ratio near 1 would be a body that keeps gesturing to
  nothing;
* chunk invariance over the whole talk: the streamed frames against one offline pass
  (``generate``), largest difference in pixels.

Exit status 0 when every minute meets every criterion, else 1 (2: audio missing).
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.acceptance_report import all_met, carried_range, missed, sync_cells, write_report
from benchmarks.common import load_average, machine_info, machine_state
from benchmarks.recorded_voice import DEFAULT_BUNDLE, DEFAULT_OUT, recorded_speech
from benchmarks.voices_acceptance import DEFAULT_SAMPLE, score_sequences, shown

SEED = 0
PAUSE_S = (0.3, 3.0)
SILENCE_AT_S = 240.0
SILENCE_S = 30.0
SETTLE_S = 1.0  # the silence's first second is not "at rest" (lookahead, the last gesture)
MINUTE_FRAMES = 900  # one minute at the bundle's 15 fps (checked)


def sources(rate: int) -> dict[str, np.ndarray]:
    """name -> float32 (N,) speech at ``rate`` Hz: the sample, the recorded voice, the
    languages never heard."""
    from benchmarks.languages_never_heard import LANGUAGES, speak
    from sdk.audio import load_audio

    speech = {"sample": load_audio(DEFAULT_SAMPLE, rate)}
    for i, audio in enumerate(recorded_speech(rate)):
        speech[f"recorded voice {i + 1}"] = audio
    for language in LANGUAGES:
        speech[language.name] = speak(language, rate)
    return speech


def assemble(speech: dict[str, np.ndarray], rate: int, seconds: float
             ) -> tuple[np.ndarray, list[tuple[str, float]], tuple[int, int]]:
    """The talk: float32 (round(seconds * rate),), what is said when (name, start s), and the
    long silence's (first, end) sample."""
    rng = np.random.default_rng(SEED)
    names = sorted(speech)
    parts: list[np.ndarray] = []
    said: list[tuple[str, float]] = []
    length, total = 0, round(seconds * rate)
    silence = (round(SILENCE_AT_S * rate), round((SILENCE_AT_S + SILENCE_S) * rate))
    while length < total:
        if silence[0] <= length < silence[1]:
            gap = silence[1] - length
            parts.append(np.zeros(gap, np.float32))
            length += gap
            continue
        name = names[rng.integers(len(names))]
        audio = speech[name][:max(0, silence[0] - length)] if length < silence[0] else speech[name]
        pause = np.zeros(round(rng.uniform(*PAUSE_S) * rate), np.float32)
        said.append((name, length / rate))
        parts += [audio, pause]
        length += len(audio) + len(pause)
    return np.concatenate(parts)[:total], said, silence


def body_speed(canonical: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(T-1,) mean speed of ``joints`` between consecutive frames, canonical units/frame."""
    return np.linalg.norm(np.diff(canonical[:, joints], axis=0), axis=-1).mean(axis=1)


def run(bundle_dir: Path, minutes: int, chunk_ms: float) -> dict[str, Any]:
    from sdk.frames import PoseFrames
    from sdk.streaming import StreamingGenerator

    with StreamingGenerator(str(bundle_dir)) as generator:
        manifest = generator.manifest
        rate, fps = manifest.features.sample_rate, manifest.features.fps
        pose_range = carried_range(generator, bundle_dir)
        if fps * 60 != MINUTE_FRAMES:
            raise ValueError(f"{bundle_dir}: needs {MINUTE_FRAMES // 60} fps, not {fps}")
        audio, said, silence = assemble(sources(rate), rate, minutes * 60.0)
        style = generator.default_style
        started = time.perf_counter()  # generate with chunk sizes: one stream, step when ready
        frames = generator.generate(audio, rate, seed=0, style=style,
                                    chunk_samples=repeat(round(chunk_ms * rate / 1000)))
        streaming_s = time.perf_counter() - started
        offline = generator.generate(audio, rate, seed=0, style=style)
        per_minute = MINUTE_FRAMES * rate // fps
        pieces, clips = [], []
        for m in range(len(frames) // MINUTE_FRAMES):
            part = slice(m * MINUTE_FRAMES, (m + 1) * MINUTE_FRAMES)
            pieces.append(PoseFrames(frames.keypoints[part], frames.saliency[part],
                                     frames.time[part], frames.index[part]))
            clips.append(audio[m * per_minute:(m + 1) * per_minute])
        rows = [score_sequences(generator, [c], style, pose_range, frames=[p])
                for c, p in zip(clips, pieces, strict=True)]
        norm = manifest.normalization
        canonical = norm.pixels_to_canonical(frames.keypoints)
        speed = body_speed(canonical, np.asarray(pose_range.joints))
        first, end = (round((silence[0] / rate + SETTLE_S) * fps), silence[1] * fps // rate)
        quiet = np.zeros(len(speed), bool)
        quiet[first:min(end, len(speed))] = True
        edges = np.minimum(np.arange(len(frames)) * rate // fps, len(audio) - 1)
        talking = (np.maximum.reduceat(np.abs(audio), edges) > 0)[1:]  # audio in the frame
    in_silence = float(speed[quiet].mean()) if quiet.any() else None
    while_talking = float(speed[talking & ~quiet].mean())
    rest = {"silence_s": [silence[0] / rate, silence[1] / rate],
            "speed_in_silence": in_silence, "speed_while_talking": while_talking,
            "ratio": None if in_silence is None else in_silence / while_talking}
    return {"minutes": [{"minute": m + 1, **r} for m, r in enumerate(rows)], "at_rest": rest,
            "said": said, "frames": len(frames), "streaming_s": streaming_s,
            "max_px_vs_offline": float(np.abs(frames.keypoints - offline.keypoints).max()),
            "chunk_ms": chunk_ms, "audio_s": len(audio) / rate}


def markdown(report: dict[str, Any]) -> str:
    rest = report["at_rest"]
    lines = ["# Ten minutes through one stream: sync per minute, the body at rest (issue 17)", "",
             f"Bundle `{report['bundle']}`; {report['audio_s'] / 60:.1f} min of talk (speech no "
             "model heard: the shipped sample, the recorded voice, the six languages never "
             f"heard; pauses {PAUSE_S[0]:g}-{PAUSE_S[1]:g} s; silence from "
             f"{rest['silence_s'][0]:.0f} to {rest['silence_s'][1]:.0f} s) streamed in "
             f"{report['chunk_ms']:g} ms chunks through one stream: {report['frames']} frames "
             f"in {report['streaming_s']:.1f} s. Judge: the bundle's own PoseSyncNet; "
             "training range: the one it carries. Machine: "
             f"{report['machine']['cpu_model']}, {report['machine']['cpu_cores']} cores, "
             f"{report['load']}. Written by `python -m benchmarks.long_stream`.", "",
             "| minute | PSD | mean pose PSD | ratio | offset | conf. | mouth r | mean abs z | "
             "farthest past the training range (SD) | missed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["minutes"]:
        lines.append(f"| {r['minute']} | {sync_cells(r)} | {', '.join(missed(r)) or '-'} |")
    if rest["speed_in_silence"] is not None:
        lines += ["", f"At rest: body and hands move {rest['speed_in_silence']:.4f} canonical "
                  f"units per frame in the silence (from {SETTLE_S:g} s after it starts), "
                  f"{rest['speed_while_talking']:.4f} while talking: ratio "
                  f"{rest['ratio']:.3f}."]
    lines += ["", f"Streamed frames against one offline pass over the whole talk: at most "
              f"{report['max_px_vs_offline']:.2g} px apart.", "",
              "Every minute meets every criterion." if report["all_passed"]
              else "NOT every minute meets every criterion."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=DEFAULT_BUNDLE,
                        help="bundle directory (default: the shipped default bundle)")
    parser.add_argument("--minutes", type=int, default=10, help="talk length (default 10)")
    parser.add_argument("--chunk-ms", type=float, default=20.0,
                        help="audio chunk per accept_waveform (default 20 ms)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    args = parser.parse_args(argv)
    if args.minutes < 1 or args.chunk_ms <= 0:
        parser.error("--minutes must be >= 1 and --chunk-ms > 0")
    load = machine_state(load_average())
    try:
        report = run(args.bundle, args.minutes, args.chunk_ms)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"long_stream: {exc}", file=sys.stderr)
        return 2
    report |= {"bundle": shown(args.bundle), "all_passed": all_met(report["minutes"]),
               "machine": machine_info(), "load": load}
    write_report(args.out, "long_stream", report, markdown(report))
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
