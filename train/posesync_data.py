"""Whole sequences from an SDT-layout corpus, and PoseSyncNet's in-memory clip store.

SDT clips are 64 frames; PoseSyncNet's offset sweep needs ``9 + 2 * 15`` frames and more
to average over, so consecutive clips of one interval (``end`` of one == ``start`` of the
next) and of one role (training, or held out: dev/val/test) are joined back into
sequences. Their audio concatenates without drift (train/data/sdt.py writes clip k with
samples ``[ceil(k*sr/fps), ...)``), and the sequence's MFCC is computed from its own start,
as the runtime computes it from a stream's start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.mfcc import MfccMatrices, mfcc_offline
from sdk.normalization import PoseNormalization
from sdk.pose_image import ImagingConfig
from sdk.psd import DEFAULT_CLIP, PoseSyncClipConfig, sequence_images
from train.data.audio_augmentation import AudioAugmentation
from train.data.sdt import SdtClip, compute_normalization, list_speakers, load_speaker
from train.data.sequences import joint_mask

HELD_OUT_SPLITS = ("dev", "val", "test")
TRAIN_SPLIT = "train"


@dataclass(frozen=True)
class CorpusSequence:
    """Consecutive clips of one interval, joined.

    Attributes:
        speaker, interval_id: where it comes from; start: its first frame in the interval.
        held_out: True for dev/val/test clips.
        canonical: float32 (T, 122, 2) canonical poses; unobserved joints (confidence 0,
            or no neck in the frame: train.data.sequences.joint_mask) are NaN.
        audio: float32 (N,) at the feature sample rate.
        normalization: the speaker's statistics (from its training clips).
        saliency: float32 (T,) ground truth, or None when the corpus has none.
    """

    speaker: str
    interval_id: str
    start: int
    held_out: bool
    canonical: np.ndarray
    audio: np.ndarray
    normalization: PoseNormalization
    saliency: np.ndarray | None

    @property
    def num_frames(self) -> int:
        return int(self.canonical.shape[0])

    def observed(self) -> np.ndarray:
        """bool (T, 122): joints the data observed (the others are NaN in ``canonical``)."""
        return np.isfinite(self.canonical).all(axis=-1)

    def standardized(self) -> np.ndarray:
        """float32 (T, 122, 2) standardised poses, NaN (undetected) replaced by 0 (the mean)."""
        return np.nan_to_num(self.normalization.standardize(self.canonical), nan=0.0)


def _role(clip: SdtClip) -> str | None:
    if clip.split == TRAIN_SPLIT:
        return "train"
    return "held_out" if clip.split in HELD_OUT_SPLITS else None


def _join(clips: Sequence[SdtClip], normalization: PoseNormalization) -> CorpusSequence:
    canonical = np.concatenate([c.canonical(normalization) for c in clips])
    canonical[~joint_mask(np.concatenate([c.confidence for c in clips]))] = np.nan
    saliency = None
    if all(c.saliency is not None for c in clips):
        saliency = np.concatenate([c.saliency for c in clips if c.saliency is not None])
    first = clips[0]
    return CorpusSequence(first.speaker, first.interval_id, first.start, _role(first) != "train",
                          canonical.astype(np.float32),
                          np.concatenate([c.audio for c in clips]).astype(np.float32),
                          normalization, saliency)


def load_corpus_sequences(root: Path, features: FeatureConfig = DEFAULT_FEATURES
                          ) -> list[CorpusSequence]:
    """Every speaker's clips under ``root``, joined into sequences (see the module doc).

    Clips of other splits (e.g. SDT's ``idle``) are skipped.
    """
    speakers = list_speakers(root)
    if not speakers:
        raise FileNotFoundError(f"{root}: no <speaker>/processed_137.csv found; make a corpus "
                                "with `gesturert data synth --out DIR`")
    out: list[CorpusSequence] = []
    for speaker in speakers:
        clips = [c for c in load_speaker(root, speaker, config=features) if _role(c) is not None]
        train = [c for c in clips if _role(c) == "train"]
        if not train and not clips:
            raise ValueError(f"{Path(root) / speaker}: no '{TRAIN_SPLIT}' or held-out clips")
        # a speaker never trained on (a held-out voice: every clip 'test') is put in its
        # canonical frame by its own clips' statistics, as a new speaker would be
        normalization = compute_normalization(train or clips)
        clips.sort(key=lambda c: (c.interval_id, c.start))
        for _, group in groupby(clips, key=lambda c: c.interval_id):
            run: list[SdtClip] = []
            for clip in group:
                if run and (clip.start != run[-1].end or _role(clip) != _role(run[-1])):
                    out.append(_join(run, normalization))
                    run = []
                run.append(clip)
            if run:
                out.append(_join(run, normalization))
    return out


@dataclass(frozen=True)
class SyncSequence:
    """A held-out sequence for PSD: canonical (T, 122, 2) poses and (M, 13) MFCC."""

    canonical: np.ndarray
    mfcc: np.ndarray


def sequence_mfcc(audio: np.ndarray, num_pose_frames: int, features: FeatureConfig,
                  clip: PoseSyncClipConfig = DEFAULT_CLIP) -> np.ndarray:
    """(N,) audio -> (M, 13) MFCC long enough for every clip start 0 .. T - clip_frames.

    Frames past the audio are those of trailing silence (the runtime's rule).
    """
    last = max(num_pose_frames - clip.clip_frames, 0)
    needed = int(features.mfcc_start(last)) + clip.clip_mfcc_frames(features)
    matrices = MfccMatrices.default() if features == DEFAULT_FEATURES else None
    if matrices is None:
        raise ValueError("PoseSyncNet training computes MFCC with the shipped matrices of the "
                         "default FeatureConfig; other feature configs are not supported yet")
    return mfcc_offline(audio, features, matrices, num_frames=needed)


class SyncCorpus:
    """Training clips in memory: per-frame pose images and MFCC of all training sequences.

    Clip k (0 <= k < num_clips) starts at pose frame ``clip_frame[k]`` of the concatenated
    images and MFCC frame ``clip_mfcc[k]`` of the concatenated MFCC; it belongs to the
    sequence whose clips are ``clip_seq_first[k] .. + clip_seq_count[k]``.

    With an ``augmentation`` and ``copies`` = C > 0, each training sequence's audio is also
    corrupted C times (copy c of sequence s with ``default_rng([seed, s, c])``, the whole
    sequence at once, noise against its RMS) and featurised: ``audio_clips`` then takes
    variant 0 (clean) or 1..C (corrupted) per clip. Held-out sequences stay clean.
    """

    def __init__(self, train: Sequence[CorpusSequence], held_out: Sequence[CorpusSequence],
                 imaging: ImagingConfig, features: FeatureConfig = DEFAULT_FEATURES,
                 clip: PoseSyncClipConfig = DEFAULT_CLIP,
                 augmentation: AudioAugmentation | None = None, copies: int = 0,
                 seed: int = 0) -> None:
        if copies < 0 or (copies > 0 and augmentation is None):
            raise ValueError(f"copies must be >= 0 and need an augmentation, got {copies}")
        self.features, self.imaging, self.clip = features, imaging, clip
        images, mfccs, frame, mfcc_at, first, count = [], [], [], [], [], []
        corrupted: list[list[np.ndarray]] = [[] for _ in range(copies)]
        frames_so_far = mfcc_so_far = clips_so_far = 0
        for seq in train:
            n = seq.num_frames - clip.clip_frames + 1
            if n < 1:
                continue
            images.append(sequence_images(seq.canonical, imaging))
            mfccs.append(sequence_mfcc(seq.audio, seq.num_frames, features, clip))
            if augmentation is not None:  # copies > 0 needs one (checked above)
                rms = float(np.sqrt(np.mean(np.square(seq.audio, dtype=np.float64))))
                for c in range(copies):
                    audio = augmentation.apply(seq.audio, rms, features.sample_rate,
                                               np.random.default_rng([seed, len(images) - 1, c]))
                    corrupted[c].append(sequence_mfcc(audio, seq.num_frames, features, clip))
            starts = np.arange(n)
            frame.append(frames_so_far + starts)
            mfcc_at.append(mfcc_so_far + features.mfcc_start(starts))
            first.append(np.full(n, clips_so_far))
            count.append(np.full(n, n))
            frames_so_far += seq.num_frames
            mfcc_so_far += mfccs[-1].shape[0]
            clips_so_far += n
        if clips_so_far == 0:
            raise ValueError(f"no training sequence is at least {clip.clip_frames} frames long")
        self.images = np.concatenate(images)  # (F, H, W) float32
        # (1 + C, M, 13) float32: variant 0 the clean MFCC, 1..C the corrupted copies
        self.mfcc_variants = np.stack([np.concatenate(m) for m in (mfccs, *corrupted)])
        self.mfcc = self.mfcc_variants[0]  # (M, 13) float32, a view
        self.clip_frame = np.concatenate(frame)
        self.clip_mfcc = np.concatenate(mfcc_at).astype(np.int64)
        self.clip_seq_first = np.concatenate(first).astype(np.int64)
        self.clip_seq_count = np.concatenate(count).astype(np.int64)
        self.held_out = [
            SyncSequence(s.canonical, sequence_mfcc(s.audio, s.num_frames, features, clip))
            for s in held_out if s.num_frames >= clip.clip_frames
        ]

    @property
    def num_clips(self) -> int:
        return int(self.clip_frame.shape[0])

    @property
    def num_variants(self) -> int:
        """1 + the corrupted copies of the training audio (variant 0 = clean)."""
        return int(self.mfcc_variants.shape[0])

    def audio_clips(self, clips: np.ndarray, variants: np.ndarray | None = None) -> np.ndarray:
        """(B,) clip indices [, (B,) variants in 0 .. num_variants - 1; default clean]
        -> (B, 13, 60) float32 raw MFCC clips."""
        index = self.clip_mfcc[clips][:, None] + np.arange(self.clip.clip_mfcc_frames(
            self.features))
        if variants is None:
            return np.ascontiguousarray(self.mfcc[index].transpose(0, 2, 1))
        return np.ascontiguousarray(
            self.mfcc_variants[np.asarray(variants)[:, None], index].transpose(0, 2, 1))

    def pose_clips(self, clips: np.ndarray) -> np.ndarray:
        """(B,) clip indices -> (B, 9, H, W) float32 pose-image clips."""
        return self.images[self.clip_frame[clips][:, None] + np.arange(self.clip.clip_frames)]

    def mfcc_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-coefficient mean and std (13,) of the training MFCC (std floored at 1e-3)."""
        return (self.mfcc.mean(axis=0).astype(np.float32),
                np.maximum(self.mfcc.std(axis=0), 1e-3).astype(np.float32))


def load_sync_corpus(root: Path, imaging: ImagingConfig,
                     features: FeatureConfig = DEFAULT_FEATURES,
                     clip: PoseSyncClipConfig = DEFAULT_CLIP,
                     augmentation: AudioAugmentation | None = None, copies: int = 0,
                     seed: int = 0) -> SyncCorpus:
    """Sequences of the corpus at ``root`` imaged and featurised for PoseSyncNet (with
    ``copies`` corrupted versions of the training audio: :class:`SyncCorpus`)."""
    sequences = load_corpus_sequences(root, features)
    return SyncCorpus([s for s in sequences if not s.held_out],
                      [s for s in sequences if s.held_out], imaging, features, clip,
                      augmentation, copies, seed)
