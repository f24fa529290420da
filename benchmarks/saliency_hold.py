"""Choose the generator's ``saliency_hold_frames`` on the *training* sequences.

    python -m benchmarks.saliency_hold GENERATOR_PT --data CORPUS [--out DIR]

The detector is trained on windows with the mean of its top-k frame scores (k = 16),
while a salient posture lasts longer (21-24 frames on the voiced corpus): it learns to fire
on about k frames and fades over the posture's last ones
(``benchmarks/results/training/detector_window_labels``). A causal running maximum of the
score over the current and the h previous frames carries it over that tail without delay.
This script scores the raw detector (``GeneratorOutput.saliency``, whatever hold the
checkpoint has) held over each h of HOLDS: the pooled frame AUC on a sample of the
corpus's training sequences picks h (``chosen``); the held-out sequences' AUC is printed
beside it for information only (they are the test set, never used to choose).
Writes ``DIR/saliency_hold.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from train.metrics.auc import roc_auc

HOLDS = (0, 1, 2, 3, 4, 5, 6, 8, 12)  # frames of hold tried
TRAIN_SEQUENCES = 60  # training sequences sampled (seeded): ~1/2 of the voiced corpus's


def running_max(scores: np.ndarray, hold: int) -> np.ndarray:
    """(T,) scores -> (T,) max of scores[t - hold .. t] (the start padded by nothing)."""
    out = np.array(scores, dtype=np.float64)
    for k in range(1, hold + 1):
        out[k:] = np.maximum(out[k:], scores[:-k])
    return out


def pooled_auc(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], hold: int) -> float:
    """Frame AUC of every sequence's scores held over ``hold`` frames, pooled."""
    held = np.concatenate([running_max(s, hold) for s in scores])
    return roc_auc(held, np.concatenate(labels) > 0.5)


def raw_scores(generator: Path, data: Path, held_out: bool, limit: int | None,
               min_frames: int = 64) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw detector scores (T,) and frame labels (T,) of the corpus's held-out (or
    training) sequences with ground truth, each in its speaker's style, noise seed 0."""
    import torch

    from sdk.features import DEFAULT_FEATURES
    from train.data.styles import speaker_style
    from train.evaluation import generator_output, load_generator_checkpoint
    from train.posesync_data import load_corpus_sequences

    torch.set_num_threads(1)
    model, _ = load_generator_checkpoint(generator)
    picked = [s for s in load_corpus_sequences(data, DEFAULT_FEATURES)
              if s.held_out == held_out and s.saliency is not None and s.num_frames >= min_frames]
    if limit is not None and len(picked) > limit:
        order = np.random.default_rng(0).permutation(len(picked))[:limit]
        picked = [picked[i] for i in sorted(order)]
    scores, labels = [], []
    for seq in picked:
        out = generator_output(model, seq.audio, seq.num_frames, 0,
                               style=speaker_style(data, seq.speaker))
        scores.append(out.aligned_saliency[0].numpy().astype(np.float64))  # raw
        labels.append(np.asarray(seq.saliency))
    if not scores:
        raise ValueError(f"{data}: no {'held-out' if held_out else 'training'} sequence "
                         f"with frame ground truth and >= {min_frames} frames")
    return scores, labels


def sweep(generator: Path, data: Path) -> dict[str, Any]:
    train = raw_scores(generator, data, held_out=False, limit=TRAIN_SEQUENCES)
    test = raw_scores(generator, data, held_out=True, limit=None)
    rows = [{"hold": h, "train_auc": pooled_auc(*train, h), "held_out_auc": pooled_auc(*test, h)}
            for h in HOLDS]
    chosen = max(rows, key=lambda r: r["train_auc"])["hold"]
    return {"generator": str(generator), "data": str(data), "train_sequences": len(train[0]),
            "held_out_sequences": len(test[0]), "rows": rows, "chosen": chosen}


def to_markdown(report: dict[str, Any]) -> str:
    lines = ["# Saliency hold: chosen on training sequences", "",
             f"Generator `{report['generator']}`, corpus `{report['data']}`: pooled frame AUC "
             f"of the raw detector score held over h frames, on {report['train_sequences']} "
             f"training sequences (chooses h) and the {report['held_out_sequences']} held-out "
             "sequences (the test set: shown, not used). `python -m benchmarks.saliency_hold`.",
             "", "| h (frames) | training AUC | held-out AUC |", "|---|---|---|"]
    lines += [f"| {r['hold']}{' (chosen)' if r['hold'] == report['chosen'] else ''} | "
              f"{r['train_auc']:.4f} | {r['held_out_auc']:.4f} |" for r in report["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("generator", type=Path, help="generator.pt checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="corpus directory")
    parser.add_argument("--out", type=Path, default=None, help="directory for the report")
    args = parser.parse_args(argv)
    report = sweep(args.generator, args.data)
    markdown = to_markdown(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "saliency_hold.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "saliency_hold.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
