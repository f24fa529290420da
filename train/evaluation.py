"""``gesturert evaluate``: the generator's held-out metrics against baselines.

    gesturert evaluate --generator runs/gen/generator.pt --posesync runs/sync/posesync.pt \\
        --fgd runs/fgd/fgd.pt --data corpus/ [--out results/] [--seed 0]

Held-out data: the corpus's ``dev``/``val``/``test`` clips, joined into sequences
(train.posesync_data.load_corpus_sequences), none of which any model trained on. Each
sequence is generated in one pass from a zero state (what a stream of that audio gives:
forward == step by step), noise ``frame_noise(seed, ...)``.

Rows (methods), each a list of canonical pose sequences scored the same way:

* ``generator``: the model driven by the sequence's own audio;
* ``audio_shuffled`` (with ``--shuffled-generator``): the audio-shuffled baseline, a
  generator of the same config and budget trained on audio-pose pairs shuffled across
  windows (``--set data.shuffle_audio_pairs=true``), driven by the sequence's own audio.
  It learns the corpus's motion but not which motion goes with which audio: the baseline
  that tells what the audio adds to *every* column, FGD included;
* ``other_audio``: the generator driven by the next held-out sequence's audio (cropped
  or padded with silence to length; with one sequence, its own audio rotated by half its
  length), scored against the sequence's true audio and poses. Its outputs are the
  generator's own set re-paired, so its FGD (a distance between sets) equals the
  generator's: it tests audio dependence in the per-sequence columns only;
* ``mean_pose``: the training mean pose (standardised zeros) held still;
* ``ground_truth``: the held-out poses themselves (upper bound where meaningful).

Columns: FGD (train.metrics.fgd over the FGD autoencoder's latents of windows every
``FGD_STRIDE`` frames; lower is better), BC (beat consistency, higher; DiffGesture's TED
Gesture formulation: the arms' joint angles), BC at chance (the same motion beats shifted
against the audio: what beat density alone scores), BC all joints (HA2G's TED Expressive
formulation, fingers included; see train/metrics/beat.py for why it is not the headline),
PSD and the
offset sweep (mean |best offset| and the fraction of sequences at 0; lower PSD is better),
diversity (HA2G, FGD latents), L1 and PCK@0.2 against the ground truth (canonical units:
shoulder widths), lip-sync correlation (Pearson r of inner-lip opening, mean over
sequences), detector frame AUC (generated saliency vs the corpus's ground truth).
PoseSyncNet itself is checked too: ROC AUC of ``-d`` for aligned vs shifted ground-truth
clips (shifts 3..15 frames, as in training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.mfcc import MfccMatrices, feature_frames, mfcc_offline
from sdk.noise import frame_noise
from sdk.normalization import PoseNormalization
from sdk.psd import DEFAULT_MAX_OFFSET, clip_distances, sequence_embeddings
from train.evaluation_report import FGD_STRIDE, SHIFT_RANGE, acceptance_checks
from train.metrics import (
    ALL_JOINT_BEATS,
    ARM_BEATS,
    BeatFormulation,
    angle_change_scale,
    audio_beat_times,
    beat_consistency,
    chance_beat_consistency,
    detector_frame_auc,
    diversity,
    fgd,
    l1_error,
    lip_sync_correlation,
    motion_beat_times,
    pck,
    roc_auc,
)
from train.metrics.psd import psd_of_sequences, torch_embed_fn
from train.models.fgd import PoseAutoencoder, fgd_features
from train.models.generator import GeneratorOutput, SalientPostureGenerator
from train.models.posesync import PoseSyncNet
from train.results_report import machine_description

SHIFT_SEED = 1234
# BC columns: key -> how motion beats are found (train/metrics/beat.py)
BEAT_FORMULATIONS: dict[str, BeatFormulation] = {"bc": ARM_BEATS,
                                                 "bc_all_joints": ALL_JOINT_BEATS}
# rows in table order; "audio_shuffled" only with a shuffled-pairs generator
METHODS = ("generator", "audio_shuffled", "other_audio", "mean_pose", "ground_truth")


@dataclass(frozen=True)
class HeldOutSequence:
    """One held-out sequence: audio (N,) float32 16 kHz, canonical (T, 122, 2) float32 poses
    (undetected joints 0), saliency (T,) ground truth or None, the speaker's normalization,
    observed: bool (T, 122) joints the data saw (None: all); L1, PCK and lip sync skip
    the others. style: the speaker's gesture style (train/data/styles.py); generators
    with styles run the sequence in it (their default when it is not in their table).
    speaker: the corpus speaker it comes from ("" when not from a corpus)."""

    name: str
    audio: np.ndarray
    canonical: np.ndarray
    saliency: np.ndarray | None
    normalization: PoseNormalization
    observed: np.ndarray | None = None
    style: str | None = None
    speaker: str = ""

    def observed_canonical(self) -> np.ndarray:
        """(T, 122, 2) canonical poses, NaN where not observed."""
        if self.observed is None:
            return self.canonical
        return np.where(self.observed[..., None], self.canonical, np.nan).astype(np.float32)

    @property
    def num_frames(self) -> int:
        return int(self.canonical.shape[0])


@dataclass
class EvalModels:
    """The two judges: PoseSyncNet (PSD) and the FGD autoencoder, on the CPU in eval mode."""

    posesync: PoseSyncNet
    fgd: PoseAutoencoder


def frames_needed(clip_frames: int, window_frames: int,
                  max_offset: int = DEFAULT_MAX_OFFSET) -> int:
    """Frames a sequence needs for the offset sweep over PoseSyncNet clips of
    ``clip_frames`` and one FGD window of ``window_frames``."""
    return max(clip_frames + 2 * max_offset, window_frames)


def min_sequence_frames(models: EvalModels, max_offset: int = DEFAULT_MAX_OFFSET) -> int:
    """Frames a sequence needs for the offset sweep and one FGD window."""
    return frames_needed(models.posesync.config.clip_frames, models.fgd.config.window_frames,
                         max_offset)


def load_held_out(data_dir: Path, min_frames: int,
                  features: FeatureConfig = DEFAULT_FEATURES) -> list[HeldOutSequence]:
    """Held-out sequences of at least ``min_frames`` frames; raises when there is none."""
    from train.data.styles import speaker_style
    from train.posesync_data import load_corpus_sequences

    out = [HeldOutSequence(f"{s.interval_id}@{s.start}", s.audio,
                           np.nan_to_num(s.canonical, nan=0.0).astype(np.float32), s.saliency,
                           s.normalization, s.observed(), speaker_style(Path(data_dir), s.speaker),
                           s.speaker)
           for s in load_corpus_sequences(Path(data_dir), features)
           if s.held_out and s.num_frames >= min_frames]
    if not out:
        raise ValueError(f"{data_dir}: no held-out (dev/val/test) sequence of at least "
                         f"{min_frames} frames; the synthetic corpus needs >= 2 minutes")
    return out


def load_eval_models(posesync_ckpt: str | Path, fgd_ckpt: str | Path) -> EvalModels:
    """Both judges from their checkpoints (train/checkpoint.py checks their kinds)."""
    from train.checkpoint import load_model

    sync = load_model(posesync_ckpt, "posesync", DEFAULT_FEATURES)
    encoder = load_model(fgd_ckpt, "fgd", DEFAULT_FEATURES)
    if not isinstance(sync, PoseSyncNet) or not isinstance(encoder, PoseAutoencoder):
        raise ValueError("--posesync / --fgd do not hold a PoseSyncNet / FGD autoencoder")
    return EvalModels(sync, encoder)


def load_generator_checkpoint(path: str | Path
                              ) -> tuple[SalientPostureGenerator, PoseNormalization]:
    """The generator in eval mode and the pose normalization it was trained with."""
    from train.checkpoint import load_checkpoint, load_model

    model = load_model(path, "generator", DEFAULT_FEATURES)
    normalization = load_checkpoint(path, "generator").normalization
    if not isinstance(model, SalientPostureGenerator) or normalization is None:
        raise ValueError(f"{path}: not a generator checkpoint with a pose normalization")
    return model, normalization


@torch.no_grad()
def generator_output(model: SalientPostureGenerator, audio: np.ndarray, num_frames: int,
                     seed: int = 0, features: FeatureConfig = DEFAULT_FEATURES,
                     style: str | None = None) -> GeneratorOutput:
    """The model's whole output for (N,) audio, T = ``num_frames`` pose frames (batch 1).

    One forward pass over T + L feature frames from a zero state (== streaming), in
    gesture style ``style`` (a model with styles; not in its table or None: its default).
    """
    from train.data.styles import resolve_style

    row, _ = resolve_style(model.config.styles, model.config.default_style, style)
    frames = num_frames + model.config.lookahead_frames
    mfcc = mfcc_offline(audio, features, MfccMatrices.default(),
                        max(features.mfcc_frames_needed(frames), 1))
    feats = torch.from_numpy(feature_frames(mfcc, features, 0, frames))[None]
    noise = torch.from_numpy(frame_noise(seed, 0, frames, model.config.noise_dim))[None]
    model.eval()
    return model(feats, noise, style=None if row is None else torch.tensor([row]))


def generate(model: SalientPostureGenerator, normalization: PoseNormalization,
             audio: np.ndarray, num_frames: int, seed: int = 0,
             features: FeatureConfig = DEFAULT_FEATURES, style: str | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Poses of pose frames 0..T-1 for (N,) audio: canonical (T, 122, 2), saliency (T,)
    (the output saliency, as a step returns it); see :func:`generator_output`."""
    out = generator_output(model, audio, num_frames, seed, features, style)
    poses = out.aligned_poses[0].numpy()
    return (normalization.destandardize(poses).astype(np.float32),
            out.aligned_output_saliency[0].numpy().astype(np.float32))


def shuffled_audio(sequences: Sequence[HeldOutSequence], index: int) -> np.ndarray:
    """Another sequence's audio with sequence ``index``'s length (see the module doc)."""
    own = sequences[index].audio
    if len(sequences) == 1:
        return np.roll(own, own.shape[0] // 2)
    other = sequences[(index + 1) % len(sequences)].audio[: own.shape[0]]
    return np.pad(other, (0, own.shape[0] - other.shape[0]))


@dataclass
class References:
    """What every method is scored against, computed once."""

    real_fgd: np.ndarray  # (N, latent) FGD features of the held-out poses
    change_scale: dict[str, np.ndarray]  # BC column -> (angles,) envelope scale of held-out poses
    audio_beats: list[np.ndarray]  # per sequence, onset times (s)
    mfcc: list[np.ndarray]  # per sequence, (M, 13) MFCC for PSD clips


def make_references(sequences: Sequence[HeldOutSequence], models: EvalModels,
                    features: FeatureConfig = DEFAULT_FEATURES) -> References:
    from train.posesync_data import sequence_mfcc

    clip = models.posesync.config.clip
    return References(
        real_fgd=fgd_features(models.fgd, [_standardized(s, s.canonical) for s in sequences],
                              FGD_STRIDE),
        change_scale={key: angle_change_scale([s.canonical for s in sequences], f.angles)
                      for key, f in BEAT_FORMULATIONS.items()},
        audio_beats=[audio_beat_times(s.audio, features.sample_rate) for s in sequences],
        mfcc=[sequence_mfcc(s.audio, s.num_frames, features, clip) for s in sequences])


def _standardized(seq: HeldOutSequence, canonical: np.ndarray) -> np.ndarray:
    return np.nan_to_num(seq.normalization.standardize(canonical), nan=0.0).astype(np.float32)


def score_method(poses: Sequence[np.ndarray], saliency: Sequence[np.ndarray] | None,
                 sequences: Sequence[HeldOutSequence], models: EvalModels,
                 refs: References) -> dict[str, float]:
    """Every column for one method: ``poses`` per sequence (T_k, 122, 2) canonical,
    ``saliency`` per sequence (T_k,) or None (no detector)."""
    gen_fgd = fgd_features(models.fgd, [_standardized(s, p) for s, p in
                                        zip(sequences, poses, strict=True)], FGD_STRIDE)
    fps = DEFAULT_FEATURES.fps
    motion_beats = {key: [motion_beat_times(p, f, refs.change_scale[key], fps) for p in poses]
                    for key, f in BEAT_FORMULATIONS.items()}
    scored = [k for k, beats in enumerate(refs.audio_beats) if beats.size]  # BC needs onsets

    def mean_over_sequences(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    bc = {key: mean_over_sequences([beat_consistency(refs.audio_beats[k], beats[k])
                                    for k in scored])
          for key, beats in motion_beats.items()}
    bc["bc_chance"] = mean_over_sequences([chance_beat_consistency(
        refs.audio_beats[k], motion_beats["bc"][k], sequences[k].num_frames / fps)
        for k in scored])

    sweep = psd_of_sequences(models.posesync, refs.mfcc, list(poses))
    truth = np.concatenate([s.observed_canonical() for s in sequences])
    pred = np.concatenate(poses)
    result = {
        "fgd": fgd(refs.real_fgd, gen_fgd),
        **bc,
        "psd": sweep.psd,
        "offset_at_zero": sweep.offset_accuracy,
        "mean_abs_offset": sweep.mean_abs_offset,
        "mean_offset": float(np.mean([s.best_offset for s in sweep.sweeps])),
        "sweep_confidence": float(np.mean([s.confidence for s in sweep.sweeps])),
        "diversity": diversity(gen_fgd),
        "l1": l1_error(pred, truth),
        "pck": pck(pred, truth),
        "lip_sync": float(np.mean([lip_sync_correlation(p, s.observed_canonical())
                                   for p, s in zip(poses, sequences, strict=True)])),
        "detector_auc": float("nan"),
    }
    truth_saliency = [s.saliency for s in sequences]
    if saliency is not None and all(t is not None for t in truth_saliency):
        labels = [t for t in truth_saliency if t is not None]
        if 0 < sum(float(t.sum()) for t in labels) < sum(t.size for t in labels):
            result["detector_auc"] = detector_frame_auc(list(saliency), labels)
    return result


def posesync_separation(sequences: Sequence[HeldOutSequence], models: EvalModels,
                        refs: References) -> dict[str, float]:
    """ROC AUC of ``-d`` for aligned vs shifted ground-truth clips, and the mean distances."""
    embed = torch_embed_fn(models.posesync)
    rng = np.random.default_rng(SHIFT_SEED)
    aligned, shifted = [], []
    for seq, mfcc in zip(sequences, refs.mfcc, strict=True):
        audio_emb, pose_emb = sequence_embeddings(
            embed, mfcc, seq.canonical, imaging=models.posesync.config.imaging,
            clip=models.posesync.config.clip)
        n = audio_emb.shape[0]
        i = np.arange(n)
        shift = rng.integers(SHIFT_RANGE[0], SHIFT_RANGE[1] + 1, n) * rng.choice([-1, 1], n)
        j = np.where((i + shift >= 0) & (i + shift < n), i + shift, i - shift)
        ok = (j >= 0) & (j < n)
        aligned.append(clip_distances(audio_emb, pose_emb))
        shifted.append(clip_distances(audio_emb[i[ok]], pose_emb[j[ok]]))
    d_pos, d_neg = np.concatenate(aligned), np.concatenate(shifted)
    labels = np.concatenate([np.ones(d_pos.size), np.zeros(d_neg.size)])
    return {"auc": roc_auc(-np.concatenate([d_pos, d_neg]), labels),
            "d_aligned": float(d_pos.mean()), "d_shifted": float(d_neg.mean()),
            "clips": float(d_pos.size)}


def own_audio_row(model: SalientPostureGenerator, normalization: PoseNormalization,
                  sequences: Sequence[HeldOutSequence], models: EvalModels, refs: References,
                  seed: int = 0) -> dict[str, float]:
    """Every column for ``model`` driven by each sequence's own audio."""
    made = [generate(model, normalization, s.audio, s.num_frames, seed, style=s.style)
            for s in sequences]
    return score_method([m[0] for m in made], [m[1] for m in made], sequences, models, refs)


def evaluate_generator_model(model: SalientPostureGenerator, normalization: PoseNormalization,
                             sequences: Sequence[HeldOutSequence], models: EvalModels,
                             refs: References, seed: int = 0, baselines: bool = True,
                             shuffled: tuple[SalientPostureGenerator, PoseNormalization]
                             | None = None) -> dict[str, dict[str, float]]:
    """Scores per method, in ``METHODS`` order: only ``generator`` without ``baselines``;
    ``audio_shuffled`` only with ``shuffled`` (the shuffled-pairs model, its normalization)."""
    rows = {"generator": own_audio_row(model, normalization, sequences, models, refs, seed)}
    if baselines:
        if shuffled is not None:
            rows["audio_shuffled"] = own_audio_row(*shuffled, sequences, models, refs, seed)
        other = [generate(model, normalization, shuffled_audio(sequences, i), s.num_frames,
                          seed, style=s.style) for i, s in enumerate(sequences)]
        rows["other_audio"] = score_method([m[0] for m in other], [m[1] for m in other],
                                           sequences, models, refs)
        still = [np.broadcast_to(normalization.destandardize(
            np.zeros(s.canonical.shape[1:], np.float32)), s.canonical.shape).astype(np.float32)
            for s in sequences]
        rows["mean_pose"] = score_method(still, None, sequences, models, refs)
        rows["ground_truth"] = score_method([s.canonical for s in sequences], None, sequences,
                                            models, refs)
    return rows


def style_report(model: SalientPostureGenerator, sequences: Sequence[HeldOutSequence]
                 ) -> dict[str, Any]:
    """The generator's style table and the style each held-out sequence ran in (notes
    for styles it does not know, which ran in its default)."""
    from train.data.styles import resolve_style

    cfg = model.config
    notes = sorted({note for s in sequences
                    for note in [resolve_style(cfg.styles, cfg.default_style, s.style)[1]]
                    if note is not None})
    return {"table": list(cfg.styles), "default": cfg.default_style,
            "sequences": {s.name: s.style for s in sequences}, "notes": notes}


def run_evaluation(generator_ckpt: Path, posesync_ckpt: Path, fgd_ckpt: Path, data: Path,
                   seed: int = 0, shuffled_ckpt: Path | None = None) -> dict[str, Any]:
    """The whole ``gesturert evaluate`` report as a JSON-able dict."""
    torch.set_num_threads(1)
    models = load_eval_models(posesync_ckpt, fgd_ckpt)
    model, normalization = load_generator_checkpoint(generator_ckpt)
    shuffled = None if shuffled_ckpt is None else load_generator_checkpoint(shuffled_ckpt)
    sequences = load_held_out(data, min_sequence_frames(models))
    refs = make_references(sequences, models)
    rows = evaluate_generator_model(model, normalization, sequences, models, refs, seed,
                                    shuffled=shuffled)
    sync = posesync_separation(sequences, models, refs)
    checkpoints = {"generator": str(generator_ckpt), "posesync": str(posesync_ckpt),
                   "fgd": str(fgd_ckpt)}
    if shuffled_ckpt is not None:
        checkpoints["shuffled_generator"] = str(shuffled_ckpt)
    return {"data": str(data), "sequences": len(sequences),
            "frames": sum(s.num_frames for s in sequences), "seed": seed,
            "checkpoints": checkpoints, "styles": style_report(model, sequences),
            "lookahead_frames": model.config.lookahead_frames, "methods": rows,
            "posesync": sync, "acceptance": acceptance_checks(sync, rows),
            "machine": machine_description()}
