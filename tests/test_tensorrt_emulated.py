"""The TensorRT backend on the CPU: TensorRTRunner and TensorRTStepper, unchanged, over a
fake ``tensorrt`` (engines run the tiny bundle's ONNX model with ONNX Runtime) and the
fake CUDA driver (host memory, stream capture into replayable graphs, the state kernels
on the emulator). Checked against the host stepper on ONNX Runtime: the review's items
5 (state moves inside the graph, shared context memory, capture fallback), 6 (input
checks) and 7 (release on failure and close), and the device-features path that the CUDA
MFCC writes into.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cuda_emu.fake_driver import FakeDriver
from helpers_bundle import TINY_GENERATOR, tiny_bundle  # noqa: F401  (session fixture)
from helpers_device_path import fake, library  # noqa: F401  (fixtures: emulator, fake TensorRT)

from sdk.features import DEFAULT_FEATURES
from sdk.runners.base import RunnerError, RunnerInputError
from sdk.runners.host_stepper import HostStateStepper
from sdk.runners.onnxrt import OnnxRuntimeRunner
from sdk.runners.tensorrt import TensorRTRunner
from sdk.runners.tensorrt_stepper import TensorRTStepper

F = DEFAULT_FEATURES.feature_dim
N = TINY_GENERATOR.noise_dim


@pytest.fixture()
def steppers(fake: FakeDriver, tiny_bundle: Path, tmp_path: Path  # noqa: F811
             ) -> Iterator[tuple[HostStateStepper, TensorRTStepper]]:
    s = fake.state_size  # type: ignore[attr-defined]
    host = HostStateStepper(OnnxRuntimeRunner(tiny_bundle / "generator.onnx"), s, "ort")
    device = TensorRTStepper(TensorRTRunner(tmp_path / "generator.plan"), s)
    yield host, device
    host.close()
    device.close()


def data(rng: np.random.Generator, batch: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    return (rng.normal(0, 30, (batch, frames, F)).astype(np.float32),
            rng.normal(0, 1, (batch, frames, N)).astype(np.float32))


def test_device_state_stepper_matches_the_host_stepper(
        steppers: tuple[HostStateStepper, TensorRTStepper], fake: FakeDriver) -> None:  # noqa: F811
    host, device = steppers
    for stepper in (host, device):
        for _ in range(24):  # past the initial table of 16 rows: it grows once
            stepper.allocate_slot()
    rng = np.random.default_rng(0)
    for step in range(10):  # varying buckets, frames and slot orders
        batch, frames = int(rng.integers(1, 24)), int(rng.integers(1, 4))
        slots = [int(s) for s in rng.permutation(24)[:batch]]
        features, noise = data(rng, batch, frames)
        want = host.step(features, noise, slots)
        got = device.step(features, noise, slots)
        np.testing.assert_allclose(got.poses, want.poses, atol=1e-5, err_msg=str(step))
        np.testing.assert_allclose(got.saliency, want.saliency, atol=1e-5)
    for slot in range(24):
        np.testing.assert_allclose(device.read_state(slot), host.read_state(slot), atol=1e-5)
    device.reset_slot(3)
    assert not device.read_state(3).any()
    assert any(g.graph_exec is not None for g in device._graphs.values())


def test_a_step_is_one_graph_launch_whatever_the_slots(
        steppers: tuple[HostStateStepper, TensorRTStepper], fake: FakeDriver) -> None:  # noqa: F811
    """Scattered slots used to cost one cuMemcpyDtoDAsync per run of slots, outside the
    graph (up to 2 x batch driver calls); now gather and scatter are kernels in it."""
    _, device = steppers
    for _ in range(16):
        device.allocate_slot()
    rng = np.random.default_rng(1)
    slots = [15, 3, 9, 0, 12, 6, 1]  # no two consecutive
    device.step(*data(rng, 7, 1), slots)  # first step of this bucket: capture
    fake.calls.clear()
    got = device.step(*data(rng, 7, 1), slots)
    assert [c for c in fake.calls if c != "cuCtxSetCurrent"] == [
        "cuGraphLaunch", "cuStreamSynchronize"], fake.calls
    assert np.isfinite(got.poses).all()


def test_contexts_share_one_activation_buffer(
        steppers: tuple[HostStateStepper, TensorRTStepper], fake: FakeDriver) -> None:  # noqa: F811
    _, device = steppers
    slots = [device.allocate_slot() for _ in range(5)]
    rng = np.random.default_rng(2)
    for batch, frames in ((1, 1), (2, 1), (1, 3), (5, 2)):  # four (bucket, frames) graphs
        device.step(*data(rng, batch, frames), slots[:batch])
    engine = sys.modules["tensorrt"].engines[-1]  # type: ignore[attr-defined]
    step_contexts = engine.contexts[1:]  # [0] is the runner's own (for infer)
    assert len(step_contexts) == 4
    assert {c.strategy for c in step_contexts} == {engine.USER_MANAGED}
    assert len({c.device_memory for c in step_contexts}) == 1


def test_a_failed_capture_falls_back_to_direct_enqueue(
        steppers: tuple[HostStateStepper, TensorRTStepper], fake: FakeDriver,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    host, device = steppers
    fake.capture_fails = True
    slots = [(host.allocate_slot(), device.allocate_slot())[1] for _ in range(3)]
    rng = np.random.default_rng(3)
    for _ in range(3):
        features, noise = data(rng, 3, 2)
        want = host.step(features, noise, slots)
        got = device.step(features, noise, slots)
        np.testing.assert_allclose(got.poses, want.poses, atol=1e-5)
    (graph,) = device._graphs.values()
    assert graph.graph_exec is None and "CAPTURE_INVALIDATED" in str(graph.capture_error)
    assert "capture" in caplog.text and not fake.graphs


@pytest.mark.parametrize("change, match", [
    (lambda f, n: (f.astype(np.float64), n), "float32"),
    (lambda f, n: (f[..., :-1], n), r"\(2, 1, 91\)"),
    (lambda f, n: (f, n[..., :2]), "noise must have shape"),
    (lambda f, n: (f[0], n), "features must be"),
])
def test_step_inputs_are_checked(steppers: tuple[HostStateStepper, TensorRTStepper],
                                 change: Any, match: str) -> None:
    _, device = steppers
    slots = [device.allocate_slot(), device.allocate_slot()]
    features, noise = data(np.random.default_rng(4), 2, 1)
    with pytest.raises(RunnerInputError, match=match):
        device.step(*change(features, noise), slots)


def test_a_runner_that_fails_to_activate_releases_its_stream_and_context(
        fake: FakeDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    def fail(self: TensorRTRunner, engine: Any) -> None:
        raise RunnerError("allocation failed")

    monkeypatch.setattr(TensorRTRunner, "_allocate_io", fail)
    with pytest.raises(RunnerError, match="allocation failed"):
        TensorRTRunner(tmp_path / "generator.plan").activate()
    live = fake.live_handles()
    assert (live["streams"], live["primary_context"]) == (0, 0)


def test_closing_the_stepper_releases_everything(fake: FakeDriver, tmp_path: Path) -> None:  # noqa: F811
    device = TensorRTStepper(TensorRTRunner(tmp_path / "generator.plan"),
                             fake.state_size)  # type: ignore[attr-defined]
    slots = [device.allocate_slot() for _ in range(2)]
    device.step(*data(np.random.default_rng(5), 2, 1), slots)
    device.close()
    device.close()  # idempotent
    assert fake.live_handles() == {"memory": 0, "pinned": 0, "modules": 0, "streams": 0,
                                   "events": 0, "primary_context": 0}


def test_cuda_mfcc_writes_features_into_the_engine_binding_like_the_cpu_path(
        steppers: tuple[HostStateStepper, TensorRTStepper], fake: FakeDriver,  # noqa: F811
        speech_16k: np.ndarray) -> None:
    """The runtime's GPU path: audio goes to the device once per 15 fps chunk, the CUDA
    MFCC writes each step's feature frames straight into the engine's ``features`` input
    on the engine's stream, and the step copies nothing but noise from the host. Parity
    with the CPU path (numpy features, host-state stepper on ONNX Runtime)."""
    from sdk.cuda.mfcc import CudaMfcc
    from sdk.mfcc import MfccMatrices, extract_features

    host, device = steppers
    matrices = MfccMatrices.default()
    mfcc = CudaMfcc(DEFAULT_FEATURES, matrices, max_streams=2, max_chunk_samples=2000,
                    history_frames=200, runner=device.kernel_runner)
    clips = [speech_16k[:16000], speech_16k[20000:36000]]
    chunk = 16000 // 15 + 1
    for start in range(0, 16000, chunk):
        mfcc.accept([0, 1], [c[start:start + chunk] for c in clips])
    frames = int(mfcc.feature_frames_ready([0, 1]).min())
    assert frames >= 10
    want_features = np.stack([extract_features(c, DEFAULT_FEATURES, matrices, frames)
                              for c in clips])
    noise = np.random.default_rng(6).normal(0, 1, (2, frames, N)).astype(np.float32)
    slots_host = [host.allocate_slot() for _ in range(2)]
    slots_device = [device.allocate_slot() for _ in range(2)]
    staged = device.runner.tensors["features"].host.array
    binding = np.frombuffer(
        (np.ctypeslib.ctypes.c_float * (2 * F)).from_address(device.features_binding),
        dtype=np.float32).reshape(2, 1, F)
    for t in range(frames):  # one feature frame per step
        staged[:] = np.nan  # the host copy of the features must not be what the engine sees
        mfcc.write_features([0, 1], [t, t], 1, device.features_binding)
        got = device.step_device_features(noise[:, t:t + 1], slots_device)
        assert np.abs(binding - want_features[:, t:t + 1]).max() <= 1e-3
        want = host.step(want_features[:, t:t + 1], noise[:, t:t + 1], slots_host)
        np.testing.assert_allclose(got.poses, want.poses, atol=1e-3)
        np.testing.assert_allclose(got.saliency, want.saliency, atol=1e-3)
    assert list(device._graphs) == [(2, 1, True)]  # captured without the features copy
    mfcc.close()
