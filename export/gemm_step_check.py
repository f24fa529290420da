"""Checks and helpers around ``generator_step.onnx`` (export/gemm_step.py).

:func:`step_parity` runs the ONNX step against PyTorch's ``generator.step`` frame by frame
(from a random state, converted to the step's layout by :func:`step_state_from_torch`);
:func:`generator_from_onnx` rebuilds the PyTorch generator from an exported
``generator.onnx`` when its checkpoint is not at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from export.gemm_step import CausalBlock, build_step_model
from sdk.runners.base import FEATURES, NOISE, STATE, STYLE
from train.models.generator import GeneratorConfig, SalientPostureGenerator


def step_state_from_torch(state: np.ndarray, blocks: list[CausalBlock]) -> np.ndarray:
    """A ``generator.onnx`` / PyTorch state (B, S) (caches channel-major, (C, context))
    in this module's layout (each cache time-major, (context, C)); float32 (B, S)."""
    out = np.array(state, dtype=np.float32)  # what follows the caches (the held scores)
    for block in blocks:
        part = state[:, block.offset:block.offset + block.size]
        out[:, block.offset:block.offset + block.size] = part.reshape(
            -1, block.channels, block.context).transpose(0, 2, 1).reshape(len(state), -1)
    return out


@dataclass(frozen=True)
class StepParity:
    """Max |ONNX step - PyTorch step| over ``frames`` one-frame steps of ``batch`` streams
    (poses in standardised units, saliency), from a random state and from zeros."""

    frames: int
    batch: int
    max_abs_poses: float
    max_abs_saliency: float
    max_abs_state: float

    @property
    def max_abs(self) -> float:
        return max(self.max_abs_poses, self.max_abs_saliency, self.max_abs_state)


def step_parity(generator: SalientPostureGenerator, path: str | Path, features: np.ndarray,
                batch: int = 3, seed: int = 0) -> StepParity:
    """Run the ONNX step at ``path`` and ``generator.step`` frame by frame on ``batch``
    streams: stream b reads ``features`` (T, F) rolled by b frames, random noise, and starts
    from a random state (converted to the step's layout); with styles, stream b has style
    (default + b) mod n_styles, so every batch of >= 2 covers a non-default style.
    Returns the worst differences."""
    import onnxruntime as ort

    model, blocks = build_step_model(generator)
    rng = np.random.default_rng(seed)
    cfg = generator.config
    frames = len(features)
    feats = np.stack([np.roll(features, b, axis=0) for b in range(batch)]).astype(np.float32)
    noise = rng.standard_normal((batch, frames, cfg.noise_dim)).astype(np.float32)
    torch_state = (0.5 * rng.standard_normal((batch, generator.state_size))).astype(np.float32)
    onnx_state = step_state_from_torch(torch_state, blocks)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = {"poses": 0.0, "saliency": 0.0, "state": 0.0}
    state_t = torch.from_numpy(torch_state)
    styles = ((generator.default_style_index + np.arange(batch)) % max(len(cfg.styles), 1)
              ).astype(np.int32)
    style_feed = {STYLE: styles} if cfg.styles else {}
    with torch.no_grad():
        for t in range(frames):
            poses, saliency, state_t = generator.step(
                torch.from_numpy(feats[:, t:t + 1]), torch.from_numpy(noise[:, t:t + 1]),
                state_t, torch.from_numpy(styles) if cfg.styles else None)
            got = session.run(None, {FEATURES: feats[:, t:t + 1], NOISE: noise[:, t:t + 1],
                                     STATE: onnx_state} | style_feed)
            onnx_state = got[2]
            worst["poses"] = max(worst["poses"], float(np.abs(got[0] - poses.numpy()).max()))
            worst["saliency"] = max(worst["saliency"],
                                    float(np.abs(got[1] - saliency.numpy()).max()))
    expected_state = step_state_from_torch(state_t.numpy(), blocks)
    worst["state"] = float(np.abs(onnx_state - expected_state).max())
    del model
    return StepParity(frames, batch, worst["poses"], worst["saliency"], worst["state"])


def generator_from_onnx(path: str | Path, config: GeneratorConfig) -> SalientPostureGenerator:
    """The PyTorch generator whose weights are the initializers of an exported
    ``generator.onnx`` (named ``generator.<parameter>`` by the dynamo exporter).

    For bundles whose checkpoint is not at hand; ``config`` must be the architecture it
    was trained with (a wrong one fails here on shapes, or in :func:`step_parity`).
    Raises:
        ValueError: a parameter or buffer of the generator is missing from the file or
            has another shape.
    """
    model = onnx.load(str(path))
    weights = {i.name.removeprefix("generator."): numpy_helper.to_array(i)
               for i in model.graph.initializer if i.name.startswith("generator.")}
    generator = SalientPostureGenerator(config)
    own = generator.state_dict()
    needed = {k for k in own if not k.startswith(("pose_encoder.", "pose_proj."))}
    missing = sorted(needed - set(weights))
    if missing:
        raise ValueError(f"{path}: no initializers for {missing[:5]} (of {len(missing)}); "
                         f"not a generator.onnx of this architecture")
    for name in needed:
        if tuple(weights[name].shape) != tuple(own[name].shape):
            raise ValueError(f"{path}: {name} has shape {weights[name].shape}, the config "
                             f"gives {tuple(own[name].shape)}")
        own[name] = torch.from_numpy(weights[name].copy())
    generator.load_state_dict(own)
    return generator.eval()
