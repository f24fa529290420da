"""The table of detector experiments in benchmarks/results/training/detector_window_labels/,
written from its JSON files (``breakdown/NAME.json`` of ``benchmarks.detector_breakdown``,
``evaluation/NAME.json`` of ``gesturert evaluate``).

    python -m benchmarks.detector_variants [--check]

Rewrites the region between ``<!-- variants -->`` and ``<!-- /variants -->`` of that
directory's README.md; ``--check`` exits 1 when the region is stale.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "benchmarks" / "results" / "training" / "detector_window_labels"
REGION = re.compile(r"(<!-- variants -->\n)(.*?)(<!-- /variants -->)", re.S)

#: variant (file stem) -> how it was trained (`--set` on the default config of its time)
VARIANTS: dict[str, str] = {
    "synthetic_voice_bundle": "the bundle before the voiced corpus: synthetic-voice corpus "
                              "(its own test set)",
    "shipped_any_labels": "the voiced-corpus bundle before this work: `any` labels, clean-only "
                          "detector loss, 1500 steps",
    "complete_labels": "`data.detector_label=complete`",
    "complete_labels_detector_weight_1": "+ `loss.detector_weight=1.0`",
    "complete_labels_augmented_detector": "+ `data.clean_detector=false`",
    "complete_labels_augmented_detector_2000_steps": "+ `data.clean_detector=false "
                                                     "run.steps=2000`",
    "complete_labels_augmented_detector_2000_steps_detector_weight_0.25":
        "+ `data.clean_detector=false run.steps=2000 loss.detector_weight=0.25`",
    "complete_labels_augmented_detector_2000_steps_detector_weight_0.1":
        "+ `data.clean_detector=false run.steps=2000 loss.detector_weight=0.1`",
    "seed1_any_labels": "`run.seed=1` (the config of shipped_any_labels, another seed)",
    "seed1_complete_labels": "`run.seed=1 data.detector_label=complete`",
    "flite_keyword_gain": "complete labels, augmented detector, 2000 steps (the default config "
                          "now) on the corpus whose flite keywords are 6 dB louder (its own "
                          "test set); raw detector score",
    "shipped": "the shipped bundle: flite_keyword_gain's training with "
               "`model.saliency_hold_frames=4` (the output score held over 4 frames)",
}


def _load(kind: str, name: str) -> dict[str, Any] | None:
    path = DIR / kind / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _generator_row(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    generator: dict[str, Any] | None = evaluation["methods"].get("generator")
    return generator


def row(name: str, how: str) -> str:
    """One Markdown row; "—" where a file or value is missing."""
    b = _load("breakdown", name)
    g = _generator_row(_load("evaluation", name))

    def num(value: Any, digits: int = 3) -> str:
        return "—" if value is None else f"{float(value):.{digits}f}"

    groups = (b or {}).get("groups", {})
    frames = (b or {}).get("frames", {})
    cells = [
        name, how, num(b and b["pooled_auc"]), num(b and b["per_sequence_auc"]["median"]),
        num(groups.get("engine", {}).get("espeak-ng", {}).get("auc")),
        num(groups.get("engine", {}).get("flite", {}).get("auc")),
        num(groups.get("held_out_voice", {}).get("True", {}).get("auc")),
        num(frames.get("negatives_above_half")),
        num(frames.get("inside_postures", {}).get("16-24", {}).get("mean_score")),
        num(g and g.get("fgd"), 1), num(g and g.get("psd"), 4),
        num(g and g.get("lip_sync")), num(g and g.get("diversity"), 1)]
    return "| " + " | ".join(cells) + " |"


def table() -> str:
    head = ("| variant | training | pooled AUC | per-sequence median | espeak-ng | flite | "
            "held-out voices | non-salient > 0.5 | posture frames 16-24 mean score | FGD | PSD | "
            "lip-sync r | diversity |\n" + "|---" * 13 + "|\n")
    return head + "\n".join(row(n, h) for n, h in VARIANTS.items()) + "\n"


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    readme = DIR / "README.md"
    text = readme.read_text()
    if not REGION.search(text):
        print(f"{readme}: no <!-- variants --> region", file=sys.stderr)
        return 1
    new = REGION.sub(lambda m: m.group(1) + table() + m.group(3), text)
    if check:
        if new != text:
            print(f"{readme}: the variants table is stale; run python -m "
                  "benchmarks.detector_variants", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
