"""The runtime's GPU path on the CPU emulator: the checks fail on a broken path; PSD's pose
images, StreamBatch, the PyTorch step, and make gpu-check's end-to-end benchmark on it.
"""
# ruff: noqa: F811  (the fixtures imported from helpers_device_path are parameters here)

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cuda_emu.fake_driver import FakeDriver
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)
from helpers_device_path import (  # noqa: F401  (fixtures)
    POSE_ATOL_PX,
    FeatureSpy,
    assert_features_like_the_cpu,
    assert_same_frames,
    cpu,
    fake,
    gpu,
    library,
    speech,
)

from sdk import device_front_end
from sdk.features import DEFAULT_FEATURES
from sdk.frames import PoseFrames
from sdk.streaming import StreamingGenerator


def broken_write_offset(front: device_front_end.DeviceFrontEnd,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Features written one frame late: the engine reads frame k+1 for frame k."""
    write = front.mfcc.write_features

    def late(ids: Any, first: list[int], frames: int, out: Any) -> None:
        ready = front.mfcc.feature_frames_ready(ids)
        write(ids, [min(f + 1, int(r) - frames) for f, r in zip(first, ready, strict=True)],
              frames, out)
    front.mfcc.write_features = late  # type: ignore[method-assign]


def skipped_mfcc_kernel(front: device_front_end.DeviceFrontEnd,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel fault: every other mfcc_frames launch does nothing (frames never computed)."""
    driver = front.runner.driver  # type: ignore[attr-defined]
    launch, count = driver.cuLaunchKernel, [0]

    def faulty(function: str, *args: Any) -> Any:
        if function == "mfcc_frames":
            count[0] += 1
            if count[0] % 2:
                return (driver.ok,)
        return launch(function, *args)
    driver.cuLaunchKernel = faulty


def graph_copies_host_features(front: device_front_end.DeviceFrontEnd,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The step's graph copies the (stale) host staging buffer over the features the CUDA
    MFCC wrote: what the device path must not do."""
    from sdk.runners import tensorrt_graph

    init = tensorrt_graph.StepGraph.__init__

    def copying(self: Any, runner: Any, batch: int, frames: int, state: Any,
                features_on_device: bool, *args: Any) -> None:
        init(self, runner, batch, frames, state, False, *args)
    monkeypatch.setattr(tensorrt_graph.StepGraph, "__init__", copying)


@pytest.mark.parametrize("fault, features_wrong", [
    (broken_write_offset, True), (skipped_mfcc_kernel, True),
    (graph_copies_host_features, False)], ids=["wrong-offset", "kernel-fault", "host-copy"])
def test_the_parity_check_catches_a_broken_device_path(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray,
        fault: Callable[[device_front_end.DeviceFrontEnd, pytest.MonkeyPatch], None],
        features_wrong: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu.device_front_end is not None
    fault(gpu.device_front_end, monkeypatch)
    staged = gpu._stepper.runner.tensors["features"].host.array  # type: ignore[attr-defined]
    staged[:] = np.nan
    audio = speech(speech_16k, 1.0)
    got = gpu.generate(audio, 16000, chunk_samples=iter([1067] * 1000))
    if features_wrong:
        with pytest.raises(AssertionError):
            assert_features_like_the_cpu(gpu.spy, audio)  # type: ignore[attr-defined]
    with pytest.raises(AssertionError):
        assert_same_frames(got, cpu.generate(audio, 16000))


def test_psd_pose_images_are_drawn_on_the_device(gpu: StreamingGenerator,
                                                 speech_16k: np.ndarray) -> None:
    """The generator's front end draws PSD's pose images with the CUDA kernel on the
    engine's stream: the same PSD and sweep as numpy's images."""
    from sdk.bundle_psd import frames_psd, posesync_embed_fn

    front = gpu.device_front_end
    assert front is not None
    manifest = gpu.manifest
    audio = speech(speech_16k, 2.0)
    canonical = manifest.normalization.pixels_to_canonical(gpu.generate(audio, 16000).keypoints)
    embed, runner = posesync_embed_fn(gpu.bundle)
    try:
        imager = front.psd_imager(manifest)
        on_device = frames_psd(manifest, gpu._matrices, embed, audio, canonical, imager=imager)
        launched = list(front.runner.driver.launched)  # type: ignore[attr-defined]
        on_host = frames_psd(manifest, gpu._matrices, embed, audio, canonical)
    finally:
        runner.deactivate()
    assert any("pose" in name for name in launched), launched
    assert on_device.sweep.psd == on_host.sweep.psd
    np.testing.assert_array_equal(on_device.clip_distance, on_host.clip_distance)
    assert front.psd_imager(manifest) is imager  # made once, closed with the generator


def test_the_end_to_end_benchmark_runs_on_the_emulator(
        library: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """benchmarks.gpu_runtime (run by make gpu-check) on the fake driver: the shipped
    bundle, its step on ONNX Runtime behind the device buffer (no TensorRT here), and its
    parity check against the CPU path."""
    import cuda.bindings

    from benchmarks import gpu_runtime

    driver = FakeDriver(library, compute_capability=(9, 0))
    monkeypatch.setattr(cuda.bindings, "driver", driver)
    monkeypatch.setenv("GESTURERT_CACHE", str(tmp_path / "cache"))
    result = gpu_runtime.run(streams=(2,), ticks=4)
    check = result["parity"]
    assert check["same_indices"] and check["frames"] == 30
    assert check["max_keypoint_px"] <= POSE_ATOL_PX, check
    assert "CUDA MFCC" in result["step_backend"]
    assert {"mfcc_frames", "gather_feature_frames"} <= set(driver.launched)
    assert "| 2 | 1067 |" in gpu_runtime.markdown(result)
    assert driver.live_handles()["memory"] == 0  # the binding and the MFCC state freed


def test_make_gpu_check_runs_the_end_to_end_benchmark_and_test_within_its_time() -> None:
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    sys.path.insert(0, str(scripts))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(scripts))
    assert "benchmarks.gpu_runtime" in (scripts / "gpu_check.py").read_text()
    assert sum(gpu_check.LIMITS.values()) <= gpu_check.TOTAL_LIMIT
    modules = {p.name for p in gpu_check.gpu_test_modules()}
    assert "test_device_front_end_gpu.py" in modules


def test_stream_batch_on_the_device_path_equals_the_cpu_path(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray) -> None:
    """StreamBatch (lockstep streams, one resample for all) on the device path: each
    row's audio to its stream's slot, the CUDA MFCC per step; 20 streams (three model
    calls per step at a batch of 8), int16 at 44.1 kHz."""
    from sdk.stream_batch import StreamBatch

    gpu.max_batch = 8
    rng = np.random.default_rng(9)
    n = int(0.8 * 44100)
    audio = rng.integers(-6000, 6000, (20, n)).astype(np.int16)
    with StreamBatch(gpu, seeds=range(20), sample_rate=44100) as batch:
        parts = [batch.accept(audio[:, i:i + 1470]) for i in range(0, n, 1470)]
        parts.append(batch.finish())
    keypoints = np.concatenate([p.keypoints for p in parts], axis=1)
    saliency = np.concatenate([p.saliency for p in parts], axis=1)
    index = np.concatenate([p.index for p in parts])
    spy = gpu.spy  # type: ignore[attr-defined]
    assert spy.steps and {s.shape[0] for s in spy.steps} == {8, 4}
    for i in (0, 13, 19):
        want = cpu.generate(audio[i], 44100, seed=i)
        assert_same_frames(PoseFrames(keypoints=keypoints[i], saliency=saliency[i],
                                      time=want.time, index=index), want, f"stream {i}")


def test_stream_batch_gives_a_device_step_as_many_streams_as_it_holds(
        gpu: StreamingGenerator, monkeypatch: pytest.MonkeyPatch) -> None:
    """STEP_BATCH is the CPU step's best batch; a device step (launch-bound on a GPU) takes
    all it holds per call: with STEP_BATCH 16 and the engine's profile of 32, 40 streams
    step as 32 + 8, not 16 + 16 + 8."""
    import sdk.stream_batch as stream_batch

    monkeypatch.setattr(stream_batch, "STEP_BATCH", 16)
    assert gpu.max_batch == 32
    audio = np.random.default_rng(1).uniform(-0.3, 0.3, (40, 16000)).astype(np.float32)
    with stream_batch.StreamBatch(gpu, seeds=range(40), sample_rate=16000) as batch:
        batch.accept(audio)
    spy = gpu.spy  # type: ignore[attr-defined]
    assert spy.steps and [s.shape[0] for s in spy.steps[:2]] == [32, 8]


def test_the_torch_stepper_reads_the_cuda_mfcc_features_on_the_device(
        library: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, speech_16k: np.ndarray) -> None:
    """export.torch_device_stepper: the PyTorch step reads the features the CUDA MFCC wrote
    into its tensor (a CPU tensor here, the fake driver's "device" memory) and gives the
    frames of the same model fed by the numpy MFCC."""
    import cuda.bindings
    import torch
    from helpers_bundle import TINY_GENERATOR, speech_inputs

    from export.torch_device_stepper import TorchDeviceStepper
    from export.torch_runner import TorchGeneratorRunner, TorchGeneratorStepper
    from sdk.cuda.launch import CudaRunner
    from sdk.runners.base import RunnerError
    from train.models.generator import SalientPostureGenerator

    driver = FakeDriver(library, compute_capability=(9, 0))
    monkeypatch.setattr(cuda.bindings, "driver", driver)
    monkeypatch.setenv("GESTURERT_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = SalientPostureGenerator(TINY_GENERATOR).eval()
    _, features, _ = speech_inputs(DEFAULT_FEATURES, 0)  # as the tiny bundle's generator
    model.set_feature_normalization(features.mean(0), features.std(0) + 1e-3)

    def runner() -> TorchGeneratorRunner:
        return TorchGeneratorRunner(model=model, bundle=tiny_bundle, device="cpu")

    with pytest.raises(RunnerError, match="CUDA device"):
        TorchDeviceStepper(runner())
    kernels = CudaRunner()
    audio = speech(speech_16k, 1.0)
    with StreamingGenerator(tiny_bundle, backend=TorchDeviceStepper(
            runner(), kernels, max_batch=8, max_frames=4)) as gpu, \
            StreamingGenerator(tiny_bundle, backend=TorchGeneratorStepper(runner())) as cpu:
        assert gpu.device_front_end is not None and cpu.device_front_end is None
        got = gpu.generate(audio, 16000, seed=2, chunk_samples=itertools.cycle([1, 700, 3000]))
        assert_same_frames(got, cpu.generate(audio, 16000, seed=2))
    kernels.close()
    assert "gather_feature_frames" in driver.launched
    assert driver.live_handles()["memory"] == 0
