"""What the generator's training reads: window datasets and the statistics made from them.

Shared by train/data/windows.py (which builds it) and train/generator_training.py (which
trains on it), so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from sdk.features import FeatureConfig
from sdk.normalization import PoseNormalization

STAT_WINDOWS = 512  # windows sampled to measure the feature mean/std


@dataclass
class GeneratorData:
    """Training input: map-style datasets of window dicts and the corpus statistics.

    styles / default_style: the corpus's style table (train/data/styles.py); windows then
    carry ``style`` indices into it and the model gets one embedding row per style. ()
    for datasets without styles (the model then has no style input).
    """

    train: Dataset[dict[str, Any]]
    val: Dataset[dict[str, Any]] | None
    features: FeatureConfig
    normalization: PoseNormalization | None
    styles: tuple[str, ...] = ()
    default_style: str = ""


def sampled_feature_statistics(dataset: Dataset[dict[str, Any]],
                               max_windows: int = STAT_WINDOWS
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (feature_dim,) float32 of the raw features of up to ``max_windows``
    evenly spaced windows; the std is floored at 1e-3 (constant channels)."""
    size = len(dataset)  # type: ignore[arg-type]
    if size == 0:
        raise ValueError("the training set has no windows; is the data directory empty?")
    picks = np.unique(np.linspace(0, size - 1, min(size, max_windows)).astype(np.int64))
    frames = np.concatenate([np.asarray(dataset[int(i)]["features"], dtype=np.float64)
                             for i in picks])
    return frames.mean(0).astype(np.float32), np.maximum(frames.std(0), 1e-3).astype(np.float32)
