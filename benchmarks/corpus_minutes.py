"""The generator and the lip-sync probe against the voiced corpus's size (issue 17).

    python -m benchmarks.corpus_minutes     # prints the README's table

One row per corpus size (minutes of speech per voice, `make bundle`'s voices, held-out
voices and styles): the generator trained on it with the default config (its own
PoseSyncNet and FGD encoder: ratios to its own references), its lip-sync r split by
``benchmarks.speaker_breakdown``, and what ``benchmarks.lip_probe`` reaches on the same
held-out sequences from the features alone. The 4-minute row is the shipped bundle's.
Files: :data:`RUNS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "benchmarks" / "results" / "training"
RUNS: dict[int, tuple[Path, Path, Path]] = {  # minutes -> evaluation, breakdown, probe
    4: (TRAINING / "evaluation.json", TRAINING / "speaker_breakdown.json",
        TRAINING / "lip_probe" / "minutes_4.json"),
    **{m: (TRAINING / "corpus_minutes" / f"minutes_{m}" / "evaluation.json",
           TRAINING / "corpus_minutes" / f"minutes_{m}" / "speaker_breakdown.json",
           TRAINING / "lip_probe" / f"minutes_{m}.json") for m in (12, 24)},
}


def _probe_row(probe: dict[str, Any], features: str) -> dict[str, Any]:
    for row in probe["rows"]:
        if row["features"] == features and not row["shuffle_audio"]:
            return row["groups"]  # type: ignore[no-any-return]
    raise ValueError(f"lip probe {probe['name']}: no {features} row")


def row(minutes: int) -> list[str]:
    """One table row; raises ValueError when the three files score different test sets."""
    evaluation, breakdown, probe = (json.loads(p.read_text()) for p in RUNS[minutes])
    mfcc, logmel = _probe_row(probe, "mfcc"), _probe_row(probe, "logmel")
    counts = {evaluation["sequences"], breakdown["sequences"], mfcc["all held-out"]["sequences"]}
    if len(counts) != 1:
        raise ValueError(f"{minutes} min: evaluation, speaker breakdown and lip probe score "
                         f"{sorted(counts)} sequences: not the same test set")
    m = evaluation["methods"]
    gen, mean, truth = m["generator"], m["mean_pose"], m["ground_truth"]
    return [str(minutes), str(evaluation["sequences"]), f"{gen['fgd'] / mean['fgd']:.3f}",
            f"{gen['psd'] / truth['psd']:.2f}", f"{gen['diversity'] / truth['diversity']:.2f}",
            f"{gen['detector_auc']:.3f}",
            f"{gen['lip_sync']:.3f} / {breakdown['lip_sync_training_voices']:.3f} / "
            f"{breakdown['lip_sync_held_out_voices']:.3f}",
            " / ".join(f"{mfcc[g]['lip_sync']:.3f}" for g in
                       ("all held-out", "held-out sentences", "held-out voices")),
            " / ".join(f"{logmel[g]['lip_sync']:.3f}" for g in
                       ("all held-out", "held-out sentences", "held-out voices"))]


def passage() -> str:
    """The README's table (Markdown)."""
    header = ["minutes per voice", "held-out sequences", "FGD / mean pose's ↓",
              "PSD / ground truth's", "diversity / ground truth's", "detector AUC ↑",
              "generator lip-sync r: all / training voices / held-out voices ↑",
              "probe on MFCC (the generator's features)", "probe on log-mel (all 40 bands)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row(m)) + " |" for m in sorted(RUNS)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(passage())
