"""The one-frame GEMM-shaped step (export/gemm_step.py) against PyTorch's ``generator.step``."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.gemm_step import build_step_model, export_step
from export.gemm_step_check import step_parity, step_state_from_torch
from export.trt_ops import check_model
from tests.helpers_bundle import TINY_GENERATOR
from train.models.generator import GeneratorConfig, SalientPostureGenerator

TOLERANCE = 1e-5


def _generator(config: GeneratorConfig, seed: int = 0) -> SalientPostureGenerator:
    torch.manual_seed(seed)
    model = SalientPostureGenerator(config)
    rng = np.random.default_rng(seed)
    model.set_feature_normalization(rng.normal(0, 2, config.feature_dim),
                                    rng.uniform(0.5, 3.0, config.feature_dim))
    return model.eval()


def _features(frames: int = 24, seed: int = 1) -> np.ndarray:
    return (3.0 * np.random.default_rng(seed).standard_normal((frames, 91))).astype(np.float32)


@pytest.mark.parametrize("config", [
    TINY_GENERATOR,
    dataclasses.replace(TINY_GENERATOR, feature_clip=3.0, body_dilations=(1, 2, 4)),
    dataclasses.replace(TINY_GENERATOR, separate_branches=False, body_kernel=2),
    dataclasses.replace(TINY_GENERATOR, saliency_hold_frames=3),
], ids=["tiny", "clip-dilated", "one-decoder", "saliency-hold"])
def test_step_equals_pytorch_frame_by_frame(tmp_path: Path, config: GeneratorConfig) -> None:
    generator = _generator(config)
    export_step(generator, tmp_path / "step.onnx")
    parity = step_parity(generator, tmp_path / "step.onnx", _features(), batch=3)
    assert parity.max_abs <= TOLERANCE, parity


def test_parity_catches_a_step_of_other_weights(tmp_path: Path) -> None:
    generator = _generator(TINY_GENERATOR)
    export_step(generator, tmp_path / "step.onnx")
    with torch.no_grad():
        generator.body_decoder.blocks[1].conv.weight[0, 0, 0] += 0.5
    parity = step_parity(generator, tmp_path / "step.onnx", _features(), batch=2)
    assert parity.max_abs > 1e-3


def test_each_causal_conv_is_one_gemm_and_no_conv_remains(tmp_path: Path) -> None:
    config = GeneratorConfig()  # the default architecture
    model, blocks = build_step_model(_generator(config))
    ops = Counter(node.op_type for node in model.graph.node)
    assert "Conv" not in ops and "Slice" not in ops  # one Split cuts the whole state
    causal = len(config.face_dilations) + len(config.body_dilations) \
        + 2 * len(config.decoder_dilations)
    assert len(blocks) == causal
    # one Gemm per causal layer + input projections, decoder projections, detector, heads
    assert ops["Gemm"] == causal + 4
    # Concat: the taps of each layer, state_out, the decoders' input, the heads' input
    assert ops["Split"] == 3 and ops["Concat"] == causal + 3
    assert sum(ops.values()) <= 60, ops


def test_batch_invariance_and_state_layout(tmp_path: Path) -> None:
    """A stream's outputs do not depend on the other streams of the batch, and the state
    conversion from PyTorch's layout is the one the graph reads."""
    generator = _generator(TINY_GENERATOR)
    blocks = export_step(generator, tmp_path / "step.onnx")
    session = ort.InferenceSession(str(tmp_path / "step.onnx"),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    b, s = 5, generator.state_size
    feed = {"features": rng.standard_normal((b, 1, 91)).astype(np.float32),
            "noise": rng.standard_normal((b, 1, 3)).astype(np.float32),
            "state": rng.standard_normal((b, s)).astype(np.float32)}
    together = session.run(None, feed)
    alone = session.run(None, {k: v[3:4] for k, v in feed.items()})
    for a, t in zip(alone, together, strict=True):
        np.testing.assert_allclose(a[0], t[3], atol=1e-6)
    torch_state = rng.standard_normal((2, s)).astype(np.float32)
    converted = step_state_from_torch(torch_state, blocks)
    assert not np.array_equal(converted, torch_state)  # the layouts really differ
    np.testing.assert_array_equal(np.sort(converted, axis=1), np.sort(torch_state, axis=1))


def test_step_passes_the_tensorrt_op_check(tmp_path: Path) -> None:
    export_step(_generator(GeneratorConfig(saliency_hold_frames=4)), tmp_path / "step.onnx")
    report = check_model(tmp_path / "step.onnx", name="step")
    assert not report.issues, report.issues
    model = onnx.load(str(tmp_path / "step.onnx"))
    assert [i.name for i in model.graph.input] == ["features", "noise", "state"]
    assert [o.name for o in model.graph.output] == ["poses", "saliency", "state_out"]


def test_runner_with_reused_outputs_gives_the_same_numbers(tmp_path: Path) -> None:
    from sdk.runners.onnxrt import OnnxRuntimeRunner

    generator = _generator(TINY_GENERATOR)
    export_step(generator, tmp_path / "step.onnx")
    rng = np.random.default_rng(3)
    feed = {"features": rng.standard_normal((4, 1, 91)).astype(np.float32),
            "noise": rng.standard_normal((4, 1, 3)).astype(np.float32),
            "state": rng.standard_normal((4, generator.state_size)).astype(np.float32)}
    with OnnxRuntimeRunner(tmp_path / "step.onnx") as fresh, \
            OnnxRuntimeRunner(tmp_path / "step.onnx", reuse_outputs=True) as reused:
        want = fresh.infer(feed)
        first = reused.infer(feed)
        for name in want:
            np.testing.assert_array_equal(first[name], want[name])
        again = reused.infer({k: v[:2] for k, v in feed.items()})  # another shape
        assert again["poses"].shape == (2, 1, 122, 2)
        np.testing.assert_array_equal(again["poses"], want["poses"][:2])
        assert reused.infer(feed)["poses"] is first["poses"]  # the same buffer, refilled
