"""The CLI starts without the heavy packages (issue 15, item 5).

Like tests/test_layering.py for ``import sdk``, but for ``gesturert``: every command's
register module is light (imported alone it loads none of ``sdk.cli.HEAVY_MODULES``), and
``gesturert --help``, ``stream`` (a real stream of the shipped sample through the default
bundle), ``validate --help``, ``demo --help`` and ``serve --help`` (once it exists) end
without torch or librosa in ``sys.modules``. Each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from sdk.cli import ENTRY_POINT_GROUP, HEAVY_MODULES

ROOT = Path(__file__).resolve().parents[1]
NEVER_AT_CLI_START = ("torch", "librosa")


def declared_commands() -> dict[str, str]:
    """``gesturert.commands`` as pyproject.toml declares it: name -> "module:function"."""
    text = (ROOT / "pyproject.toml").read_text()  # tomllib needs Python 3.11; we run on 3.10
    section = text.split(f'[project.entry-points."{ENTRY_POINT_GROUP}"]', 1)[1]
    section = section.split("\n[", 1)[0]
    return dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]+)"', section, re.M))


def heavy_modules_loaded_by(module: str, heavy: tuple[str, ...] = HEAVY_MODULES,
                            path: Path = ROOT) -> list[str]:
    """The packages of ``heavy`` that importing ``module`` alone loads (fresh interpreter)."""
    probe = (f"import importlib, json, sys; sys.path.insert(0, {str(path)!r}); "
             f"importlib.import_module({module!r}); "
             f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, f"importing {module} failed:\n{out.stderr}"
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def cli_loads(argv: list[str], tmp_path: Path) -> tuple[int, list[str], str]:
    """Run ``sdk.cli.main(argv)`` in a fresh interpreter: exit code, forbidden modules
    loaded by the end, and what it printed."""
    probe = (
        "import json, sys\n"
        "from sdk.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exc:  # --help exits through argparse\n"
        "    code = exc.code if isinstance(exc.code, int) else 1\n"
        f"print('LOADED=' + json.dumps([m for m in {NEVER_AT_CLI_START!r} if m in sys.modules]))\n"
        "sys.exit(code)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300, check=False)
    loaded_line = [line for line in out.stdout.splitlines() if line.startswith("LOADED=")]
    assert loaded_line, f"gesturert {' '.join(argv)} died:\n{out.stdout}\n{out.stderr}"
    return out.returncode, json.loads(loaded_line[-1][len("LOADED="):]), out.stdout + out.stderr


def test_installed_commands_are_the_declared_ones() -> None:
    installed = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert installed == declared_commands(), (
        "the installed gesturert commands differ from pyproject.toml; after changing "
        "[project.entry-points.\"gesturert.commands\"] run `make setup` (pip install -e .) "
        "and delete a stale gesturert.egg-info/ in the repository root, which shadows the "
        "installed metadata when Python runs from there")


@pytest.mark.parametrize("name", sorted(declared_commands()))
def test_every_register_module_is_light(name: str) -> None:
    module = declared_commands()[name].split(":", 1)[0]
    loaded = heavy_modules_loaded_by(module)
    assert loaded == [], (
        f"`gesturert {name}`'s register module {module} imports {loaded} at top level; "
        f"import them inside the function that runs the command (rule: docs/architecture.md, "
        f"'A command's register module')")


def test_the_register_module_check_catches_a_top_level_torch_import(tmp_path: Path) -> None:
    (tmp_path / "heavy_register.py").write_text(
        "import argparse\nimport torch  # the mistake\n\n"
        "def register_heavy(subparsers: argparse._SubParsersAction) -> None:\n"
        "    subparsers.add_parser('heavy')\n")
    assert "torch" in heavy_modules_loaded_by("heavy_register", path=tmp_path)


COMMANDS_AT_START = {
    "help": ["--help"],
    "validate --help": ["validate", "--help"],
    "demo --help": ["demo", "--help"],
    "serve --help": ["serve", "--help"],
}


@pytest.mark.parametrize("case", sorted(COMMANDS_AT_START))
def test_cli_help_never_imports_torch_or_librosa(case: str, tmp_path: Path) -> None:
    argv = COMMANDS_AT_START[case]
    if argv[0] != "--help" and argv[0] not in declared_commands():
        pytest.skip(f"no `gesturert {argv[0]}` command in this checkout")
    code, loaded, printed = cli_loads(argv, tmp_path)
    assert code == 0, printed
    assert "usage: gesturert" in printed
    assert loaded == [], f"`gesturert {' '.join(argv)}` imported {loaded}"


DEFAULT_BUNDLE = ROOT / "sdk" / "data" / "default_bundle"


@pytest.mark.skipif(not (DEFAULT_BUNDLE / "manifest.json").is_file(),
                    reason="the shipped default bundle (sdk/data/default_bundle) is not here")
def test_cli_stream_of_the_sample_never_imports_torch_or_librosa(tmp_path: Path) -> None:
    bundle = DEFAULT_BUNDLE
    sample = ROOT / "sdk" / "data" / "samples" / "speech_en.flac"
    out = tmp_path / "poses.npz"
    code, loaded, printed = cli_loads(
        ["stream", str(bundle), str(sample), "--out", str(out)], tmp_path)
    assert code == 0, printed
    assert out.is_file() and "frames" in printed
    assert loaded == [], f"`gesturert stream` imported {loaded}"
