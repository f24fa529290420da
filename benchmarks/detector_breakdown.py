"""Where a generator's salient-posture detector gains and loses frame AUC on a corpus's
held-out split: per gesture style, voice, engine, held-out voice; pooled vs per sequence;
by frame position inside a posture; false alarms by distance to the nearest posture.

    python -m benchmarks.detector_breakdown GENERATOR_PT --data CORPUS [--out DIR --name N]

``gesturert evaluate`` reports one number, :func:`train.metrics.auc.detector_frame_auc`:
the ROC AUC over all held-out frames pooled. The same frames and scores here (the held-out
sequences ``gesturert evaluate`` scores, each generated from its own audio in its own
style, noise seed 0; :func:`train.evaluation.generate`), split by group. A group's AUC
pools its frames only, so a detector whose scores are offset between voices scores higher
per voice than pooled (the pooled number is the one a fixed threshold sees). Writes
``DIR/N.json`` and ``DIR/N.md``; prints the Markdown.
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

#: posture frame ranges [lo, hi) since the posture's first frame
POSITION_BINS = ((0, 2), (2, 4), (4, 8), (8, 16), (16, 24), (24, 10_000))
#: signed distance bins (frames) of non-salient frames: < 0 before a posture, > 0 after
DISTANCE_BINS = ((-10_000, -8), (-8, 0), (1, 9), (9, 10_000))


def grouped_auc(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                groups: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per group name: frame AUC of its sequences pooled, salient share, sequences.

    Args:
        scores, labels: per sequence (T_k,) float scores and {0, 1} frame labels.
        groups: per sequence its group's name.
    Returns:
        name -> {"auc" (NaN when the group has one class only), "salient", "sequences"}.
    """
    out: dict[str, dict[str, float]] = {}
    for name in sorted(set(groups)):
        picked = [k for k, g in enumerate(groups) if g == name]
        s = np.concatenate([scores[k] for k in picked])
        y = np.concatenate([labels[k] for k in picked]) > 0.5
        auc = roc_auc(s, y) if 0 < y.sum() < y.size else float("nan")
        out[name] = {"auc": auc, "salient": float(y.mean()), "sequences": float(len(picked))}
    return out


def posture_geometry(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of (T,) {0, 1} labels: position inside its posture (-1 off postures) and
    signed distance to the nearest posture for the others (0 on postures; < 0 before the
    next posture's first frame, > 0 after the previous one's last; +-10**6 with none)."""
    salient = np.asarray(labels) > 0.5
    idx = np.arange(salient.size)
    edges = np.diff(np.concatenate([[0], salient.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    position = np.full(salient.size, -1)
    distance = np.full(salient.size, 10**6)
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        position[a:b] = np.arange(b - a)
        for d in (np.where(idx < a, idx - a, 10**6), np.where(idx >= b, idx - b + 1, 10**6)):
            distance = np.where(np.abs(d) < np.abs(distance), d, distance)
    distance[salient] = 0
    return position, distance


def frame_profile(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]
                  ) -> dict[str, Any]:
    """Mean score and AUC against every non-salient frame, per posture-position bin; share
    of non-salient frames scoring > 0.5 per distance bin."""
    geometry = [posture_geometry(y) for y in labels]
    s = np.concatenate(list(scores))
    y = np.concatenate(list(labels)) > 0.5
    position = np.concatenate([g[0] for g in geometry])
    distance = np.concatenate([g[1] for g in geometry])
    negatives = s[~y]
    inside = {}
    for lo, hi in POSITION_BINS:
        m = y & (position >= lo) & (position < hi)
        if m.any():
            both = np.concatenate([s[m], negatives])
            truth = np.concatenate([np.ones(m.sum()), np.zeros(negatives.size)])
            inside[f"{lo}-{hi}"] = {"mean_score": float(s[m].mean()),
                                    "auc_vs_negatives": roc_auc(both, truth),
                                    "frames": float(m.sum())}
    outside = {}
    for lo, hi in DISTANCE_BINS:
        m = ~y & (distance >= lo) & (distance < hi)
        if m.any():
            outside[f"{lo}..{hi}"] = {"above_half": float(np.mean(s[m] > 0.5)),
                                      "frames": float(m.sum())}
    return {"inside_postures": inside, "outside_postures": outside,
            "negatives_above_half": float(np.mean(negatives > 0.5))}


def breakdown(generator: Path, data: Path, min_frames: int = 64) -> dict[str, Any]:
    """The whole breakdown of ``generator`` on the held-out sequences of corpus ``data``
    with at least ``min_frames`` frames (64: those ``gesturert evaluate`` scores with the
    default PoseSyncNet and FGD configs)."""
    import torch

    from sdk.features import DEFAULT_FEATURES
    from train.data.styles import speaker_style
    from train.evaluation import generate, load_generator_checkpoint
    from train.posesync_data import load_corpus_sequences

    torch.set_num_threads(1)
    model, normalization = load_generator_checkpoint(generator)
    voices_path = data / "voices.json"
    voices = json.loads(voices_path.read_text()) if voices_path.is_file() else {}
    scores, labels, meta = [], [], []
    for seq in load_corpus_sequences(data, DEFAULT_FEATURES):
        if not seq.held_out or seq.saliency is None or seq.num_frames < min_frames:
            continue
        style = speaker_style(data, seq.speaker)
        _, saliency = generate(model, normalization, seq.audio, seq.num_frames, 0,
                               style=style)
        scores.append(saliency)
        labels.append(seq.saliency)
        voice = voices.get(seq.speaker, {})
        meta.append({"style": style, "voice": seq.speaker,
                     "engine": str(voice.get("engine", "-")),
                     "held_out_voice": str(bool(voice.get("held_out", False)))})
    if not scores:
        raise ValueError(f"{data}: no held-out sequence with frame ground truth")
    per_sequence = [roc_auc(s, y > 0.5) for s, y in zip(scores, labels, strict=True)
                    if 0 < (y > 0.5).sum() < y.size]
    return {
        "generator": str(generator), "data": str(data), "sequences": len(scores),
        "pooled_auc": grouped_auc(scores, labels, ["all"] * len(scores))["all"]["auc"],
        "per_sequence_auc": {"median": float(np.median(per_sequence)),
                             "mean": float(np.mean(per_sequence)),
                             "sequences": len(per_sequence)},
        "groups": {key: grouped_auc(scores, labels, [m[key] for m in meta])
                   for key in ("style", "engine", "held_out_voice", "voice")},
        "frames": frame_profile(scores, labels),
    }


def to_markdown(report: dict[str, Any]) -> str:
    """Tables of a :func:`breakdown` report."""
    lines = [f"# Detector frame AUC breakdown: `{report['generator']}`", "",
             f"Corpus `{report['data']}`, {report['sequences']} held-out sequences. Pooled "
             f"AUC {report['pooled_auc']:.3f}; per sequence (sequences with both classes, "
             f"{report['per_sequence_auc']['sequences']}): median "
             f"{report['per_sequence_auc']['median']:.3f}, mean "
             f"{report['per_sequence_auc']['mean']:.3f}.", "",
             "| group | value | AUC | salient share | sequences |", "|---|---|---|---|---|"]
    for key, groups in report["groups"].items():
        lines += [f"| {key} | {name} | {g['auc']:.3f} | {g['salient']:.3f} | "
                  f"{g['sequences']:.0f} |" for name, g in groups.items()]
    frames = report["frames"]
    lines += ["", "Inside postures (frames since the posture's first):", "",
              "| frames | mean score | AUC vs all non-salient frames | frames |",
              "|---|---|---|---|"]
    lines += [f"| {k} | {v['mean_score']:.3f} | {v['auc_vs_negatives']:.3f} | "
              f"{v['frames']:.0f} |" for k, v in frames["inside_postures"].items()]
    lines += ["", f"Non-salient frames scoring > 0.5: {frames['negatives_above_half']:.3f} "
              "overall; by signed distance to the nearest posture (frames; < 0 before it):",
              "", "| distance | share > 0.5 | frames |", "|---|---|---|"]
    lines += [f"| {k} | {v['above_half']:.3f} | {v['frames']:.0f} |"
              for k, v in frames["outside_postures"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("generator", type=Path, help="generator.pt checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="corpus directory")
    parser.add_argument("--out", type=Path, default=None, help="directory for N.json/N.md")
    parser.add_argument("--name", default="detector_breakdown", help="file name stem")
    parser.add_argument("--min-frames", type=int, default=64,
                        help="shortest held-out sequence scored (default 64, as evaluate)")
    args = parser.parse_args(argv)
    report = breakdown(args.generator, args.data, args.min_frames)
    markdown = to_markdown(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / f"{args.name}.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
