"""PSD and the offset sweep of pose sequences, with a torch PoseSyncNet as the embedder.

The numbers come from ``sdk.psd`` (the same code the runtime runs over ONNX Runtime);
this module only wraps the torch model as a numpy ``embed_fn`` and pools sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.psd import DEFAULT_MAX_OFFSET, EmbedFn, OffsetSweep, offset_sweep
from train.models.posesync import PoseSyncNet


def torch_embed_fn(model: PoseSyncNet) -> EmbedFn:
    """Wrap a PoseSyncNet as (mfcc (B, 13, 60), images (B, 9, H, W)) -> numpy embeddings."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def embed(mfcc: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model.eval()
        a, p = model(torch.from_numpy(np.ascontiguousarray(mfcc, np.float32)).to(device),
                     torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(device))
        return a.cpu().numpy(), p.cpu().numpy()

    return embed


@dataclass(frozen=True)
class PSDSummary:
    """PSD over a set of sequences.

    Attributes:
        psd: mean of the per-sequence PSDs (lower is better).
        offset_accuracy: fraction of sequences whose best offset is 0.
        mean_abs_offset: mean |best offset| in pose frames.
        sweeps: per sequence :class:`sdk.psd.OffsetSweep`.
    """

    psd: float
    offset_accuracy: float
    mean_abs_offset: float
    sweeps: tuple[OffsetSweep, ...]


def psd_of_sequences(model: PoseSyncNet, mfccs: Sequence[np.ndarray],
                     canonicals: Sequence[np.ndarray], features: FeatureConfig = DEFAULT_FEATURES,
                     max_offset: int = DEFAULT_MAX_OFFSET) -> PSDSummary:
    """Offset sweep of every (mfcc (M, 13), canonical poses (T, J, 2)) pair, pooled.

    The poses are imaged with the model's own ``config.imaging`` (what it was trained on).
    Each sequence needs ``clip_frames + 2 * max_offset`` frames (39 by default).
    """
    if len(mfccs) != len(canonicals) or not mfccs:
        raise ValueError(f"need as many MFCC as pose sequences (>= 1), got {len(mfccs)} and "
                         f"{len(canonicals)}")
    embed_fn = torch_embed_fn(model)
    imaging = model.config.imaging
    sweeps = tuple(offset_sweep(embed_fn, m, c, max_offset, features=features, imaging=imaging,
                                clip=model.config.clip)
                   for m, c in zip(mfccs, canonicals, strict=True))
    best = np.array([s.best_offset for s in sweeps])
    return PSDSummary(
        psd=float(np.mean([s.psd for s in sweeps])),
        offset_accuracy=float(np.mean(best == 0)),
        mean_abs_offset=float(np.mean(np.abs(best))),
        sweeps=sweeps,
    )
