"""The runtime's GPU path on the CPU emulator: StreamingGenerator with the TensorRT stepper.

The stepper is :class:`sdk.runners.tensorrt_stepper.TensorRTStepper` unchanged, over the
fake ``tensorrt`` (its engine runs the bundle's generator.onnx with ONNX Runtime) and the
fake CUDA driver (host memory, graph capture, kernels on the emulator), as in
tests/test_tensorrt_emulated.py. With it the generator's :class:`sdk.device_front_end.
DeviceFrontEnd` takes every stream's audio to the "device" once, runs the CUDA MFCC and
writes the feature frames into the engine's input binding. Reference: the CPU path
(numpy MFCC, ONNX Runtime on the host) on the same audio; features <= 1e-3, poses <= 1e-3 px.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cuda_emu.emulator import build_emulator
from cuda_emu.fake_driver import FakeDriver
from cuda_emu.fake_tensorrt import fake_tensorrt
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

from sdk import device_front_end
from sdk.cuda import nvrtc
from sdk.features import DEFAULT_FEATURES
from sdk.frames import PoseFrames
from sdk.mfcc import MfccMatrices, extract_features
from sdk.runners.onnxrt import OnnxRuntimeRunner
from sdk.runners.tensorrt import TensorRTRunner
from sdk.runners.tensorrt_stepper import TensorRTStepper
from sdk.streaming import GeneratorConfig, StreamError, StreamingGenerator

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

        def spy(noise: np.ndarray, slots: Any) -> Any:
            count = noise.shape[0] * noise.shape[1] * F
            buffer = (np.ctypeslib.ctypes.c_float * count).from_address(
                stepper.features_binding)
            self.steps.append(np.frombuffer(buffer, np.float32).reshape(
                noise.shape[0], noise.shape[1], F).copy())
            return original(noise, slots)

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


def test_the_tensorrt_stepper_gets_the_device_front_end_and_the_cpu_path_does_not(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray) -> None:
    assert gpu.device_front_end is not None and cpu.device_front_end is None
    gpu.generate(speech(speech_16k, 1.0), 16000)
    stepper = gpu._stepper
    assert isinstance(stepper, TensorRTStepper)
    assert stepper._graphs and all(key[2] for key in stepper._graphs)  # no features copy
    assert "mfcc_frames" in gpu.device_front_end.runner.driver.launched  # type: ignore


@pytest.mark.parametrize("sizes", [[1], [1, 7, 1067, 3, 5000], [16000 // 15 + 1]],
                         ids=["1-sample", "ragged", "one-frame"])
def test_generate_equals_the_cpu_path_for_any_chunking(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray,
        sizes: list[int]) -> None:
    audio = speech(speech_16k, 0.6 if sizes == [1] else 2.0)
    staged = gpu._stepper.runner.tensors["features"].host.array  # type: ignore[attr-defined]
    staged[:] = np.nan  # were the graph to copy host features, NaN would reach the engine
    got = gpu.generate(audio, 16000, seed=3, chunk_samples=itertools.cycle(sizes))
    assert len(got) == DEFAULT_FEATURES.num_pose_frames(len(audio))
    assert_same_frames(got, cpu.generate(audio, 16000, seed=3))
    assert_features_like_the_cpu(gpu.spy, audio)  # type: ignore[attr-defined]


def test_a_chunk_longer_than_the_device_ring_waits_on_the_host(
        gpu: StreamingGenerator, cpu: StreamingGenerator) -> None:
    """40 s in one chunk: the device ring holds ~0.1 s of MFCC frames; the rest of the
    audio goes up step by step, each sample once."""
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(40 * 16000)).astype(np.float32)
    front = gpu.device_front_end
    assert front is not None and front.mfcc.ring_frames * 160 < 16000
    got = gpu.generate(audio, 16000, seed=1)
    assert_same_frames(got, cpu.generate(audio, 16000, seed=1))
    assert_features_like_the_cpu(gpu.spy, audio)  # type: ignore[attr-defined]


def test_a_10_minute_chunk_is_accepted_at_once_and_stepped_from_the_host_backlog(
        gpu: StreamingGenerator, cpu: StreamingGenerator) -> None:
    """10 minutes in one accept_waveform: both paths count the same frames; the first
    10 s of them, stepped, are the same (the whole clip on the emulator takes minutes;
    the 40 s case above runs to the end)."""
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(600 * 16000)).astype(np.float32)
    a, b = gpu.create_stream(seed=7), cpu.create_stream(seed=7)
    for stream in (a, b):
        stream.accept_waveform(audio, 16000)
    assert a.num_feature_frames_queued == b.num_feature_frames_queued > 8990
    queue = a._queue
    assert isinstance(queue, device_front_end.DeviceFeatureQueue) and queue.on_device == 0
    for _ in range(150):
        gpu.step([a])
        cpu.step([b])
    assert queue.on_device < 12 * 16000  # the rest still waits on the host
    assert_same_frames(a.pop_frames(), b.pop_frames())
    assert_features_like_the_cpu(gpu.spy, audio[:12 * 16000])  # type: ignore[attr-defined]


def test_multichannel_int16_at_44100_hz(gpu: StreamingGenerator, cpu: StreamingGenerator,
                                        speech_16k: np.ndarray) -> None:
    """Resampling stays on the host (soxr, the same for both paths); the device gets the
    model-rate mono samples."""
    rng = np.random.default_rng(2)
    n = int(1.5 * 44100)
    stereo = (rng.integers(-8000, 8000, (n, 2))).astype(np.int16)
    got = gpu.generate(stereo, 44100, seed=5, chunk_samples=itertools.cycle([441, 1, 4410, 777]))
    assert_same_frames(got, cpu.generate(stereo, 44100, seed=5))


def run_streams(gen: StreamingGenerator, clips: list[np.ndarray], finish_at: dict[int, int],
                chunk: int = 1067) -> list[PoseFrames]:
    """Feed every clip in ``chunk``-sample pieces, one tick at a time, and step all ready
    streams in one call per tick; stream i gets input_finished after ``finish_at[i]``
    samples (its clip is cut there), mid-batch of the others."""
    streams = [gen.create_stream(seed=i) for i in range(len(clips))]
    frames: list[list[PoseFrames]] = [[] for _ in clips]
    ends = [finish_at.get(i, len(c)) for i, c in enumerate(clips)]
    for start in range(0, max(ends) + chunk, chunk):
        for i, stream in enumerate(streams):
            if start < ends[i]:
                stream.accept_waveform(clips[i][start:min(start + chunk, ends[i])], 16000)
            elif not stream.is_input_finished:
                stream.input_finished()
        while ready := [s for s in streams if gen.is_ready(s)]:
            gen.step(ready)
        for i, stream in enumerate(streams):
            frames[i].append(stream.pop_frames())
    for stream in streams:
        assert stream.is_done
        stream.close()
    return [PoseFrames.concatenate(f, gen.num_joints) for f in frames]


def test_many_streams_in_one_batch_one_finishing_mid_batch(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """20 streams: more than a model call's batch of 8 (the step splits) and than the
    device MFCC's first 4 slots (it grows, keeping the streams' state); stream 5 ends
    after 0.4 s while the others go on, and a new stream then reuses its slot."""
    front = gpu.device_front_end
    assert front is not None
    front.mfcc.close()
    front.mfcc = front._make_mfcc(4)
    gpu.max_batch = 8
    clips = [np.roll(speech(speech_16k, 1.0), 997 * i) for i in range(20)]
    got = run_streams(gpu, clips, finish_at={5: 6400})
    assert front.mfcc.max_streams == 32
    assert {s.shape[0] for s in gpu.spy.steps} >= {8, 4}  # type: ignore[attr-defined]
    for i in (0, 5, 17, 19):
        clip = clips[i][:6400] if i == 5 else clips[i]
        assert_same_frames(got[i], cpu.generate(clip, 16000, seed=i), f"stream {i}")
    again = gpu.generate(clips[1], 16000, seed=1)  # a reused slot starts from silence
    assert_same_frames(again, cpu.generate(clips[1], 16000, seed=1))


def test_reset_starts_a_stream_over_on_the_device(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray) -> None:
    audio = speech(speech_16k, 1.0)
    with gpu.create_stream(seed=2) as stream:
        stream.accept_waveform(speech_16k[30000:40000], 16000)
        while gpu.is_ready(stream):
            gpu.step([stream])
        stream.accept_waveform(speech_16k[:500], 16000)  # in the backlog, never stepped
        gpu.reset(stream)
        stream.accept_waveform(audio, 16000)
        stream.input_finished()
        while gpu.is_ready(stream):
            gpu.step([stream])
        assert_same_frames(stream.pop_frames(), cpu.generate(audio, 16000, seed=2))


def test_ready_counts_equal_the_cpu_path_chunk_by_chunk(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray) -> None:
    a, b = gpu.create_stream(), cpu.create_stream()
    for size in (1, 255, 256, 1, 159, 160, 1067, 3000, 7):
        chunk = speech_16k[:size]
        a.accept_waveform(chunk, 16000)
        b.accept_waveform(chunk, 16000)
        assert a.num_feature_frames_queued == b.num_feature_frames_queued, size
    a.input_finished()
    b.input_finished()
    assert a.num_feature_frames_queued == b.num_feature_frames_queued


def test_bad_input_is_refused_and_nothing_accepted_is_lost(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray) -> None:
    audio = speech(speech_16k, 0.8)
    with gpu.create_stream(seed=4) as stream:
        stream.accept_waveform(audio[:5000], 16000)
        with pytest.raises(StreamError, match="sample_rate changed"):
            stream.accept_waveform(audio[5000:], 8000)
        with pytest.raises(StreamError):
            stream.accept_waveform(np.full(10, np.nan, np.float32), 16000)
        stream.accept_waveform(audio[5000:], 16000)
        stream.input_finished()
        while gpu.is_ready(stream):
            gpu.step([stream])
        assert_same_frames(stream.pop_frames(), cpu.generate(audio, 16000, seed=4))


def test_device_front_end_false_keeps_the_host_mfcc(fake: FakeDriver, tiny_bundle: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    stepper = TensorRTStepper(TensorRTRunner(tmp_path / "generator.plan"),
                              fake.state_size)  # type: ignore[attr-defined]
    with StreamingGenerator(GeneratorConfig(tiny_bundle, device_front_end=False),
                            backend=stepper) as gen:
        assert gen.device_front_end is None
        gen.generate(np.zeros(4000, np.float32), 16000)
        assert all(not key[2] for key in stepper._graphs)  # features copied from the host


# ---- the parity check can fail ----
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


def test_the_torch_stepper_reads_the_cuda_mfcc_features_on_the_device(
        library: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
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
