"""Regenerate every committed result that depends on the shipped default bundle.

After ``sdk/data/default_bundle`` changes (``make bundle``, ``gesturert export-step`` ...)::

    python scripts/refresh_bundle_results.py [--corpus WORK/corpus] [--skip STEP ...]

runs, in this order (each from this checkout, so a git worktree regenerates its own):

* ``robustness``: ``python -m train.robustness`` on the shipped sample ->
  benchmarks/results/robustness/default_bundle.{json,md}
* ``voices``: ``python -m benchmarks.voices_acceptance``, clean and under every recording
  condition (``--condition``, benchmarks/recording_conditions.py), and clean 6 dB quieter
  and louder (``--gain-db``) ->
  benchmarks/results/voices/ (needs ``--corpus``, the voiced corpus of ``make bundle``;
  skipped without it, saying so)
* ``recorded-voice``: ``python -m benchmarks.recorded_voice`` (alsa-utils' recorded speech
  prompts, needs no corpus) -> benchmarks/results/voices/recorded_voice.*
* ``languages``: ``python -m benchmarks.languages_never_heard`` (espeak-ng in languages the
  corpus does not speak) -> benchmarks/results/voices/languages_never_heard.*
* ``long-stream``: ``python -m benchmarks.long_stream`` (ten minutes of them through one
  stream) -> benchmarks/results/voices/long_stream.*
* ``validate``: ``gesturert validate`` -> benchmarks/results/validation/validate.*
* ``tamper``: ``python -m export.tamper`` -> benchmarks/results/validation/tamper.*
* ``validation-doc``: ``python tests/test_validation_doc.py --write``
* ``demo``: ``gesturert demo``; its printed output replaces the README's block after
  ``<!-- output-checked-by: tests/test_demo.py -->``, its plot and the video frame at 4 s
  replace docs/img/demo_plot.png and docs/img/demo_frame.png
* ``resampler-quality``: ``python -m benchmarks.resampler_quality`` (keypoints through the
  bundle's model) -> benchmarks/results/step_gemm/resampler_quality.*
* ``doc-results``: ``python -m benchmarks.doc_results`` (every generated passage)

Stops at the first step that fails (its exit code). Timing benchmarks (step_gemm, serve,
bench) are not here: they want an idle machine and are run on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = "sdk/data/default_bundle"
SAMPLE = "sdk/data/samples/speech_en.flac"
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"
DEMO_MARK = "<!-- output-checked-by: tests/test_demo.py -->\n```text\n"
DEMO_OUT = REPO / "out" / "demo"
FRAME_SECONDS = 4  # the video frame shown in the README
STEPS = ("robustness", "voices", "recorded-voice", "languages", "long-stream", "validate",
         "tamper", "validation-doc", "demo", "resampler-quality", "doc-results")

ROBUSTNESS_HEAD = """# The shipped default bundle on out-of-corpus speech

`python -m train.robustness {bundle} {sample} --json {json}{corpus}`
(the measures are defined in [robustness.md](robustness.md) and train/robustness.py; the
bundle runs through the SDK, `StreamingGenerator.generate`{corpus_note}). Written by
scripts/refresh_bundle_results.py from the JSON.

"""


def replace_demo_block(readme: str, output: str) -> str:
    """``readme`` with the demo's printed ``output`` as the block after ``DEMO_MARK``.

    Raises:
        ValueError: the README has no such block (or it is not closed).
    """
    start = readme.find(DEMO_MARK)
    if start < 0:
        raise ValueError(f"README has no block starting {DEMO_MARK!r}")
    body = start + len(DEMO_MARK)
    end = readme.find("\n```", body - 1)
    if end < 0:
        raise ValueError("the README's demo block is not closed with ```")
    return readme[:body] + output.strip("\n") + readme[end:]


def robustness_markdown(result: dict) -> str:
    """default_bundle.md from train.robustness's JSON (one row per audio file; measured
    with ``--corpus``, the corpus of make bundle, when the JSON names one)."""
    with_corpus = result.get("corpus") is not None
    rows = result["results"]
    keys = list(next(iter(rows.values())))
    lines = ["| audio | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for path, row in rows.items():
        lines.append(f"| {Path(path).name} | "
                     + " | ".join(f"{row[k]:.3g}" for k in keys) + " |")
    head = ROBUSTNESS_HEAD.format(
        bundle=result["model"], sample=SAMPLE,
        json="benchmarks/results/robustness/default_bundle.json",
        corpus=" --corpus CORPUS" if with_corpus else "",
        corpus_note=("; CORPUS: the voiced corpus of `make bundle`, whose training clips "
                     "give the training range") if with_corpus else "")
    return head + "\n".join(lines) + "\n"


def _run(argv: Sequence[str], capture: bool = False,
         ok: frozenset[int] = frozenset({0})) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGV`` in this checkout; exit (naming the command) unless its exit
    status is in ``ok``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's code, not an installed one
    print("$ " + " ".join(argv), flush=True)
    done = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, text=True,
                          capture_output=capture)
    if done.returncode not in ok:
        if capture:
            sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"refresh_bundle_results: {' '.join(argv)} exited {done.returncode}")
    return done


def refresh(corpus: Path | None, skip: Sequence[str]) -> None:
    if "robustness" not in skip:
        out = RESULTS / "robustness" / "default_bundle.json"
        with_corpus = ["--corpus", str(corpus)] if corpus is not None else []
        _run(["-m", "train.robustness", BUNDLE, SAMPLE, "--json", str(out.relative_to(REPO)),
              *with_corpus])
        out.with_suffix(".md").write_text(robustness_markdown(json.loads(out.read_text())))
    if "voices" not in skip:
        if corpus is None:
            print("voices: skipped (no --corpus; benchmarks/results/voices/ left as it is)")
        else:
            from benchmarks.recording_conditions import CONDITIONS

            variants = ([[] if c == "clean" else ["--condition", c] for c in CONDITIONS]
                        + [["--gain-db=-6"], ["--gain-db=6"]])
            for extra in variants:
                # exit 1: a criterion missed, which is a result to record, not a failure
                _run(["-m", "benchmarks.voices_acceptance", BUNDLE, "--corpus", str(corpus),
                      *extra], ok=frozenset({0, 1}))
    if "recorded-voice" not in skip:  # exit 1 is a result to record, as for voices
        _run(["-m", "benchmarks.recorded_voice", BUNDLE], ok=frozenset({0, 1}))
    if "languages" not in skip:
        _run(["-m", "benchmarks.languages_never_heard", BUNDLE], ok=frozenset({0, 1}))
    if "long-stream" not in skip:
        _run(["-m", "benchmarks.long_stream", BUNDLE], ok=frozenset({0, 1}))
    if "validate" not in skip:
        _run(["-m", "sdk.cli", "validate", BUNDLE, "--out", "benchmarks/results/validation"])
    if "tamper" not in skip:
        _run(["-m", "export.tamper", BUNDLE, "--out", "benchmarks/results/validation"])
    if "validation-doc" not in skip:
        _run(["tests/test_validation_doc.py", "--write"])
    if "demo" not in skip:
        _refresh_demo()
    if "resampler-quality" not in skip:
        _run(["-m", "benchmarks.resampler_quality"])
    if "doc-results" not in skip:
        _run(["-m", "benchmarks.doc_results"])


def _refresh_demo() -> None:
    import imageio_ffmpeg

    done = _run(["-m", "sdk.cli", "demo", "--out", str(DEMO_OUT.relative_to(REPO))],
                capture=True)
    README.write_text(replace_demo_block(README.read_text(), done.stdout))
    shutil.copyfile(DEMO_OUT / "demo.png", REPO / "docs" / "img" / "demo_plot.png")
    frame = REPO / "docs" / "img" / "demo_frame.png"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-ss",
                    str(FRAME_SECONDS), "-i", str(DEMO_OUT / "demo.mp4"), "-frames:v", "1",
                    str(frame)], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=None,
                        help="the voiced corpus of `make bundle` (for the voices step)")
    parser.add_argument("--skip", nargs="*", default=[], choices=STEPS, help="steps to skip")
    args = parser.parse_args(argv)
    refresh(args.corpus, args.skip)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
