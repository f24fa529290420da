"""The ``gesturert`` command line: a thin dispatcher over subcommand plugins.

Each package registers its own subcommands through the ``gesturert.commands`` entry-point
group (see pyproject.toml). A plugin is a function ``register(subparsers)`` that adds one
subparser and sets ``func`` (called with the parsed namespace, returning an exit code).

Loading is lazy in two ways, so that ``gesturert stream`` never pays for torch:

* ``gesturert COMMAND ...`` loads only COMMAND's plugin; ``gesturert --help`` (or no
  command, or an unknown one) loads every plugin to list them.
* A plugin's module is *light*: imported alone it loads none of :data:`HEAVY_MODULES`
  (top-level imports: the standard library, numpy, numpy-only sdk modules); the command's
  own work imports what it needs inside the function that runs it. The rule is in
  docs/architecture.md and tests/test_cli_imports.py holds every plugin to it.

Plugins are imported only here, at CLI start, so ``import sdk`` never loads train/export;
a plugin whose extra is not installed still shows up and says what to install.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points

ENTRY_POINT_GROUP = "gesturert.commands"

#: Packages a plugin module must not load at import (each costs 0.3-3 s of CLI start, or
#: is absent where the SDK runs); tests/test_cli_imports.py checks every plugin.
HEAVY_MODULES = ("torch", "librosa", "onnxruntime", "tensorrt", "cuda", "matplotlib",
                 "scipy", "sklearn")


def _unavailable(name: str, error: BaseException) -> Callable[[argparse.Namespace], int]:
    def run(_: argparse.Namespace) -> int:
        print(
            f"gesturert {name}: this command could not be loaded ({error.__class__.__name__}: "
            f"{error}). Install the extra it needs, e.g. pip install 'gesturert[train,cpu]'.",
            file=sys.stderr,
        )
        return 2

    return run


def command_entry_points() -> list[EntryPoint]:
    """The installed plugins of :data:`ENTRY_POINT_GROUP`, sorted by command name."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``gesturert`` parser; with ``only``, just that command's plugin is loaded."""
    parser = argparse.ArgumentParser(
        prog="gesturert",
        description="Real-time speech-to-gesture: train, export, serve, validate, benchmark.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in command_entry_points():
        if only is not None and ep.name != only:
            continue
        try:
            register = ep.load()
            register(sub)
        except ImportError as exc:  # an extra is missing: keep the command, explain on use
            p = sub.add_parser(ep.name, help=f"(unavailable: {exc})", add_help=False)
            p.set_defaults(func=_unavailable(ep.name, exc))
    return parser


def _requested_command(argv: Sequence[str]) -> str | None:
    """The command named first in ``argv`` if it is a plugin's name, else None (load all)."""
    if not argv or argv[0].startswith("-"):
        return None
    names = {ep.name for ep in command_entry_points()}
    return argv[0] if argv[0] in names else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_requested_command(argv))
    args, extra = parser.parse_known_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
