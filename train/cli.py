"""``gesturert train posesync|generator|fgd``: the training command.

    gesturert train generator --data DIR --out runs/gen [--config cfg.yaml]
        [--set run.steps=4000 --set model.top_k=8] [--resume | --overwrite]
        [--device cpu|cuda]

An existing, non-empty run directory is refused unless ``--resume`` (continue its
checkpoint) or ``--overwrite`` (delete the run's checkpoint and ``tb/`` first). Each
trainer then checks the corpus (``train.data.check``, what ``gesturert data check``
runs) and refuses one that is not trainable, with the same reasons.

The same command runs under ``torchrun --nproc_per_node=N -m sdk.cli train ...`` for DDP.
Each model's loop lives in its own module and is imported only when its command runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: what -> (module, function taking the parsed args and returning an exit code)
TRAINERS = {
    "generator": ("train.generator_training", "train_generator_main"),
    "posesync": ("train.posesync_training", "train_posesync_main"),
    "fgd": ("train.fgd_training", "train_fgd_main"),
}


def default_config_path(what: str) -> Path | None:
    """``train/configs/<what>.yaml`` when it exists."""
    path = CONFIG_DIR / f"{what}.yaml"
    return path if path.is_file() else None


def register_train(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "train", help="train the generator, PoseSyncNet or the FGD encoder",
        description="Train a model on an SDT-layout corpus. Configs are YAML dataclasses "
                    "(defaults in train/configs/<model>.yaml); --set overrides single keys.")
    parser.add_argument("what", choices=sorted(TRAINERS), help="which model to train")
    parser.add_argument("--data", required=True, type=Path,
                        help="corpus directory (DIR/<speaker>/processed_137.csv + .npz clips)")
    parser.add_argument("--out", required=True, type=Path,
                        help="run directory: checkpoint and TensorBoard logs (tb/)")
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML config (default: train/configs/<model>.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one config key, e.g. --set run.steps=500 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again in an existing --out: its checkpoint and tb/ are "
                             "deleted first (without this or --resume, a non-empty --out is "
                             "refused)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run_train)


def run_directory_problem(out: Path, what: str, resume: bool, overwrite: bool) -> str | None:
    """Why ``--out`` cannot be used as given, or None. With ``overwrite`` (and no
    problem) the previous run's outputs, ``<what>.pt`` and ``tb/``, are deleted. Under
    torchrun only rank 0 looks (the others would see rank 0's fresh ``tb/``)."""
    if resume and overwrite:
        return "--resume and --overwrite exclude each other"
    if os.environ.get("RANK", "0") != "0":
        return None
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file, expected a run directory"
    if resume or not out.is_dir():
        return None
    held = sorted(p.name for p in out.iterdir())
    if held and not overwrite:
        return (f"--out {out} already holds a run ({', '.join(held[:4])}"
                f"{', ...' if len(held) > 4 else ''}); pass --resume to continue it, "
                "--overwrite to start again, or choose another directory")
    if overwrite:
        (out / f"{what}.pt").unlink(missing_ok=True)
        if (out / "tb").is_dir():
            shutil.rmtree(out / "tb")
    return None


def run_train(args: argparse.Namespace) -> int:
    module_name, function_name = TRAINERS[args.what]
    problem = run_directory_problem(Path(args.out), args.what, args.resume,
                                    getattr(args, "overwrite", False))
    if problem is not None:
        print(f"gesturert train {args.what}: {problem}", file=sys.stderr)
        return 2
    if args.config is None:
        args.config = default_config_path(args.what)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"gesturert train {args.what}: the {args.what} trainer ({module_name}) is not "
              f"part of this installation", file=sys.stderr)
        return 2
    main = getattr(module, function_name)
    return int(main(args))


def report_training(what: str, train: Callable[[], dict[str, float]], trained: str,
                    checkpoint: Path) -> int:
    """Run ``train()`` for ``gesturert train <what>`` and print its outcome.

    Returns 0 after printing ``"<trained>: <checkpoint> (name=value, ...)"``, or 2 after
    printing a ValueError (CheckpointError included) or FileNotFoundError to stderr.
    """
    try:
        result = train()
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError is a ValueError
        print(f"gesturert train {what}: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.items()))
    print(f"{trained}: {checkpoint} ({summary})")
    return 0
