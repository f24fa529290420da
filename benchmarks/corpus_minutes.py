"""The generator and the lip-sync probe against the voiced corpus's size (issue 17).

    python -m benchmarks.corpus_minutes     # prints the README's table

One row per corpus size (minutes of speech per voice, `make bundle`'s voices, held-out
voices and styles): the generator trained on it with the default config (its own
PoseSyncNet and FGD encoder: ratios to its own references), its lip-sync r split by
``benchmarks.speaker_breakdown``, and what ``benchmarks.lip_probe`` reaches on the same
held-out sequences from the features alone. The 4-minute row is the bundle shipped when
these runs were made (no random level in training, as theirs).
Files: :data:`RUNS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.doc_sources import markdown_table

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "benchmarks" / "results" / "training"
RUNS: dict[int, tuple[Path, Path, Path]] = {  # minutes -> evaluation, breakdown, probe
    4: (TRAINING / "no_gain_augmentation" / "evaluation.json",
        TRAINING / "no_gain_augmentation" / "speaker_breakdown.json",
        TRAINING / "lip_probe" / "minutes_4.json"),
    **{m: (TRAINING / "corpus_minutes" / f"minutes_{m}" / "evaluation.json",
           TRAINING / "corpus_minutes" / f"minutes_{m}" / "speaker_breakdown.json",
           TRAINING / "lip_probe" / f"minutes_{m}.json") for m in (12, 24)},
}


def probe_row(probe: dict[str, Any], features: str) -> dict[str, Any]:
    """The per-group scores (``{"all held-out": {"lip_sync", "sequences", ...}, ...}``) of a
    :mod:`benchmarks.lip_probe` results file's probe on ``features`` with the real audio
    (not the audio-shuffled control); raises ValueError when the file has no such row."""
    for row in probe["rows"]:
        if row["features"] == features and not row["shuffle_audio"]:
            return row["groups"]  # type: ignore[no-any-return]
    raise ValueError(f"lip probe {probe['name']}: no {features} row")


def generator_cells(evaluation: dict[str, Any], breakdown: dict[str, Any],
                    test_set_sizes: list[int], what: str) -> list[str]:
    """A generator run's cells, ratios to its own references: FGD / mean pose's, PSD /
    ground truth's, diversity / ground truth's, detector AUC, lip-sync r all / training
    voices / held-out voices. ``test_set_sizes``: the held-out sequence counts of the other
    files on the row; raises ValueError (naming ``what``) unless all score one test set."""
    counts = {evaluation["sequences"], breakdown["sequences"], *test_set_sizes}
    if len(counts) != 1:
        raise ValueError(f"{what}: evaluation, speaker breakdown and lip probe score "
                         f"{sorted(counts)} sequences: not the same test set")
    m = evaluation["methods"]
    gen, mean, truth = m["generator"], m["mean_pose"], m["ground_truth"]
    return [f"{gen['fgd'] / mean['fgd']:.3f}", f"{gen['psd'] / truth['psd']:.2f}",
            f"{gen['diversity'] / truth['diversity']:.2f}", f"{gen['detector_auc']:.3f}",
            f"{gen['lip_sync']:.3f} / {breakdown['lip_sync_training_voices']:.3f} / "
            f"{breakdown['lip_sync_held_out_voices']:.3f}"]


def probe_cell(groups: dict[str, Any]) -> str:
    """A probe's lip-sync r: all held-out / held-out sentences / held-out voices."""
    return " / ".join(f"{groups[g]['lip_sync']:.3f}" for g in
                      ("all held-out", "held-out sentences", "held-out voices"))


def row(minutes: int) -> list[str]:
    """One table row; raises ValueError when the three files score different test sets."""
    evaluation, breakdown, probe = (json.loads(p.read_text()) for p in RUNS[minutes])
    mfcc, logmel = probe_row(probe, "mfcc"), probe_row(probe, "logmel")
    return [str(minutes), str(evaluation["sequences"]),
            *generator_cells(evaluation, breakdown, [mfcc["all held-out"]["sequences"]],
                             f"{minutes} min"),
            probe_cell(mfcc), probe_cell(logmel)]


def passage() -> str:
    """The README's table (Markdown)."""
    header = ["minutes per voice", "held-out sequences", "FGD / mean pose's ↓",
              "PSD / ground truth's", "diversity / ground truth's", "detector AUC ↑",
              "generator lip-sync r: all / training voices / held-out voices ↑",
              "probe on MFCC (the generator's features)", "probe on log-mel (all 40 bands)"]
    return markdown_table(header, [row(m) for m in sorted(RUNS)])


if __name__ == "__main__":
    print(passage())
