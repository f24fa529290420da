"""Numbers in the docs come from committed results files: generated passages + a checker.

A passage of README.md, RELIABILITY.md, benchmarks/README.md or docs/*.md that quotes
results is a *region*, written from the results by the generators of
:mod:`benchmarks.doc_passages` (``REGIONS``) and marked in the Markdown (inline or as a
block):

    <!-- results:bench_goals -->
    ...generated, do not edit...
    <!-- /results -->

``python -m benchmarks.doc_results`` rewrites every region from the committed results;
``--check`` only reports stale ones (tests/test_doc_numbers.py runs both checks).

Outside regions, :func:`unsourced_numbers` finds every number that looks measured (a
decimal, ``1e-4``, ``~N``, or a number with a unit such as ms, s, x, %, streams, clips/s,
px, MiB) in prose and in quoted output (``text`` blocks), and accepts it only when
:data:`NOT_MEASURED` lists it with the reason it is not a result (a spec, a goal, a test's
input or bound). A ``text`` block right after ``<!-- output-checked-by: tests/X.py -->``
is skipped when that test exists and reads the doc (it compares the quote with a run).
Not checked: integers without a unit, and code blocks (``sh``, ``python``: commands).

A new results file: add it to ``SOURCES`` in benchmarks/doc_passages.py, a generator to
``REGIONS`` there, and mark the passage.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.doc_passages import REGIONS, ROOT, SOURCES

DOC_FILES = (ROOT / "README.md", ROOT / "RELIABILITY.md", ROOT / "benchmarks" / "README.md",
             *sorted((ROOT / "docs").glob("*.md")))
GENERATED_ELSEWHERE = {ROOT / "docs" / "cli.md"}  # written from the argparse parsers
REGION = re.compile(r"<!-- results:([a-z0-9_]+) -->(.*?)<!-- /results -->", re.S)
COMMAND = "python -m benchmarks.doc_results"


# ---------------------------------------------------------------- regions
@dataclass(frozen=True)
class Problem:
    """One thing wrong with a doc file; ``str()`` is the message for the person fixing it."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        shown = self.path.resolve().relative_to(ROOT) if self.path.resolve().is_relative_to(
            ROOT) else self.path
        return f"{shown}:{self.line}: {self.message}"


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def render_regions(text: str, path: Path) -> tuple[str, list[Problem]]:
    """``text`` with every region regenerated, and the problems (unknown region names)."""
    problems: list[Problem] = []

    def fill(match: re.Match[str]) -> str:
        name, old = match.group(1), match.group(2)
        if name not in REGIONS:
            problems.append(Problem(path, _line(text, match.start()),
                                    f"unknown results region '{name}'; known: "
                                    f"{', '.join(sorted(REGIONS))} (benchmarks/doc_passages.py)"))
            return match.group(0)
        body = REGIONS[name]()
        if old.startswith("\n"):  # a block region keeps its own lines
            body = f"\n{body}\n"
        return f"<!-- results:{name} -->{body}<!-- /results -->"

    return REGION.sub(fill, text), problems


def stale_regions(path: Path) -> list[Problem]:
    """The regions of ``path`` whose text is not what the results give now."""
    text = path.read_text()
    fresh, problems = render_regions(text, path)
    now = {m.start(): m for m in REGION.finditer(fresh)}
    for old, new in zip(REGION.finditer(text), now.values(), strict=True):
        if old.group(0) != new.group(0):
            problems.append(Problem(path, _line(text, old.start()), (
                f"results region '{old.group(1)}' is stale: the results give\n"
                f"{new.group(2).strip()}\nrewrite it with `{COMMAND}`")))
    return problems


def write_regions(paths: tuple[Path, ...] = DOC_FILES) -> list[Path]:
    """Regenerate every region in place; returns the files that changed."""
    changed = []
    for path in paths:
        text = path.read_text()
        fresh, problems = render_regions(text, path)
        if problems:
            raise ValueError("\n".join(map(str, problems)))
        if fresh != text:
            path.write_text(fresh)
            changed.append(path)
    return changed


# ---------------------------------------------------------------- numbers outside regions
UNIT = (r"(?:ms|µs|us|s|min|minutes|hours|h|x|×|%|\s%|streams|clips/s|px|GFLOP/s|KB|MB|GB|"
        r"MiB|GiB|KiB|Hz|kHz|fps|dB)")
#: Numbers that look measured but are not results: text as written -> why. Shared by every
#: doc file; add to it only what is a spec, a goal, a test's input or bound, or a version.
#: An entry no doc uses any more is reported too (tests/test_doc_numbers.py).
_RATES = "a sample rate used as an input (test files, streams) or the accepted range"
_INPUT = "an input of a test or benchmark (sizes, durations, counts it is run with)"
_TOL = "a tolerance or threshold: a spec the code checks against, not a measurement"
NOT_MEASURED: dict[str, str] = {
    "4 minutes": "minutes of speech per voice in the default bundle's corpus (the Makefile's "
                 "BUNDLE_CORPUS, an input of make bundle)",
    "16 kHz": "the model's sample rate (sdk/features.py FeatureConfig)",
    "100 Hz": "the MFCC frame rate, 16 kHz / hop 160 (sdk/features.py)",
    "15 fps": "the pose frame rate (sdk/features.py FeatureConfig)",
    "66.7": "the pose frame period 1000/15 ms (sdk/features.py)",
    "66.7 ms": "the pose frame period 1000/15 ms (sdk/features.py)",
    "133 ms": "2 frames of lookahead at 15 fps (the default config)",
    "142.7 ms": "algorithmic latency of L = 2, derived from the feature spec "
                "(StreamingGenerator.algorithmic_latency_seconds; tests/test_demo.py prints it)",
    "4 kHz": _RATES, "768 kHz": _RATES, "4000–768000 Hz": _RATES, "8 kHz": _RATES,
    "22.05": _RATES, "22.05 kHz": _RATES, "44.1": _RATES, "44.1 kHz": _RATES,
    "48 kHz": _RATES, "96 kHz": _RATES, "48000.0": _RATES, "1 Hz": _RATES, "647 Hz": _RATES,
    "20 ms": _INPUT, "200 ms": _INPUT, "1000 ms": _INPUT, "1024 streams": _INPUT,
    "0.4 s": _INPUT, "1 s": _INPUT, "4 s": _INPUT,
    "5 s": _INPUT + "; docs/scaling.md: Triton's idle-sequence timeout (config)",
    "10 s": _INPUT, "300 s": _INPUT, "0.5": _INPUT + "; architecture.md: ImagingConfig",
    "4.8": _INPUT + " (a 4.8 M-sample chunk)", "16 streams": _INPUT, "2 streams": _INPUT,
    "4 streams": _INPUT, "4 KB": _INPUT, "24 MiB": _INPUT, "1 MiB": _INPUT, "60 %": _INPUT,
    "1.1": _INPUT + " (a weight scaled by 1.1, the fault a test injects)",
    "15.7 s": "the length of the shipped sample file sdk/data/samples/speech_en.flac",
    "256 streams": "the default TensorRT batch profile's max (manifest batch_profile)",
    "1.0": "ImagingConfig.half_width (docs/architecture.md), a spec",
    "2.5": "ImagingConfig.y_max (docs/architecture.md), a spec",
    "9.0": "an example compute capability string",
    "3.10": "the Python version required",
    "16 MiB": _TOL + " (the soak's memory bound)",
    "10 GB": "the allocation a 1 Hz WAV header made soxr attempt (a fixed bug's description)",
    "0.5 %": _TOL + " (fp32 PSD, manifest psd_reference.tolerance_fp32)",
    "2 %": _TOL + " (fp16 PSD, manifest psd_reference.tolerance_fp16)",
    "0.03": _TOL + " (BC threshold, TED Gesture)", "0.001": _TOL + " (BC all joints)",
    "1e-6": _TOL, "1e-5": _TOL, "1e-4": _TOL, "1e-3": _TOL,
    "1e-4 px": "the rounding of keypoints in the live protocol's JSON frames (a spec)",
    "1e-3 px": _TOL + " (live client frames vs gesturert stream, tests/test_live_server.py)",
    "4 MiB": "the WebSocket frame limit the live server sets, 4 x max_message_bytes "
             "(sdk/live/server.py)",
    "2 s": "the live server's per-stream audio backlog cap (sdk/live/config.py, a limit)",
    "64 KiB": "a socket send buffer size the live server sets (sdk/live/server.py)",
    "32 KiB": "the websockets library's write buffer limit (sdk/live/server.py)",
    "256 KiB": "the live server's outbound-bytes bound per connection (sdk/live/server.py)",
    "143 ms": "the shipped bundle's algorithmic latency (L = 2 at 15 fps), derived from the spec",
    "250 ms": "the live server's overload threshold (sdk/live/config.py), a setting",
    "3600s": "a tunnel timeout in the shipped HAProxy/nginx configurations (deploy/), a setting",
    "100 x": _TOL + " (fp32 = 100 x the deviation measured at export, sdk/golden.py)",
    "100x": _TOL + " (fp32 = 100 x the deviation measured at export, sdk/golden.py)",
    "10 x": _TOL + " (fp16 = 10 x the deviation of float16 weights, sdk/golden.py)",
    "10x": _TOL + " (the margin validation requires of a pristine bundle, issue 15)",
    "1-256 streams": _INPUT + " (the step benchmark's batch sweep)",
    "64 streams": _INPUT + " (StreamBatch's model batch, sdk/stream_batch.py)",
    "2.6": "the HAProxy version the shipped configuration needs (deploy/haproxy)",
    "1.22": "the nginx version the shipped configuration needs (deploy/nginx)",
    "3600 s": "a tunnel timeout in the shipped HAProxy/nginx configurations (deploy/), a setting",
    "6 minutes": "the time limit make gpu-check keeps to (scripts/gpu_check.py), a goal",
    "3.12": "the Python version of the lent GPU machine's image",
    "8192 streams": _INPUT + " (gpu_streams' largest stream count)",
    "6 dB": "the loudness of an emphasised word in the voiced corpus's SSML (a setting)",
    "20 dB": _TOL + " (vowels louder than pauses: the voiced corpus's timing check)",
    "90%": _TOL + " (share of vowels that must pass the timing check)",
    "0.1%": _TOL + " (issue 17's training-range limit before 2026-12-04, values beyond 4 SD; "
                   "benchmarks/voices_acceptance.py BEYOND_4SD_MAX)",
    "30 ms": _TOL + " (vowel labels vs the low-band energy: the timing check)",
    "150 ms": _INPUT + " (the shifted-label control of the timing check)",
    "0.2 s": "import-openpose's longest interpolated gap (train/data/openpose.py), a setting",
    "4.27 s": "one training window, 64 frames at 15 fps (train/configs/generator.yaml), a spec",
    "6 s": _INPUT + " (the docs example's synthetic recording)",
}

#: (file, text) quoted in a page another engineer is rewriting: allowed until then, and
#: reported as unused (so deleted here) once the rewrite removes it.
PENDING_REWRITE: dict[tuple[str, str], str] = {}


FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
CHECKED_OUTPUT = re.compile(r"<!--\s*output-checked-by:\s*(\S+)\s*-->$")


def _blank(match: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


def _output_checked(text: str, start: int, path: Path) -> bool:
    """Whether the fence at ``start`` follows ``<!-- output-checked-by: TEST -->`` naming a
    test file that exists and reads this doc (it compares the quoted output with a run)."""
    marker = CHECKED_OUTPUT.search(text[:start].rstrip())
    if marker is None:
        return False
    test = ROOT / marker.group(1)
    return test.is_file() and path.name in test.read_text()


# A passage another module writes from a results file, between <!-- NAME:start --> and
# <!-- NAME:end -->: checked by the test that names NAME (it regenerates the passage from
# the committed results and compares), so this checker leaves it to that test.
GENERATED_BLOCK = re.compile(r"<!-- ([a-z0-9-]+):start -->.*?<!-- \1:end -->", re.S)


def _block_tested(name: str) -> bool:
    """Whether a test under tests/ names the generated block ``name``."""
    return any(f'"{name}"' in test.read_text() or f"{name}:start" in test.read_text()
               for test in (ROOT / "tests").glob("test_*.py"))


def _scannable(text: str, path: Path) -> str:
    """``text`` with what is not prose blanked out (same length, so offsets keep lines):
    code blocks, inline code, HTML comments, regions, link targets. A ``text`` block is
    quoted output and stays, unless a test checks it (:func:`_output_checked`)."""
    def fence(match: re.Match[str]) -> str:
        if match.group(1) == "text" and not _output_checked(text, match.start(), path):
            body_start, body_end = match.span(2)
            return (" " * (body_start - match.start() - 1) + "\n" + match.group(2)
                    + " " * (match.end() - body_end))
        return _blank(match)

    text = FENCE.sub(fence, text)
    text = GENERATED_BLOCK.sub(lambda m: _blank(m) if _block_tested(m.group(1)) else m.group(0),
                               text)
    for pattern in (REGION.pattern, r"<!--.*?-->", r"`[^`\n]*`", r"\]\([^)]*\)"):
        text = re.sub(pattern, _blank, text, flags=re.M | re.S)
    return text


NUMBER = re.compile(
    r"(?<![\w.+/-])~?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?:\s?[-–]\s?\d+(?:\.\d+)?)?"
    r"(?:\s?" + UNIT + r"(?![\w/]))?")


def _relative(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def quoted_numbers(path: Path) -> set[str]:
    """Every measured-looking number of ``path`` outside regions, as written."""
    return {m.group(0).strip() for m in NUMBER.finditer(_scannable(path.read_text(), path))}


def unused_exemptions(paths: tuple[Path, ...]) -> list[str]:
    """NOT_MEASURED / PENDING_REWRITE entries that no doc quotes any more."""
    quoted = {(_relative(p), n) for p in paths for n in quoted_numbers(p)}
    anywhere = {n for _, n in quoted}
    return ([f"NOT_MEASURED['{n}']" for n in NOT_MEASURED if n not in anywhere]
            + [f"PENDING_REWRITE[{key}]" for key in PENDING_REWRITE if key not in quoted])


def unsourced_numbers(path: Path, text: str | None = None) -> list[Problem]:
    """Measured-looking numbers of ``path`` outside regions and not in NOT_MEASURED."""
    text = path.read_text() if text is None else text
    problems = []
    for match in NUMBER.finditer(_scannable(text, path)):
        quoted = match.group(0).strip()
        has_unit = bool(re.search(UNIT + r"$", quoted)) and not quoted[-1].isdigit()
        if not (has_unit or "." in quoted or "e" in quoted or quoted.startswith("~")):
            continue
        if re.match(r"\d+\.\d+\.\d+", text[match.start():match.end() + 4]):
            continue  # a version (1.32.0)
        if quoted in NOT_MEASURED or (_relative(path), quoted) in PENDING_REWRITE:
            continue
        problems.append(Problem(path, _line(text, match.start()), (
            f"'{quoted}' looks like a measured number but is not in a results region. "
            f"Quote it from a committed results file ({', '.join(sorted(SOURCES))}: "
            f"benchmarks/doc_passages.py SOURCES) through a region <!-- results:NAME --> "
            f"... <!-- /results --> generated by REGIONS there (`{COMMAND}`), remove it, "
            f"or, if it is a spec, goal, test input or version, add '{quoted}' to "
            f"NOT_MEASURED there with the reason")))
    return problems


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print(f"usage: {COMMAND} [--check]", file=sys.stderr)
        return 2
    files = tuple(p for p in DOC_FILES if p not in GENERATED_ELSEWHERE)
    if argv == ["--check"]:
        problems = [p for path in files for p in stale_regions(path) + unsourced_numbers(path)]
        print("\n".join(map(str, problems)) or "every quoted number is sourced")
        return 1 if problems else 0
    for path in write_regions(files):
        print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
