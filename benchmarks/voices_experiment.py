"""Does a corpus spoken by real synthesizer voices teach sync that carries over to voices
never heard? A small measured experiment (issue 17), not a trained product.

    python -m benchmarks.voices_experiment --corpus VOICED --posesync SYNC.pt \\
        --generator voiced=GEN_V.pt --generator synthetic=GEN_S.pt \\
        [--bundle sdk/data/default_bundle] --out benchmarks/results/voices [--note TEXT]

Held-out audio: every sequence of each held-out voice of ``VOICED`` (``voices.json``:
``held_out``; split ``test``, held-out words; never trained on by any model here).
Rows, each scored the same way on the same sequences:

* each ``--generator NAME=PT`` driven by the sequence's own audio;
* ``shipped_bundle``: the shipped default bundle's generator (ONNX Runtime, streaming);
* ``other_audio``: the first ``--generator`` driven by the next sequence's audio (as
  ``gesturert evaluate``: what sync is worth beyond plausible motion);
* ``mean_pose``: the first generator's training mean pose, held still;
* ``ground_truth``: the corpus's poses (rendered from the voice's returned timing).

Columns, per judge (``--posesync``, trained on the voiced corpus's training voices; and
the shipped bundle's PoseSyncNet, trained on the synthetic voice): PSD (mean over
sequences), best offset of each sequence's offset sweep (pose frames, +-15), mean sweep
confidence (median - min distance). Judge-free: lip-sync r (inner-lip opening vs the
ground truth's) and mouth-energy r (inner-lip opening vs the audio's RMS per pose frame,
lag 0). A judge that does not score ground truth below mean pose and other audio is not
informative on that voice, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sdk.features import DEFAULT_FEATURES
from train.data.synth_motion import frame_voiced_envelope
from train.metrics.keypoints import lip_opening, lip_sync_correlation

_NO_PSD = float("nan")


def mouth_energy_r(canonical: np.ndarray, audio: np.ndarray) -> float:
    """Pearson r of inner-lip opening (T,) vs the audio's RMS per pose frame, lag 0."""
    n = canonical.shape[0]
    rms = np.sqrt(frame_voiced_envelope(audio.astype(np.float64) ** 2, n, DEFAULT_FEATURES))
    a = lip_opening(canonical) - lip_opening(canonical).mean()
    b = rms - rms.mean()
    denom = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b / denom) if denom > 0 else 0.0


def _bundle_poses(bundle_dir: Path, audio: np.ndarray, frames: int, seed: int,
                  style: str | None = None) -> np.ndarray:
    """The bundle's poses in ``style`` (its default when the bundle does not know it)."""
    from sdk.streaming import StreamingGenerator

    with StreamingGenerator(str(bundle_dir)) as generator:
        known = style if style in generator.styles else None
        out = generator.generate(audio, DEFAULT_FEATURES.sample_rate, seed=seed, style=known)
        canonical = generator.manifest.normalization.pixels_to_canonical(out.keypoints)
    return _fit(canonical, frames)


def _fit(poses: np.ndarray, frames: int) -> np.ndarray:
    """Crop or edge-pad (T', J, 2) poses to T = ``frames``."""
    if poses.shape[0] >= frames:
        return poses[:frames]
    return np.concatenate([poses, np.repeat(poses[-1:], frames - poses.shape[0], axis=0)])


def run(corpus: Path, posesync: Path, generators: dict[str, Path], bundle: Path,
        seed: int = 0) -> dict[str, Any]:
    """Every row and column of the module docstring, per held-out voice."""
    from sdk.bundle import load_bundle
    from sdk.bundle_psd import frames_psd, posesync_embed_fn
    from sdk.mfcc import MfccMatrices
    from train.checkpoint import load_model
    from train.data.styles import speaker_style
    from train.evaluation import generate, load_generator_checkpoint
    from train.metrics.psd import psd_of_sequences
    from train.posesync_data import load_corpus_sequences, sequence_mfcc

    table = json.loads((corpus / "voices.json").read_text())
    held_voices = sorted(name for name, v in table.items() if v["held_out"])
    if not held_voices:
        raise ValueError(f"{corpus}/voices.json names no held-out voice")
    from train.models.posesync import PoseSyncNet

    sync = load_model(posesync, "posesync", DEFAULT_FEATURES)
    if not isinstance(sync, PoseSyncNet):
        raise ValueError(f"{posesync}: not a PoseSyncNet checkpoint")
    models = {name: load_generator_checkpoint(path) for name, path in generators.items()}
    first = next(iter(models))
    shipped = load_bundle(bundle)
    matrices = MfccMatrices.load(shipped.path(shipped.manifest.mfcc_matrices),
                                 shipped.manifest.features)
    embed, runner = posesync_embed_fn(shipped)
    sequences = load_corpus_sequences(corpus)
    report: dict[str, Any] = {}
    try:
        for voice in held_voices:
            seqs = [s for s in sequences if s.speaker == voice and s.held_out]
            style = speaker_style(corpus, voice)  # a held-out voice shares a trained style
            truth = [np.nan_to_num(s.canonical, nan=0.0).astype(np.float32) for s in seqs]
            rows: dict[str, list[np.ndarray]] = {}
            for name, (model, norm) in models.items():
                rows[name] = [generate(model, norm, s.audio, s.num_frames, seed,
                                       style=style)[0] for s in seqs]
            rows["shipped_bundle"] = [_bundle_poses(bundle, s.audio, s.num_frames, seed, style)
                                      for s in seqs]
            model, norm = models[first]
            rows["other_audio"] = [
                generate(model, norm, _other_audio(seqs, k), s.num_frames, seed,
                         style=style)[0]
                for k, s in enumerate(seqs)]
            mean = norm.destandardize(np.zeros_like(truth[0][:1]))
            rows["mean_pose"] = [np.repeat(mean, s.num_frames, axis=0).astype(np.float32)
                                 for s in seqs]
            rows["ground_truth"] = truth
            mfccs = [sequence_mfcc(s.audio, s.num_frames, DEFAULT_FEATURES, sync.config.clip)
                     for s in seqs]
            voice_rows: dict[str, Any] = {}
            for name, poses in rows.items():
                own = psd_of_sequences(sync, mfccs, poses)
                shipped_sweeps = [frames_psd(shipped.manifest, matrices, embed, s.audio, p).sweep
                                  for s, p in zip(seqs, poses, strict=True)]
                voice_rows[name] = {
                    "voiced_judge": {"psd": own.psd,
                                     "best_offsets": [s.best_offset for s in own.sweeps],
                                     "confidence": float(np.mean([s.confidence
                                                                  for s in own.sweeps]))},
                    "shipped_judge": {"psd": float(np.mean([s.psd for s in shipped_sweeps])),
                                      "best_offsets": [s.best_offset for s in shipped_sweeps],
                                      "confidence": float(np.mean([s.confidence
                                                                   for s in shipped_sweeps]))},
                    "lip_sync_r": float(np.mean([lip_sync_correlation(p, t)
                                                 for p, t in zip(poses, truth, strict=True)])),
                    "mouth_energy_r": float(np.mean([mouth_energy_r(p, s.audio)
                                                     for p, s in zip(poses, seqs, strict=True)])),
                }
            report[voice] = {"voice": table[voice], "style": style, "sequences": len(seqs),
                             "seconds": float(sum(s.num_frames for s in seqs)
                                              / DEFAULT_FEATURES.fps),
                             "rows": voice_rows,
                             "informative": {j: _informative(voice_rows, j)
                                             for j in ("voiced_judge", "shipped_judge")}}
    finally:
        runner.deactivate()
    return report


def _other_audio(seqs: list[Any], k: int) -> np.ndarray:
    own = seqs[k].audio
    if len(seqs) == 1:
        return np.roll(own, own.shape[0] // 2)
    other = seqs[(k + 1) % len(seqs)].audio[: own.shape[0]]
    return np.pad(other, (0, own.shape[0] - other.shape[0]))


def _informative(rows: dict[str, Any], judge: str) -> bool:
    """True if the judge puts ground truth below both mean pose and other audio."""
    psd = {k: rows[k][judge]["psd"] for k in ("ground_truth", "mean_pose", "other_audio")}
    return psd["ground_truth"] < min(psd["mean_pose"], psd["other_audio"])


def _summary(rows: dict[str, Any], judge: str) -> str:
    """One generated sentence: each generator's PSD against ground truth and mean pose."""
    psd = {k: v[judge]["psd"] for k, v in rows.items()}
    gens = [k for k in rows if k not in ("other_audio", "mean_pose", "ground_truth")]
    ranked = sorted(gens, key=lambda k: psd[k])
    return (f"- {judge}: PSD " + " < ".join(f"{k} {psd[k]:.3f}" for k in ranked)
            + f" (ground truth {psd['ground_truth']:.3f}, mean pose {psd['mean_pose']:.3f}, "
            f"other audio {psd['other_audio']:.3f}); best generator / mean pose = "
            f"{psd[ranked[0]] / psd['mean_pose']:.2f}")


def markdown(report: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = ["# Real synthesizer voices: sync on voices never heard (issue 17)", "",
             meta["note"], "", f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} "
             f"cores, load average {meta['machine']['load_average']} at the evaluation "
             f"({meta['date']}); {meta['cpu_note']}", "",
             f"Command: `{meta['command']}`", ""]
    for voice, r in report.items():
        v = r["voice"]
        lines += [f"## Held-out voice `{voice}` ({v['engine']}, {v['language']}, "
                  f"{v['gender']}; {r['sequences']} sequences, {r['seconds']:.0f} s)", "",
                  "| row | PSD (voiced judge) | offsets | conf. | PSD (shipped judge) | "
                  "offsets | conf. | lip-sync r | mouth-energy r |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, row in r["rows"].items():
            a, b = row["voiced_judge"], row["shipped_judge"]
            lines.append(f"| {name} | {a['psd']:.3f} | {a['best_offsets']} | "
                         f"{a['confidence']:.3f} | {b['psd']:.3f} | {b['best_offsets']} | "
                         f"{b['confidence']:.3f} | {row['lip_sync_r']:.2f} | "
                         f"{row['mouth_energy_r']:.2f} |")
        lines += ["", "Judges informative on this voice (ground truth below mean pose and "
                  "other audio): " + ", ".join(f"{j}: {'yes' if ok else 'NO'}"
                                               for j, ok in r["informative"].items()), ""]
        lines += [_summary(r["rows"], judge) for judge in ("voiced_judge", "shipped_judge")
                  if r["informative"][judge]] + [""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from train.results_report import machine_description, write_report

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, type=Path)
    parser.add_argument("--posesync", required=True, type=Path)
    parser.add_argument("--generator", action="append", required=True, metavar="NAME=PT")
    parser.add_argument("--bundle", type=Path, default=Path("sdk/data/default_bundle"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/voices"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="how the models were made (into the report)")
    parser.add_argument("--cpu-note", default="", help="CPU time of the whole experiment")
    args = parser.parse_args(argv)
    generators = {}
    for item in args.generator:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--generator wants NAME=PT, got {item!r}")
        generators[name] = Path(path)
    started = time.process_time()
    report = run(args.corpus, args.posesync, generators, args.bundle, args.seed)
    meta = {"machine": machine_description(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                    time.gmtime()),
            "note": args.note, "command": "python -m benchmarks.voices_experiment "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "cpu_note": args.cpu_note + f" Evaluation: {time.process_time() - started:.0f} s CPU."}
    write_report({"meta": meta, "held_out_voices": report}, markdown(report, meta), args.out,
                 "voices_experiment")
    print(markdown(report, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
