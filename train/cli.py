"""``gesturert train posesync|generator|fgd``: the training command.

    gesturert train generator --data DIR --out runs/gen [--config cfg.yaml]
        [--set run.steps=4000 --set model.top_k=8] [--resume] [--device cpu|cuda]

The same command runs under ``torchrun --nproc_per_node=N -m sdk.cli train ...`` for DDP.
Each model's loop lives in its own module and is imported only when its command runs.
"""

from __future__ import annotations

import argparse
import importlib
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
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    module_name, function_name = TRAINERS[args.what]
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
