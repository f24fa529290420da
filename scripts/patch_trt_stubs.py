"""Copy the installed ``tensorrt-stubs`` into ``.stubs/`` with the fixes mypy needs.

``pip install --no-deps tensorrt-stubs==10.13.0.35.1`` installs ``tensorrt/__init__.pyi``
and ``tensorrt_bindings/*.pyi`` into site-packages, but mypy cannot use them as shipped:

* they carry no ``py.typed`` and no ``-stubs`` suffix, so mypy does not pick them up
  from site-packages (we put them on ``mypy_path = ".stubs"`` instead);
* a few plugin methods name a parameter ``in`` (a Python keyword: a syntax error);
* ``INetworkDefinition.add_scale_nd`` has a parameter without a default after
  parameters with defaults (a syntax error);
* the stubs have type errors of their own (a variable ``bool`` shadowing the builtin,
  undefined names): each copied module starts with ``# mypy: ignore-errors``, which
  silences errors *inside* that stub module only; our code is still checked against it.

This script copies both packages into ``.stubs/`` (replacing an earlier copy), renames
``in`` parameters to ``in_``, gives ``add_scale_nd``'s ``channel_axis`` a default and
adds the per-module ``ignore-errors`` comment, then checks that every patched file
parses. Run it after installing the stubs::

    .venv/bin/python scripts/patch_trt_stubs.py

Exit code 0 on success, 1 with a message when the stubs are not installed or a file
still does not parse (a new stubs release changed the text we patch).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shutil
import sys
from pathlib import Path

STUB_PACKAGES = ("tensorrt", "tensorrt_bindings")
REPO = Path(__file__).resolve().parents[1]

# A parameter named ``in`` in a signature: "(in: ", ", in: ", "self, in: ".
_IN_PARAMETER = re.compile(r"(?<=[(,\s])in(?=\s*:)")
# The one parameter without a default after defaulted ones.
_SCALE_ND_BROKEN = "power: Weights = None, channel_axis: int)"
_SCALE_ND_FIXED = "power: Weights = None, channel_axis: int = ...)"
_SILENCE_MODULE = "# mypy: ignore-errors\n"


def find_installed_stubs(package: str) -> Path:
    """Directory of an installed stub package (``tensorrt`` or ``tensorrt_bindings``)."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if any(Path(location).glob("*.pyi")):
            return Path(location)
    for entry in sys.path:
        candidate = Path(entry) / package
        if candidate.is_dir() and any(candidate.glob("*.pyi")):
            return candidate
    raise FileNotFoundError(
        f"no installed stubs for {package!r}; install them first with "
        "`pip install --no-deps tensorrt-stubs==10.13.0.35.1`"
    )


def patch_text(text: str) -> str:
    """Fix the syntax errors and silence the stub's own errors (idempotent)."""
    fixed_lines = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("def "):
            line = _IN_PARAMETER.sub("in_", line)
        fixed_lines.append(line)
    fixed = "".join(fixed_lines).replace(_SCALE_ND_BROKEN, _SCALE_ND_FIXED)
    return fixed if fixed.startswith(_SILENCE_MODULE) else _SILENCE_MODULE + fixed


def patch_stubs(target: Path) -> list[Path]:
    """Copy and patch every stub package into ``target``; returns the files written."""
    written: list[Path] = []
    for package in STUB_PACKAGES:
        source = find_installed_stubs(package)
        destination = target / package
        if destination.exists():
            shutil.rmtree(destination)
        destination.mkdir(parents=True)
        for stub in sorted(source.glob("*.pyi")):
            out = destination / stub.name
            out.write_text(patch_text(stub.read_text()))
            try:
                ast.parse(out.read_text(), filename=str(out))
            except SyntaxError as exc:
                raise SyntaxError(
                    f"{out}: still not valid Python after patching ({exc.msg}, line "
                    f"{exc.lineno}); the stubs release changed: update scripts/patch_trt_stubs.py"
                ) from exc
            written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / ".stubs",
                        help="directory on mypy_path to write into (default: .stubs)")
    args = parser.parse_args(argv)
    try:
        written = patch_stubs(args.out)
    except (FileNotFoundError, SyntaxError) as exc:
        print(f"patch_trt_stubs: {exc}", file=sys.stderr)
        return 1
    print(f"patch_trt_stubs: wrote {len(written)} stub files under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
