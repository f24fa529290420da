"""The runtime's GPU path on a real GPU (``make gpu-check``; skipped here with the reason).

StreamingGenerator on the shipped bundle with its CUDA front end: the streams' audio goes to
the GPU, the CUDA MFCC writes the feature frames into the step's device input. The step is
TensorRT where it is installed with an engine for the GPU, else ONNX Runtime on the CPU
reading that device input back (:class:`benchmarks.gpu_runtime.DeviceBufferStepper`): the
lent image has no TensorRT. Reference: the CPU path on the same audio. Ran on an H200
(benchmarks/results/nvidia-h200/gpu-check/); the TensorRT step has not run on a GPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from sdk.features import DEFAULT_FEATURES
from sdk.mfcc import MfccMatrices, extract_features
from sdk.runners.base import StepOutputs
from sdk.streaming import StreamingGenerator

pytestmark = pytest.mark.gpu

# tests/test_cuda_gpu.py's MFCC bound on a GPU: the emulator measures 4.2e-4 on speech (c0
# spans +-589); the GPU may fuse multiply-adds, which moves rounding but not its size.
FEATURE_ATOL = 2e-3
POSE_ATOL_PX = 1e-3


@pytest.fixture(scope="module")
def generators() -> Iterator[tuple[StreamingGenerator, StreamingGenerator, list[Any]]]:
    from benchmarks.gpu_runtime import DEFAULT_BUNDLE, DeviceBufferStepper, device_generator
    from sdk.cuda.launch import CudaRunner

    runner = CudaRunner()
    seen: list[Any] = []  # feature blocks the step read from the device
    try:
        with device_generator(DEFAULT_BUNDLE, runner) as gpu, \
                StreamingGenerator(DEFAULT_BUNDLE, backend="onnxruntime-cpu") as cpu:
            stepper = gpu._stepper
            if isinstance(stepper, DeviceBufferStepper):
                step = stepper.host.step

                def spy(features: np.ndarray, noise: np.ndarray, slots: Sequence[int],
                        styles: np.ndarray | None = None) -> StepOutputs:
                    seen.append(features.copy())  # mypy holds spy to step's signature
                    return step(features, noise, slots, styles)
                stepper.host.step = spy  # type: ignore[method-assign]
            yield gpu, cpu, seen
    finally:
        runner.close()


@pytest.mark.parametrize("sizes", [[1067], [1, 7, 5000, 333]], ids=["one-frame", "ragged"])
def test_the_runtime_gpu_path_equals_the_cpu_path(
        generators: tuple[StreamingGenerator, StreamingGenerator, list[Any]],
        speech_16k: np.ndarray, sizes: list[int]) -> None:
    gpu, cpu, seen = generators
    assert gpu.device_front_end is not None
    seen.clear()
    audio = np.ascontiguousarray(speech_16k[:3 * 16000])
    got = gpu.generate(audio, 16000, seed=1, chunk_samples=itertools.cycle(sizes))
    want = cpu.generate(audio, 16000, seed=1)
    np.testing.assert_array_equal(got.index, want.index)
    error = float(np.abs(got.keypoints - want.keypoints).max())
    print(f"{gpu.backend_name}: {len(got)} frames, max keypoint difference {error:.3g} px")
    assert error <= POSE_ATOL_PX
    if seen:  # the step read the features back: compare them with numpy's
        features = np.concatenate([block[0] for block in seen])
        reference = extract_features(audio, DEFAULT_FEATURES, MfccMatrices.default(),
                                     len(features))
        assert float(np.abs(features - reference).max()) <= FEATURE_ATOL


def test_many_streams_in_one_step_on_the_gpu(
        generators: tuple[StreamingGenerator, StreamingGenerator, list[Any]],
        speech_16k: np.ndarray) -> None:
    gpu, cpu, _ = generators
    clips = [np.roll(speech_16k[:32000], 1999 * i) for i in range(100)]
    styles = gpu.styles  # the streams mix every style of the bundle in each step
    assert len(styles) > 1, "the shipped bundle has gesture styles"
    streams = [gpu.create_stream(seed=i, style=styles[i % len(styles)])
               for i in range(len(clips))]
    for i, stream in enumerate(streams):
        stream.accept_waveform(clips[i][:16000 + 160 * i], 16000)
    for i, stream in enumerate(streams):
        stream.accept_waveform(clips[i][16000 + 160 * i:], 16000)
        stream.input_finished()
    while ready := [s for s in streams if gpu.is_ready(s)]:
        gpu.step(ready)
    for i in (0, 37, 98, 99):
        want = cpu.generate(clips[i], 16000, seed=i, style=styles[i % len(styles)])
        got = streams[i].pop_frames()
        np.testing.assert_array_equal(got.index, want.index)
        assert float(np.abs(got.keypoints - want.keypoints).max()) <= POSE_ATOL_PX
    for stream in streams:
        stream.close()
