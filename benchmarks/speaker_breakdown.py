"""A generator's lip sync per speaker of a corpus's held-out sequences.

    python -m benchmarks.speaker_breakdown GENERATOR_PT --data CORPUS --out DIR \\
        [--ceiling CEILING_JSON] [--name NAME]

``gesturert evaluate`` reports one lip-sync r over every held-out sequence; on the voiced
corpus those are the dev/val clips of the training voices and every clip of the held-out
voices, so one number mixes voices the model heard with voices it never heard. This
script scores the same sequences (``train.evaluation.load_held_out``, at least
``benchmarks.lip_sync_ceiling.min_frames()`` frames) with the same formula
(``train.metrics.lip_sync_correlation``, mean over a speaker's sequences) and the L1
error, one row per speaker, marking the voices the corpus holds out
(``synth_speaker.json``: ``held_out``), in the sequence's style, noise seed 0. With
``--ceiling`` (a ``benchmarks.lip_sync_ceiling`` JSON of the same corpus) each row also
shows the speaker's ceiling and the share of it reached. Writes ``DIR/NAME.json`` and
``.md`` (NAME default ``speaker_breakdown``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def held_out_voice(data: Path, speaker: str) -> bool | None:
    """Whether ``speaker`` is a voice the corpus holds out (None: no voiced profile)."""
    profile = data / speaker / "synth_speaker.json"
    if not profile.is_file():
        return None
    flag = json.loads(profile.read_text()).get("held_out")
    return None if flag is None else bool(flag)


def breakdown(generator: Path, data: Path, ceiling: dict[str, Any] | None) -> dict[str, Any]:
    """Per speaker: sequences, frames, held-out voice, lip-sync r, L1 (and the ceiling)."""
    import torch

    from benchmarks.lip_sync_ceiling import min_frames
    from train.evaluation import generate, load_generator_checkpoint, load_held_out
    from train.metrics import l1_error, lip_sync_correlation

    torch.set_num_threads(1)
    model, normalization = load_generator_checkpoint(generator)
    sequences = load_held_out(data, min_frames())
    if ceiling is not None and ceiling["sequences"] != len(sequences):
        raise ValueError(f"the ceiling has {ceiling['sequences']} sequences, {data} "
                         f"{len(sequences)}: not the same test set")
    groups: dict[str, list[tuple[float, float, int]]] = {}
    for seq in sequences:
        poses, _ = generate(model, normalization, seq.audio, seq.num_frames, 0, style=seq.style)
        truth = seq.observed_canonical()
        groups.setdefault(seq.speaker, []).append(
            (lip_sync_correlation(poses, truth), l1_error(poses, truth), seq.num_frames))
    rows = {}
    for speaker, scores in sorted(groups.items()):
        row: dict[str, Any] = {
            "sequences": len(scores), "frames": sum(s[2] for s in scores),
            "held_out_voice": held_out_voice(data, speaker),
            "lip_sync": float(np.mean([s[0] for s in scores])),
            "l1": float(np.mean([s[1] for s in scores]))}
        if ceiling is not None:
            row["lip_sync_ceiling"] = float(ceiling["per_speaker"][speaker])
            row["share_of_ceiling"] = row["lip_sync"] / row["lip_sync_ceiling"]
        rows[speaker] = row
    held = [r for r in rows.values() if r["held_out_voice"]]
    heard = [r for r in rows.values() if r["held_out_voice"] is False]

    def pooled(group: list[dict[str, Any]]) -> float | None:  # mean over sequences
        n = sum(r["sequences"] for r in group)
        return None if not n else sum(r["lip_sync"] * r["sequences"] for r in group) / n

    return {"sequences": len(sequences), "speakers": rows,
            "lip_sync_held_out_voices": pooled(held), "lip_sync_training_voices": pooled(heard),
            "lip_sync_all": pooled(list(rows.values()))}


def markdown(result: dict[str, Any]) -> str:
    with_ceiling = any("lip_sync_ceiling" in r for r in result["speakers"].values())
    head = ["speaker", "held-out voice", "sequences", "lip-sync r ↑", "L1 ↓"]
    head += ["ceiling", "r / ceiling ↑"] if with_ceiling else []
    lines = [f"# Lip sync per speaker: {result['name']}", "",
             f"Generator `{result['generator']}` on `{result['data']}`: {result['sequences']} "
             f"held-out sequences (code at {result['machine']['git_sha']}, "
             f"{result['machine']['timestamp']}).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for speaker, r in result["speakers"].items():
        flag = {True: "yes", False: "no", None: "-"}[r["held_out_voice"]]
        cells = [speaker, flag, str(r["sequences"]), f"{r['lip_sync']:.4f}", f"{r['l1']:.4f}"]
        if with_ceiling:
            cells += [f"{r['lip_sync_ceiling']:.4f}", f"{r['share_of_ceiling']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for key, label in (("lip_sync_training_voices", "training voices"),
                       ("lip_sync_held_out_voices", "held-out voices"), ("lip_sync_all", "all")):
        if result[key] is not None:
            lines.append(f"- lip-sync r, mean over the sequences of {label}: {result[key]:.4f}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speaker_breakdown",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("generator", type=Path, help="generator checkpoint (generator.pt)")
    parser.add_argument("--data", type=Path, required=True, help="the corpus (SDT layout)")
    parser.add_argument("--out", type=Path, required=True, help="results directory")
    parser.add_argument("--ceiling", type=Path, default=None,
                        help="benchmarks.lip_sync_ceiling JSON of the same corpus")
    parser.add_argument("--name", default="speaker_breakdown", help="results file name")
    args = parser.parse_args(argv)
    from benchmarks.common import machine_info, write_json_and_markdown

    ceiling = None if args.ceiling is None else json.loads(args.ceiling.read_text())
    result = {"name": args.name, "generator": str(args.generator), "data": str(args.data),
              **breakdown(args.generator, args.data, ceiling), "machine": machine_info()}
    print(write_json_and_markdown(args.out, args.name, result, markdown)[1].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
