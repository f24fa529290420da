"""Feature configuration and the frame-accounting rules shared by training and serving.

Every number here is written once. Training stores a :class:`FeatureConfig` in its
checkpoints, export copies it into the bundle manifest, and the runtime reads it back
from the manifest: serving never re-derives a rate, a hop or a frame count on its own.

Timing (the default config):

* audio: 16 kHz mono; MFCC frames every ``hop_length`` = 160 samples (10 ms, 100 Hz),
  ``center=True`` with zero padding (librosa's ``pad_mode="constant"``), so MFCC frame
  ``j`` is centred on sample ``j * hop_length``.
* poses: ``fps`` = 15 frames per second. Pose frame ``k`` covers audio time
  ``[k / fps, (k + 1) / fps)``; 3 pose frames = 20 MFCC hops = 3200 samples = 200 ms.
* the audio is treated as followed by silence (zeros) forever. A clip of ``N`` samples
  yields ``ceil(N * fps / sample_rate)`` pose frames: every sample belongs to a frame.
* the generator's input for pose frame ``k`` (a "feature frame") is the
  ``mfcc_context`` = 7 consecutive MFCC frames starting at
  ``floor(k * sample_rate / (fps * hop_length))``, flattened to
  ``mfcc_context * n_mfcc`` = 91 values (frame-major: ``[c0..c12 of j0, c0..c12 of j0+1, ...]``).
  7 = ceil(100 Hz / 15 fps): the window always spans the whole pose frame.

Why one feature stream for both models: PoseSyncNet consumes 13 MFCCs as SyncNet does;
the generator consumes the same 13 MFCCs (stacked per pose frame), and its face/lips
and body/hands audio encoders learn their own projections of it (articulation vs
semantics, see the paper). One stream means one CUDA kernel and one ring buffer per
stream at run time.

Why ``top_db`` is disabled: librosa's default ``power_to_db(top_db=80)`` clamps against
the maximum of the *whole* signal, a statistic a streaming extractor cannot know.
We floor the mel power at ``amin`` instead (``10*log10(max(amin, S))``, ``ref=1``).
The equivalent librosa call is::

    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop,
        win_length=win, window="hann", center=True, pad_mode="constant", power=2.0,
        n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney")
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(S, ref=1.0, amin=amin, top_db=None),
                                n_mfcc=n_mfcc, dct_type=2, norm="ortho")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FeatureConfig:
    """Audio front end and pose frame rate. All rates in Hz, lengths in samples."""

    sample_rate: int = 16000  # Hz; the rate every model sees
    fps: int = 15  # pose frames per second (Speech2Gesture / SDT video rate)
    n_fft: int = 512  # samples: 32 ms FFT
    win_length: int = 400  # samples: 25 ms Hann window, centred in n_fft
    hop_length: int = 160  # samples: 10 ms -> 100 MFCC frames per second
    n_mels: int = 40  # mel bands
    n_mfcc: int = 13  # cepstral coefficients (SyncNet uses 13)
    fmin: float = 0.0  # Hz
    fmax: float = 8000.0  # Hz (Nyquist at 16 kHz)
    amin: float = 1e-10  # floor of the mel power before log10 (power_to_db's amin)

    def __post_init__(self) -> None:
        for name in ("sample_rate", "fps", "n_fft", "win_length", "hop_length", "n_mels",
                     "n_mfcc"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"FeatureConfig.{name} must be a positive int, got {value!r}")
        if self.win_length > self.n_fft:
            raise ValueError(
                f"FeatureConfig.win_length ({self.win_length}) must be <= n_fft ({self.n_fft})"
            )
        if self.n_mfcc > self.n_mels:
            raise ValueError(
                f"FeatureConfig.n_mfcc ({self.n_mfcc}) must be <= n_mels ({self.n_mels})"
            )
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(
                f"FeatureConfig needs 0 <= fmin < fmax <= sample_rate/2, got "
                f"fmin={self.fmin}, fmax={self.fmax}, sample_rate={self.sample_rate}"
            )

    # ---- derived quantities (never stored separately) ----
    @property
    def n_freqs(self) -> int:
        """Number of rFFT bins: n_fft // 2 + 1 (257)."""
        return self.n_fft // 2 + 1

    @property
    def mfcc_rate(self) -> float:
        """MFCC frames per second (100.0)."""
        return self.sample_rate / self.hop_length

    @property
    def mfcc_context(self) -> int:
        """MFCC frames stacked into one feature frame: ceil(mfcc_rate / fps) (7)."""
        den = self.fps * self.hop_length
        return -(-self.sample_rate // den)

    @property
    def feature_dim(self) -> int:
        """Values per feature frame: mfcc_context * n_mfcc (91)."""
        return self.mfcc_context * self.n_mfcc

    @property
    def samples_per_frame(self) -> float:
        """Audio samples per pose frame (1066.67; not an integer at 16 kHz / 15 fps)."""
        return self.sample_rate / self.fps

    # ---- frame accounting ----
    def num_pose_frames(self, n_samples: int) -> int:
        """Pose frames for a clip of ``n_samples``: ceil(n_samples * fps / sample_rate)."""
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        return -(-(n_samples * self.fps) // self.sample_rate)

    def num_mfcc_frames(self, n_samples: int) -> int:
        """MFCC frames librosa (center=True) gives for ``n_samples``: 1 + n_samples // hop."""
        return 1 + n_samples // self.hop_length

    def mfcc_start(self, pose_frame: Any) -> Any:
        """First MFCC frame of feature frame ``k``: floor(k * sr / (fps * hop)).

        ``pose_frame`` is an int (returns int) or an integer array (returns int64 array).
        """
        start = (np.asarray(pose_frame, dtype=np.int64) * self.sample_rate) // (
            self.fps * self.hop_length
        )
        return int(start) if start.ndim == 0 else start

    def mfcc_frames_needed(self, n_feature_frames: int) -> int:
        """MFCC frames needed to build feature frames 0 .. n_feature_frames-1."""
        if n_feature_frames <= 0:
            return 0
        return int(self.mfcc_start(n_feature_frames - 1)) + self.mfcc_context

    def feature_frames_ready(self, n_mfcc_frames: Any) -> Any:
        """Feature frames (from 0) that MFCC frames 0 .. n_mfcc_frames-1 suffice for.

        Frame k needs ``mfcc_start(k) + mfcc_context <= n``, i.e. ``k*sr < (c+1)*fps*hop``
        with ``c = n - mfcc_context``; the count is ``ceil((c+1)*fps*hop / sr)`` (0 if c < 0).
        ``n_mfcc_frames`` is an int (returns int) or an integer array (returns int64 array).
        """
        spare = np.asarray(n_mfcc_frames, dtype=np.int64) - self.mfcc_context
        den = self.fps * self.hop_length
        ready = np.where(spare >= 0, -(-((spare + 1) * den) // self.sample_rate), 0)
        return int(ready) if ready.ndim == 0 else ready

    def samples_needed_for_mfcc(self, n_mfcc_frames: int) -> int:
        """Samples that must have arrived before MFCC frames 0..n-1 are final.

        Frame j's n_fft window spans samples [j*hop - n_fft//2, j*hop + n_fft//2).
        """
        if n_mfcc_frames <= 0:
            return 0
        return (n_mfcc_frames - 1) * self.hop_length + self.n_fft // 2

    def algorithmic_latency_seconds(self, lookahead_frames: int, chunk_frames: int = 1) -> float:
        """Longest wait, over pose frames, from the end of a frame's audio until the step
        that produces it can run: the lookahead, the MFCC window's reach and waiting for a
        whole chunk of ``chunk_frames`` feature frames (compute time not included), seconds.
        """
        worst = 0.0
        for k in range(3 * chunk_frames * self.fps):  # the pattern repeats every fps frames
            last_input = -(-(k + lookahead_frames + 1) // chunk_frames) * chunk_frames
            needed = self.samples_needed_for_mfcc(self.mfcc_frames_needed(last_input))
            worst = max(worst, needed / self.sample_rate - (k + 1) / self.fps)
        return worst

    # ---- identity ----
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown FeatureConfig fields: {sorted(unknown)}")
        return cls(**data)

    def config_hash(self) -> str:
        """sha256 (hex, 16 chars) of the canonical JSON: checkpoints and bundles carry it."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


DEFAULT_FEATURES = FeatureConfig()
