"""Feature frames of an audio stream: streaming MFCC plus the generator's stacking.

:class:`StreamingFeatureExtractor` turns audio chunks into feature frames (n,
``feature_dim``) float32 as soon as their ``mfcc_context`` MFCC frames are final; the
frames equal :func:`sdk.mfcc.extract_features` of the whole clip for any chunking.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.features import FeatureConfig
from sdk.mfcc import MfccMatrices, StreamingMfcc


class StreamingFeatureExtractor:
    """Streaming MFCC plus stacking: audio chunks in, feature frames (n, 91) out.

    ``accept`` returns the feature frames whose 7 MFCC frames are all final; ``finish``
    returns the rest up to ``total_frames``. Concatenated, they equal
    ``extract_features(all_audio, config, matrices, total_frames)`` for any chunking.
    Keeps only the MFCC frames still needed by frames not yet emitted.
    """

    def __init__(self, config: FeatureConfig, matrices: MfccMatrices) -> None:
        self.config = config
        self.mfcc = StreamingMfcc(config, matrices)
        self._history = np.zeros((4 * config.mfcc_context, config.n_mfcc), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self.mfcc.reset()
        self._history_first = 0  # MFCC index of _history[0]
        self._history_len = 0
        self.frames_emitted = 0

    @property
    def samples_received(self) -> int:
        return self.mfcc.samples_received

    @property
    def finished(self) -> bool:
        return self.mfcc.finished

    def _store(self, new_mfcc: np.ndarray) -> None:
        keep_from = int(self.config.mfcc_start(self.frames_emitted)) - self._history_first
        kept = self._history[keep_from:self._history_len]
        needed = len(kept) + len(new_mfcc)
        if needed > len(self._history):
            self._history = np.zeros((2 * needed, self.config.n_mfcc), dtype=np.float32)
        self._history[: len(kept)] = kept  # numpy copes with the overlap
        self._history[len(kept):needed] = new_mfcc
        self._history_first += keep_from
        self._history_len = needed

    def _emit_until(self, end: int) -> np.ndarray:
        count = end - self.frames_emitted
        if count <= 0:
            return np.zeros((0, self.config.feature_dim), dtype=np.float32)
        starts = self.config.mfcc_start(np.arange(self.frames_emitted, end)) - self._history_first
        index = starts[:, None] + np.arange(self.config.mfcc_context)
        out = self._history[index].reshape(count, self.config.feature_dim)
        self.frames_emitted = end
        return out

    def accept(self, samples: Any) -> np.ndarray:
        """Feed float (n,) samples; returns float32 (k, feature_dim) newly computable frames."""
        self._store(self.mfcc.accept(samples))
        ready = self.config.feature_frames_ready(self.mfcc.frames_emitted)
        return self._emit_until(ready)

    def finish(self, total_frames: int | None = None) -> np.ndarray:
        """End the stream: float32 (k, feature_dim), feature frames up to ``total_frames``.

        ``total_frames`` defaults to ``config.num_pose_frames(samples_received)``; pass more
        (e.g. + the generator's lookahead) to get frames of trailing silence.
        """
        if total_frames is None:
            total_frames = self.config.num_pose_frames(self.samples_received)
        if total_frames < self.frames_emitted:
            raise ValueError(
                f"total_frames={total_frames} but {self.frames_emitted} feature frames were "
                f"already emitted; pass total_frames >= {self.frames_emitted}"
            )
        self._store(self.mfcc.finish(min_frames=self.config.mfcc_frames_needed(total_frames)))
        return self._emit_until(total_frames)
