"""Pose-Sync Distance (PSD): clip extraction, the distance, and the SyncNet-style offset sweep.

numpy only: the runtime (``gesturert validate``, the demo) plugs an ONNX Runtime session in
as ``embed_fn``; training plugs a torch model wrapped to take and return numpy arrays.

Clips (docs/architecture.md, "PoseSyncNet contract"):

* a **pose clip** starting at pose frame ``i`` is the ``clip_frames`` = 9 frames
  ``[i, i + 9)``, each imaged by :func:`sdk.pose_image.pose_images`, stacked as channels:
  ``(9, H, W)`` float32 in [0, 1];
* its **audio clip** is the MFCC frames ``[mfcc_start(i), mfcc_start(i) + 60)`` as
  ``(n_mfcc, 60)`` = (13, 60) float32 (coefficient-major, i.e. the transpose of the
  time-major ``(M, 13)`` MFCC array). 60 = ``clip_mfcc_frames`` = the MFCC frames spanned by
  9 pose frames (9 * 100 Hz / 15 fps), derived from the :class:`FeatureConfig`.

PSD of a sequence = the mean over its aligned clips of ``d = ||audio_emb - pose_emb||_2``
(lower is better). Its scale depends on the model: gesturert's PoseSyncNet L2-normalises
both embeddings, so ``0 <= d <= 2`` (unrelated clips sit near sqrt(2)).

Offset sweep (as SyncNet's evaluation): for every offset ``o`` in ``[-max_offset, max_offset]``
the audio clip at ``i`` is compared with the pose clip at ``i + o``, over the same audio clips
for every offset. **Sign convention**: ``best_offset = +2`` means the poses lag the audio by
2 frames (what is said at frame ``i`` is gestured at frame ``i + 2``); ``-2`` means they lead.
``confidence = median - min`` of the mean distance over offsets (SyncNet's LSE-C).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.pose_image import ImagingConfig, pose_images
from sdk.skeleton import MODEL_SKELETON, Skeleton

EmbedFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(mfcc clips (B, 13, 60), pose clips (B, 9, H, W)) -> (audio_emb (B, E), pose_emb (B, E))."""

DEFAULT_MAX_OFFSET = 15  # pose frames, as SyncNet's ±15-frame sweep


@dataclass(frozen=True)
class PoseSyncClipConfig:
    """Clip length of PoseSyncNet; the MFCC length follows from the feature config."""

    clip_frames: int = 9  # pose frames per clip (the paper's [P_i ... P_i+8])

    def __post_init__(self) -> None:
        if not isinstance(self.clip_frames, int) or self.clip_frames <= 0:
            raise ValueError(
                f"PoseSyncClipConfig.clip_frames must be a positive int, got {self.clip_frames!r}"
            )

    def clip_mfcc_frames(self, features: FeatureConfig = DEFAULT_FEATURES) -> int:
        """MFCC frames per audio clip: ceil(clip_frames * sample_rate / (fps * hop)) (60)."""
        den = features.fps * features.hop_length
        return -(-(self.clip_frames * features.sample_rate) // den)

    def num_clips(
        self, num_pose_frames: int, num_mfcc_frames: int, features: FeatureConfig = DEFAULT_FEATURES
    ) -> int:
        """How many clip starts 0, 1, ... fit both the poses and the MFCC frames.

        Clip ``i`` fits when ``i + clip_frames <= num_pose_frames`` and
        ``mfcc_start(i) + clip_mfcc_frames <= num_mfcc_frames``.
        """
        last_by_pose = num_pose_frames - self.clip_frames
        if last_by_pose < 0:
            return 0
        starts = np.arange(last_by_pose + 1)
        ends = features.mfcc_start(starts) + self.clip_mfcc_frames(features)
        return int(np.count_nonzero(ends <= num_mfcc_frames))


DEFAULT_CLIP = PoseSyncClipConfig()


def _as_starts(starts: np.ndarray | list[int] | range) -> np.ndarray:
    out = np.asarray(starts, dtype=np.int64).reshape(-1)
    if out.size and out.min() < 0:
        raise ValueError(f"clip starts must be >= 0, got min {int(out.min())}")
    return out


def audio_clips(
    mfcc: np.ndarray,
    starts: np.ndarray | list[int] | range,
    features: FeatureConfig = DEFAULT_FEATURES,
    clip: PoseSyncClipConfig = DEFAULT_CLIP,
) -> np.ndarray:
    """Cut the audio clips of pose-clip starts out of an MFCC sequence.

    Args:
        mfcc: (M, n_mfcc) float32, time-major MFCC frames at ``features.mfcc_rate``.
        starts: (n,) int pose-frame indices of the clips.
    Returns:
        (n, n_mfcc, clip_mfcc_frames) float32, i.e. (n, 13, 60): clip k holds MFCC frames
        ``[mfcc_start(starts[k]), + 60)`` coefficient-major.
    Raises:
        ValueError: wrong MFCC shape, or a clip that runs past the last MFCC frame
        (use :meth:`PoseSyncClipConfig.num_clips` to know which starts fit).
    """
    mfcc = np.asarray(mfcc, dtype=np.float32)
    if mfcc.ndim != 2 or mfcc.shape[1] != features.n_mfcc:
        raise ValueError(
            f"mfcc must be time-major (M, {features.n_mfcc}), got shape {mfcc.shape}"
        )
    starts = _as_starts(starts)
    length = clip.clip_mfcc_frames(features)
    first = np.asarray(features.mfcc_start(starts), dtype=np.int64).reshape(-1)
    if first.size and first.max() + length > mfcc.shape[0]:
        bad = int(starts[np.argmax(first + length > mfcc.shape[0])])
        raise ValueError(
            f"the audio clip of pose frame {bad} needs MFCC frames up to "
            f"{int(features.mfcc_start(bad)) + length}, but only {mfcc.shape[0]} were given; "
            "pass starts below PoseSyncClipConfig.num_clips(...)"
        )
    index = first[:, None] + np.arange(length)  # (n, 60)
    return np.ascontiguousarray(mfcc[index].transpose(0, 2, 1))  # (n, 13, 60)


def pose_clips(
    canonical: np.ndarray,
    starts: np.ndarray | list[int] | range,
    imaging: ImagingConfig | None = None,
    skeleton: Skeleton = MODEL_SKELETON,
    clip: PoseSyncClipConfig = DEFAULT_CLIP,
    imager: Any = None,
) -> np.ndarray:
    """Image a pose sequence and cut it into stacked-frame clips.

    Args:
        canonical: (T, J, 2) float32 poses in canonical units (neck-relative, / shoulder width).
        starts: (n,) int first pose frame of each clip.
        imaging: the pose imaging config (default ``ImagingConfig()``).
        imager: a CudaPoseImager to draw the images on the GPU (see :func:`sequence_images`).
    Returns:
        (n, clip_frames, H, W) float32 in [0, 1]: clip k = images of frames
        ``[starts[k], starts[k] + clip_frames)``. Each frame is imaged once, even when
        clips overlap.
    """
    images = sequence_images(canonical, imaging, skeleton, imager)
    return clips_from_images(images, starts, clip)


def sequence_images(
    canonical: np.ndarray, imaging: ImagingConfig | None = None,
    skeleton: Skeleton = MODEL_SKELETON, imager: Any = None,
) -> np.ndarray:
    """(T, J, 2) canonical poses -> (T, H, W) float32 pose images (one per frame).

    ``imager``: a :class:`sdk.cuda.pose.CudaPoseImager` for ``skeleton`` and ``imaging``
    draws them on the GPU instead (the same images bit for bit), else numpy does.
    """
    canonical = np.asarray(canonical, dtype=np.float32)
    if canonical.ndim != 3 or canonical.shape[1:] != (skeleton.num_joints, 2):
        raise ValueError(
            f"poses must be (T, {skeleton.num_joints}, 2) canonical coordinates, "
            f"got shape {canonical.shape}"
        )
    if imager is not None:
        if imager.skeleton != skeleton or imager.imaging != (imaging or ImagingConfig()):
            raise ValueError("the CudaPoseImager was made for another skeleton or imaging")
        return np.asarray(imager.images_to_host(canonical), np.float32)
    return np.asarray(pose_images(canonical, skeleton, imaging or ImagingConfig()), np.float32)


def clips_from_images(
    images: np.ndarray,
    starts: np.ndarray | list[int] | range,
    clip: PoseSyncClipConfig = DEFAULT_CLIP,
) -> np.ndarray:
    """(T, H, W) per-frame images -> (n, clip_frames, H, W) clips starting at ``starts``."""
    starts = _as_starts(starts)
    if starts.size and starts.max() + clip.clip_frames > images.shape[0]:
        raise ValueError(
            f"a pose clip starting at frame {int(starts.max())} needs {clip.clip_frames} frames, "
            f"but the sequence has {images.shape[0]}"
        )
    return images[starts[:, None] + np.arange(clip.clip_frames)]


def clip_distances(audio_emb: np.ndarray, pose_emb: np.ndarray) -> np.ndarray:
    """(n, E), (n, E) embeddings -> (n,) float64 L2 distances ``||audio - pose||_2``."""
    a = np.asarray(audio_emb, dtype=np.float64)
    p = np.asarray(pose_emb, dtype=np.float64)
    if a.shape != p.shape or a.ndim != 2:
        raise ValueError(f"embeddings must both be (n, E), got {a.shape} and {p.shape}")
    return np.linalg.norm(a - p, axis=1)


def psd(distances: np.ndarray) -> float:
    """PSD = mean of the (n,) aligned-clip distances of a sequence (or of a set of them)."""
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    if d.size == 0:
        raise ValueError("PSD needs at least one aligned clip distance, got none")
    return float(d.mean())


@dataclass(frozen=True)
class OffsetSweep:
    """Result of :func:`offset_sweep` for one sequence.

    Attributes:
        offsets: (2K+1,) int64, -K .. K pose frames (pose clip at audio clip start + offset).
        mean_distance: (2K+1,) float64 mean d per offset, over the same audio clips.
        best_offset: argmin offset; +2 = the poses lag the audio by 2 frames.
        min_distance: mean_distance at best_offset (SyncNet's LSE-D).
        confidence: median(mean_distance) - min_distance (SyncNet's LSE-C).
        psd: PSD of the sequence, mean d over all its aligned clips (offset 0).
        num_clips: aligned clips behind ``psd``.
    """

    offsets: np.ndarray
    mean_distance: np.ndarray
    best_offset: int
    min_distance: float
    confidence: float
    psd: float
    num_clips: int


def _embed_batched(
    embed_fn: EmbedFn, mfcc_clips: np.ndarray, pose_clip_batch: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    audio_parts, pose_parts = [], []
    for lo in range(0, mfcc_clips.shape[0], batch_size):
        a, p = embed_fn(mfcc_clips[lo : lo + batch_size], pose_clip_batch[lo : lo + batch_size])
        audio_parts.append(np.asarray(a, dtype=np.float64))
        pose_parts.append(np.asarray(p, dtype=np.float64))
    return np.concatenate(audio_parts), np.concatenate(pose_parts)


def sequence_embeddings(
    embed_fn: EmbedFn,
    mfcc: np.ndarray,
    canonical: np.ndarray,
    *,
    features: FeatureConfig = DEFAULT_FEATURES,
    imaging: ImagingConfig | None = None,
    skeleton: Skeleton = MODEL_SKELETON,
    clip: PoseSyncClipConfig = DEFAULT_CLIP,
    batch_size: int = 256,
    imager: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every clip start that fits a sequence (audio clip i and pose clip i).

    Args:
        embed_fn: see :data:`EmbedFn`; called with batches of at most ``batch_size``.
        mfcc: (M, 13) float32 time-major MFCC of the sequence's audio.
        canonical: (T, J, 2) float32 canonical poses of the same sequence.
        imager: a CudaPoseImager: the pose images are drawn on the GPU.
    Returns:
        (audio_emb (n, E), pose_emb (n, E)) float64, n = ``clip.num_clips(T, M)``;
        row i belongs to the clip starting at pose frame i.
    """
    mfcc = np.asarray(mfcc, dtype=np.float32)
    canonical = np.asarray(canonical, dtype=np.float32)
    if mfcc.ndim != 2:
        raise ValueError(f"mfcc must be (M, {features.n_mfcc}), got shape {mfcc.shape}")
    n = clip.num_clips(canonical.shape[0], mfcc.shape[0], features)
    if n == 0:
        raise ValueError(
            f"the sequence holds no whole clip ({clip.clip_frames} pose frames and their "
            f"MFCC frames): got {canonical.shape[0]} pose frames, {mfcc.shape[0]} MFCC frames"
        )
    starts = np.arange(n)
    return _embed_batched(
        embed_fn,
        audio_clips(mfcc, starts, features, clip),
        pose_clips(canonical, starts, imaging, skeleton, clip, imager),
        batch_size,
    )


def sweep_embeddings(
    audio_emb: np.ndarray, pose_emb: np.ndarray, max_offset: int = DEFAULT_MAX_OFFSET
) -> OffsetSweep:
    """The offset sweep over the per-clip embeddings of one sequence.

    Offset ``o`` averages ``d(audio[i], pose[i + o])`` over the audio clips ``i`` for which
    every offset in ``[-max_offset, max_offset]`` has a pose clip, so all offsets are
    averaged over the same audio; ``psd`` averages all n aligned pairs.

    Args:
        audio_emb, pose_emb: (n, E) embeddings of clips 0 .. n-1 (:func:`sequence_embeddings`).
        max_offset: K, pose frames either side.
    Raises:
        ValueError: fewer than ``2 * max_offset + 1`` clips (the sequence needs
        ``clip_frames + 2 * max_offset`` pose frames with their audio).
    """
    if not isinstance(max_offset, int) or max_offset < 0:
        raise ValueError(f"max_offset must be an int >= 0, got {max_offset!r}")
    audio_emb = np.asarray(audio_emb, dtype=np.float64)
    pose_emb = np.asarray(pose_emb, dtype=np.float64)
    distances = clip_distances(audio_emb, pose_emb)
    n = audio_emb.shape[0]
    if n < 2 * max_offset + 1:
        raise ValueError(
            f"an offset sweep of ±{max_offset} frames needs at least {2 * max_offset + 1} clips "
            f"({2 * max_offset} pose frames more than one clip, with their audio); this "
            f"sequence has {n} clips. Use a longer sequence or a smaller max_offset."
        )
    offsets = np.arange(-max_offset, max_offset + 1)
    audio_index = np.arange(max_offset, n - max_offset)  # (m,) shared by every offset
    pose_index = audio_index[None, :] + offsets[:, None]  # (2K+1, m)
    diff = audio_emb[audio_index][None, :, :] - pose_emb[pose_index]  # (2K+1, m, E)
    mean_distance = np.linalg.norm(diff, axis=2).mean(axis=1)
    best = int(np.argmin(mean_distance))
    min_distance = float(mean_distance[best])
    return OffsetSweep(
        offsets=offsets,
        mean_distance=mean_distance,
        best_offset=int(offsets[best]),
        min_distance=min_distance,
        confidence=float(np.median(mean_distance) - min_distance),
        psd=psd(distances),
        num_clips=n,
    )


def offset_sweep(
    embed_fn: EmbedFn,
    mfcc: np.ndarray,
    canonical: np.ndarray,
    max_offset: int = DEFAULT_MAX_OFFSET,
    *,
    features: FeatureConfig = DEFAULT_FEATURES,
    imaging: ImagingConfig | None = None,
    skeleton: Skeleton = MODEL_SKELETON,
    clip: PoseSyncClipConfig = DEFAULT_CLIP,
    batch_size: int = 256,
) -> OffsetSweep:
    """PSD and the SyncNet-style offset sweep of one sequence.

    :func:`sequence_embeddings` then :func:`sweep_embeddings`: every clip start that fits
    (see :meth:`PoseSyncClipConfig.num_clips`) is embedded once, audio and pose.

    Args:
        embed_fn: (mfcc clips (B, 13, 60), pose clips (B, 9, H, W)) -> (audio_emb (B, E),
            pose_emb (B, E)), numpy in and out.
        mfcc: (M, 13) float32 time-major MFCC of the sequence's audio.
        canonical: (T, J, 2) float32 canonical poses of the same sequence.
        max_offset: K, pose frames either side.
    Returns:
        :class:`OffsetSweep`.
    Raises:
        ValueError: the sequence is too short for the sweep (needs
        ``2 * max_offset + 1`` clips, i.e. ``clip_frames + 2 * max_offset`` frames).
    """
    if not isinstance(max_offset, int) or max_offset < 0:
        raise ValueError(f"max_offset must be an int >= 0, got {max_offset!r}")
    audio_emb, pose_emb = sequence_embeddings(
        embed_fn, mfcc, canonical, features=features, imaging=imaging, skeleton=skeleton,
        clip=clip, batch_size=batch_size,
    )
    return sweep_embeddings(audio_emb, pose_emb, max_offset)
