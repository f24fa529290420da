"""PoseFrames: the pose frames a stream (or an offline pass) returns.

Frame ``k`` covers audio time ``[k / fps, (k + 1) / fps)``; ``time[i] = index[i] / fps``
exactly (computed from the integer index, never accumulated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PoseFrames:
    """A run of consecutive pose frames.

    Attributes:
        keypoints: float32 (T, J, 2) image coordinates in pixels (x right, y down).
        saliency: float32 (T,) salient-posture score in [0, 1].
        time: float64 (T,) start time of each frame in seconds (index / fps).
        index: int64 (T,) pose frame index within the stream (0, 1, 2, ...).
    """

    keypoints: np.ndarray
    saliency: np.ndarray
    time: np.ndarray
    index: np.ndarray

    def __post_init__(self) -> None:
        n = self.keypoints.shape[0]
        if (
            self.keypoints.ndim != 3
            or self.keypoints.shape[2] != 2
            or self.saliency.shape != (n,)
            or self.time.shape != (n,)
            or self.index.shape != (n,)
        ):
            raise ValueError(
                "PoseFrames needs keypoints (T, J, 2) and saliency/time/index (T,), got "
                f"{self.keypoints.shape}, {self.saliency.shape}, {self.time.shape}, "
                f"{self.index.shape}"
            )

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.keypoints.shape[1])

    @classmethod
    def empty(cls, num_joints: int) -> PoseFrames:
        """Zero frames of ``num_joints`` joints."""
        return cls(
            keypoints=np.zeros((0, num_joints, 2), np.float32),
            saliency=np.zeros((0,), np.float32),
            time=np.zeros((0,), np.float64),
            index=np.zeros((0,), np.int64),
        )

    @classmethod
    def concatenate(cls, parts: Sequence[PoseFrames], num_joints: int) -> PoseFrames:
        """Join runs in order; ``num_joints`` shapes the result when ``parts`` is empty."""
        if not parts:
            return cls.empty(num_joints)
        if len(parts) == 1:
            return parts[0]
        return cls(
            keypoints=np.concatenate([p.keypoints for p in parts]),
            saliency=np.concatenate([p.saliency for p in parts]),
            time=np.concatenate([p.time for p in parts]),
            index=np.concatenate([p.index for p in parts]),
        )

    def save_npz(self, path: str | Path, **extra: np.ndarray) -> None:
        """Write ``keypoints``, ``saliency``, ``time``, ``index`` (+ ``extra``) to an .npz."""
        arrays: dict[str, Any] = {"keypoints": self.keypoints, "saliency": self.saliency,
                                  "time": self.time, "index": self.index, **extra}
        np.savez(path, **arrays)
