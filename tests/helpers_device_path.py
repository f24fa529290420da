"""Fixtures and checks of the runtime's GPU path on the CPU emulator (the device-path tests).

The stepper is :class:`sdk.runners.tensorrt_stepper.TensorRTStepper` unchanged, over the
fake ``tensorrt`` (its engine runs the bundle's generator.onnx with ONNX Runtime) and the
fake CUDA driver (host memory, graph capture, kernels on the emulator), as in
tests/test_tensorrt_emulated.py. Reference: the CPU path (numpy MFCC, ONNX Runtime on the
host) on the same audio; features <= 1e-3, poses <= 1e-3 px.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cuda_emu.emulator import build_emulator
from cuda_emu.fake_driver import FakeDriver
from cuda_emu.fake_tensorrt import fake_tensorrt
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

from sdk.cuda import nvrtc
from sdk.features import DEFAULT_FEATURES
from sdk.frames import PoseFrames
from sdk.mfcc import MfccMatrices, extract_features
from sdk.runners.onnxrt import OnnxRuntimeRunner
from sdk.runners.tensorrt import TensorRTRunner
from sdk.runners.tensorrt_stepper import TensorRTStepper
from sdk.streaming import StreamingGenerator

F = DEFAULT_FEATURES.feature_dim
FEATURE_ATOL = 1e-3  # MFCC units, the bound
POSE_ATOL_PX = 1e-3  # pixels


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_emulator(nvrtc.feature_defines(DEFAULT_FEATURES),
                          tmp_path_factory.mktemp("cuda_emu"))


@pytest.fixture()
def fake(library: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
         tmp_path: Path) -> FakeDriver:
    import cuda.bindings

    driver = FakeDriver(library, compute_capability=(9, 0))
    monkeypatch.setattr(cuda.bindings, "driver", driver)
    monkeypatch.setenv("GESTURERT_CACHE", str(tmp_path / "cache"))
    with OnnxRuntimeRunner(tiny_bundle / "generator.onnx") as ort:
        meta = ort.get_input_metadata()
    s, n = int(meta["state"].shape[1]), int(meta["noise"].shape[2])
    profile = {"features": ((1, 1, F), (8, 1, F), (32, 4, F)),
               "noise": ((1, 1, n), (8, 1, n), (32, 4, n)),
               "state": ((1, s), (8, s), (32, s))}
    monkeypatch.setitem(sys.modules, "tensorrt",
                        fake_tensorrt(tiny_bundle / "generator.onnx", profile, driver))
    (tmp_path / "generator.plan").write_bytes(b"plan")
    driver.state_size = s  # type: ignore[attr-defined]
    return driver


class FeatureSpy:
    """Records the engine's ``features`` input at every device-features step: what the
    CUDA MFCC wrote there (fake device memory is host memory)."""

    def __init__(self, stepper: TensorRTStepper) -> None:
        self.steps: list[np.ndarray] = []  # (B, frames, F) per step
        original = stepper.step_device_features

        def spy(noise: np.ndarray, slots: Any, styles: Any = None) -> Any:
            count = noise.shape[0] * noise.shape[1] * F
            buffer = (ctypes.c_float * count).from_address(stepper.features_binding)
            self.steps.append(np.ctypeslib.as_array(buffer).reshape(
                noise.shape[0], noise.shape[1], F).copy())
            return original(noise, slots, styles)

        stepper.step_device_features = spy  # type: ignore[method-assign]


@pytest.fixture()
def gpu(fake: FakeDriver, tiny_bundle: Path, tmp_path: Path  # noqa: F811
        ) -> Iterator[StreamingGenerator]:
    stepper = TensorRTStepper(TensorRTRunner(tmp_path / "generator.plan"),
                              fake.state_size)  # type: ignore[attr-defined]
    with StreamingGenerator(tiny_bundle, backend=stepper) as gen:
        gen.spy = FeatureSpy(stepper)  # type: ignore[attr-defined]
        yield gen


@pytest.fixture(scope="module")
def cpu(tiny_bundle: Path) -> Iterator[StreamingGenerator]:  # noqa: F811
    with StreamingGenerator(tiny_bundle, backend="onnxruntime-cpu") as gen:
        yield gen


def assert_same_frames(got: PoseFrames, want: PoseFrames, what: str = "") -> None:
    """The device path's frames equal the CPU path's: same indices, poses <= 1e-3 px."""
    np.testing.assert_array_equal(got.index, want.index, err_msg=what)
    np.testing.assert_allclose(got.keypoints, want.keypoints, rtol=0, atol=POSE_ATOL_PX,
                               err_msg=what)
    np.testing.assert_allclose(got.saliency, want.saliency, rtol=0, atol=1e-4, err_msg=what)


def assert_features_like_the_cpu(spy: FeatureSpy, audio: np.ndarray) -> None:
    """Every feature frame the engine saw (one stream, any chunking) equals the numpy
    features of the audio (mono, model rate) within 1e-3."""
    seen = np.concatenate([step[0] for step in spy.steps])  # (frames, F) in order
    want = extract_features(audio, DEFAULT_FEATURES, MfccMatrices.default(), len(seen))
    np.testing.assert_allclose(seen, want, rtol=0, atol=FEATURE_ATOL)


def speech(speech_16k: np.ndarray, seconds: float) -> np.ndarray:
    return np.ascontiguousarray(speech_16k[:int(seconds * 16000)])
