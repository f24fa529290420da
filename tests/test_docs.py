"""Every code block in README.md and docs/*.md runs (or says why it cannot), and the CLI
reference in docs/cli.md is what the argparse parsers print.

Blocks run in order, per file, in a fresh working directory holding ``bundle/`` (a copy
of the tiny test bundle, standing in for any bundle the docs name), ``speech.wav`` (3 s of
the shipped speech sample), and the repository paths the README names:
``sdk/data/samples/speech_en.flac`` (the sample) and ``sdk/data/default_bundle`` (the tiny
bundle again, so the README's code is checked whether or not the shipped bundle is here):

* ``python`` blocks are executed, sharing one namespace per file;
* ``sh``/``bash`` blocks: every command must be ``gesturert ...``; each runs in-process
  through ``sdk.cli.main`` and must exit 0;
* a block right after ``<!-- docs-test: skip REASON -->`` is not run; REASON is required
  (``make demo`` and ``make test`` are such blocks: they are what runs these tests);
* ``text``/``json``/``yaml``/``pbtxt`` blocks are output or formats, not code. Every fence in
  the files owned by the docs (all but architecture.md, whose diagrams are unlabelled)
  names its language.

Regenerate the CLI reference after changing a parser:
``.venv/bin/python tests/test_docs.py --write-cli``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
UNLABELLED_OK = {ROOT / "docs" / "architecture.md"}  # diagrams in unlabelled fences
RUN_LANGS = {"python", "sh", "bash"}
TEXT_LANGS = {"text", "json", "yaml", "pbtxt"}
FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b(.*?)-->\s*$", re.S)
CLI_DOC = ROOT / "docs" / "cli.md"
CLI_START, CLI_END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"
HELP_COLUMNS = "100"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    skip_reason: str | None  # None: run it

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} ({self.lang or 'unlabelled'})"


def code_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the skip marker right before each."""
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip()
        skip = SKIP.search(before[-400:])
        reason = skip.group(1).strip() if skip else None
        blocks.append(Block(path, text.count("\n", 0, match.start()) + 1, match.group(1),
                            match.group(2), reason))
    return blocks


def shell_commands(code: str) -> list[str]:
    """Commands of a shell block: ``\\`` continuations joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n", " ", code)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(shlex.join(words))
    return commands


# ---------------------------------------------------------------- CLI reference
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    """``gesturert --help`` and every subcommand's (nested ones too), as Markdown.

    Rendered with a fixed width and ``XDG_CACHE_HOME=~/.cache`` so that defaults under
    the home directory (the benchmark bundle cache) read the same on every machine.
    """
    from sdk.cli import build_parser

    fixed = {"COLUMNS": HELP_COLUMNS, "XDG_CACHE_HOME": "~/.cache"}
    saved = {key: os.environ.get(key) for key in fixed}
    os.environ.update(fixed)
    try:
        parser = build_parser()
        parts = ["### `gesturert`\n\n```text\n" + parser.format_help() + "```\n"]

        def add(prefix: str, sub: argparse.ArgumentParser) -> None:
            parts.append(f"### `{prefix}`\n\n```text\n{sub.format_help()}```\n")
            for name, nested in sorted(_subparsers(sub).items()):
                add(f"{prefix} {name}", nested)

        for name, sub in sorted(_subparsers(parser).items()):
            add(f"gesturert {name}", sub)
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    return "\n".join(parts)


def write_cli_reference() -> None:
    text = CLI_DOC.read_text()
    head, _, rest = text.partition(CLI_START)
    _, _, tail = rest.partition(CLI_END)
    CLI_DOC.write_text(f"{head}{CLI_START}\n{cli_reference()}{CLI_END}{tail}")


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def docs_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with a training pose range in its manifest (from standard-normal
    poses), so the docs' pose-range code runs its measuring branch."""
    import dataclasses

    import numpy as np
    from helpers_bundle import build_tiny_bundle

    from sdk.bundle import load_bundle, write_bundle_manifest
    from sdk.pose_range import PoseRange

    shared = tmp_path_factory.getbasetemp() / "tiny_bundle"  # the session's, if built
    if not (shared / "manifest.json").is_file():
        shared = build_tiny_bundle(tmp_path_factory.mktemp("docs") / "tiny_bundle")
    ranged = tmp_path_factory.mktemp("docs") / "bundle"
    shutil.copytree(shared, ranged)
    manifest = load_bundle(ranged).manifest
    poses = np.random.default_rng(0).normal(size=(2000, manifest.skeleton.num_joints, 2))
    write_bundle_manifest(ranged, dataclasses.replace(
        manifest, pose_range=PoseRange.from_poses([poses], manifest.skeleton)))
    return ranged


@pytest.fixture
def workspace(docs_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import soundfile

    from sdk.audio import load_audio
    from sdk.demo import SPEECH_SAMPLE

    shutil.copytree(docs_bundle, tmp_path / "bundle")
    soundfile.write(tmp_path / "speech.wav", load_audio(SPEECH_SAMPLE)[:48000], 16000)
    data = tmp_path / "sdk" / "data"
    shutil.copytree(docs_bundle, data / "default_bundle")
    (data / "samples").mkdir()
    shutil.copy(SPEECH_SAMPLE, data / "samples" / SPEECH_SAMPLE.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_doc_files_exist() -> None:
    names = {p.name for p in DOC_FILES}
    for wanted in ("streaming.md", "bundle.md", "cli.md", "training.md", "tensorrt.md",
                   "validation.md", "scaling.md", "performance.md"):
        assert wanted in names, f"docs/{wanted} is missing"


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_every_fence_is_labelled_and_every_skip_has_a_reason(path: Path) -> None:
    for block in code_blocks(path):
        if path not in UNLABELLED_OK:
            assert block.lang in RUN_LANGS | TEXT_LANGS, (
                f"{block.where()}: label the fence with one of {sorted(RUN_LANGS | TEXT_LANGS)}")
        assert block.skip_reason != "", (
            f"{block.where()}: a docs-test skip marker needs a reason, e.g. "
            "<!-- docs-test: skip needs a GPU -->")


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_code_blocks_run(path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
                         ) -> None:
    from sdk.cli import main

    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in code_blocks(path):
        if block.skip_reason is not None or block.lang not in RUN_LANGS:
            continue
        if block.lang == "python":
            try:
                exec(compile(block.code, block.where(), "exec"), namespace)
            except Exception as exc:
                pytest.fail(f"{block.where()} raised {exc!r}")
            continue
        for command in shell_commands(block.code):
            words = shlex.split(command)
            assert words[0] == "gesturert", (
                f"{block.where()}: `{command}` is not a gesturert command; run it here or mark "
                "the block <!-- docs-test: skip REASON -->")
            code = main(words[1:])
            printed = capsys.readouterr()
            assert code == 0, f"{block.where()}: `{command}` exited {code}:\n{printed.err}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_relative_links_and_pictures_exist(path: Path) -> None:
    for target in LINK.findall(path.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        assert resolved.exists(), f"{path.relative_to(ROOT)} links to missing {target}"


def test_cli_reference_matches_the_parsers() -> None:
    text = CLI_DOC.read_text()
    assert CLI_START in text and CLI_END in text, f"{CLI_DOC} lost its reference markers"
    committed = text.split(CLI_START, 1)[1].split(CLI_END, 1)[0].strip()
    assert committed == cli_reference().strip(), (
        "docs/cli.md is out of date with the argparse parsers; regenerate it with "
        "`.venv/bin/python tests/test_docs.py --write-cli`")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-cli"]:
        write_cli_reference()
        print(f"wrote the CLI reference into {CLI_DOC}")
    else:
        sys.exit("usage: python tests/test_docs.py --write-cli")
