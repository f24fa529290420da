"""Does a bundle keep sync on voices it never heard? Issue 17's acceptance, measured on the
bundle itself (SDK, ONNX Runtime, its own PoseSyncNet as the judge).

    python -m benchmarks.voices_acceptance BUNDLE --corpus VOICED_CORPUS \\
        [--sample sdk/data/samples/speech_en.flac] [--out benchmarks/results/voices] \\
        [--condition clean|noise_15db|reverb_0.5s|reverb_1.2s] [--gain-db G] \\
        [--training-corpus CORPUS_THE_BUNDLE_WAS_TRAINED_ON]

Audio: every sequence of each held-out voice of ``VOICED_CORPUS`` (``voices.json``:
``held_out``; split ``test``, held-out words; never trained on), the voices of an engine
never heard (``--engine-never-heard``, default every festival voice of
:mod:`train.data.festival`: held-out phrases, as many sequences of the same mean length as
a held-out corpus voice has; ``none`` leaves them out), and the shipped sample.
Each sequence is streamed through ``StreamingGenerator.generate`` (seed 0; with the
speaker's gesture style when the bundle has styles and the corpus names one) and scored
like ``gesturert demo`` scores its sample (:func:`sdk.bundle_psd.frames_psd`). With
``--condition`` other than ``clean``, every audio (the sample too) is first put through
that recording condition (:mod:`benchmarks.recording_conditions`; seed = the sequence's
index), and the report is ``acceptance_<condition>.json/.md``: the same criteria on
noisy or reverberant speech, what a microphone in a room delivers. With ``--gain-db G``
every audio is then scaled by G dB (a louder or quieter microphone; samples beyond +-1
clipped, as a recording would be), the report ``acceptance[_<condition>]_gain_<G>db``.

Criteria, per held-out voice (means over its sequences) and for the sample:

* ``psd``: PSD <= 0.5;
* ``psd_vs_mean_pose``: PSD <= half the PSD of the bundle's mean pose held still on the same
  audio (a judge that cannot tell the mean pose from sync is not informative);
* ``offset``: every sequence's offset-sweep best within +-1 pose frame of 0;
* ``confidence``: mean sweep confidence (median - min distance) >= 0.3;
* ``mouth``: inner-lip opening vs the audio's RMS per pose frame, Pearson r >= 0.6 at lag 0;
* ``training_range``: body and hand joints inside the poses the model was trained on, in
  the model's own standardised units (:func:`train.robustness.pose_robustness`): mean |z|
  <= 1 (the training poses': about 0.55) and no value more than 0.5 SD past the training
  poses' own range (per joint and axis, lowest to highest value of the corpus's training
  split, :class:`sdk.pose_range.PoseRange`, what a bundle carries; the held-out ground
  truth, real poses never trained on, goes about 0.26 SD past it). Each report records
  both references.
  The shares outside the range and beyond 4 SD are reported, not limited (see
  ``BEYOND_4SD_MAX``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, machine_info, machine_state
from benchmarks.recording_conditions import CONDITIONS
from sdk.frames import PoseFrames
from sdk.pose_range import PoseRange, RangeLimits
from train.robustness import corpus_training_range

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = REPO / "sdk" / "data" / "samples" / "speech_en.flac"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "voices"
PSD_MAX = 0.5
MEAN_POSE_RATIO_MAX = 0.5
OFFSET_MAX_FRAMES = 1
CONFIDENCE_MIN = 0.3
MOUTH_R_MIN = 0.6
LIMITS = RangeLimits()  # the training-range criterion, the limits a bundle records
MEAN_ABS_Z_MAX = LIMITS.mean_abs_z_max
EXCURSION_MAX_SD = LIMITS.excursion_max_sd
# The limit before 2026-12-04, kept to name what older reports were judged by: at most
# 0.1 % of values beyond 4 SD, on the premise that training poses put almost none there.
# The voiced corpus's training poses put 2.1 % there (salient postures are large): it
# failed models for moving as far as the training poses do. Reports still show the share.
BEYOND_4SD_MAX = 0.001
CRITERIA = ("psd", "psd_vs_mean_pose", "offset", "confidence", "mouth", "training_range")
ENGINE_NEVER_HEARD = "engine never heard"  # a row's voice["held_out"] for festival's voices


def split_engine_rows(rows: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A report's rows as (the corpus's held-out voices and the sample, the voices of the
    engine never heard): reports made before that engine was scored have only the first,
    so comparisons across reports use the first part."""
    engine = {k: r for k, r in rows.items()
              if r.get("voice", {}).get("held_out") == ENGINE_NEVER_HEARD}
    return {k: r for k, r in rows.items() if k not in engine}, engine


def verdict(row: dict[str, Any]) -> dict[str, bool]:
    """Pass/fail of every criterion of the module docstring for one measured row."""
    return {
        "psd": row["psd"] <= PSD_MAX,
        "psd_vs_mean_pose": row["psd"] <= MEAN_POSE_RATIO_MAX * row["mean_pose_psd"],
        "offset": all(abs(o) <= OFFSET_MAX_FRAMES for o in row["best_offsets"]),
        "confidence": row["confidence"] >= CONFIDENCE_MIN,
        "mouth": row["mouth_energy_r"] >= MOUTH_R_MIN,
        "training_range": LIMITS.allow(row["mean_abs_z"], row["largest_excursion"]),
    }


def score_sequences(generator: Any, audios: list[np.ndarray], style: str | None,
                    training_range: PoseRange, seed: int = 0,
                    frames: list[PoseFrames] | None = None) -> dict[str, Any]:
    """Stream each (N,) float32 audio at the bundle's rate; the row's measures (means over
    the sequences, ``largest_excursion`` the largest; offsets listed).

    ``frames`` (one per audio): judge these against ``audios`` instead of generating: frames
    streamed chunk by chunk, or a control's motion of other speech, or of the same speech at
    another time, which the criteria must refuse."""
    if frames is not None and len(frames) != len(audios):
        raise ValueError("frames: one per audio")
    from benchmarks.voices_experiment import mouth_energy_r
    from sdk.bundle_psd import frames_psd, mean_pose_psd, posesync_embed_fn
    from sdk.mfcc import MfccMatrices
    from train.robustness import pose_robustness

    bundle = generator.bundle
    manifest = bundle.manifest
    norm = manifest.normalization
    matrices = MfccMatrices.load(bundle.path(manifest.mfcc_matrices), manifest.features)
    embed, runner = posesync_embed_fn(bundle)
    rate = manifest.features.sample_rate
    measured: dict[str, list[Any]] = {k: [] for k in (
        "psd", "mean_pose_psd", "best_offsets", "confidence", "mouth_energy_r", "mean_abs_z",
        "beyond_4sd", "outside_training_range", "largest_excursion", "seconds")}
    kwargs = {} if style is None else {"style": style}
    try:
        for index, audio in enumerate(audios):
            judged = (frames[index] if frames is not None
                      else generator.generate(audio, rate, seed=seed, **kwargs))
            canonical = norm.pixels_to_canonical(judged.keypoints)
            z = norm.standardize(canonical)
            sweep = frames_psd(manifest, matrices, embed, audio, canonical).sweep
            still = mean_pose_psd(manifest, matrices, embed, audio, len(z)).sweep
            robust = pose_robustness(z, judged.saliency, norm, manifest.features.fps,
                                     training_range)
            measured["psd"].append(sweep.psd)
            measured["mean_pose_psd"].append(still.psd)
            measured["best_offsets"].append(int(sweep.best_offset))
            measured["confidence"].append(sweep.confidence)
            measured["mouth_energy_r"].append(mouth_energy_r(canonical, audio))
            measured["mean_abs_z"].append(robust["mean_abs_z"])
            for key in ("beyond_4sd", "outside_training_range", "largest_excursion"):
                measured[key].append(robust[key])
            measured["seconds"].append(len(audio) / rate)
    finally:
        runner.deactivate()
    row: dict[str, Any] = {k: float(np.mean(v)) for k, v in measured.items()
                           if k not in ("best_offsets", "seconds", "largest_excursion")}
    row["largest_excursion"] = float(np.max(measured["largest_excursion"]))
    row["best_offsets"] = measured["best_offsets"]
    row["sequences"] = len(audios)
    row["seconds"] = float(np.sum(measured["seconds"]))
    row["style"] = style
    row["passed"] = verdict(row)
    return row


def _speaker_style(corpus: Path, speaker: str, styles: tuple[str, ...]) -> str | None:
    """The corpus's style of ``speaker`` when the bundle has it; None = the default."""
    meta_path = corpus / speaker / "synth_speaker.json"
    if not styles or not meta_path.is_file():
        return None
    style = json.loads(meta_path.read_text()).get("style", speaker)
    return style if style in styles else None


def run(bundle_dir: Path, corpus: Path, sample: Path, seed: int = 0,
        condition: str = "clean", engine_voices: str = "all",
        gain_db: float = 0.0, training_corpus: Path | None = None
        ) -> tuple[dict[str, Any], dict[str, dict[str, float] | None]]:
    """Rows for every held-out voice of ``corpus``, every festival voice ``engine_voices``
    names (:func:`train.data.festival.select`; ``none``: no such row) and ``sample``, under
    ``condition``, then scaled by ``gain_db`` dB; and the references of the training range
    they are judged by (``corpus``'s training clips, in the bundle's standardised units):
    the training poses' own measures and how far the held-out ground truth leaves it.
    ``training_corpus``: the corpus the bundle was trained on, when not ``corpus``."""
    from benchmarks.recording_conditions import apply_condition
    from sdk.audio import load_audio
    from sdk.streaming import StreamingGenerator
    from train.data import festival
    from train.posesync_data import load_corpus_sequences

    def recorded(audio: np.ndarray, index: int) -> np.ndarray:
        """``audio`` under the condition, then the gain (clipped to +-1)."""
        out = apply_condition(audio, condition, rate, index)
        if gain_db == 0.0:
            return out
        return np.clip(out * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0)

    never_heard = () if engine_voices == "none" else festival.select(engine_voices)
    for engine_voice in never_heard:  # refuse before any work
        problem = festival.missing(engine_voice)
        if problem:
            raise ValueError(f"{problem} (or --engine-never-heard none)")

    table = json.loads((corpus / "voices.json").read_text())
    held = sorted(name for name, v in table.items() if v["held_out"])
    if not held:
        raise ValueError(f"{corpus}/voices.json names no held-out voice")
    sequences = load_corpus_sequences(corpus)
    trained_on = sequences if training_corpus is None else load_corpus_sequences(
        training_corpus)
    if all(q.held_out for q in trained_on):  # refused before the bundle loads
        raise ValueError(f"{training_corpus or corpus}: no training clips, and the training "
                         "range is measured on them (pass the corpus the bundle was trained "
                         "on, --training-corpus)")
    rows: dict[str, Any] = {}
    with StreamingGenerator(str(bundle_dir)) as generator:
        styles = generator.styles
        rate = generator.manifest.features.sample_rate
        norm = generator.manifest.normalization
        training_range = corpus_training_range(trained_on, norm)
        held_out_poses = [norm.standardize(q.canonical) for q in trained_on if q.held_out]
        held_out = (training_range.measure(np.concatenate(held_out_poses))
                    if held_out_poses else None)
        references = {"training_poses": training_range.summary(),  # None: no held-out clip
                      "held_out_poses": None if held_out is None else {
                          "outside_training_range": held_out.outside_share,
                          "largest_excursion": held_out.largest_excursion}}
        for voice in held:
            audios = [recorded(s.audio, i)
                      for i, s in enumerate(q for q in sequences
                                            if q.speaker == voice and q.held_out)]
            rows[voice] = score_sequences(generator, audios,
                                          _speaker_style(corpus, voice, styles),
                                          training_range, seed)
            rows[voice]["voice"] = table[voice]
        held_sequences = [q for q in sequences if q.speaker in held and q.held_out]
        count = round(len(held_sequences) / len(held))
        seconds = float(np.mean([len(q.audio) for q in held_sequences])) / rate
        for engine_voice in never_heard:
            speech = festival.held_out_speech(engine_voice, count, seconds, rate, seed)
            rows[engine_voice.name] = score_sequences(
                generator, [recorded(a, i) for i, a in enumerate(speech)],
                None, training_range, seed)
            rows[engine_voice.name]["voice"] = {
                "engine": "festival", "held_out": ENGINE_NEVER_HEARD,
                "festival_voice": engine_voice.scheme, "gender": engine_voice.gender,
                "language": festival.LANGUAGE, "licence": engine_voice.licence}
        rows["sample:" + sample.name] = score_sequences(
            generator, [recorded(load_audio(sample, rate), 0)], None,
            training_range, seed)
    return rows, references


def markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    condition = report.get("condition", "clean")
    title = "" if condition == "clean" else f", recording condition `{condition}`"
    if report.get("gain_db", 0.0):
        title += f", level {report['gain_db']:+g} dB"
    lines = [f"# Voices never heard: the bundle's acceptance (issue 17){title}", "",
             f"Bundle `{report['bundle']}`, corpus `{report['corpus']}` (held-out voices: "
             "split `test`, held-out words, never trained on), "
             + ("" if report.get("engine_never_heard", "none") == "none" else
                "festival's voices (an engine never heard; held-out words), ")
             + "sample "
             f"`{report['sample']}`. Judge: the bundle's own PoseSyncNet. Machine: "
             f"{report['machine']['cpu_model']}, {report['machine']['cpu_cores']} cores, "
             f"{report['load']}; {report['seconds']:.0f} s.", "",
             f"Criteria: PSD <= {PSD_MAX} and <= {MEAN_POSE_RATIO_MAX} x the mean pose's PSD "
             f"on the same audio; every sequence's best offset within +-{OFFSET_MAX_FRAMES} "
             f"frame; confidence >= {CONFIDENCE_MIN}; mouth opening vs audio energy r >= "
             f"{MOUTH_R_MIN}; body/hand mean |z| <= {MEAN_ABS_Z_MAX} and no value more "
             f"than {EXCURSION_MAX_SD} SD past the training poses' range (per joint and "
             "axis).", "", *_reference_lines(report),
             "| audio | style | seqs | s | PSD | mean pose PSD | ratio | offsets | conf. | "
             "mouth r | mean abs z | beyond 4 SD | outside training range | farthest past "
             "it (SD) | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        failed = [k for k, ok in r["passed"].items() if not ok]
        lines.append(
            f"| {name} | {r['style'] or 'default'} | {r['sequences']} | {r['seconds']:.0f} | "
            f"{r['psd']:.3f} | {r['mean_pose_psd']:.3f} | {r['psd'] / r['mean_pose_psd']:.2f} | "
            f"{r['best_offsets']} | {r['confidence']:.3f} | {r['mouth_energy_r']:.2f} | "
            f"{r['mean_abs_z']:.2f} | {100 * r['beyond_4sd']:.3f} % | "
            f"{100 * r['outside_training_range']:.3f} % | {r['largest_excursion']:.2f} | "
            + ("pass" if not failed else "FAIL: " + ", ".join(failed)) + " |")
    everything = all(all(r["passed"].values()) for r in rows.values())
    lines += ["", "All criteria met on every held-out voice and the sample."
              if everything else "Not every criterion is met (see FAIL above)."]
    return "\n".join(lines) + "\n"


def _reference_lines(report: dict[str, Any]) -> list[str]:
    """The corpus's own poses, the reference of the training-range columns."""
    own, held = report["training_poses"], report["held_out_poses"]
    truth = ("no held-out clips" if not held else
             f"held-out ground truth {100 * held['outside_training_range']:.4f} % outside the "
             f"training range, at most {held['largest_excursion']:.2f} SD past it")
    return [f"The training corpus `{report.get('training_corpus', report['corpus'])}`'s poses "
            "in the bundle's standardised units: training split "
            f"({own['frames']:.0f} frames) mean |z| {own['mean_abs_z']:.2f}, "
            f"{100 * own['beyond_4sd']:.2f} % of values beyond 4 SD (salient postures are "
            f"large); {truth}.", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="bundle directory")
    parser.add_argument("--corpus", type=Path, required=True,
                        help="voiced corpus with held-out voices (gesturert data synth --voices)")
    parser.add_argument("--training-corpus", type=Path, default=None,
                        help="the corpus the bundle was trained on, when not --corpus (the "
                        "training range comes from its training clips)")
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE,
                        help="speech sample scored as well (default: the shipped sample)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    parser.add_argument("--engine-never-heard", default="all", metavar="VOICES",
                        help="festival voices to score as an engine never heard: all "
                        "(default), comma-separated names, or none")
    parser.add_argument("--gain-db", type=float, default=0.0, metavar="G",
                        help="scale every audio by G dB after the condition (default 0)")
    parser.add_argument("--condition", default="clean", choices=sorted(CONDITIONS),
                        help="recording condition applied to every audio first (default "
                        "clean; benchmarks/recording_conditions.py)")
    args = parser.parse_args(argv)
    started, load = time.perf_counter(), machine_state(load_average())
    try:
        rows, references = run(args.bundle, args.corpus, args.sample, args.seed,
                               args.condition, args.engine_never_heard, args.gain_db,
                               args.training_corpus)
    except (OSError, ValueError) as exc:
        print(f"voices_acceptance: {exc}", file=sys.stderr)
        return 2
    report = {"bundle": shown(args.bundle), "corpus": shown(args.corpus),
              "training_corpus": shown(args.training_corpus or args.corpus),
              "sample": shown(args.sample), "seed": args.seed,
              "engine_never_heard": args.engine_never_heard, "gain_db": args.gain_db,
              "condition": args.condition, "rows": rows,
              **references,
              "all_passed": all(all(r["passed"].values()) for r in rows.values()),
              "seconds": time.perf_counter() - started, "machine": machine_info(), "load": load}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "acceptance" if args.condition == "clean" else f"acceptance_{args.condition}"
    if args.gain_db != 0.0:
        name += f"_gain_{args.gain_db:+g}db"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    text = markdown(report)
    (args.out / f"{name}.md").write_text(text)
    print(text)
    return 0 if report["all_passed"] else 1


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it, else its last two parts."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return "/".join(path.resolve().parts[-2:])


if __name__ == "__main__":
    raise SystemExit(main())
