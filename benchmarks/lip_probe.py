"""How much lip sync the audio features carry: a probe trained on the features alone.

    python -m benchmarks.lip_probe CORPUS --out DIR [--features mfcc logmel] [--steps 6000]
        [--seed 0] [--shuffle-audio] [--name NAME]

The generator's lip-sync r (``gesturert evaluate``) mixes what its audio features tell
about the mouth with what the generator makes of them. This script measures the first
part on its own: a small MLP (two hidden layers of 256, GELU, L1 loss, Adam) that maps
the feature frames the generator's face branch sees for pose frame k -- frames
``k + L - (R - 1) .. k + L``, L the default lookahead, R the face encoder's receptive
field (train/configs/generator.yaml: k-2..k+2) -- to the inner-lip opening of frame k
(``train.metrics.lip_opening`` of the canonical keypoints). It is trained on the corpus's
training sequences and scored, with the generator's formula (per-sequence Pearson r over
the frames whose lips are observed, mean over sequences), on the same held-out sequences
as ``benchmarks.speaker_breakdown``: the training voices' held-out sentences, the held-out
voices, all.

Feature kinds (each through ``sdk.mfcc``, the SDK's own front end):

* ``mfcc``: the bundle's features (13 MFCCs x 7 hops per pose frame) -- what the
  generator sees;
* ``logmel``: the same front end with every mel band kept (the DCT replaced by the
  identity: 40 log-mel bands in dB x 7 hops) -- the information the 13 MFCCs drop;
* ``mfcc40``: all 40 cepstral coefficients (the full orthonormal DCT of the ``logmel``
  bands: the same information, another basis; its first 13 are ``mfcc``).

``--mean-normalise`` removes each stream's own mean of every coefficient before the probe
sees it (cepstral mean normalisation, the classic speaker and channel normalisation):
``sequence`` the mean over the whole sequence (an offline upper bound), ``running`` a
causal exponential mean with a ``--mean-seconds`` time constant, started at the training
sequences' mean (what a streaming front end could do). The default ``none`` is the
generator's front end.

``--shuffle-audio`` trains on each training sequence's features paired with *another*
sequence's lips (the audio-shuffled control): its held-out r must sit near 0, or the probe
scores something other than audio. Writes ``DIR/NAME.json`` and ``.md`` (NAME default
``lip_probe``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FEATURE_KINDS = ("mfcc", "logmel", "mfcc40")
HIDDEN = 256  # units per hidden layer of the probe
BATCH = 256  # frames per step
LR, WEIGHT_DECAY = 1e-3, 1e-4


@dataclasses.dataclass
class ProbeSequence:
    """features float32 (F, D); lips float64 (F,) inner-lip opening (NaN: unobserved)."""

    speaker: str
    group: str  # "train", "held-out sentences" or "held-out voices"
    features: np.ndarray
    lips: np.ndarray


def face_window() -> tuple[int, int]:
    """Offsets (first, last) of the feature frames the default face branch sees for pose
    frame k, from the default generator config (lookahead L, receptive field R)."""
    from train.generator_training import GeneratorTrainingConfig

    model = GeneratorTrainingConfig().model
    receptive = 1 + (model.face_kernel - 1) * sum(model.face_dilations)
    return model.lookahead_frames - (receptive - 1), model.lookahead_frames


def feature_extractor(kind: str) -> Any:
    """``audio (N,), frames -> float32 (frames, D)`` for a :data:`FEATURE_KINDS` entry."""
    from sdk.features import DEFAULT_FEATURES
    from sdk.mfcc import MfccMatrices, extract_features

    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; choose from {FEATURE_KINDS}")
    matrices = MfccMatrices.default()
    config = DEFAULT_FEATURES
    if kind == "logmel":  # every band kept: 10*log10(mel power), the DCT as the identity
        config = dataclasses.replace(DEFAULT_FEATURES, n_mfcc=DEFAULT_FEATURES.n_mels)
        matrices = MfccMatrices(config, matrices.window, matrices.mel,
                                np.eye(config.n_mels, dtype=np.float32))
    elif kind == "mfcc40":  # every coefficient of the orthonormal DCT-II of the bands
        from export.feature_matrices import compute_mfcc_matrices

        config = dataclasses.replace(DEFAULT_FEATURES, n_mfcc=DEFAULT_FEATURES.n_mels)
        matrices = compute_mfcc_matrices(config)
    return lambda audio, frames: extract_features(audio, config, matrices, frames)


def load_probe_sequences(data: Path, kind: str) -> list[ProbeSequence]:
    """The corpus's training sequences and the held-out sequences of
    ``train.evaluation.load_held_out`` (those ``gesturert evaluate`` scores: held out and
    at least ``min_frames()`` long), from one read of the corpus; unobserved lips are NaN
    in ``canonical`` as in ``observed_canonical()``."""
    from benchmarks.lip_sync_ceiling import min_frames
    from benchmarks.speaker_breakdown import held_out_voice
    from train.metrics.keypoints import lip_opening
    from train.posesync_data import load_corpus_sequences

    extract = feature_extractor(kind)
    out = []
    for s in load_corpus_sequences(data):
        if not s.held_out:
            group = "train"
        elif s.num_frames < min_frames():
            continue
        elif held_out_voice(data, s.speaker):
            group = "held-out voices"
        else:
            group = "held-out sentences"
        out.append(ProbeSequence(s.speaker, group, extract(s.audio, s.num_frames),
                                 lip_opening(s.canonical)))
    if not any(s.group == "train" for s in out):
        raise ValueError(f"{data}: no training sequence to fit the probe on")
    return out


MEAN_NORMALISATIONS = ("none", "sequence", "running")


def mean_normalise(sequences: list[ProbeSequence], how: str,
                   seconds: float = 3.0) -> list[ProbeSequence]:
    """Remove each sequence's own mean of every coefficient from its features.

    A feature row holds ``mfcc_context`` hops of C coefficients; a frame's value of a
    coefficient is its mean over the hops, and the mean removed is taken over frames:
    ``sequence`` over all of the sequence's frames, ``running`` causally, ``m_k = (1 - a)
    m_(k-1) + a x_k`` with ``a = 1 / (seconds * fps)`` and ``m_(-1)`` the mean over the
    training sequences' frames. Returns new sequences; ``none`` returns them unchanged.
    """
    from sdk.features import DEFAULT_FEATURES

    if how not in MEAN_NORMALISATIONS:
        raise ValueError(f"unknown mean normalisation {how!r}; choose from "
                         f"{MEAN_NORMALISATIONS}")
    if how == "none":
        return sequences
    if not seconds > 0:
        raise ValueError(f"the running mean's time constant must be > 0 s, got {seconds}")
    hops = DEFAULT_FEATURES.mfcc_context

    def frame_values(s: ProbeSequence) -> np.ndarray:  # (F, C): each coefficient's hop mean
        return s.features.reshape(len(s.features), hops, -1).mean(1)

    start = np.concatenate([frame_values(s) for s in sequences if s.group == "train"]).mean(0)
    rate = 1.0 / (seconds * DEFAULT_FEATURES.fps)
    out = []
    for s in sequences:
        values = frame_values(s)
        if how == "sequence":
            mean = np.broadcast_to(values.mean(0), values.shape)
        else:
            mean, m = np.empty_like(values), start.copy()
            for k, x in enumerate(values):
                m = (1.0 - rate) * m + rate * x
                mean[k] = m
        features = s.features.reshape(len(s.features), hops, -1) - mean[:, None, :]
        out.append(dataclasses.replace(
            s, features=features.reshape(s.features.shape).astype(np.float32)))
    return out


def context(features: np.ndarray, first: int, last: int) -> np.ndarray:
    """(F, D) -> (F, (last - first + 1) * D): frame k's row holds frames k+first..k+last
    (zeros outside the sequence), as the face branch's window."""
    n = features.shape[0]
    index = np.arange(n)[:, None] + np.arange(first, last + 1)[None, :]  # (F, window)
    inside = (index >= 0) & (index < n)
    rows = np.where(inside[..., None], features[np.clip(index, 0, max(n - 1, 0))], 0.0)
    return rows.reshape(n, -1).astype(np.float32)


def pearson(prediction: np.ndarray, truth: np.ndarray) -> float:
    """r over the frames whose truth is finite (0 when either side is constant): the
    per-sequence formula of ``train.metrics.lip_sync_correlation``, on lip openings."""
    from train.metrics.keypoints import observed_correlation

    return observed_correlation(prediction, truth)


def fit_and_score(sequences: list[ProbeSequence], steps: int, seed: int,
                  shuffle_audio: bool = False) -> dict[str, Any]:
    """Train the probe on the ``train`` sequences; mean r per group and per speaker."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    first, last = face_window()
    train = [s for s in sequences if s.group == "train"]
    lips = [s.lips for s in train]
    if shuffle_audio:  # each sequence's features with the next one's lips, cut to fit
        lips = [lips[(i + 1) % len(lips)] for i in range(len(lips))]
    pairs = [(s.features[:len(y)], y[:len(s.features)]) for s, y in zip(train, lips,
                                                                      strict=True)]
    stacked = np.concatenate([x for x, _ in pairs])
    mean, std = stacked.mean(0), stacked.std(0) + 1e-3
    x = np.concatenate([context((f - mean) / std, first, last) for f, _ in pairs])
    y = np.concatenate([t for _, t in pairs])
    keep = np.isfinite(y)
    x_t = torch.from_numpy(x[keep].astype(np.float32))
    y_t = torch.from_numpy(((y[keep] - y[keep].mean()) / y[keep].std()).astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Linear(x_t.shape[1], HIDDEN), torch.nn.GELU(),
                              torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.GELU(),
                              torch.nn.Linear(HIDDEN, 1))
    optimizer = torch.optim.Adam(net.parameters(), LR, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, x_t.shape[0], (BATCH,), generator=generator)
        loss = (net(x_t[batch])[:, 0] - y_t[batch]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    groups: dict[str, list[float]] = {}
    speakers: dict[str, list[float]] = {}
    with torch.no_grad():
        for s in sequences:
            z = context((s.features - mean) / std, first, last)
            r = pearson(net(torch.from_numpy(z))[:, 0].double().numpy(), s.lips)
            groups.setdefault(s.group, []).append(r)
            if s.group != "train":
                groups.setdefault("all held-out", []).append(r)
                speakers.setdefault(s.speaker, []).append(r)
    return {"window": [first, last], "frames_trained": int(keep.sum()),
            "groups": {g: {"sequences": len(v), "lip_sync": float(np.mean(v))}
                       for g, v in groups.items()},
            "speakers": {k: float(np.mean(v)) for k, v in sorted(speakers.items())}}


GROUPS = ("train", "held-out sentences", "held-out voices", "all held-out")


def markdown(result: dict[str, Any]) -> str:
    normalised = {"none": "", "sequence": " Each sequence's own mean of every coefficient "
                  "removed (cepstral mean normalisation over the whole sequence).",
                  "running": " Each coefficient's causal running mean removed (time "
                  f"constant {result.get('mean_seconds')} s)."}[result.get("mean_normalise",
                                                                         "none")]
    lines = [f"# Lip-sync probe: {result['name']}", "",
             f"Corpus `{result['data']}`; an MLP on the features alone, window "
             f"{result['window']} frames around the pose frame, {result['steps']} steps, seed "
             f"{result['seed']} (code at {result['machine']['git_sha']}, "
             f"{result['machine']['timestamp']}).{normalised} Mean per-sequence lip-sync r "
             "(sequences):",
             "", "| features | control | " + " | ".join(GROUPS) + " |",
             "|---|---|" + "---|" * len(GROUPS)]
    for row in result["rows"]:
        cells = [f"{row['groups'][g]['lip_sync']:.4f} ({row['groups'][g]['sequences']})"
                 if g in row["groups"] else "-" for g in GROUPS]
        control = "audio shuffled" if row["shuffle_audio"] else "-"
        lines.append(f"| {row['features']} | {control} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lip_probe",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the corpus (SDT layout)")
    parser.add_argument("--out", type=Path, required=True, help="results directory")
    parser.add_argument("--features", nargs="+", default=["mfcc", "logmel"],
                        choices=FEATURE_KINDS, help="feature kinds, one probe each")
    parser.add_argument("--steps", type=int, default=6000, help="training steps per probe")
    parser.add_argument("--seed", type=int, default=0, help="probe seed")
    parser.add_argument("--shuffle-audio", action="store_true",
                        help="also train each probe on audio-shuffled pairs (the control)")
    parser.add_argument("--mean-normalise", default="none", choices=MEAN_NORMALISATIONS,
                        help="remove each stream's own mean of every coefficient: over the "
                             "whole sequence or a causal running mean (default none: the "
                             "generator's front end)")
    parser.add_argument("--mean-seconds", type=float, default=3.0,
                        help="time constant of the running mean (s)")
    parser.add_argument("--name", default="lip_probe", help="results file name")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if not args.mean_seconds > 0:
        parser.error(f"--mean-seconds must be > 0, got {args.mean_seconds}")
    from benchmarks.common import machine_info, write_json_and_markdown

    rows = []
    try:
        for kind in args.features:
            sequences = mean_normalise(load_probe_sequences(args.data, kind),
                                       args.mean_normalise, args.mean_seconds)
            for shuffle in (False, True) if args.shuffle_audio else (False,):
                rows.append({"features": kind, "shuffle_audio": shuffle,
                             **fit_and_score(sequences, args.steps, args.seed, shuffle)})
    except (ValueError, FileNotFoundError) as exc:
        print(f"lip_probe: {exc}", file=sys.stderr)
        return 2
    result = {"name": args.name, "data": str(args.data), "steps": args.steps,
              "seed": args.seed, "window": rows[0]["window"], "rows": rows,
              "mean_normalise": args.mean_normalise,
              **({"mean_seconds": args.mean_seconds} if args.mean_normalise == "running"
                 else {}),
              "machine": machine_info()}
    write_json_and_markdown(args.out, args.name, result, markdown)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
