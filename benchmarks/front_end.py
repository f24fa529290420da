"""The generator fed other audio front ends than the bundle's 13 MFCCs (issue 17).

    python -m benchmarks.front_end     # prints the README's table

``benchmarks.lip_probe`` found that all 40 log-mel bands tell a features-only probe more
about the lips than the 13 MFCCs, most for the voices never heard. These runs ask whether
the generator gains the same: `make bundle`'s corpus and default configs, every model
(PoseSyncNet, FGD encoder, generator) trained on the other front end, the corpus's
held-out sequences evaluated (ratios to each run's own references), the lip-sync r split by
``benchmarks.speaker_breakdown``, beside the probe on the same features. The first row is
the shipped bundle. How each run was made: ``benchmarks/results/training/front_end/README.md``.
Files: :data:`RUNS`.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.corpus_minutes import generator_cells, probe_cell, probe_row

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "benchmarks" / "results" / "training"
FRONT_END = TRAINING / "front_end"
PROBE = TRAINING / "lip_probe"
RUNS: dict[str, tuple[str, Path, Path, Path, str]] = {
    # name -> (features per pose frame, evaluation, breakdown, probe file, probe kind)
    "13 MFCCs (shipped)": ("7 x 13", TRAINING / "evaluation.json",
                           TRAINING / "speaker_breakdown.json", PROBE / "minutes_4.json",
                           "mfcc"),
    "40 MFCCs": ("7 x 40", FRONT_END / "mfcc_40" / "evaluation.json",
                 FRONT_END / "mfcc_40" / "speaker_breakdown.json",
                 PROBE / "minutes_4_mfcc40.json", "mfcc40"),
    "40 log-mel bands": ("7 x 40", FRONT_END / "logmel_40" / "evaluation.json",
                         FRONT_END / "logmel_40" / "speaker_breakdown.json",
                         PROBE / "minutes_4.json", "logmel"),
}


def row(name: str) -> list[str]:
    """One table row; raises ValueError when its files score different test sets."""
    features, *paths, kind = RUNS[name]
    evaluation, breakdown, probe = (json.loads(p.read_text()) for p in paths)
    groups = probe_row(probe, kind)
    return [name, features,
            *generator_cells(evaluation, breakdown, [groups["all held-out"]["sequences"]],
                             name),
            probe_cell(groups)]


def passage() -> str:
    """The README's table (Markdown)."""
    header = ["generator's front end", "values per pose frame", "FGD / mean pose's ↓",
              "PSD / ground truth's", "diversity / ground truth's", "detector AUC ↑",
              "generator lip-sync r: all / training voices / held-out voices ↑",
              "probe on the same features"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row(name)) + " |" for name in RUNS]
    return "\n".join(lines)


if __name__ == "__main__":
    print(passage())
