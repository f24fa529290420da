"""A tiny, real bundle for runtime tests: built in seconds, following every contract.

The generator is a small torch module that implements the step contract exactly
(docs/architecture.md): raw features are normalised inside, noise is concatenated, two
causal convolutions carry their last ``kernel - 1`` inputs as state, and the output at
input index t is read as pose frame t - L. Its ONNX file comes from the dynamo exporter
with dynamic ``batch`` and ``frames`` axes, so chunk and batching invariance are real
tests of the runtime (state gather/scatter, noise indices, output delay), not of a
constant function. A tiny PoseSyncNet of the right I/O completes the bundle, and the
manifest is written with :func:`sdk.bundle.write_bundle_manifest`.

Imports torch: tests only (sdk never sees this module).
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sdk.bundle import GeneratorSpec, Manifest, ModelSpec, PoseSyncSpec, write_bundle_manifest
from sdk.features import DEFAULT_FEATURES
from sdk.mfcc import DEFAULT_MATRICES_PATH
from sdk.normalization import PoseNormalization
from sdk.pose_image import ImagingConfig
from sdk.runners.base import GENERATOR_INPUTS, GENERATOR_OUTPUTS
from sdk.skeleton import MODEL_SKELETON


@dataclass(frozen=True)
class TinyBundleConfig:
    """Sizes of the tiny bundle. ``lookahead_frames`` is L; the state is S floats."""

    lookahead_frames: int = 2
    noise_dim: int = 4
    hidden: int = 16
    kernel: int = 3
    layers: int = 2
    chunk_frames: int = 1
    embedding_dim: int = 8
    seed: int = 0

    @property
    def state_size(self) -> int:
        return self.layers * self.hidden * (self.kernel - 1)


class TinyStepGenerator(nn.Module):
    """features (B, Tc, F), noise (B, Tc, N), state (B, S) -> poses, saliency, state_out."""

    def __init__(self, config: TinyBundleConfig) -> None:
        super().__init__()
        self.config = config
        f = DEFAULT_FEATURES.feature_dim
        h = config.hidden
        self.num_joints = MODEL_SKELETON.num_joints
        gen = torch.Generator().manual_seed(config.seed)
        # MFCCs span ~[-600, 200]: normalise with fixed, plausible statistics.
        self.register_buffer("feature_mean", torch.randn(f, generator=gen) * 20.0)
        self.register_buffer("feature_std", torch.rand(f, generator=gen) * 40.0 + 20.0)
        self.inp = nn.Linear(f + config.noise_dim, h)
        self.convs = nn.ModuleList(nn.Conv1d(h, h, config.kernel) for _ in range(config.layers))
        self.pose = nn.Linear(h, (self.num_joints - 1) * 2)
        self.salience = nn.Linear(h, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

    def forward(self, features: torch.Tensor, noise: torch.Tensor, state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.config
        batch = features.shape[0]
        frames = features.shape[1]
        x = (features - self.feature_mean) / self.feature_std
        h = torch.tanh(self.inp(torch.cat([x, noise], dim=-1))).transpose(1, 2)  # (B, H, Tc)
        caches = state.reshape(batch, c.layers, c.hidden, c.kernel - 1)
        new_caches = []
        for i, conv in enumerate(self.convs):
            full = torch.cat([caches[:, i], h], dim=2)  # (B, H, K-1+Tc)
            new_caches.append(full[:, :, -(c.kernel - 1):])
            h = torch.tanh(conv(full)) + h  # (B, H, Tc)
        h = h.transpose(1, 2)  # (B, Tc, H)
        body = self.pose(h).reshape(batch, frames, self.num_joints - 1, 2)
        poses = torch.cat([torch.zeros_like(body[:, :, :1]), body], dim=2)  # root exactly 0
        saliency = torch.sigmoid(self.salience(h)).squeeze(-1)
        state_out = torch.stack(new_caches, dim=1).reshape(batch, c.state_size)
        return poses, saliency, state_out


class TinyPoseSync(nn.Module):
    """mfcc (B, 13, 60), pose_images (B, 9, H, W) -> audio_emb, pose_emb (B, E)."""

    def __init__(self, clip_mfcc: int, clip_frames: int, height: int, width: int,
                 embedding_dim: int) -> None:
        super().__init__()
        self.audio = nn.Linear(DEFAULT_FEATURES.n_mfcc * clip_mfcc, embedding_dim)
        self.pose = nn.Linear(clip_frames * height * width, embedding_dim)

    def forward(self, mfcc: torch.Tensor, pose_images: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.audio(mfcc.flatten(1)), self.pose(pose_images.flatten(1))


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path,
            inputs: tuple[str, ...], outputs: tuple[str, ...],
            dynamic: dict[str, dict[int, torch.export.Dim]]) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(), args, dynamo=True, input_names=list(inputs),
            output_names=list(outputs), dynamic_shapes=dynamic, opset_version=18,
            verbose=False,
        )
    assert program is not None
    program.save(str(path))


def _spec(path: Path) -> ModelSpec:
    """ModelSpec read back from the ONNX file (dynamic axes by name)."""
    import onnx

    from sdk.bundle import TensorSpec

    model = onnx.load(str(path))

    def tensors(values: list[onnx.ValueInfoProto]) -> tuple[TensorSpec, ...]:
        out = []
        for v in values:
            dims = tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)
            out.append(TensorSpec(v.name, "float32", dims))
        return tuple(out)

    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return ModelSpec(path.name, tensors(list(model.graph.input)),
                     tensors(list(model.graph.output)), opset)


def tiny_normalization(seed: int = 0) -> PoseNormalization:
    """Plausible statistics for a 1280x720 video: the neck at (640, 300), 150 px shoulders."""
    rng = np.random.default_rng(seed)
    j = MODEL_SKELETON.num_joints
    mean = rng.normal(0.0, 0.8, (j, 2)).astype(np.float32)
    std = rng.uniform(0.05, 0.3, (j, 2)).astype(np.float32)
    mean[0], std[0] = 0.0, 1.0
    return PoseNormalization(anchor_px=(640.0, 300.0), scale_px=150.0, mean=mean, std=std,
                             image_size=(1280, 720))


def build_tiny_bundle(root: Path, config: TinyBundleConfig | None = None) -> Path:
    """Write a complete, checksummed bundle directory at ``root``; returns ``root``."""
    config = config or TinyBundleConfig()
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    features = DEFAULT_FEATURES

    generator = TinyStepGenerator(config)
    batch, frames = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("frames",
                                                                                  min=1, max=4096)
    example = (torch.randn(2, 3, features.feature_dim), torch.randn(2, 3, config.noise_dim),
               torch.zeros(2, config.state_size))
    _export(generator, example, root / "generator.onnx", GENERATOR_INPUTS, GENERATOR_OUTPUTS,
            {"features": {0: batch, 1: frames}, "noise": {0: batch, 1: frames},
             "state": {0: batch}})

    imaging = ImagingConfig()
    clip_frames = 9
    clip_mfcc = round(clip_frames * features.mfcc_rate / features.fps)
    posesync = TinyPoseSync(clip_mfcc, clip_frames, imaging.height, imaging.width,
                            config.embedding_dim)
    clip_batch = torch.export.Dim("batch", min=1, max=1024)
    _export(posesync, (torch.randn(2, features.n_mfcc, clip_mfcc),
                       torch.rand(2, clip_frames, imaging.height, imaging.width)),
            root / "posesync.onnx", ("mfcc", "pose_images"), ("audio_emb", "pose_emb"),
            {"mfcc": {0: clip_batch}, "pose_images": {0: clip_batch}})

    shutil.copyfile(DEFAULT_MATRICES_PATH, root / "mfcc_matrices.npz")
    manifest = Manifest(
        features=features,
        skeleton=MODEL_SKELETON,
        normalization=tiny_normalization(config.seed),
        imaging=imaging.to_dict(),
        generator=GeneratorSpec(
            model=_spec(root / "generator.onnx"),
            lookahead_frames=config.lookahead_frames,
            noise_dim=config.noise_dim,
            state_size=config.state_size,
            chunk_frames=config.chunk_frames,
        ),
        posesync=PoseSyncSpec(model=_spec(root / "posesync.onnx"), clip_frames=clip_frames,
                              clip_mfcc_frames=clip_mfcc, embedding_dim=config.embedding_dim),
        mfcc_matrices="mfcc_matrices.npz",
        training={"source": "tests/helpers_bundle.py (random weights)"},
    )
    write_bundle_manifest(root, manifest)
    return root


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle, built once per test session (shared by every module importing this)."""
    root = tmp_path_factory.getbasetemp() / "tiny_bundle"
    if not (root / "manifest.json").is_file():
        build_tiny_bundle(root)
    return root
