"""Training loop of the FGD feature extractor (``gesturert train fgd``).

The pose autoencoder (train/models/fgd.py) learns to reconstruct standardised windows
of ``model.window_frames`` frames cut from the corpus's training sequences every
``data.stride_frames`` frames; the loss is the L1 of positions plus the L1 of frame-to-frame
velocities (so the latent keeps the motion, not only the mean pose). Held-out windows
(dev/val/test clips) give the validation loss, and at the end two sanity FGDs:
held-out vs training windows (should be small) and held-out vs the same windows frozen at
their first frame (no motion; should be large). Joints the data did not observe are the
mean pose (standardised 0) in the input and left out of the loss (``*_mask``).
Outputs in ``--out``: ``fgd.pt``, ``tb/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from train.config import OptimConfig, RunConfig
from train.loop import configure_process, run_in_one_process
from train.metrics.fgd import fgd
from train.models.fgd import FGDConfig, PoseAutoencoder, fgd_features, pose_windows
from train.posesync_data import load_corpus_sequences
from train.step_loop import StepLoop, optimizer_step

CHECKPOINT_NAME = "fgd.pt"


@dataclass(frozen=True)
class FGDDataConfig:
    """Attributes: stride_frames: hop between training windows; velocity_weight: weight of
    the velocity L1 in the reconstruction loss."""

    stride_frames: int = 8
    velocity_weight: float = 1.0


@dataclass(frozen=True)
class FGDTrainingConfig:
    """Everything ``gesturert train fgd`` reads (train/configs/fgd.yaml)."""

    model: FGDConfig = field(default_factory=FGDConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    data: FGDDataConfig = field(default_factory=FGDDataConfig)


@dataclass
class FGDData:
    """Standardised windows (N, T, J, 2) float32 of the training and held-out sequences
    (unobserved joints 0) and their masks (N, T, J) float32, 1 = observed (None: all)."""

    train: np.ndarray
    held_out: np.ndarray
    features: FeatureConfig
    train_mask: np.ndarray | None = None
    held_out_mask: np.ndarray | None = None


def load_fgd_data(root: Path, config: FGDTrainingConfig,
                  features: FeatureConfig = DEFAULT_FEATURES) -> FGDData:
    window, stride = config.model.window_frames, config.data.stride_frames
    train: list[np.ndarray] = []
    held: list[np.ndarray] = []
    masks: dict[bool, list[np.ndarray]] = {False: [], True: []}
    for seq in load_corpus_sequences(root, features):
        windows = pose_windows(seq.standardized(), window, stride)
        (held if seq.held_out else train).append(windows)
        observed = np.repeat(seq.observed()[..., None], 2, axis=-1).astype(np.float32)
        masks[seq.held_out].append(pose_windows(observed, window, stride)[..., 0])
    if not train or sum(w.shape[0] for w in train) == 0:
        raise ValueError(f"{root}: no training sequence is {window} frames long")
    empty = np.zeros((0, window, config.model.num_joints, 2), np.float32)
    return FGDData(np.concatenate(train), np.concatenate(held) if held else empty, features,
                   np.concatenate(masks[False]),
                   np.concatenate(masks[True]) if held else empty[..., 0])


def reconstruction_loss(recon: torch.Tensor, poses: torch.Tensor, velocity_weight: float,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, J, 2) reconstruction vs target: mean L1 + velocity_weight * velocity L1.

    ``mask`` (B, T, J): 1 = observed; the means run over observed joints only (a velocity
    needs the joint in both frames). None: all observed."""
    velocity = (recon[:, 1:] - recon[:, :-1]) - (poses[:, 1:] - poses[:, :-1])
    if mask is None:
        return (recon - poses).abs().mean() + velocity_weight * velocity.abs().mean()
    m = mask.to(recon)[..., None]  # (B, T, J, 1)
    both = m[:, 1:] * m[:, :-1]
    position = ((recon - poses).abs() * m).sum() / (2 * m.sum()).clamp_min(1e-12)
    moving = (velocity.abs() * both).sum() / (2 * both.sum()).clamp_min(1e-12)
    return position + velocity_weight * moving


@torch.no_grad()
def evaluate_fgd_model(model: PoseAutoencoder, data: FGDData, config: FGDTrainingConfig,
                       device: torch.device) -> dict[str, float]:
    """Held-out reconstruction loss and the two sanity FGDs (see the module docstring)."""
    if data.held_out.shape[0] < 2:
        return {}
    was_training = model.training
    model.eval()
    poses = torch.from_numpy(data.held_out).to(device)
    masks = (torch.ones(poses.shape[:3]) if data.held_out_mask is None
             else torch.from_numpy(data.held_out_mask)).to(device)
    losses = [reconstruction_loss(model(p)[0], p, config.data.velocity_weight, m).item()
              for p, m in zip(poses.split(256), masks.split(256), strict=True)]
    held = fgd_features(model, list(data.held_out))
    rng = np.random.default_rng(0)
    picks = rng.choice(data.train.shape[0], min(data.train.shape[0], 4 * held.shape[0]),
                       replace=False)
    train = fgd_features(model, list(data.train[np.sort(picks)]))
    frozen = np.repeat(data.held_out[:, :1], data.held_out.shape[1], axis=1)
    still = fgd_features(model, list(frozen))
    model.train(was_training)
    return {"recon": float(np.mean(losses)), "fgd_heldout_vs_train": fgd(train, held),
            "fgd_heldout_vs_frozen": fgd(held, still)}


def train_fgd(config: FGDTrainingConfig, data: FGDData, out_dir: str | Path,
              resume: bool = False, device: str | None = None, show_progress: bool = True,
              stop_after: int | None = None) -> dict[str, float]:
    """Train (or resume) the FGD autoencoder in one process; writes ``out_dir/fgd.pt``."""
    return run_in_one_process(device, "FGD encoder", lambda torch_device: _train(
        config, data, Path(out_dir), resume, torch_device, show_progress, stop_after))


def _train(config: FGDTrainingConfig, data: FGDData, out_dir: Path, resume: bool,
           device: torch.device, show_progress: bool, stop_after: int | None
           ) -> dict[str, float]:
    configure_process(config.run)
    model = PoseAutoencoder(config.model).to(device)
    loop = StepLoop.start(model, config, "fgd", data.features, out_dir, CHECKPOINT_NAME,
                          resume=resume, stop_after=stop_after, show_progress=show_progress,
                          evaluate=lambda: evaluate_fgd_model(model, data, config, device))
    optimizer = loop.optimizer

    def train_step(batch: list[int]) -> dict[str, float]:
        picks = np.asarray(batch)
        poses = torch.from_numpy(data.train[picks]).to(device)
        mask = None if data.train_mask is None else torch.from_numpy(
            data.train_mask[picks]).to(device)
        loss = reconstruction_loss(model(poses)[0], poses, config.data.velocity_weight, mask)
        optimizer_step(optimizer, loss, model, config.optim.grad_clip)
        return {"loss": loss.item()}

    model.train()
    return loop.train(loop.batches(data.train.shape[0]), train_step)


def train_fgd_main(args: Any) -> int:
    """``gesturert train fgd``: returns 0 on success, 2 on bad input."""
    from train.cli import report_training
    from train.config import load_config
    from train.data.check import require_trainable

    def train() -> dict[str, float]:
        config = load_config(FGDTrainingConfig, args.config, args.overrides)
        require_trainable(Path(args.data), config.model.window_frames, config.data.stride_frames)
        data = load_fgd_data(Path(args.data), config)
        return train_fgd(config, data, args.out, resume=args.resume, device=args.device,
                         show_progress=not getattr(args, "no_progress", False))

    return report_training("fgd", train, "FGD encoder trained",
                           Path(args.out) / CHECKPOINT_NAME)
