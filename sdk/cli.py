"""The ``gesturert`` command line: a thin dispatcher over subcommand plugins.

Each package registers its own subcommands through the ``gesturert.commands`` entry-point
group (see pyproject.toml). A plugin is a function ``register(subparsers)`` that adds one
subparser and sets ``func`` (called with the parsed namespace, returning an exit code).
Plugins are imported only here, at CLI start, so ``import sdk`` never loads train/export;
a plugin whose extra is not installed still shows up and says what to install.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "gesturert.commands"


def _unavailable(name: str, error: BaseException) -> Callable[[argparse.Namespace], int]:
    def run(_: argparse.Namespace) -> int:
        print(
            f"gesturert {name}: this command could not be loaded ({error.__class__.__name__}: "
            f"{error}). Install the extra it needs, e.g. pip install 'gesturert[train,cpu]'.",
            file=sys.stderr,
        )
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gesturert",
        description="Real-time speech-to-gesture: train, export, serve, validate, benchmark.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            register = ep.load()
            register(sub)
        except ImportError as exc:  # an extra is missing: keep the command, explain on use
            p = sub.add_parser(ep.name, help=f"(unavailable: {exc})", add_help=False)
            p.set_defaults(func=_unavailable(ep.name, exc))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
