"""A tiny, real bundle for runtime tests, made by the project's own export path.

A small :class:`train.models.generator.SalientPostureGenerator` (random weights, the
feature statistics of the shipped speech sample) and a small PoseSyncNet go through
:func:`export.bundle_writer.write_bundle`: dynamo ONNX export with dynamic ``batch`` and
``frames`` axes, parity against PyTorch, MFCC matrices, PSD reference, manifest. The
runtime tests therefore exercise exactly what ``gesturert export`` ships: causal
convolutions with state caches (chunk and batching invariance are real tests), the
output delay of ``lookahead_frames``, noise, the root fixed at 0.

Imports torch, train and export: tests only (sdk never sees this module).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from export.bundle_writer import ExportInputs, speech_inputs, write_bundle
from sdk.features import DEFAULT_FEATURES
from sdk.normalization import PoseNormalization
from sdk.pose_image import ImagingConfig
from sdk.skeleton import MODEL_SKELETON
from train.models.generator import GeneratorConfig, SalientPostureGenerator
from train.models.posesync import PoseSyncConfig, PoseSyncNet

TINY_GENERATOR = GeneratorConfig(
    face_hidden=8, body_hidden=8, embedding_dim=8, pose_hidden=8, decoder_hidden=8,
    detector_hidden=4, body_dilations=(1, 2), lookahead_frames=2, noise_dim=3,
)
TINY_POSESYNC = PoseSyncConfig(
    imaging=ImagingConfig(height=16, width=16), audio_channels=(4, 4), pose_channels=(4, 4),
    hidden_dim=8, embedding_dim=8,
)


def tiny_normalization(seed: int = 0) -> PoseNormalization:
    """Plausible statistics for a 1280x720 video: the neck at (640, 300), 150 px shoulders."""
    rng = np.random.default_rng(seed)
    j = MODEL_SKELETON.num_joints
    mean = rng.normal(0.0, 0.5, (j, 2)).astype(np.float32)
    std = rng.uniform(0.1, 0.4, (j, 2)).astype(np.float32)
    mean[0], std[0] = 0.0, 1.0
    return PoseNormalization(anchor_px=(640.0, 300.0), scale_px=150.0, mean=mean, std=std,
                             image_size=(1280, 720))


TINY_STYLES = ("calm", "lively", "wide")
"""Styles of the styled tiny bundle (default "lively": not the first, so an index-0 default
cannot pass for the manifest's)."""


def build_tiny_bundle(root: Path, chunk_frames: int = 1, seed: int = 0,
                      styles: tuple[str, ...] = ()) -> Path:
    """Export a complete, checksummed tiny bundle to ``root`` (~10 s); returns ``root``.
    ``styles``: gesture styles of the generator (default: the second), () = none."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread beats two contended ones
    try:
        torch.manual_seed(seed)
        generator = SalientPostureGenerator(dataclasses.replace(
            TINY_GENERATOR, styles=styles, default_style=styles[1] if styles else ""))
        _, speech, clips = speech_inputs(DEFAULT_FEATURES, 0)
        generator.set_feature_normalization(speech.mean(0), speech.std(0) + 1e-3)
        posesync = PoseSyncNet(TINY_POSESYNC, DEFAULT_FEATURES)
        posesync.set_mfcc_stats(torch.from_numpy(clips.mean((0, 2))),
                                torch.from_numpy(clips.std((0, 2)) + 1e-3))
        inputs = ExportInputs(generator=generator.eval(), posesync=posesync.eval(),
                              features=DEFAULT_FEATURES, normalization=tiny_normalization(seed),
                              imaging=TINY_POSESYNC.imaging,
                              provenance={"source": "tests/helpers_bundle.py (random weights)"})
        write_bundle(inputs, root, chunk_frames=chunk_frames, overwrite=True, progress=False)
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle, built once per test session (shared by every module importing this)."""
    root = tmp_path_factory.getbasetemp() / "tiny_bundle"
    if not (root / "manifest.json").is_file():
        build_tiny_bundle(root)
    return root


@pytest.fixture(scope="session")
def tiny_styled_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle whose generator has :data:`TINY_STYLES` (default "lively")."""
    root = tmp_path_factory.getbasetemp() / "tiny_styled_bundle"
    if not (root / "manifest.json").is_file():
        build_tiny_bundle(root, styles=TINY_STYLES)
    return root
