"""``gesturert data ...``: make and inspect corpora in the SDT layout.

* ``gesturert data synth --out DIR --speakers N --minutes M [--seed S] [--overwrite]
  [--articulation]``
  writes a synthetic corpus with ground-truth saliency (:mod:`train.data.synth`).
* ``gesturert data synth --out DIR --voices SPEC [--held-out-voices SPEC]`` speaks with
  real synthesizer voices (:mod:`train.data.voice_corpus`); ``gesturert data voices``
  lists them with their licences.
* ``gesturert data info DIR`` prints clips per speaker and split, and the salient-frame
  fraction where the corpus has ground truth.
* ``gesturert data import-openpose`` and ``gesturert data check``: :mod:`train.data.cli_real`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def register_data(subparsers: Any) -> None:
    """Add the ``data`` command and its subcommands to the gesturert CLI."""
    parser = subparsers.add_parser("data", help="make and inspect training corpora (SDT layout)")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda _args: (parser.print_help(), 2)[1])

    synth = sub.add_parser("synth", help="write a synthetic speaker corpus with ground truth")
    synth.add_argument("--out", required=True, type=Path, help="corpus directory to write")
    synth.add_argument("--speakers", type=int, default=1, help="number of speakers (default 1)")
    synth.add_argument("--minutes", type=float, default=10.0,
                       help="minutes of talk per speaker (default 10)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--overwrite", action="store_true",
                       help="replace speaker directories that already exist")
    synth.add_argument("--articulation", action="store_true",
                       help="vowel-dependent mouth shapes: openness and lip spread follow the "
                            "sounding vowel, not only its loudness (default: loudness only)")
    synth.add_argument("--no-progress", action="store_true", help="no progress bar")
    synth.add_argument("--voices", default=None, metavar="SPEC",
                       help="speak with real synthesizer voices instead of the synthetic "
                            "voice: 'all', or comma-separated voice names / language codes / "
                            "engines (one speaker per voice; --speakers is ignored; list: "
                            "`gesturert data voices`)")
    synth.add_argument("--held-out-voices", default="", metavar="SPEC",
                       help="with --voices: voices (same syntax) whose clips are all split "
                            "'test', spoken with held-out words: never trained on")
    synth.add_argument("--styles", type=int, default=None, metavar="N",
                       help="with --voices: N gesture styles shared round-robin by the voices "
                            "(voice i gestures as style i %% N; default: one style per voice)")
    synth.set_defaults(func=_run_synth)

    voices = sub.add_parser("voices", help="list the synthesizer voices, licences, availability")
    voices.set_defaults(func=_run_voices)

    info = sub.add_parser("info", help="summarise a corpus in the SDT layout")
    info.add_argument("root", type=Path, help="corpus directory (ROOT/<speaker>/processed_137.csv)")
    info.set_defaults(func=_run_info)

    from train.data.cli_real import register_real_data  # argparse only; import-openpose, check

    register_real_data(sub)


def _run_synth(args: argparse.Namespace) -> int:
    if args.voices is not None:
        from train.data.voice_cli import run_voiced_synth

        return run_voiced_synth(args)
    from tqdm import tqdm

    from sdk.features import DEFAULT_FEATURES
    from train.data.sdt import SDT_CLIP_FRAMES
    from train.data.synth import synthesize_corpus

    if args.speakers < 1 or not args.minutes > 0:
        print(f"gesturert data synth: need --speakers >= 1 and --minutes > 0, got "
              f"{args.speakers} and {args.minutes}", file=sys.stderr)
        return 2
    clip_s = SDT_CLIP_FRAMES / DEFAULT_FEATURES.fps
    total = args.speakers * int(args.minutes * 60.0 // clip_s)
    started = time.perf_counter()
    with tqdm(total=total, unit="clip", desc="synth", disable=args.no_progress) as bar:
        try:
            summary = synthesize_corpus(args.out, args.speakers, args.minutes, args.seed,
                                        overwrite=args.overwrite, on_clip=lambda: bar.update(1),
                                        articulation=args.articulation)
        except (ValueError, FileExistsError) as exc:
            bar.close()
            print(f"gesturert data synth: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {len(summary.speakers)} speaker(s) x {summary.clips_per_speaker} clips "
          f"({summary.seconds_per_speaker / 60:.2f} min each, "
          f"{100 * summary.salient_frame_fraction:.1f}% salient frames) to {summary.root} "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


def _run_voices(_args: argparse.Namespace) -> int:
    from train.data.voice_cli import print_voices

    return print_voices()


def _run_info(args: argparse.Namespace) -> int:
    from train.data.sdt import list_speakers, load_speaker

    try:
        speakers = list_speakers(args.root)
        if not speakers:
            raise FileNotFoundError(f"{args.root}: no <speaker>/processed_137.csv under it")
        for speaker in speakers:
            clips = load_speaker(args.root, speaker)
            splits = Counter(c.split for c in clips)
            frames = sum(c.num_frames for c in clips)
            per_split = ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
            line = f"{speaker}: {len(clips)} clips ({per_split}), {frames} frames"
            truth = [c.saliency for c in clips if c.saliency is not None]
            if len(truth) == len(clips):
                salient = sum(float(s.sum()) for s in truth)
                line += f", {100 * salient / max(frames, 1):.1f}% salient frames"
            print(line)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gesturert data info: {exc}", file=sys.stderr)
        return 2
    return 0
