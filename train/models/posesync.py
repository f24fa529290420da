"""PoseSyncNet: a SyncNet-style audio/pose-clip embedding pair, and its contrastive loss.

Two encoders map a clip of speech and a clip of poses into one embedding space
(docs/architecture.md, "PoseSyncNet contract"):

* audio: the ``(13, 60)`` MFCC clip of 9 pose frames, read as a one-channel image
  (coefficient x time) by a small 2D conv stack, as SyncNet's audio stream;
* pose: the ``(9, H, W)`` pose images of the same 9 frames (sdk.pose_image), the frames
  stacked as channels, by a 2D conv stack (SyncNet's early fusion of frames).

Both stacks keep the time order: they end in a flatten + linear, not a global pooling,
because synchrony is about *when* things happen inside the clip.

Choices the paper leaves open (kept in :class:`PoseSyncConfig`):

* **L2-normalised embeddings** (``normalize=True``): ``d = ||f_a - f_p||_2`` is then in
  [0, 2] (= sqrt(2 - 2 cos)), so PSD has a fixed, model-independent scale, fp16 engines
  keep it within a small absolute tolerance, and the margin ``phi`` means the same thing
  for every run. Unrelated clips land near sqrt(2); ``margin`` = 1.0 asks shifted pairs to
  be at least 60 degrees apart.
* MFCC standardisation lives **inside** the model (buffers ``mfcc_mean``/``mfcc_std``, per
  coefficient, set from the training corpus), so ONNX takes raw MFCCs like the generator.
* Plain Conv2d / BatchNorm / ReLU / Linear only: exports to ONNX with a dynamic batch and runs on
  TensorRT without plugins.

Loss (the supplement's eq.): ``L = 1/(2N) sum_k [y_k d_k^2 + (1 - y_k) max(phi - d_k, 0)^2]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.pose_image import ImagingConfig
from sdk.psd import DEFAULT_CLIP, PoseSyncClipConfig

POSESYNC_IMAGING = ImagingConfig(height=64, width=64, x_min=-1.6, x_max=1.6, y_min=-1.2, y_max=2.0)
"""PoseSyncNet's default pose images: tighter and larger than ``ImagingConfig()``'s 48 x 48
over 4 x 4 units. 20 px per shoulder width instead of 12, so beat gestures and the lips move
by whole pixels; only hands spread wider than 1.6 units get clipped (< 1% of joints in the
synthetic corpus). In our runs on the synthetic corpus this model reached a held-out
AUC of 0.90 after 150 steps; with 48 x 48 default images (and wider channels) 0.77 after 300."""


@dataclass(frozen=True)
class PoseSyncConfig:
    """PoseSyncNet architecture and loss; the MFCC clip length comes from the FeatureConfig.

    Attributes:
        clip_frames: pose frames per clip (9, the paper's [P_i ... P_i+8]).
        imaging: how pose clips are imaged (image size, window, line widths); the model is
            trained on these images, so the config travels with it into the bundle.
        audio_channels: output channels of the audio conv layers.
        pose_channels: output channels of the pose conv layers (each halves H and W).
        hidden_dim: width of the hidden linear layer of each head.
        embedding_dim: E, size of audio_emb and pose_emb.
        batch_norm: BatchNorm after every conv and the hidden linear layer (folded into
            the weights by ONNX Runtime / TensorRT at inference). Without it the
            contrastive loss tends to sit in the collapsed state (every d equal) for long.
        normalize: L2-normalise both embeddings (d in [0, 2]).
        margin: phi of the contrastive loss, in embedding-distance units.
    """

    clip_frames: int = DEFAULT_CLIP.clip_frames
    imaging: ImagingConfig = field(default_factory=lambda: POSESYNC_IMAGING)
    audio_channels: tuple[int, ...] = (16, 32, 64, 64)
    pose_channels: tuple[int, ...] = (16, 32, 64, 64)
    hidden_dim: int = 256
    embedding_dim: int = 128
    batch_norm: bool = True
    normalize: bool = True
    margin: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "audio_channels", tuple(int(c) for c in self.audio_channels))
        object.__setattr__(self, "pose_channels", tuple(int(c) for c in self.pose_channels))
        if not self.audio_channels or not self.pose_channels:
            raise ValueError("PoseSyncConfig needs at least one audio and one pose conv layer")
        if min(self.audio_channels + self.pose_channels) <= 0:
            raise ValueError("PoseSyncConfig channel counts must be positive")
        if self.embedding_dim <= 0 or self.hidden_dim <= 0:
            raise ValueError("PoseSyncConfig embedding_dim and hidden_dim must be positive")
        if not self.margin > 0:
            raise ValueError(f"PoseSyncConfig.margin must be > 0, got {self.margin}")

    @property
    def clip(self) -> PoseSyncClipConfig:
        return PoseSyncClipConfig(self.clip_frames)


def _conv(in_ch: int, out_ch: int, stride: int | tuple[int, int], batch_norm: bool
          ) -> list[nn.Module]:
    norm: list[nn.Module] = [nn.BatchNorm2d(out_ch)] if batch_norm else []
    return [nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=not batch_norm),
            *norm, nn.ReLU()]


def _head(in_features: int, hidden: int, out: int, batch_norm: bool) -> nn.Sequential:
    norm: list[nn.Module] = [nn.BatchNorm1d(hidden)] if batch_norm else []
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden, bias=not batch_norm),
                         *norm, nn.ReLU(), nn.Linear(hidden, out))


class PoseSyncNet(nn.Module):
    """Audio-clip and pose-clip encoders into one embedding space.

    Args:
        config: architecture, imaging and loss settings; (H, W) = imaging (height, width).
        features: the feature config; fixes n_mfcc and the clip's MFCC length (13, 60).
    """

    def __init__(self, config: PoseSyncConfig,
                 features: FeatureConfig = DEFAULT_FEATURES) -> None:
        super().__init__()
        self.config = config
        self.image_shape = (config.imaging.height, config.imaging.width)
        self.mfcc_shape = (features.n_mfcc, config.clip.clip_mfcc_frames(features))
        self.mfcc_mean: torch.Tensor
        self.mfcc_std: torch.Tensor
        self.register_buffer("mfcc_mean", torch.zeros(features.n_mfcc, 1))
        self.register_buffer("mfcc_std", torch.ones(features.n_mfcc, 1))

        # Audio: (B, 1, 13, 60); first layer keeps the size, then stride 2 in both axes
        # except the first, which only halves time (13 coefficients are few already).
        layers: list[nn.Module] = []
        in_ch = 1
        for k, ch in enumerate(config.audio_channels):
            stride = 1 if k == 0 else ((1, 2) if k == 1 else 2)
            layers += _conv(in_ch, ch, stride, config.batch_norm)
            in_ch = ch
        self.audio_convs = nn.Sequential(*layers)
        # Pose: (B, 9, H, W); every layer halves H and W.
        layers = []
        in_ch = config.clip_frames
        for ch in config.pose_channels:
            layers += _conv(in_ch, ch, 2, config.batch_norm)
            in_ch = ch
        self.pose_convs = nn.Sequential(*layers)

        self.eval()  # BatchNorm: a batch of one for the size probe
        with torch.no_grad():
            audio_flat = self.audio_convs(torch.zeros(1, 1, *self.mfcc_shape)).numel()
            pose_flat = self.pose_convs(torch.zeros(1, config.clip_frames,
                                                    *self.image_shape)).numel()
        self.train()
        self.audio_head = _head(audio_flat, config.hidden_dim, config.embedding_dim,
                                config.batch_norm)
        self.pose_head = _head(pose_flat, config.hidden_dim, config.embedding_dim,
                               config.batch_norm)

    def set_mfcc_stats(self, mean: torch.Tensor | np.ndarray,
                       std: torch.Tensor | np.ndarray) -> None:
        """Store per-coefficient MFCC statistics (n_mfcc,) of the training corpus."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1)
        if mean.shape != self.mfcc_mean.shape or std.shape != self.mfcc_std.shape:
            raise ValueError(f"MFCC stats must be ({self.mfcc_shape[0]},), got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        if not bool(torch.all(std > 0)):
            raise ValueError("MFCC std must be > 0 for every coefficient")
        self.mfcc_mean.copy_(mean)
        self.mfcc_std.copy_(std)

    def _finish(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(emb, dim=1, eps=1e-6) if self.config.normalize else emb

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 13, 60) raw MFCC clips -> (B, E) audio embeddings."""
        x = (mfcc - self.mfcc_mean) / self.mfcc_std
        return self._finish(self.audio_head(self.audio_convs(x.unsqueeze(1))))

    def embed_pose(self, pose_images: torch.Tensor) -> torch.Tensor:
        """(B, 9, H, W) pose-image clips in [0, 1] -> (B, E) pose embeddings."""
        return self._finish(self.pose_head(self.pose_convs(pose_images)))

    def forward(self, mfcc: torch.Tensor,
                pose_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 13, 60) MFCC, (B, 9, H, W) images -> (audio_emb (B, E), pose_emb (B, E))."""
        return self.embed_audio(mfcc), self.embed_pose(pose_images)


def embedding_distance(audio_emb: torch.Tensor, pose_emb: torch.Tensor) -> torch.Tensor:
    """(N, E), (N, E) -> (N,) d = ||audio_emb - pose_emb||_2 (gradient-safe at d = 0)."""
    squared = (audio_emb - pose_emb).pow(2).sum(dim=1)
    return torch.sqrt(squared.clamp_min(1e-12))


def contrastive_loss(audio_emb: torch.Tensor, pose_emb: torch.Tensor, labels: torch.Tensor,
                     margin: float) -> torch.Tensor:
    """The supplement's loss: 1/(2N) sum_k [y d^2 + (1 - y) max(margin - d, 0)^2].

    Args:
        audio_emb, pose_emb: (N, E) embeddings f_a, f_p.
        labels: (N,) y, 1 for aligned pairs and 0 for shifted ones (float or bool).
        margin: phi.
    Returns:
        scalar tensor.
    """
    if audio_emb.shape != pose_emb.shape or audio_emb.ndim != 2:
        raise ValueError(f"embeddings must both be (N, E), got {tuple(audio_emb.shape)} "
                         f"and {tuple(pose_emb.shape)}")
    if labels.shape != audio_emb.shape[:1]:
        raise ValueError(f"labels must be (N,) = ({audio_emb.shape[0]},), "
                         f"got {tuple(labels.shape)}")
    y = labels.to(audio_emb.dtype)
    squared = (audio_emb - pose_emb).pow(2).sum(dim=1)  # d^2 without the sqrt's gradient at 0
    distance = torch.sqrt(squared.clamp_min(1e-12))
    per_pair = y * squared + (1 - y) * torch.clamp(margin - distance, min=0).pow(2)
    return per_pair.sum() / (2 * audio_emb.shape[0])
