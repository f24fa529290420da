"""``gesturert evaluate``: the command shell over :mod:`train.evaluation`.

    gesturert evaluate --generator runs/gen/generator.pt --posesync runs/sync/posesync.pt \\
        --fgd runs/fgd/fgd.pt --data corpus/ [--out results/] [--seed 0]

A light register module (docs/architecture.md): the parser is built without torch; the
evaluation itself (train.evaluation, torch) is imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register_evaluate(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "evaluate", help="held-out metrics of a trained generator, with baselines",
        description="FGD, BC, PSD (+ offset sweep), diversity, L1, PCK, lip-sync and detector "
                    "AUC of a generator on a corpus's held-out split, next to mean-pose, "
                    "audio-shuffled and ground-truth rows; Markdown + JSON.")
    parser.add_argument("--generator", required=True, type=Path, help="generator.pt checkpoint")
    parser.add_argument("--posesync", required=True, type=Path, help="posesync.pt checkpoint")
    parser.add_argument("--fgd", required=True, type=Path, help="fgd.pt checkpoint")
    parser.add_argument("--data", required=True, type=Path,
                        help="corpus directory (SDT layout); its dev/val/test clips are scored")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for evaluation.md and evaluation.json (default: print)")
    parser.add_argument("--shuffled-generator", type=Path, default=None,
                        help="generator.pt trained with --set data.shuffle_audio_pairs=true "
                             "(same config and steps): adds the audio-shuffled baseline row")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the generator")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """The ``evaluate`` command; returns the exit code (2 for unusable input)."""
    from train.evaluation import run_evaluation
    from train.evaluation_report import evaluation_markdown
    from train.results_report import write_report

    for name in ("generator", "posesync", "fgd", "shuffled_generator"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            model = "generator" if name == "shuffled_generator" else name
            print(f"gesturert evaluate: --{name.replace('_', '-')} {path} is not a file; pass "
                  f"the checkpoint written by `gesturert train {model}`", file=sys.stderr)
            return 2
    try:
        report = run_evaluation(args.generator, args.posesync, args.fgd, args.data, args.seed,
                                args.shuffled_generator)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gesturert evaluate: {exc}", file=sys.stderr)
        return 2
    markdown = evaluation_markdown(report)
    print(markdown)
    if args.out is not None:
        write_report(report, markdown, args.out, "evaluation")
        print(f"wrote {args.out / 'evaluation.md'} and {args.out / 'evaluation.json'}")
    return 0
