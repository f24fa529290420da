"""Training loop of PoseSyncNet (``gesturert train posesync``).

Data: every speaker of an SDT-layout corpus (train/data/sdt.py). Consecutive clips of one
interval and one role are joined into sequences (their audio concatenates without drift),
poses go to canonical units with the speaker's statistics (undetected joints -> NaN, which
pose imaging leaves out), each frame is imaged once (sdk.pose_image) and the MFCC is the
runtime's (sdk.mfcc). ``train`` clips train; ``dev``/``val``/``test`` clips are held out.

Pairs (each step, ``run.batch_size`` anchors): the anchor's audio clip at frame i, its
aligned pose clip (y = 1), and one shifted pose clip (y = 0): with probability
``data.same_sequence_fraction`` the same sequence at ``i +- s``, ``min_shift <= s <=
max_shift``, otherwise a random clip of the whole training set. The choices come from
torch's global RNG, which checkpoints carry, so a resumed run draws what the
uninterrupted one would have.

Held-out evaluation: ROC AUC of ``-d`` for aligned vs shifted clips (shifts drawn as in
training, from a fixed seed), and the offset sweep of sdk.psd per held-out sequence
(fraction with best offset 0, PSD). Outputs in ``--out``: ``posesync.pt``, ``tb/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.psd import DEFAULT_MAX_OFFSET, clip_distances, sequence_embeddings, sweep_embeddings
from train.config import OptimConfig, RunConfig
from train.data.audio_augmentation import AudioAugmentation
from train.loop import configure_process, run_in_one_process
from train.metrics.auc import roc_auc
from train.metrics.psd import torch_embed_fn
from train.models.posesync import PoseSyncConfig, PoseSyncNet, contrastive_loss
from train.posesync_data import SyncCorpus, load_sync_corpus
from train.step_loop import StepLoop, optimizer_step

CHECKPOINT_NAME = "posesync.pt"


@dataclass(frozen=True)
class PoseSyncDataConfig:
    """Pair sampling and held-out evaluation.

    Attributes:
        min_shift, max_shift: |i - j| range of same-sequence negatives, pose frames.
        same_sequence_fraction: share of negatives taken from the anchor's own sequence
            (the rest: any training clip).
        max_offset: offset sweep range of the held-out evaluation, pose frames.
        eval_seed: seed of the held-out negatives (evaluation never touches the global RNG).
        audio_augmentation_copies: C corrupted copies of every training sequence's audio
            (the generator's corruption, train/data/audio_augmentation.py, gain 0, noise at
            ``augment_snr_db``); each anchor's audio clip is clean or one of the copies,
            uniformly (C = 1: half corrupted, as the generator's default). 0 = off.
        augment_snr_db: SNR range of the copies' noise, dB.
        augment_hum_probability, augment_dc_probability: share of the copies that also get
            mains hum / a DC offset (train.data.audio_augmentation; 0 = off).
    """

    min_shift: int = 3
    max_shift: int = 15
    same_sequence_fraction: float = 0.75
    max_offset: int = DEFAULT_MAX_OFFSET
    eval_seed: int = 1234
    audio_augmentation_copies: int = 0
    augment_snr_db: tuple[float, float] = (20.0, 45.0)
    augment_hum_probability: float = 0.0
    augment_dc_probability: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_shift <= self.max_shift:
            raise ValueError(f"need 1 <= data.min_shift <= data.max_shift, got "
                             f"{self.min_shift}, {self.max_shift}")
        if not 0.0 <= self.same_sequence_fraction <= 1.0:
            raise ValueError("data.same_sequence_fraction must be in [0, 1]")
        if self.audio_augmentation_copies < 0:
            raise ValueError(f"data.audio_augmentation_copies must be >= 0, got "
                             f"{self.audio_augmentation_copies}")

    def augmentation(self) -> AudioAugmentation | None:
        """The corruption of the training audio's copies (None when there are none)."""
        if self.audio_augmentation_copies == 0:
            return None
        return AudioAugmentation(probability=1.0, gain_db=0.0,
                                 snr_db=tuple(self.augment_snr_db),  # type: ignore[arg-type]
                                 hum_probability=self.augment_hum_probability,
                                 dc_probability=self.augment_dc_probability)


@dataclass(frozen=True)
class PoseSyncTrainingConfig:
    """Everything ``gesturert train posesync`` reads (train/configs/posesync.yaml)."""

    model: PoseSyncConfig = field(default_factory=PoseSyncConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    data: PoseSyncDataConfig = field(default_factory=PoseSyncDataConfig)


def sample_negatives(corpus: SyncCorpus, anchors: torch.Tensor, data: PoseSyncDataConfig
                     ) -> torch.Tensor:
    """(B,) training clip indices -> (B,) clip indices of shifted pose clips (global RNG)."""
    n = anchors.shape[0]
    seq_first = torch.from_numpy(corpus.clip_seq_first)[anchors]  # first clip of the sequence
    seq_count = torch.from_numpy(corpus.clip_seq_count)[anchors]
    local = anchors - seq_first
    shift = torch.randint(data.min_shift, data.max_shift + 1, (n,))
    sign = torch.where(torch.rand(n) < 0.5, -1, 1)
    target = local + sign * shift
    flipped = local - sign * shift
    target = torch.where((target >= 0) & (target < seq_count), target, flipped)
    same_ok = (target >= 0) & (target < seq_count)
    same = (torch.rand(n) < data.same_sequence_fraction) & same_ok
    anywhere = torch.randint(0, corpus.num_clips, (n,))
    far = (anywhere - anchors).abs() >= data.min_shift  # a random clip close by is no negative
    anywhere = torch.where(far, anywhere, (anchors + corpus.num_clips // 2) % corpus.num_clips)
    return torch.where(same, seq_first + target, anywhere)


def pair_batch(corpus: SyncCorpus, anchors: torch.Tensor, data: PoseSyncDataConfig,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Anchors (B,) -> mfcc (B, 13, 60), pose clips (2B, 9, H, W) [aligned; shifted], y (2B,)."""
    negatives = sample_negatives(corpus, anchors, data)
    variants = None  # clean, or one of the corrupted copies per anchor (global RNG)
    if corpus.num_variants > 1:
        variants = torch.randint(0, corpus.num_variants, (len(anchors),)).numpy()
    mfcc = torch.from_numpy(corpus.audio_clips(anchors.numpy(), variants)).to(device)
    images = torch.from_numpy(corpus.pose_clips(torch.cat([anchors, negatives]).numpy()))
    labels = torch.cat([torch.ones(len(anchors)), torch.zeros(len(anchors))])
    return mfcc, images.to(device), labels.to(device)


@torch.no_grad()
def evaluate_posesync(model: PoseSyncNet, corpus: SyncCorpus, data: PoseSyncDataConfig,
                      features: FeatureConfig = DEFAULT_FEATURES) -> dict[str, float]:
    """Held-out AUC (aligned vs shifted), offset-sweep accuracy and PSD (sdk.psd path)."""
    was_training = model.training
    embed = torch_embed_fn(model)
    rng = np.random.default_rng(data.eval_seed)
    aligned, shifted, best, psds = [], [], [], []
    for seq in corpus.held_out:
        audio_emb, pose_emb = sequence_embeddings(embed, seq.mfcc, seq.canonical,
                                                  features=features, imaging=corpus.imaging,
                                                  clip=corpus.clip)
        n = audio_emb.shape[0]
        aligned.append(clip_distances(audio_emb, pose_emb))
        i = np.arange(n)
        shift = rng.integers(data.min_shift, data.max_shift + 1, n) * rng.choice([-1, 1], n)
        j = np.where((i + shift >= 0) & (i + shift < n), i + shift, i - shift)
        ok = (j >= 0) & (j < n)
        shifted.append(clip_distances(audio_emb[i[ok]], pose_emb[j[ok]]))
        if n >= 2 * data.max_offset + 1:
            sweep = sweep_embeddings(audio_emb, pose_emb, data.max_offset)
            best.append(sweep.best_offset)
            psds.append(sweep.psd)
    model.train(was_training)
    if not aligned:
        return {}
    d_pos, d_neg = np.concatenate(aligned), np.concatenate(shifted)
    scores = -np.concatenate([d_pos, d_neg])
    labels = np.concatenate([np.ones(d_pos.size), np.zeros(d_neg.size)])
    result = {"auc": roc_auc(scores, labels), "d_aligned": float(d_pos.mean()),
              "d_shifted": float(d_neg.mean())}
    if best:
        result.update(offset_accuracy=float(np.mean(np.asarray(best) == 0)),
                      mean_abs_offset=float(np.mean(np.abs(best))), psd=float(np.mean(psds)),
                      sweep_sequences=float(len(best)))
    return result


def train_posesync(config: PoseSyncTrainingConfig, corpus: SyncCorpus, out_dir: str | Path,
                   resume: bool = False, device: str | None = None,
                   show_progress: bool = True, stop_after: int | None = None
                   ) -> dict[str, float]:
    """Train (or resume) PoseSyncNet; writes ``out_dir/posesync.pt``.

    Single process (PoseSyncNet trains in minutes on a CPU; under torchrun only rank 0
    would be needed, so DDP is refused rather than silently duplicated).
    Returns the last logged training loss, seconds, and the held-out metrics (``val_*``).
    """
    return run_in_one_process(device, "PoseSyncNet", lambda torch_device: _train(
        config, corpus, Path(out_dir), resume, torch_device, show_progress, stop_after))


def _train(config: PoseSyncTrainingConfig, corpus: SyncCorpus, out_dir: Path, resume: bool,
           device: torch.device, show_progress: bool, stop_after: int | None
           ) -> dict[str, float]:
    if corpus.imaging != config.model.imaging or corpus.clip != config.model.clip:
        raise ValueError("the corpus was imaged or clipped differently from model.imaging / "
                         "model.clip_frames; load it with the model config's settings")
    configure_process(config.run)
    model = PoseSyncNet(config.model, corpus.features).to(device)
    loop = StepLoop.start(
        model, config, "posesync", corpus.features, out_dir, CHECKPOINT_NAME, resume=resume,
        stop_after=stop_after, show_progress=show_progress,
        evaluate=lambda: evaluate_posesync(model, corpus, config.data, corpus.features))
    if not resume:
        model.set_mfcc_stats(*corpus.mfcc_statistics())
    optimizer = loop.optimizer

    def train_step(anchors: list[int]) -> dict[str, float]:
        mfcc, images, labels = pair_batch(corpus, torch.as_tensor(anchors), config.data, device)
        audio_emb = model.embed_audio(mfcc)
        pose_emb = model.embed_pose(images)
        loss = contrastive_loss(audio_emb.repeat(2, 1), pose_emb, labels, config.model.margin)
        optimizer_step(optimizer, loss, model, config.optim.grad_clip)
        return {"loss": loss.item()}

    model.train()
    return loop.train(loop.batches(corpus.num_clips), train_step)


def train_posesync_main(args: Any) -> int:
    """``gesturert train posesync``: returns 0 on success, 2 on bad input."""
    from train.cli import report_training
    from train.config import load_config
    from train.data.check import require_trainable

    def train() -> dict[str, float]:
        config = load_config(PoseSyncTrainingConfig, args.config, args.overrides)
        require_trainable(Path(args.data), config.model.clip.clip_frames, stride_frames=1)
        corpus = load_sync_corpus(Path(args.data), config.model.imaging,
                                  clip=config.model.clip,
                                  augmentation=config.data.augmentation(),
                                  copies=config.data.audio_augmentation_copies,
                                  seed=config.run.seed)
        return train_posesync(config, corpus, args.out, resume=args.resume,
                              device=args.device,
                              show_progress=not getattr(args, "no_progress", False))

    return report_training("posesync", train, "posesync trained",
                           Path(args.out) / CHECKPOINT_NAME)
