"""``gesturert data import-openpose`` and ``gesturert data check``: real recordings in.

* ``gesturert data import-openpose JSON_DIR AUDIO --fps FPS --speaker NAME --out CORPUS_DIR
  [--split train] [--overwrite]`` imports one video's OpenPose JSON and its audio as one
  interval (:mod:`train.data.openpose`). Batch form: JSON_DIR holds one sub-directory
  per video and AUDIO is a directory with one ``<sub-directory name>.<ext>`` per video.
* ``gesturert data check CORPUS_DIR`` reports per speaker and exits 0 when the corpus is
  trainable (warnings allowed), 1 with the reasons when not (:mod:`train.data.check`).

Light to import: argparse and pathlib only; the work is imported when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register_real_data(sub: Any) -> None:
    """Add ``import-openpose`` and ``check`` to the ``data`` subcommands."""
    imp = sub.add_parser(
        "import-openpose", help="import OpenPose JSON + audio of a video into the SDT layout",
        description="Import a video's OpenPose JSON (BODY_25 + face + hands, --write_json) and "
                    "its audio as one interval of a speaker. Batch form: JSON_DIR holds one "
                    "sub-directory per video and AUDIO is a directory holding "
                    "<sub-directory>.<ext> for each. Rules: train/data/openpose.py.")
    imp.add_argument("json_dir", type=Path, metavar="JSON_DIR",
                     help="directory of <video>_<frame>_keypoints.json (or of such directories)")
    imp.add_argument("audio", type=Path, metavar="AUDIO",
                     help="the video's audio, any format and rate (or a directory of them)")
    imp.add_argument("--fps", required=True, type=float,
                     help="the video's frame rate (frames of the JSON per second); the batch "
                          "form applies it to every video (import videos of other rates "
                          "one by one)")
    imp.add_argument("--speaker", required=True, help="speaker name (directory in CORPUS_DIR)")
    imp.add_argument("--out", required=True, type=Path, metavar="CORPUS_DIR",
                     help="corpus directory (SDT layout) to add the interval(s) to")
    imp.add_argument("--split", default="train",
                     help="split of the imported clips: train, dev, val (default train)")
    imp.add_argument("--overwrite", action="store_true",
                     help="replace an interval of the same name already in the corpus")
    imp.set_defaults(func=_run_import)

    check = sub.add_parser(
        "check", help="check that a corpus is trainable (exit 0) or say why not (exit 1)",
        description="Per speaker: clips, duration, fps, missing joints per group, sequences "
                    "shorter than one training window, duration mismatches, implausible "
                    "jumps. Window settings: train/configs/generator.yaml (data.*).")
    check.add_argument("root", type=Path, metavar="CORPUS_DIR",
                       help="corpus directory (CORPUS_DIR/<speaker>/processed_137.csv)")
    check.set_defaults(func=_run_check)


def _run_import(args: argparse.Namespace) -> int:
    from train.data.check import min_window_seconds
    from train.data.openpose import batch_pairs, import_recording

    try:
        batch = args.audio.is_dir()
        pairs = batch_pairs(args.json_dir, args.audio) if batch else [(args.json_dir,
                                                                        args.audio)]
    except (ValueError, FileNotFoundError) as exc:
        print(f"gesturert data import-openpose: {exc}", file=sys.stderr)
        return 2
    minimum = min_window_seconds(_generator_data_config().window_frames)
    failed = 0
    for json_dir, audio in pairs:
        try:
            r = import_recording(json_dir, audio, args.fps, args.speaker, args.out,
                                 interval_id=json_dir.name if batch else None,
                                 split=args.split, overwrite=args.overwrite)
        except (ValueError, FileNotFoundError, FileExistsError) as exc:
            print(f"gesturert data import-openpose: {json_dir}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{r.interval_id}: {r.video_frames} frames at {r.video_fps:g} fps -> "
              f"{r.frames} frames in {r.clips} clips; audio {r.audio_s:.2f} s, pose "
              f"{r.pose_s:.2f} s (mismatch {r.mismatch_s:+.2f} s); speaker missing in "
              f"{r.speaker_missing_frames} frames; {r.gaps_filled} joint gaps filled, "
              f"{r.gaps_marked} marked missing")
        if r.frames / r.fps < minimum:
            print(f"warning: {r.interval_id} is {r.frames / r.fps:.2f} s, "
                  f"shorter than one training window (the minimum is {minimum:.2f} s)",
                  file=sys.stderr)
    print(f"imported {len(pairs) - failed} of {len(pairs)} recording(s) into "
          f"{args.out / args.speaker}; check it with `gesturert data check {args.out}`")
    return 1 if failed else 0


def _generator_data_config() -> Any:
    """``data`` of the generator's default config (train/configs/generator.yaml)."""
    from train.cli import default_config_path
    from train.config import load_config
    from train.generator_training import GeneratorTrainingConfig

    return load_config(GeneratorTrainingConfig, default_config_path("generator")).data


def _run_check(args: argparse.Namespace) -> int:
    from train.data.check import check_corpus

    data = _generator_data_config()
    result = check_corpus(args.root, data.window_frames, data.stride_frames,
                          data.max_missing_fraction)
    print(result.report())
    return 0 if result.trainable else 1
