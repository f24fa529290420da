"""A recorded voice no model heard: issue 17's acceptance on speech recorded from a person
speaking, not rendered by a synthesizer.

    python -m benchmarks.recorded_voice [BUNDLE] [--out benchmarks/results/voices]

The audio: the eight voice prompts alsa-utils installs for ``speaker-test -t wav``
(:data:`SOUNDS_DIR`: "Front Left", "Front Center" ... "Rear Right"; one speaker, 48 kHz
mono, 1.3-1.5 s each; added to alsa-utils in 2005, its repository does not say who
speaks; Debian package ``alsa-utils``, GPL-2, which ``make voices`` installs when missing).
It is the one recording of speech a Debian machine here has, and no corpus voice, engine
or phrase resembles it: the words are not in the corpus's lexicon and the voice is a
person's. Two sequences (:data:`SEQUENCES`): the prompts in speaker-test's order with short
pauses, and in another order with long pauses.

Measured on the bundle alone (SDK, ONNX Runtime; :func:`benchmarks.voices_acceptance.
score_sequences`): its own PoseSyncNet judges, and the training range is the one the bundle
carries (``manifest.pose_range``), so no corpus is needed. Rows: every recording condition
of :mod:`benchmarks.recording_conditions` and a narrowband call (``telephone_8khz``: through
8 kHz and back, :func:`~benchmarks.recording_conditions.telephone`) x every gesture style of
the bundle (the default alone when it has none), and the clean audio 6 dB quieter and louder
(:data:`GAINS_DB`, default style). Each row is judged by issue 17's criteria
(:func:`benchmarks.voices_acceptance.verdict`).

Faults of real recordings (:data:`benchmarks.recording_faults.FAULTS`: a noise floor, DC
offset and mains hum with and without it, quiet and clipped levels, lossy codecs; default
style) are measured as well and reported with what they miss: measured, not required.

Controls (clean, default style), each of which must miss a criterion, or the measure
could not tell sync from its absence on this voice:

* ``other speech``: the motion generated from the second sequence's audio (cut to the
  first's length), judged against the first's: motion of other words;
* ``audio 3 frames late``: the first sequence's own motion, judged against its audio
  delayed by 3 pose frames (200 ms at 15 fps): the offset sweep must find it.

Exit status 0 when every row meets every criterion and every control misses one, else 1
(2: the audio or the bundle is missing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.acceptance_report import (
    all_met,
    carried_range,
    missed,
    sync_cells,
    write_report,
)
from benchmarks.common import load_average, machine_info, machine_state
from benchmarks.recording_conditions import CONDITIONS, apply_condition, telephone
from benchmarks.recording_faults import FAULTS, apply_fault, unavailable
from benchmarks.voices_acceptance import score_sequences, shown
from sdk.frames import PoseFrames

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "sdk" / "data" / "default_bundle"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "voices"
SOUNDS_DIR = Path("/usr/share/sounds/alsa")
PACKAGE = "alsa-utils"
LICENCE = "GPL-2 (alsa-utils)"
PROMPTS = ("Front_Left", "Front_Center", "Front_Right", "Side_Left", "Side_Right",
           "Rear_Left", "Rear_Center", "Rear_Right")
"""The speech prompts (``<name>.wav``), in speaker-test's order; ``Noise.wav`` is not speech."""
SEQUENCES = ((tuple(range(len(PROMPTS))), 0.25), ((3, 6, 0, 7, 1, 5, 2, 4), 0.6))
"""(order of :data:`PROMPTS`, seconds of silence after each prompt) per sequence."""
GAINS_DB = (-6.0, 6.0)
LATE_FRAMES = 3  # the delayed-audio control's delay, pose frames
TELEPHONE = "telephone_8khz"  # the narrowband row's condition name


def heard_as(audio: np.ndarray, condition: str, rate: int, index: int) -> np.ndarray:
    """float32 (N,) ``audio`` under a recording condition or :data:`TELEPHONE`."""
    if condition == TELEPHONE:
        return telephone(audio, rate)
    return apply_condition(audio, condition, rate, index)


def missing(sounds_dir: Path = SOUNDS_DIR) -> str | None:
    """Why the prompts cannot be read (naming the package and how to install it), or None."""
    absent = [name for name in PROMPTS if not (sounds_dir / f"{name}.wav").is_file()]
    if not absent:
        return None
    return (f"{sounds_dir}: no {', '.join(a + '.wav' for a in absent)} (the speech prompts of "
            f"the Debian package {PACKAGE}: `make voices` or apt-get install {PACKAGE})")


def recorded_speech(rate: int, sounds_dir: Path = SOUNDS_DIR) -> list[np.ndarray]:
    """The :data:`SEQUENCES` as float32 (N,) audio at ``rate`` Hz (each prompt resampled by
    :func:`sdk.audio.load_audio`, followed by its sequence's pause of silence). Raises
    FileNotFoundError (naming the package) when a prompt is missing."""
    from sdk.audio import load_audio

    problem = missing(sounds_dir)
    if problem:
        raise FileNotFoundError(problem)
    prompts = [load_audio(sounds_dir / f"{name}.wav", rate) for name in PROMPTS]
    sequences = []
    for order, pause_s in SEQUENCES:
        silence = np.zeros(round(pause_s * rate), np.float32)
        sequences.append(np.concatenate([part for i in order for part in (prompts[i], silence)]))
    return sequences


def controls(audios: list[np.ndarray], rate: int, fps: float
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The controls of the module docstring: name -> (judged audio, audio the motion is
    generated from), both (N,) float32 of one length."""
    first, second = audios[0], audios[1]
    n = min(len(first), len(second))
    delay = round(LATE_FRAMES * rate / fps)
    late = np.concatenate([np.zeros(delay, np.float32), first])[:len(first)]
    return {"other speech": (first[:n], second[:n]),
            f"audio {LATE_FRAMES} frames late": (late, first)}


def condition_rows(generator: Any, audios: list[np.ndarray], seed: int) -> list[dict[str, Any]]:
    """A row per recording condition (and :data:`TELEPHONE`) x style, then per level of
    :data:`GAINS_DB` (clean, default style)."""
    manifest = generator.manifest
    rate = manifest.features.sample_rate
    cases = [(condition, 0.0, style) for condition in [*sorted(CONDITIONS), TELEPHONE]
             for style in generator.styles]
    cases += [("clean", gain, generator.default_style) for gain in GAINS_DB]
    rows = []
    for condition, gain_db, style in cases:
        scale = np.float32(10.0 ** (gain_db / 20.0))
        heard = [np.clip(heard_as(a, condition, rate, i) * scale, -1.0, 1.0)
                 .astype(np.float32) for i, a in enumerate(audios)]
        row = score_sequences(generator, heard, style, manifest.pose_range, seed)
        rows.append({"condition": condition, "gain_db": gain_db, **row})
    return rows


def fault_rows(generator: Any, audios: list[np.ndarray], seed: int
               ) -> tuple[list[dict[str, Any]], float]:
    """A row per fault (default style), with ``deviation_z``: mean |z| between the poses
    from the faulty and from the clean audio; and, for scale, that of the second
    sequence's poses from the first's (other speech), over their common length."""
    manifest = generator.manifest
    rate, norm, style = manifest.features.sample_rate, manifest.normalization, \
        generator.default_style

    def standardised(frames: PoseFrames) -> np.ndarray:
        """(T, J, 2) standardised poses of ``frames``."""
        return norm.standardize(norm.pixels_to_canonical(frames.keypoints))

    clean = [standardised(generator.generate(a, rate, seed=seed, style=style)) for a in audios]
    rows: list[dict[str, Any]] = []
    for fault in FAULTS:
        if unavailable(fault):
            rows.append({"fault": fault, "unavailable": unavailable(fault)})
            continue
        faulty = [apply_fault(a, fault, rate, i) for i, a in enumerate(audios)]
        frames = [generator.generate(f, rate, seed=seed, style=style) for f in faulty]
        row = score_sequences(generator, faulty, style, manifest.pose_range, seed,
                              frames=frames)
        row["deviation_z"] = float(np.mean([np.abs(standardised(f) - c).mean()
                                            for f, c in zip(frames, clean, strict=True)]))
        rows.append({"fault": fault, **row})
    other = clean[1]
    n = min(len(other), len(clean[0]))
    return rows, float(np.abs(other[:n] - clean[0][:n]).mean())


def control_rows(generator: Any, audios: list[np.ndarray], seed: int
                 ) -> dict[str, dict[str, Any]]:
    """The controls' rows (default style), each with ``caught``: a criterion missed."""
    manifest = generator.manifest
    rate, style = manifest.features.sample_rate, generator.default_style
    checks = {}
    for name, (judged, motion) in controls(audios, rate, manifest.features.fps).items():
        frames = [generator.generate(motion, rate, seed=seed, style=style)]
        row = score_sequences(generator, [judged], style, manifest.pose_range, seed,
                              frames=frames)
        row["caught"] = bool(missed(row))
        checks[name] = row
    return checks


def run(bundle_dir: Path, sounds_dir: Path = SOUNDS_DIR, seed: int = 0) -> dict[str, Any]:
    """The report's rows, faults and controls (see the module docstring), with what they
    scored."""
    from sdk.streaming import StreamingGenerator

    with StreamingGenerator(str(bundle_dir)) as generator:
        carried_range(generator, bundle_dir)
        rate = generator.manifest.features.sample_rate
        audios = recorded_speech(rate, sounds_dir)
        faults, other_speech_z = fault_rows(generator, audios, seed)
        return {"rows": condition_rows(generator, audios, seed), "faults": faults,
                "other_speech_deviation_z": other_speech_z,
                "controls": control_rows(generator, audios, seed),
                "sequences": [{"prompts": [PROMPTS[i] for i in order], "pause_s": pause_s,
                               "seconds": len(a) / rate}
                              for (order, pause_s), a in zip(SEQUENCES, audios, strict=True)]}


def passed(report: dict[str, Any]) -> bool:
    """Every row meets every criterion and every control misses one."""
    return all_met(report["rows"]) and all(c["caught"] for c in report["controls"].values())


def _missed(row: dict[str, Any]) -> str:
    return ", ".join(missed(row)) or "-"


def markdown(report: dict[str, Any]) -> str:
    seqs = "; ".join(f"{len(s['prompts'])} prompts, {s['pause_s']:g} s pauses, "
                     f"{s['seconds']:.1f} s" for s in report["sequences"])
    lines = ["# A recorded voice no model heard: the bundle's acceptance (issue 17)", "",
             f"Bundle `{report['bundle']}`; audio: alsa-utils' speaker-test voice prompts "
             f"(`{report['sounds_dir']}`, {LICENCE}), two sequences ({seqs}). Judge: the "
             "bundle's own PoseSyncNet; training range: the one the bundle carries. "
             f"Machine: {report['machine']['cpu_model']}, {report['machine']['cpu_cores']} "
             f"cores, {report['load']}; {report['seconds']:.0f} s. Written by `python -m "
             "benchmarks.recorded_voice`.", "",
             "| condition | level | style | PSD | mean pose PSD | ratio | offsets | conf. | "
             "mouth r | mean abs z | farthest past the training range (SD) | missed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(
            f"| {r['condition']} | {r['gain_db']:+g} dB | {r['style'] or 'default'} | "
            f"{sync_cells(r)} | {_missed(r)} |")
    lines += ["", "Faults of real recordings (benchmarks/recording_faults.py; default style; "
              "measured, not required):", "",
              "| fault | PSD | mean pose PSD | ratio | offsets | conf. | mouth r | mean abs z | "
              "farthest past the training range (SD) | poses moved (z) | missed |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["faults"]:
        if "unavailable" in r:
            lines.append(f"| {r['fault']} | not run: {r['unavailable']} |" + " |" * 9)
            continue
        lines.append(
            f"| {r['fault']} | {sync_cells(r)} | {r['deviation_z']:.3f} | {_missed(r)} |")
    lines += ["", "Poses moved: mean |z| difference (every joint, standardised units) between "
              "the poses generated from the faulty audio and from the clean audio (same seed "
              "and style), the generator alone, no judge; for scale, the poses of other "
              f"speech differ from the clean ones by {report['other_speech_deviation_z']:.3f}.",
              "", "Controls (clean, default style; each must miss a criterion):", "",
              "| control | PSD | mean pose PSD | offsets | conf. | mouth r | missed | caught |",
              "|---|---|---|---|---|---|---|---|"]
    for name, c in report["controls"].items():
        lines.append(f"| {name} | {c['psd']:.3f} | {c['mean_pose_psd']:.3f} | "
                     f"{', '.join(f'{o:+d}' for o in c['best_offsets'])} | "
                     f"{c['confidence']:.3f} | {c['mouth_energy_r']:.2f} | {_missed(c)} | "
                     f"{'yes' if c['caught'] else 'NO'} |")
    lines += ["", "Every row meets every criterion; every control misses one." if passed(report)
              else "NOT every row meets every criterion, or a control was not caught."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=DEFAULT_BUNDLE,
                        help="bundle directory (default: the shipped default bundle)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--sounds-dir", type=Path, default=SOUNDS_DIR,
                        help=f"where the prompts are (default {SOUNDS_DIR})")
    parser.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    args = parser.parse_args(argv)
    started, load = time.perf_counter(), machine_state(load_average())
    try:
        report = run(args.bundle, args.sounds_dir, args.seed)
    except (OSError, ValueError) as exc:
        print(f"recorded_voice: {exc}", file=sys.stderr)
        return 2
    report |= {"bundle": shown(args.bundle), "sounds_dir": str(args.sounds_dir),
               "licence": LICENCE, "seed": args.seed, "all_passed": passed(report),
               "seconds": time.perf_counter() - started, "machine": machine_info(),
               "load": load}
    write_report(args.out, "recorded_voice", report, markdown(report))
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
