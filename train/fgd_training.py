"""Training loop of the FGD feature extractor (``gesturert train fgd``).

The pose autoencoder (train/models/fgd.py) learns to reconstruct standardised windows
of ``model.window_frames`` frames cut from the corpus's training sequences every
``data.stride_frames`` frames; the loss is the L1 of positions plus the L1 of frame-to-frame
velocities (so the latent keeps the motion, not only the mean pose). Held-out windows
(dev/val/test clips) give the validation loss, and at the end two sanity FGDs:
held-out vs training windows (should be small) and held-out vs the same windows frozen at
their first frame (no motion; should be large). Outputs in ``--out``: ``fgd.pt``, ``tb/``.
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
    """Standardised windows (N, T, J, 2) float32 of the training and held-out sequences."""

    train: np.ndarray
    held_out: np.ndarray
    features: FeatureConfig


def load_fgd_data(root: Path, config: FGDTrainingConfig,
                  features: FeatureConfig = DEFAULT_FEATURES) -> FGDData:
    window, stride = config.model.window_frames, config.data.stride_frames
    train: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for seq in load_corpus_sequences(root, features):
        windows = pose_windows(seq.standardized(), window, stride)
        (held if seq.held_out else train).append(windows)
    if not train or sum(w.shape[0] for w in train) == 0:
        raise ValueError(f"{root}: no training sequence is {window} frames long")
    empty = np.zeros((0, window, config.model.num_joints, 2), np.float32)
    return FGDData(np.concatenate(train), np.concatenate(held) if held else empty, features)


def reconstruction_loss(recon: torch.Tensor, poses: torch.Tensor, velocity_weight: float
                        ) -> torch.Tensor:
    """(B, T, J, 2) reconstruction vs target: mean L1 + velocity_weight * velocity L1."""
    position = (recon - poses).abs().mean()
    velocity = ((recon[:, 1:] - recon[:, :-1]) - (poses[:, 1:] - poses[:, :-1])).abs().mean()
    return position + velocity_weight * velocity


@torch.no_grad()
def evaluate_fgd_model(model: PoseAutoencoder, data: FGDData, config: FGDTrainingConfig,
                       device: torch.device) -> dict[str, float]:
    """Held-out reconstruction loss and the two sanity FGDs (see the module docstring)."""
    if data.held_out.shape[0] < 2:
        return {}
    was_training = model.training
    model.eval()
    poses = torch.from_numpy(data.held_out).to(device)
    losses = [reconstruction_loss(model(p)[0], p, config.data.velocity_weight).item()
              for p in poses.split(256)]
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
        poses = torch.from_numpy(data.train[np.asarray(batch)]).to(device)
        loss = reconstruction_loss(model(poses)[0], poses, config.data.velocity_weight)
        optimizer_step(optimizer, loss, model, config.optim.grad_clip)
        return {"loss": loss.item()}

    model.train()
    return loop.train(loop.batches(data.train.shape[0]), train_step)


def train_fgd_main(args: Any) -> int:
    """``gesturert train fgd``: returns 0 on success, 2 on bad input."""
    from train.cli import report_training
    from train.config import load_config

    def train() -> dict[str, float]:
        config = load_config(FGDTrainingConfig, args.config, args.overrides)
        data = load_fgd_data(Path(args.data), config)
        return train_fgd(config, data, args.out, resume=args.resume, device=args.device,
                         show_progress=not getattr(args, "no_progress", False))

    return report_training("fgd", train, "FGD encoder trained",
                           Path(args.out) / CHECKPOINT_NAME)
