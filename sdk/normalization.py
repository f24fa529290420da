"""Pose normalisation: image pixels <-> neck-relative canonical units <-> standardised values.

Three coordinate systems, all (..., J, 2) with x right and y down:

* **pixels**: image coordinates of the source video (what the SDK returns).
* **canonical**: ``(pixels - neck) / scale_px``; the root (neck) is at 0 and one unit is
  the speaker's mean shoulder width. Pose imaging works in these units.
* **standardised**: ``(canonical - mean) / std`` per joint and axis; what models predict.

The statistics come from the training corpus (train computes them), travel in the
checkpoint and the bundle manifest, and are read back here. The root's std is 1 and its
mean 0, so it stays exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PoseNormalization:
    """Per-speaker statistics.

    Attributes:
        anchor_px: (2,) neck position in pixels used when no live root is known.
        scale_px: pixels per canonical unit (mean shoulder width in pixels).
        mean: (J, 2) canonical-unit mean per joint and axis.
        std: (J, 2) canonical-unit std per joint and axis (> 0).
        image_size: (width, height) of the source frames in pixels.
    """

    anchor_px: tuple[float, float]
    scale_px: float
    mean: np.ndarray
    std: np.ndarray
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        if mean.ndim != 2 or mean.shape[1] != 2 or std.shape != mean.shape:
            raise ValueError(
                f"normalisation mean/std must both be (J, 2), got {mean.shape} and {std.shape}"
            )
        if not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise ValueError("normalisation std must be finite and > 0 everywhere")
        if not self.scale_px > 0:
            raise ValueError(f"normalisation scale_px must be > 0, got {self.scale_px}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def num_joints(self) -> int:
        return int(self.mean.shape[0])

    def pixels_to_canonical(self, pixels: np.ndarray, root: int = 0) -> np.ndarray:
        """(..., J, 2) pixels -> canonical units relative to joint ``root``."""
        pixels = np.asarray(pixels, dtype=np.float32)
        return (pixels - pixels[..., root : root + 1, :]) / np.float32(self.scale_px)

    def canonical_to_pixels(self, canonical: np.ndarray) -> np.ndarray:
        """(..., J, 2) canonical -> pixels, with the root at ``anchor_px``."""
        anchor = np.asarray(self.anchor_px, dtype=np.float32)
        return np.asarray(canonical, dtype=np.float32) * np.float32(self.scale_px) + anchor

    def standardize(self, canonical: np.ndarray) -> np.ndarray:
        """(..., J, 2) canonical -> standardised."""
        return (np.asarray(canonical, dtype=np.float32) - self.mean) / self.std

    def destandardize(self, standardized: np.ndarray) -> np.ndarray:
        """(..., J, 2) standardised -> canonical."""
        return np.asarray(standardized, dtype=np.float32) * self.std + self.mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "anchor_px": [float(v) for v in self.anchor_px],
            "scale_px": float(self.scale_px),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "image_size": [int(v) for v in self.image_size],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoseNormalization:
        try:
            return cls(
                anchor_px=(float(data["anchor_px"][0]), float(data["anchor_px"][1])),
                scale_px=float(data["scale_px"]),
                mean=np.asarray(data["mean"], dtype=np.float32),
                std=np.asarray(data["std"], dtype=np.float32),
                image_size=(int(data["image_size"][0]), int(data["image_size"][1])),
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"malformed pose normalisation in manifest: {exc!r}") from exc
