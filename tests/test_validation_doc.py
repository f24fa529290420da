"""The numbers docs/validation.md quotes are the committed results files, as generated here.

Two generated passages, between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``:

* ``validation-default`` from benchmarks/results/validation/validate.json
  (``gesturert validate sdk/data/default_bundle --out benchmarks/results/validation``);
* ``validation-tamper`` from benchmarks/results/validation/tamper.json
  (``python -m export.tamper sdk/data/default_bundle --out benchmarks/results/validation``).

Regenerate after rerunning either: ``.venv/bin/python tests/test_validation_doc.py --write``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "validation.md"
RESULTS = ROOT / "benchmarks" / "results" / "validation"


def _fmt(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.3g}"


def default_passage(data: dict[str, Any]) -> str:
    """The default bundle's validation: worst value per metric on onnxruntime-cpu."""
    ref, machine = data["reference"], data["machine"]
    worst: dict[str, dict[str, Any]] = {}
    for check in data["checks"]:
        if check["backend"] in ("onnxruntime-cpu", "numpy"):
            best = worst.get(check["metric"])
            if best is None or check["value"] > best["value"]:
                worst[check["metric"]] = check
    lines = [
        f"`gesturert validate {data['bundle']}` on {machine['processor']} ({machine['cpus']} "
        f"cores, load average {machine['load_average_1_5_15'][0]:.1f}: a shared, loaded "
        f"machine), onnxruntime {machine['versions'].get('onnxruntime', '?')}; golden "
        f"reference recorded at code {ref['provenance']['code_revision']} with torch "
        f"{ref['provenance']['torch']}, librosa {ref['provenance']['librosa']}. Exit code "
        f"{data['exit_code']}.", "",
        "| stage | metric | worst (onnxruntime-cpu, all groups and modes) | fp32 tolerance | "
        "margin | measured at export | fp16 tolerance |", "|---|---|---|---|---|---|---|"]
    for metric, check in worst.items():
        margin = "-" if not check["tolerance"] else f"{check['margin']:.0f}x" \
            if check["margin"] is not None and not math.isinf(check["margin"]) else "inf"
        lines.append(f"| {check['stage']} | {metric} | {_fmt(check['value'])} {check['unit']} "
                     f"| {_fmt(check['tolerance'])} | {margin} | "
                     f"{_fmt(ref['measured_at_export']['fp32'][metric])} | "
                     f"{_fmt(ref['tolerances']['fp16'][metric])} |")
    lines += ["", f"Smallest fp32 margin (tolerance / value, over every check with a nonzero "
              f"tolerance): {data['min_margin']['fp32']:.0f}x. Golden PSD {ref['psd']:.4f}, "
              f"offset {ref['offset']:+d}, confidence {ref['confidence']:.4f}.",
              "", "Not run on that machine:"]
    lines += [f"- {name}: {why}" for name, why in data["skipped"].items()]
    return "\n".join(lines)


def tamper_passage(data: dict[str, Any]) -> str:
    from export.tamper import corpus_markdown

    return corpus_markdown(data["bundle"], data["cases"]).split("\n", 2)[2].rstrip("\n")


PASSAGES = {"validation-default": ("validate.json", default_passage),
            "validation-tamper": ("tamper.json", tamper_passage)}


def generated(name: str) -> str:
    file, make = PASSAGES[name]
    return make(json.loads((RESULTS / file).read_text()))


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {name}:start -->\n)(.*?)(<!-- {name}:end -->)", re.S)


def test_the_quoted_results_are_the_committed_ones() -> None:
    text = DOC.read_text()
    for name in PASSAGES:
        match = _block(name).search(text)
        assert match, f"docs/validation.md lacks the {name} block"
        assert match.group(2) == generated(name) + "\n", (
            f"docs/validation.md {name} differs from {PASSAGES[name][0]}: run "
            ".venv/bin/python tests/test_validation_doc.py --write")


def test_the_default_bundle_passed_and_every_fault_failed_naming_its_stage() -> None:
    validate = json.loads((RESULTS / "validate.json").read_text())
    assert validate["passed"] and validate["min_margin"]["fp32"] >= 10
    cases = json.loads((RESULTS / "tamper.json").read_text())["cases"]
    assert cases[0]["fault"] == "pristine" and cases[0]["exit_code"] == 0
    assert all(c["exit_code"] == 1 and c["named"] for c in cases[1:])


if __name__ == "__main__" and "--write" in sys.argv:
    text = DOC.read_text()
    for name in PASSAGES:
        text = _block(name).sub(lambda m, n=name: m.group(1) + generated(n) + "\n" + m.group(3),
                                text)
    DOC.write_text(text)
    print(f"wrote the generated passages into {DOC}")
