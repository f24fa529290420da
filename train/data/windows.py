"""Training windows over an SDT corpus: features with lookahead, poses, saliency labels.

Clips (:mod:`train.data.sdt`) that tile an interval (same speaker, split and interval_id,
each ``start`` equal to the previous ``end``) are joined into one *sequence*; other
clips are sequences of their own (real SDT clips overlap and stay separate). Per
sequence, MFCC and feature frames (``sdk.mfcc``) are computed once, in ``__init__``,
over the sequence audio followed by silence, exactly as a stream over that audio would.

A window is pose frames [s, s + T) of a sequence with s + T <= its length. Starts step
by ``stride_frames`` and are rounded down to a multiple of ``frame_alignment(config)``
(3 frames = 200 ms = 20 MFCC hops at 15 fps / 100 Hz), so the window's first sample and
first MFCC frame fall on the same instant and window-local frame i maps to MFCC frame
``config.mfcc_start(i)`` as in a stream that starts at the window. Each item is a dict:

* ``features`` float32 (T + L, feature_dim): raw feature frames s .. s+T+L-1; frames
  past the sequence end are features of trailing silence.
* ``pose`` float32 (T, 122, 2) standardised, masked joints 0 (the training mean);
  ``canonical`` float32 (T, 122, 2), masked joints NaN.
* ``mask`` float32 (T, 122): 1 where the joint was observed (confidence > 0, neck too;
  :mod:`train.data.sequences`), 0 where it was not: losses and metrics skip those.
  Windows with more than ``max_missing_fraction`` of their joints missing are dropped
  (``dropped_windows`` counts them).
* ``saliency`` float32 (T,) frame ground truth in {0, 1}, NaN when the corpus has none;
  ``posture`` int64 (T,) posture ids, -1 = none or unknown.
* ``label_weight`` float32 (): 1, or 0 for a window whose ``seq_label`` is ambiguous
  (above); the detector loss weights windows by it.
* ``augmented`` float32 (): 1 if ``features`` come from augmented audio, else 0.
* ``seq_label`` float32 (): 1 if the window holds a salient posture. With ground truth
  and ``detector_label="any"``: 1 iff any frame's saliency is 1. With
  ``detector_label="complete"`` (:func:`complete_posture_label`): 1 iff a posture *starts*
  in the window and at least ``label_frames`` of its frames (all, when it is shorter) lie
  in it; 0 iff no frame is salient; any other window (a posture cut by the window's
  start, whose cue was spoken before the window's audio, or one with fewer than
  ``label_frames`` frames in it) is ambiguous for a top-k detector and gets
  ``label_weight`` 0. Without ground truth: 1 iff the window's wrist motion range
  (:func:`wrist_motion_range`) exceeds ``motion_threshold``, by default
  :func:`motion_label_threshold` of this dataset's window ranges: Otsu's threshold on
  their logarithm, which splits large-range windows from beat-and-sway windows without
  assuming how many there are (pass the training set's threshold to the validation
  set). On the synthetic corpus this proxy agrees with the ground-truth label on over
  90% of windows; the misses hold only the first or last frames of a posture.
* ``audio`` float32 (ceil(T * sr / fps),): the window's samples (zero padded at the end).
* ``mfcc`` float32 (mfcc_start(T), n_mfcc): MFCC frames of the window's time span
  (PoseSyncNet clips of 9 frames at i use rows [mfcc_start(i), mfcc_start(i) + 60)).
* ``sequence``, ``start`` int64: where the window comes from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.mfcc import MfccMatrices, feature_frames, mfcc_offline
from sdk.normalization import PoseNormalization
from sdk.skeleton import UPPER_BODY_122
from train.data.audio_augmentation import AudioAugmentation, warped_filterbank
from train.data.generator_data import GeneratorData, sampled_feature_statistics
from train.data.sdt import SdtClip, clip_sample_range
from train.data.sequences import PoseSequence, count_windows, frame_alignment, join_clips

__all__ = ["AudioAugmentation", "PoseSequence", "WindowDataset", "complete_posture_label",
           "frame_alignment", "generator_data", "join_clips", "motion_label_threshold",
           "otsu_threshold", "wrist_motion_range"]

WRISTS = (UPPER_BODY_122.joint_names.index("right_wrist"),
          UPPER_BODY_122.joint_names.index("left_wrist"))


def wrist_motion_range(canonical: np.ndarray) -> float:
    """Largest peak-to-peak displacement of either wrist along x or y (canonical units).

    canonical: (T, 122, 2), NaN where a joint is missing (left out); 0 when no wrist is
    seen. The sequence-level saliency proxy for data without ground truth: salient
    postures are large-range motions (see PAPER.md).
    """
    wrists = canonical[:, list(WRISTS)]  # (T, 2, 2)
    seen = np.isfinite(wrists)
    if not seen.any():
        return 0.0
    high = np.where(seen, wrists, -np.inf).max(axis=0)
    low = np.where(seen, wrists, np.inf).min(axis=0)
    return float(np.max(np.where(np.isfinite(high - low), high - low, 0.0)))


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of a 1-D sample: the cut maximising the between-class variance.

    Returns the midpoint between the two values around the best cut; inf for fewer than
    two distinct values (then no window is labelled salient).
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size < 2 or x[0] == x[-1]:
        return math.inf
    n = x.size
    k = np.arange(1, n)
    cumulative = np.cumsum(x)
    mean_low = cumulative[:-1] / k
    mean_high = (cumulative[-1] - cumulative[:-1]) / (n - k)
    between = k * (n - k) * (mean_low - mean_high) ** 2
    between[x[1:] == x[:-1]] = -1.0  # only cut between distinct values
    best = int(np.argmax(between))
    return float(0.5 * (x[best] + x[best + 1]))


DETECTOR_LABELS = ("any", "complete")


def complete_posture_label(saliency: np.ndarray, start: int, frames: int, label_frames: int
                           ) -> tuple[float, float]:
    """(label, weight) of window [start, start + frames) of a sequence's frame ground truth.

    Args:
        saliency: (F,) float frame saliency of the whole sequence, {0, 1}.
        start, frames: the window; label_frames: k of the detector's top-k mean.
    Returns:
        (1, 1) when a posture (a run of salient frames) starts in the window (its first
        frame at or after ``start``) and min(k, its length) of its frames lie in it; (0, 1)
        when no frame of the window is salient; (0, 0) otherwise: the top-k mean of a
        detector that hears the window's audio can match neither label there (a posture
        whose start, and so its spoken cue, came before the window; or too few of its
        frames inside for k high scores).
    """
    if label_frames < 1 or frames < 1:
        raise ValueError(f"need label_frames >= 1 and frames >= 1, got {label_frames}, {frames}")
    salient = np.asarray(saliency) > 0.5
    window = salient[start:start + frames]
    if not window.any():
        return 0.0, 1.0
    edges = np.diff(np.concatenate([[0], salient.astype(np.int8), [0]]))
    run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    end = start + frames
    for a, b in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        if start <= a < end and min(b, end) - a >= min(label_frames, b - a):
            return 1.0, 1.0
    return 0.0, 0.0


def motion_label_threshold(ranges: np.ndarray) -> float:
    """Wrist-range threshold (canonical units) separating salient windows: Otsu on log range.

    The log makes the cut scale-free: idle/beat windows (~0.1 shoulder widths) and
    posture windows (0.3-1.5) separate by ratio, not by difference.
    """
    logs = np.log(np.maximum(np.asarray(ranges, dtype=np.float64), 1e-6))
    return float(np.exp(otsu_threshold(logs)))


class WindowDataset(Dataset):  # type: ignore[type-arg]
    """Map-style dataset of training windows (see the module docstring).

    Args:
        clips: loaded clips (any speakers and splits; filter before).
        normalization: standardises canonical poses (mean/std per joint and axis).
        window_frames: T. lookahead_frames: L. stride_frames: step between window starts.
        scales: speaker -> pixels per canonical unit; default normalization.scale_px.
        matrices: MFCC matrices; default ``MfccMatrices.default()`` (DEFAULT_FEATURES).
        motion_threshold: wrist-range threshold for windows without ground truth;
            default: :func:`motion_label_threshold` of this dataset's window ranges.
        augmentation: when given, every ``__getitem__`` corrupts the window's audio with
            it (seeded from torch's global RNG) and recomputes ``features`` from the
            corrupted audio exactly as a stream would (``audio``/``mfcc`` stay clean).
        max_missing_fraction: windows with more of their joints missing are dropped.
        styles: speaker -> gesture-style index (train/data/styles.py); every window then
            carries ``style`` (int64). None: windows carry no style.
        detector_label: "any" or "complete", the ``seq_label`` rule with ground truth (see
            the module docstring); label_frames: its k (the detector's top-k).
    """

    def __init__(self, clips: Sequence[SdtClip], normalization: PoseNormalization,
                 window_frames: int = 64, lookahead_frames: int = 0, stride_frames: int = 16,
                 config: FeatureConfig = DEFAULT_FEATURES,
                 scales: Mapping[str, float] | None = None,
                 matrices: MfccMatrices | None = None,
                 motion_threshold: float | None = None,
                 augmentation: AudioAugmentation | None = None,
                 max_missing_fraction: float = 1.0,
                 styles: Mapping[str, int] | None = None, detector_label: str = "any",
                 label_frames: int = 16) -> None:
        if detector_label not in DETECTOR_LABELS:
            raise ValueError(f"detector_label must be one of {DETECTOR_LABELS}, got "
                             f"{detector_label!r}")
        if label_frames < 1:
            raise ValueError(f"label_frames must be >= 1, got {label_frames}")
        self.detector_label, self.label_frames = detector_label, label_frames
        if window_frames < 1 or lookahead_frames < 0 or stride_frames < 1:
            raise ValueError(f"need window_frames >= 1, lookahead_frames >= 0, stride_frames "
                             f">= 1; got {window_frames}, {lookahead_frames}, {stride_frames}")
        if normalization.num_joints != UPPER_BODY_122.num_joints:
            raise ValueError(f"normalization has {normalization.num_joints} joints, expected "
                             f"{UPPER_BODY_122.num_joints} (UPPER_BODY_122)")
        self.config, self.normalization = config, normalization
        self.window_frames, self.lookahead_frames = window_frames, lookahead_frames
        matrices = MfccMatrices.default() if matrices is None else matrices
        self.matrices, self.augmentation = matrices, augmentation
        self.sequences = join_clips(clips)
        missing = sorted({s.speaker for s in self.sequences} - set(styles or {}))
        if styles is not None and missing:
            raise ValueError(f"no style for speakers {missing}; styles has {sorted(styles)}")
        self.styles = styles
        self.mfcc: list[np.ndarray] = []  # per sequence (M, n_mfcc)
        self.features: list[np.ndarray] = []  # per sequence (F + L, feature_dim)
        self.canonical: list[np.ndarray] = []  # per sequence (F, 122, 2), NaN = missing
        self.masks = [seq.joint_mask() for seq in self.sequences]  # per sequence (F, 122)
        for seq, mask in zip(self.sequences, self.masks, strict=True):
            frames = seq.num_frames + lookahead_frames
            mfcc = mfcc_offline(seq.audio, config, matrices,
                                max(config.mfcc_frames_needed(frames),
                                    config.mfcc_start(seq.num_frames)))
            self.mfcc.append(mfcc)
            self.features.append(feature_frames(mfcc, config, 0, frames))
            if scales is not None and seq.speaker not in scales:
                raise ValueError(f"no pixel scale for speaker {seq.speaker!r}; scales has "
                                 f"{sorted(scales)}")
            scale = normalization.scale_px if scales is None else scales[seq.speaker]
            model_px = UPPER_BODY_122.from_openpose(seq.pose_px)
            canonical = ((model_px - model_px[:, :1]) / np.float32(scale)).astype(np.float32)
            canonical[~mask] = np.nan
            self.canonical.append(canonical)
        self.sequence_rms = [float(np.sqrt(np.mean(np.square(seq.audio, dtype=np.float64))))
                             if seq.audio.size else 0.0 for seq in self.sequences]
        counted = count_windows(self.masks, window_frames, stride_frames,
                                frame_alignment(config), max_missing_fraction)
        self.windows: list[tuple[int, int]] = counted.kept
        self.dropped_windows = counted.dropped
        ranges = [wrist_motion_range(self.canonical[i][s:s + window_frames])
                  for i, s in self.windows]
        self.motion_ranges = np.asarray(ranges, dtype=np.float64)
        if motion_threshold is None:
            motion_threshold = motion_label_threshold(self.motion_ranges)
        self.motion_threshold = motion_threshold

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.windows):
            raise IndexError(f"window {index} out of range 0..{len(self.windows) - 1}")
        i, s = self.windows[index]
        seq, t, cfg = self.sequences[i], self.window_frames, self.config
        canonical = self.canonical[i][s:s + t]
        if seq.saliency is not None and seq.posture is not None:
            saliency = seq.saliency[s:s + t].astype(np.float32)
            posture = seq.posture[s:s + t].astype(np.int64)
            label, weight = float(saliency.max() > 0.5), 1.0
            if self.detector_label == "complete":
                label, weight = complete_posture_label(seq.saliency, s, t, self.label_frames)
        else:
            weight = 1.0
            saliency = np.full(t, np.nan, dtype=np.float32)
            posture = np.full(t, -1, dtype=np.int64)
            label = float(self.motion_ranges[index] > self.motion_threshold)
        a, b = clip_sample_range(s, s + t, cfg)
        audio = np.zeros(b - a, dtype=np.float32)
        piece = seq.audio[a:b]
        audio[: piece.shape[0]] = piece
        m0 = int(cfg.mfcc_start(s))
        features = self.features[i][s:s + t + self.lookahead_frames]
        augmented = False
        if self.augmentation is not None:
            features, augmented = self._augmented_features(i, m0, features)
        return {
            "features": features,
            "pose": np.nan_to_num(self.normalization.standardize(canonical), nan=0.0),
            "canonical": canonical,
            "mask": self.masks[i][s:s + t].astype(np.float32),
            "saliency": saliency,
            "posture": posture,
            "seq_label": np.float32(label),
            "label_weight": np.float32(weight),
            "augmented": np.float32(augmented),
            "audio": audio,
            "mfcc": self.mfcc[i][m0:m0 + int(cfg.mfcc_start(t))],
            "sequence": np.int64(i),
            "start": np.int64(s),
        } | ({} if self.styles is None else {"style": np.int64(self.styles[seq.speaker])})

    def _augmented_features(self, i: int, m0: int, clean: np.ndarray
                            ) -> tuple[np.ndarray, bool]:
        """(T + L, feature_dim) features of the window whose first MFCC frame is ``m0``,
        from augmented audio: MFCC frame j is centred on sample j * hop, so the audio
        from ``m0 * hop - pre`` (pre = whole hops >= n_fft / 2; zeros before the sequence)
        gives frames m0 - pre/hop, ...; the first pre/hop (front-padded) are dropped."""
        cfg, seq = self.config, self.sequences[i]
        assert self.augmentation is not None
        frames = self.window_frames + self.lookahead_frames
        needed = int(cfg.mfcc_frames_needed(frames))
        hop = cfg.hop_length
        skip = -(-(cfg.n_fft // 2) // hop)
        first = (m0 - skip) * hop
        stop = (m0 + needed) * hop + cfg.n_fft // 2
        segment = np.zeros(stop - first, dtype=np.float32)
        lo, hi = max(first, 0), min(stop, seq.audio.shape[0])
        if hi > lo:
            segment[lo - first:hi - first] = seq.audio[lo:hi]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        if rng.random() >= self.augmentation.probability:
            return clean, False
        corrupted = dataclasses.replace(self.augmentation, probability=1.0).apply(
            segment, self.sequence_rms[i], cfg.sample_rate, rng)
        matrices = warped_filterbank(self.matrices, self.augmentation.warp_factor(rng))
        mfcc = mfcc_offline(corrupted, cfg, matrices, skip + needed,
                            first_index=m0 - skip)[skip:]
        return feature_frames(mfcc, cfg, 0, frames), True

    def feature_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std (feature_dim,) float32 of the raw feature frames of every sequence
        (each frame once; lookahead frames past a sequence end excluded); std floored at
        1e-3. With an augmentation, of augmented windows instead (what training feeds)."""
        if self.augmentation is not None:
            return sampled_feature_statistics(self)
        return feature_statistics(self)


def feature_statistics(dataset: WindowDataset) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (feature_dim,) float32 over the dataset's sequences (see the method)."""
    frames = [f[: s.num_frames] for f, s in zip(dataset.features, dataset.sequences,
                                                 strict=True)]
    if not frames:
        raise ValueError("feature_statistics: the dataset has no sequences")
    stacked = np.concatenate(frames).astype(np.float64)
    return (stacked.mean(axis=0).astype(np.float32),
            np.maximum(stacked.std(axis=0), 1e-3).astype(np.float32))


def generator_data(data_dir: Path, config: Any) -> Any:
    """Train/val windows of an SDT corpus for ``train.generator_training``.

    ``config`` is a GeneratorTrainingConfig: ``config.data`` (window_frames, stride_frames,
    val_fraction; audio_augmentation, augment_gain_db, augment_snr_db for the training
    windows only) and ``config.model.lookahead_frames`` are read. Every speaker under
    ``data_dir`` is used. Training and validation clips: :func:`train.data.sdt.generator_splits`.
    Windows with more than ``config.data.max_missing_fraction`` of their joints missing
    are dropped (both sets' ``dropped_windows``).
    Poses are canonical per speaker and standardised with statistics pooled over the
    training clips (:func:`train.data.sdt.compute_normalization`). Every window carries
    its speaker's style index (train/data/styles.py); the style table (names of the
    training clips' styles, sorted) and default go into ``GeneratorData``.
    """
    from train.data.sdt import (
        compute_normalization,
        generator_splits,
        list_speakers,
        speaker_scales,
    )
    from train.data.styles import default_style, speaker_style, style_indices
    speakers = list_speakers(Path(data_dir))
    if not speakers:
        raise FileNotFoundError(f"{data_dir}: no <speaker>/processed_137.csv under it")
    train_clips, val_clips = generator_splits(Path(data_dir), config.data.val_fraction)
    if not train_clips:
        raise ValueError(f"{data_dir}: no clips in the 'train' split")
    normalization = compute_normalization(train_clips)
    scales = speaker_scales(train_clips)
    speaker_styles = {s: speaker_style(Path(data_dir), s) for s in speakers}
    names = tuple(sorted({speaker_styles[c.speaker] for c in train_clips}))
    kwargs: dict[str, Any] = dict(
        window_frames=config.data.window_frames, lookahead_frames=config.model.lookahead_frames,
        stride_frames=config.data.stride_frames, scales=scales,
        max_missing_fraction=getattr(config.data, "max_missing_fraction", 1.0),
        detector_label=getattr(config.data, "detector_label", "any"),
        label_frames=getattr(config.model, "top_k", 16),
        styles=style_indices({s: speaker_styles[s] for s in {c.speaker for c in train_clips}
                              | {c.speaker for c in val_clips}}, names))
    augment = None
    if getattr(config.data, "audio_augmentation", False):  # absent: a config from before it
        augment = AudioAugmentation(probability=config.data.augment_probability,
                                    gain_db=config.data.augment_gain_db,
                                    snr_db=tuple(config.data.augment_snr_db),
                                    warp=tuple(getattr(config.data, "augment_warp", (1.0, 1.0))),
                                    reverb_probability=getattr(
                                        config.data, "augment_reverb_probability", 0.0),
                                    hum_probability=getattr(
                                        config.data, "augment_hum_probability", 0.0),
                                    dc_probability=getattr(
                                        config.data, "augment_dc_probability", 0.0))
    train_set = WindowDataset(train_clips, normalization, augmentation=augment, **kwargs)
    if len(train_set) == 0:
        raise ValueError(
            f"{data_dir}: no training window of {config.data.window_frames} frames "
            f"({config.data.window_frames / DEFAULT_FEATURES.fps:.1f} s); "
            f"{train_set.dropped_windows} dropped for more than "
            f"{100 * kwargs['max_missing_fraction']:.0f}% missing joints. "
            "Run `gesturert data check` on it")
    default = default_style(speaker_styles[train_set.sequences[i].speaker]
                            for i, _ in train_set.windows)
    val_set = WindowDataset(val_clips, normalization, motion_threshold=train_set.motion_threshold,
                            **kwargs) if val_clips else None
    return GeneratorData(train=train_set, val=val_set, features=DEFAULT_FEATURES,
                         normalization=normalization, styles=names, default_style=default)
