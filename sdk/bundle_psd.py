"""PSD of generated frames, measured with a bundle's PoseSyncNet.

:func:`posesync_embed_fn` wraps the bundle's ``posesync.onnx`` (or any runner of it) as
an :data:`sdk.psd.EmbedFn`; :func:`frames_psd` scores poses generated from some audio the
way the manifest's ``psd_reference`` was measured; :func:`mean_pose_psd` scores the
baseline a generator must beat on the same audio (the bundle's mean pose held still).
``gesturert demo`` and ``gesturert validate`` score frames with these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sdk.bundle import Bundle, BundleError, Manifest
from sdk.mfcc import MfccMatrices, mfcc_offline
from sdk.pose_image import ImagingConfig
from sdk.psd import (
    DEFAULT_MAX_OFFSET,
    EmbedFn,
    OffsetSweep,
    PoseSyncClipConfig,
    clip_distances,
    sequence_embeddings,
    sweep_embeddings,
)
from sdk.runners.base import AUDIO_EMB, MFCC_CLIPS, POSE_EMB, POSE_IMAGES, Runner
from sdk.runners.onnxrt import OnnxRuntimeRunner


@dataclass(frozen=True)
class FramesPsd:
    """PoseSyncNet's verdict on one generated sequence.

    Attributes:
        sweep: the offset sweep (``sweep.psd`` = PSD, ``best_offset`` in pose frames,
            ``confidence`` = median - min).
        clip_distance: (n,) float64 d of the aligned clip starting at pose frame i.
        clip_time: (n,) float64 seconds, the centre of clip i.
    """

    sweep: OffsetSweep
    clip_distance: np.ndarray
    clip_time: np.ndarray


def posesync_embed_fn(bundle: Bundle, runner: Runner | None = None) -> tuple[EmbedFn, Runner]:
    """An :data:`sdk.psd.EmbedFn` over the bundle's ``posesync.onnx`` (ONNX Runtime CPU).

    Pass ``runner`` (a runner of the same model, activated here) to use another backend. Returns
    the function and the runner (the caller deactivates it).
    Raises:
        BundleError: the bundle has no PoseSyncNet.
    """
    spec = bundle.manifest.posesync
    if spec is None:
        raise BundleError(f"{bundle.root}: the bundle has no posesync model, so no PSD; "
                          "re-export it with a PoseSyncNet checkpoint")
    if runner is None:
        runner = OnnxRuntimeRunner(bundle.path(spec.model.file), intra_op_num_threads=1)
    runner.activate()

    def embed(mfcc_clips: np.ndarray, pose_clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = runner.infer({MFCC_CLIPS: mfcc_clips, POSE_IMAGES: pose_clips})
        return np.array(out[AUDIO_EMB]), np.array(out[POSE_EMB])

    return embed, runner


def frames_psd(manifest: Manifest, matrices: MfccMatrices, embed_fn: EmbedFn,
               audio: np.ndarray, canonical: np.ndarray,
               max_offset: int = DEFAULT_MAX_OFFSET, imager: Any = None) -> FramesPsd:
    """PSD and offset sweep of poses generated from ``audio``.

    The same measurement as the manifest's ``psd_reference``: MFCC of the whole audio
    (``mfcc_offline``, default frame count), poses imaged with the manifest's imaging,
    every clip start that fits, ``sdk.psd.sweep_embeddings``.

    Args:
        audio: (N,) float32 mono at ``manifest.features.sample_rate``.
        canonical: (T, J, 2) float32 poses in canonical units (root at 0), frames 0..T-1.
        max_offset: sweep ±K frames; lowered to what a short sequence allows.
        imager: a :class:`sdk.cuda.pose.CudaPoseImager` for the manifest's skeleton and
            imaging (``StreamingGenerator.device_front_end.pose_imager(...)``): the pose
            images are drawn on the GPU (the same images as numpy's).
    Raises:
        ValueError: the sequence holds fewer than 3 clips (about clip_frames + 2 frames).
    """
    features = manifest.features
    if manifest.posesync is None:
        raise BundleError("the bundle has no posesync model, so no PSD")
    clip = PoseSyncClipConfig(manifest.posesync.clip_frames)
    mfcc = mfcc_offline(audio, features, matrices)
    n = clip.num_clips(canonical.shape[0], mfcc.shape[0], features)
    if n < 3:
        raise ValueError(f"PSD needs at least 3 clips of {clip.clip_frames} frames; the "
                         f"sequence has {canonical.shape[0]} frames ({n} clips): use longer audio")
    audio_emb, pose_emb = sequence_embeddings(
        embed_fn, mfcc, canonical, features=features, clip=clip, skeleton=manifest.skeleton,
        imaging=ImagingConfig.from_dict(manifest.imaging), imager=imager)
    sweep = sweep_embeddings(audio_emb, pose_emb, min(max_offset, (n - 1) // 2))
    times = (np.arange(n) + clip.clip_frames / 2) / features.fps
    return FramesPsd(sweep, clip_distances(audio_emb, pose_emb), times)


def mean_pose_psd(manifest: Manifest, matrices: MfccMatrices, embed_fn: EmbedFn,
                  audio: np.ndarray, num_frames: int, max_offset: int = DEFAULT_MAX_OFFSET
                  ) -> FramesPsd:
    """:func:`frames_psd` of the bundle's mean pose (standardised 0: the training mean) held
    still for ``num_frames`` frames on ``audio``: a judge that scores it close to the
    generator's poses cannot tell sync from no motion."""
    norm = manifest.normalization
    still = norm.destandardize(np.zeros((1, norm.num_joints, 2), np.float32))
    return frames_psd(manifest, matrices, embed_fn, audio,
                      np.repeat(still, num_frames, axis=0), max_offset)
