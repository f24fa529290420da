"""A benchmark bundle made on the fly: the DEFAULT generator, untrained, exported for real.

Compute cost depends on the architecture, not on the weights, so a freshly initialised
:class:`~train.models.generator.SalientPostureGenerator` with the default training config
(``train/configs/generator.yaml``) and a default :class:`~train.models.posesync.PoseSyncNet`
go through the project's own export path (:func:`export.bundle_writer.write_bundle`:
dynamo ONNX export, onnx.checker, ORT-vs-PyTorch parity, PSD reference, manifest). The
timings are therefore those of a shipped bundle of that config; the *outputs* are
meaningless (untrained), and every benchmark record says so.

Feature statistics are those of the shipped speech sample (so the untrained model sees
inputs of unit scale, as a trained one would); the pose normalisation is a plausible
1280x720 one (neck at (640, 300), 150 px shoulders).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from sdk.features import DEFAULT_FEATURES
from sdk.normalization import PoseNormalization
from sdk.skeleton import MODEL_SKELETON

if TYPE_CHECKING:
    from train.models.generator import SalientPostureGenerator

GENERATOR_CONFIG = Path(__file__).resolve().parents[1] / "train" / "configs" / "generator.yaml"
UNTRAINED_NOTE = ("untrained weights: a freshly initialised generator with the default config "
                  "(train/configs/generator.yaml) and a default PoseSyncNet, exported through "
                  "export.bundle_writer.write_bundle; compute cost is representative, outputs "
                  "are not")
_SEED = 0


def default_generator(lookahead_frames: int | None = None, seed: int = _SEED
                      ) -> SalientPostureGenerator:
    """A fresh SalientPostureGenerator of the default training config, eval mode.

    Args:
        lookahead_frames: override the config's lookahead L (None: the config's).
        seed: torch seed for the initial weights.
    Its feature mean/std are set from the speech sample's feature frames.
    """
    from train.config import load_config
    from train.generator_training import GeneratorTrainingConfig
    from train.models.generator import SalientPostureGenerator

    overrides = [] if lookahead_frames is None else [f"model.lookahead_frames={lookahead_frames}"]
    config = load_config(GeneratorTrainingConfig, GENERATOR_CONFIG, overrides).model
    torch.manual_seed(seed)
    model = SalientPostureGenerator(config).eval()
    features = speech_features()
    model.set_feature_normalization(features.mean(axis=0), features.std(axis=0) + 1e-3)
    return model


def speech_features(extra_frames: int = 0) -> np.ndarray:
    """Feature frames of the shipped speech sample: float32 (K + extra_frames, 91)."""
    from export.bundle_writer import speech_inputs

    _, frames, _ = speech_inputs(DEFAULT_FEATURES, extra_frames)
    return frames


def plausible_normalization() -> PoseNormalization:
    """Fixed pose statistics for a 1280x720 video (canonical mean 0, std 0.2; root exact)."""
    j = MODEL_SKELETON.num_joints
    mean = np.zeros((j, 2), np.float32)
    std = np.full((j, 2), 0.2, np.float32)
    std[MODEL_SKELETON.root] = 1.0
    return PoseNormalization(anchor_px=(640.0, 300.0), scale_px=150.0, mean=mean, std=std,
                             image_size=(1280, 720))


def make_benchmark_bundle(out_dir: str | Path, lookahead_frames: int | None = None,
                          chunk_frames: int = 1, overwrite: bool = True) -> Path:
    """Write an untrained default-config bundle to ``out_dir`` (see the module docstring).

    Returns ``out_dir``. A directory that already holds a bundle made by this function
    with the same lookahead and chunking is reused (export takes tens of seconds).
    """
    from export.bundle_writer import ExportInputs, write_bundle
    from sdk.bundle import load_bundle
    from train.models.posesync import PoseSyncConfig, PoseSyncNet

    out = Path(out_dir)
    generator = default_generator(lookahead_frames)
    if (out / "manifest.json").is_file():
        try:
            spec = load_bundle(out, verify=False).manifest
            made_here = (spec.training.get("checkpoints", {}).get("benchmark_bundle")
                         == UNTRAINED_NOTE)
        except Exception:  # anything unreadable is rebuilt
            made_here = False
        if made_here and spec.generator.lookahead_frames == generator.config.lookahead_frames \
                and spec.generator.chunk_frames == chunk_frames:
            return out
    torch.manual_seed(_SEED)
    posesync = PoseSyncNet(PoseSyncConfig(), DEFAULT_FEATURES).eval()
    inputs = ExportInputs(generator=generator, posesync=posesync, features=DEFAULT_FEATURES,
                          normalization=plausible_normalization(),
                          imaging=posesync.config.imaging,
                          provenance={"benchmark_bundle": UNTRAINED_NOTE})
    write_bundle(inputs, out, chunk_frames=chunk_frames, batch_profile=(1, 16, 1024),
                 overwrite=overwrite, progress=False)
    return out
