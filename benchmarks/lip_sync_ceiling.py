"""The lip-sync ceiling of a corpus's test set: how well the lips that *drove* the keypoints
correlate with the keypoints the corpus stores.

    python -m benchmarks.lip_sync_ceiling --name voiced --voices all \\
        --held-out-voices espeak-en-us-f4,espeak-it-f4,flite-slt --styles 3 --minutes 4 \\
        [--evaluation EVALUATION_JSON] [--results DIR] [--work DIR]
    python -m benchmarks.lip_sync_ceiling --name synthetic_voice --minutes 20 --speakers 1

The evaluation's lip-sync r (``train.metrics.lip_sync_correlation``, the mean over held-out
sequences of the Pearson r of predicted vs stored inner-lip opening) cannot reach 1: every
stored keypoint carries per-frame Gaussian jitter (``SpeakerProfile.noise_px``) that no
audio predicts. This script renders the corpus twice from the same options, each in a fresh
process (:mod:`train.data.espeak` keeps state between calls), once as ``data synth`` does
and once with ``keypoint_jitter=False`` (every random draw the same, the jitter's size 0),
and scores the jitter-free lips as if they were a generator's output, on the same held-out
sequences as ``gesturert evaluate`` (at least ``MIN_FRAMES``). That r is what a model that
recovered the lips' driving signal exactly would score: the ceiling.

Checks that can fail, so the ceiling is not read off two unrelated renders:
* every held-out sequence's audio is bit-identical in the two renders (else error);
* the two poses differ by jitter only: max |difference| <= ``JITTER_SIGMAS`` x the speaker's
  ``noise_px`` in pixels (else error);
* a control: the jitter-free lips one frame late must score far below the ceiling (the
  lips change from frame to frame; reported, and an error if it is not below).

With ``--evaluation`` (an ``evaluate`` JSON of a generator on that corpus) the result also
carries the generator's lip-sync r as a share of the ceiling. Writes ``DIR/NAME.json`` and
``.md`` (default DIR ``benchmarks/results/training/lip_sync_ceiling``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "training" / "lip_sync_ceiling"
RENDERS = ("jittered", "clean")  # corpus as `data synth` writes it, and without jitter
JITTER_SIGMAS = 7.0  # |Gaussian draw| > 7 sigma: p = 2.6e-12 each; a 72-min corpus has 1.8e7


def min_frames() -> int:
    """Frames a held-out sequence needs to be evaluated (``train.evaluation``'s rule) with
    the default PoseSyncNet clip and FGD window (train/configs)."""
    from train.cli import default_config_path
    from train.config import load_config
    from train.evaluation import frames_needed
    from train.fgd_training import FGDTrainingConfig
    from train.posesync_training import PoseSyncTrainingConfig

    posesync = load_config(PoseSyncTrainingConfig, default_config_path("posesync"))
    fgd = load_config(FGDTrainingConfig, default_config_path("fgd"))
    return frames_needed(posesync.model.clip.clip_frames, fgd.model.window_frames)


def corpus_options(args: argparse.Namespace) -> list[str]:
    """The corpus options of this command, to pass on to a render process."""
    out = ["--minutes", str(args.minutes), "--speakers", str(args.speakers),
           "--seed", str(args.seed)]
    if args.voices is not None:
        out += ["--voices", args.voices, "--held-out-voices", args.held_out_voices]
    if args.styles is not None:
        out += ["--styles", str(args.styles)]
    return out + (["--articulation"] if args.articulation else [])


def render(args: argparse.Namespace, kind: str, out: Path) -> None:
    """Write the corpus of ``args`` to ``out``, with jitter or without (``kind``)."""
    jitter = kind == "jittered"
    if args.voices is None:
        from train.data.synth import synthesize_corpus

        synthesize_corpus(out, args.speakers, args.minutes, args.seed,
                          articulation=args.articulation, keypoint_jitter=jitter)
        return
    from train.data.voice_corpus import synthesize_voice_corpus
    from train.data.voices import held_out_names, select_voices

    voices = select_voices(args.voices)
    synthesize_voice_corpus(out, voices, args.minutes, args.seed,
                            held_out=held_out_names(args.held_out_voices, voices),
                            articulation=args.articulation, styles=args.styles,
                            keypoint_jitter=jitter)


def noise_px_of(corpus: Path) -> dict[str, float]:
    """Speaker -> its keypoint jitter std (pixels), from each ``synth_speaker.json``."""
    return {p.parent.name: float(json.loads(p.read_text())["profile"]["noise_px"])
            for p in sorted(corpus.glob("*/synth_speaker.json"))}


def _lips(seq: Any) -> np.ndarray:
    from train.metrics.keypoints import lip_opening

    return lip_opening(seq.observed_canonical())


def measure(jittered: Path, clean: Path, frames: int) -> dict[str, Any]:
    """The ceiling and its checks over the held-out sequences of the two renders."""
    from train.data.sdt import load_clip, read_index
    from train.evaluation import load_held_out
    from train.metrics import lip_sync_correlation

    stored = load_held_out(jittered, frames)
    driven = {s.name: s for s in load_held_out(clean, frames)}
    if sorted(driven) != sorted(s.name for s in stored):
        raise RuntimeError("the two renders hold different held-out sequences")
    noise = noise_px_of(jittered)
    worst = 0.0  # largest pose |difference| / noise_px over every clip
    for speaker, sigma in noise.items():
        for row in read_index(jittered / speaker):
            a, b = load_clip(jittered / speaker, row), load_clip(clean / speaker, row)
            if not np.array_equal(a.audio, b.audio):
                raise RuntimeError(f"{speaker} {row.pose_fn}: the two renders' audio differ; "
                                   "the jitter-free lips are not those of the stored corpus")
            gap = float(np.nanmax(np.abs(a.pose_px - b.pose_px)))
            if gap > JITTER_SIGMAS * sigma:
                raise RuntimeError(f"{speaker} {row.pose_fn}: the renders differ by {gap:.3g} "
                                   f"px, more than {JITTER_SIGMAS} x noise_px ({sigma:.3g}): "
                                   "more than the jitter changed")
            worst = max(worst, gap / sigma if sigma > 0 else 0.0)
    per_sequence, late = {}, []
    for seq in stored:
        ceiling = driven[seq.name]
        per_sequence[seq.name] = lip_sync_correlation(ceiling.observed_canonical(),
                                                      seq.observed_canonical())
        early, now = _lips(ceiling)[:-1], _lips(seq)[1:]  # the driving lips one frame late
        seen = np.isfinite(now)
        late.append(float(np.corrcoef(early[seen], now[seen])[0, 1]))
    speakers: dict[str, list[float]] = {}
    for seq in stored:
        speakers.setdefault(seq.speaker, []).append(per_sequence[seq.name])
    ceiling_r = float(np.mean(list(per_sequence.values())))
    if not np.mean(late) < ceiling_r - 0.1:
        raise RuntimeError(f"the one-frame-late control scores {np.mean(late):.3f}, not below "
                           f"the ceiling {ceiling_r:.3f}: the measure does not see timing")
    return {"sequences": len(stored), "frames": sum(s.num_frames for s in stored),
            "min_frames": frames, "lip_sync_ceiling": ceiling_r,
            "lip_sync_ceiling_min": float(min(per_sequence.values())),
            "one_frame_late_control": float(np.mean(late)),
            "max_pose_difference_in_noise_px": worst,
            "noise_px": noise,
            "per_speaker": {k: float(np.mean(v)) for k, v in sorted(speakers.items())},
            "per_sequence": per_sequence}


def generator_share(result: dict[str, Any], evaluation: Path) -> dict[str, Any]:
    """The generator row of ``evaluation`` (evaluate JSON) against the ceiling."""
    report = json.loads(evaluation.read_text())
    if report["sequences"] != result["sequences"]:
        raise ValueError(f"{evaluation}: {report['sequences']} held-out sequences, the "
                         f"ceiling's corpus {result['sequences']}: not the same test set")
    r = float(report["methods"]["generator"]["lip_sync"])
    where = evaluation.resolve()
    return {"evaluation": str(where.relative_to(REPO)) if where.is_relative_to(REPO)
            else where.name, "lip_sync": r, "share_of_ceiling": r / result["lip_sync_ceiling"]}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Lip-sync ceiling: {result['name']}", "",
             f"Command: `{result['command']}` (code at {result['machine']['git_sha']}, "
             f"{result['machine']['timestamp']})", "",
             f"Held-out sequences (>= {result['min_frames']} frames): {result['sequences']} "
             f"({result['frames']} frames). The corpus rendered twice from these options, with "
             "and without the per-frame keypoint jitter; the jitter-free lips scored as a "
             "generator's output by the evaluation's lip-sync r.", "",
             "| measure | value |", "|---|---|",
             f"| lip-sync r ceiling (mean over sequences) | {result['lip_sync_ceiling']:.4f} |",
             f"| lowest sequence | {result['lip_sync_ceiling_min']:.4f} |",
             f"| control: the jitter-free lips one frame late | "
             f"{result['one_frame_late_control']:.4f} |",
             f"| largest pose difference between the renders (x noise_px) | "
             f"{result['max_pose_difference_in_noise_px']:.2f} |"]
    if "generator" in result:
        g = result["generator"]
        lines += [f"| generator lip-sync r ({g['evaluation']}) | {g['lip_sync']:.4f} |",
                  f"| generator / ceiling | {g['share_of_ceiling']:.3f} |"]
    lines += ["", "| speaker | ceiling r | noise_px |", "|---|---|---|"]
    lines += [f"| {k} | {v:.4f} | {result['noise_px'].get(k, float('nan')):.3f} |"
              for k, v in result["per_speaker"].items()]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lip_sync_ceiling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="corpus", help="results file name (NAME.json/.md)")
    parser.add_argument("--minutes", type=float, default=20.0, help="as data synth")
    parser.add_argument("--speakers", type=int, default=1, help="as data synth (synthetic)")
    parser.add_argument("--seed", type=int, default=0, help="as data synth")
    parser.add_argument("--voices", default=None, help="as data synth (voiced corpus)")
    parser.add_argument("--held-out-voices", default="", help="as data synth")
    parser.add_argument("--styles", type=int, default=None, help="as data synth")
    parser.add_argument("--articulation", action="store_true", help="as data synth")
    parser.add_argument("--evaluation", type=Path, default=None,
                        help="evaluate JSON of a generator on this corpus: its r / ceiling")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--work", type=Path, default=None,
                        help="where the two renders go (default: a temporary directory)")
    parser.add_argument("--render", choices=RENDERS, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:  # a render process
        render(args, args.render, args.work / args.render)
        return 0
    from benchmarks.common import machine_info, write_json_and_markdown

    command = "python -m benchmarks.lip_sync_ceiling " + shlex.join(
        sys.argv[1:] if argv is None else list(argv))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        renders = [subprocess.Popen([sys.executable, "-m", "benchmarks.lip_sync_ceiling",
                                     "--render", kind, "--work", str(work),
                                     *corpus_options(args)], cwd=REPO) for kind in RENDERS]
        if any(p.wait() != 0 for p in renders):
            print("a render failed (its error is above)", file=sys.stderr)
            return 1
        result = {"name": args.name, "command": command, "options": corpus_options(args),
                  **measure(work / "jittered", work / "clean", min_frames()),
                  "machine": machine_info()}
    if args.evaluation is not None:
        result["generator"] = generator_share(result, args.evaluation)
    print(write_json_and_markdown(args.results, args.name, result, markdown)[1].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
