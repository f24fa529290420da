"""The FGD feature extractor: a pose-sequence autoencoder whose latent code FGD compares.

Fréchet Gesture Distance (Yoon et al. 2020) needs an embedding of pose sequences trained
on real motion; SDT uses the latent mean of a Conv1d sequence VAE (32-d). We train a plain
deterministic autoencoder (the Trimodal/HA2G "embedding net" idea without the audio
branch): a Conv1d encoder over a fixed window of standardised poses -> a 32-d latent ->
a mirrored decoder, with an L1 reconstruction loss. FGD is computed on the latent
(``encode``); the decoder exists only to make the latent describe the motion.

Shapes: poses are standardised ``(B, T, J, 2)`` float32 (sdk.normalization), T =
``window_frames``; the encoder treats the J*2 coordinates as channels over time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sdk.skeleton import MODEL_SKELETON


@dataclass(frozen=True)
class FGDConfig:
    """Autoencoder for FGD features.

    Attributes:
        window_frames: T, pose frames per encoded window (32 = 2.1 s at 15 fps; divisible
            by 2 ** len(down_channels)).
        num_joints: J of the pose layout (the model skeleton's).
        channels: width of the first (full-rate) conv layer.
        down_channels: widths of the stride-2 conv layers (each halves time).
        latent_dim: size of the FGD feature vector (32 as SDT).
    """

    window_frames: int = 32
    num_joints: int = MODEL_SKELETON.num_joints
    channels: int = 128
    down_channels: tuple[int, ...] = (128, 64)
    latent_dim: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "down_channels", tuple(int(c) for c in self.down_channels))
        factor = 2 ** len(self.down_channels)
        if self.window_frames <= 0 or self.window_frames % factor:
            raise ValueError(
                f"FGDConfig.window_frames must be a positive multiple of {factor} "
                f"(2 ** number of down layers), got {self.window_frames}"
            )
        if min((self.channels, self.latent_dim, self.num_joints, *self.down_channels)) <= 0:
            raise ValueError("FGDConfig sizes must be positive")

    @property
    def latent_frames(self) -> int:
        """Time steps left after the stride-2 layers: window_frames / 2 ** len(down_channels)."""
        return self.window_frames // 2 ** len(self.down_channels)


class PoseAutoencoder(nn.Module):
    """Conv1d pose-window autoencoder; ``encode`` gives the FGD features."""

    def __init__(self, config: FGDConfig) -> None:
        super().__init__()
        self.config = config
        coords = config.num_joints * 2
        enc: list[nn.Module] = [nn.Conv1d(coords, config.channels, 3, padding=1),
                                nn.LeakyReLU(0.2)]
        in_ch = config.channels
        for ch in config.down_channels:
            enc += [nn.Conv1d(in_ch, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            in_ch = ch
        self.encoder_convs = nn.Sequential(*enc)
        self.bottleneck_channels = in_ch
        flat = in_ch * config.latent_frames
        self.to_latent = nn.Linear(flat, config.latent_dim)
        self.from_latent = nn.Linear(config.latent_dim, flat)
        dec: list[nn.Module] = []
        widths = [*reversed(config.down_channels[:-1]), config.channels]
        for ch in widths:
            dec += [nn.LeakyReLU(0.2), nn.ConvTranspose1d(in_ch, ch, 4, stride=2, padding=1)]
            in_ch = ch
        dec += [nn.LeakyReLU(0.2), nn.Conv1d(in_ch, coords, 3, padding=1)]
        self.decoder_convs = nn.Sequential(*dec)

    def _check(self, poses: torch.Tensor) -> None:
        c = self.config
        if poses.ndim != 4 or poses.shape[1:] != (c.window_frames, c.num_joints, 2):
            raise ValueError(
                f"expected standardised pose windows (B, {c.window_frames}, {c.num_joints}, 2), "
                f"got {tuple(poses.shape)}"
            )

    def encode(self, poses: torch.Tensor) -> torch.Tensor:
        """(B, T, J, 2) standardised poses -> (B, latent_dim) FGD features."""
        self._check(poses)
        x = poses.flatten(2).transpose(1, 2)  # (B, J*2, T)
        return self.to_latent(self.encoder_convs(x).flatten(1))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, T, J, 2) reconstructed standardised poses."""
        c = self.config
        x = self.from_latent(latent).view(-1, self.bottleneck_channels, c.latent_frames)
        y = self.decoder_convs(x)  # (B, J*2, T)
        return y.transpose(1, 2).reshape(-1, c.window_frames, c.num_joints, 2)

    def forward(self, poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, J, 2) -> (reconstruction (B, T, J, 2), latent (B, latent_dim))."""
        latent = self.encode(poses)
        return self.decode(latent), latent


def pose_windows(sequence: np.ndarray, window_frames: int, stride: int | None = None) -> np.ndarray:
    """Cut one (T, J, 2) sequence into (n, window_frames, J, 2) windows, hop ``stride``.

    ``stride`` defaults to ``window_frames`` (no overlap). A sequence shorter than one
    window gives ``(0, window_frames, J, 2)``.
    """
    sequence = np.asarray(sequence, dtype=np.float32)
    if sequence.ndim != 3:
        raise ValueError(f"expected a (T, J, 2) pose sequence, got shape {sequence.shape}")
    hop = window_frames if stride is None else int(stride)
    if hop <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    starts = np.arange(0, sequence.shape[0] - window_frames + 1, hop)
    return sequence[starts[:, None] + np.arange(window_frames)]


@torch.no_grad()
def fgd_features(model: PoseAutoencoder, sequences: list[np.ndarray],
                 stride: int | None = None, batch_size: int = 256) -> np.ndarray:
    """FGD features of a set of standardised pose sequences.

    Args:
        model: a trained :class:`PoseAutoencoder` (put in eval mode here).
        sequences: list of (T_k, J, 2) float32 standardised pose sequences.
        stride: window hop in frames (default: non-overlapping windows).
    Returns:
        (N, latent_dim) float64, one row per window of every sequence.
    """
    model.eval()
    device = next(model.parameters()).device
    window = model.config.window_frames
    windows = [pose_windows(s, window, stride) for s in sequences]
    stacked = np.concatenate(windows) if windows else np.zeros((0, window, 1, 2), np.float32)
    if stacked.shape[0] == 0:
        raise ValueError(f"no sequence is at least {window} frames long: nothing to encode")
    out = [model.encode(torch.from_numpy(stacked[i : i + batch_size]).to(device)).cpu()
           for i in range(0, stacked.shape[0], batch_size)]
    return torch.cat(out).double().numpy()
