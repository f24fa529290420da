"""The CUDA kernels on a real GPU (NVRTC + cuda-python driver API) vs the numpy references.

Marker ``gpu``: tests/conftest.py skips these with the reason when no GPU is usable.
Run on a GPU machine with ``pytest -m gpu tests/test_cuda_gpu.py -s`` (errors are printed).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from sdk.cuda.mfcc import CudaMfcc
from sdk.cuda.pose import CudaPoseImager
from sdk.features import DEFAULT_FEATURES
from sdk.mfcc import MfccMatrices, extract_features, mfcc_offline
from sdk.pose_image import ImagingConfig, pose_images
from sdk.render import fit_to_canvas, render_video_frames
from sdk.skeleton import MODEL_SKELETON

pytestmark = pytest.mark.gpu

CONFIG = DEFAULT_FEATURES
# The CPU emulation measures 4.2e-4 on speech (c0 spans +-589); the GPU may fuse the
# FFT's multiply-adds, which moves rounding but not its size.
MFCC_ATOL = 2e-3


@pytest.fixture(scope="module")
def runner() -> Iterator[Any]:
    from sdk.cuda.launch import CudaRunner

    cuda_runner = CudaRunner()
    yield cuda_runner
    cuda_runner.close()


class DeviceBuffer:
    """A device allocation with a shape (exposes ``__cuda_array_interface__``)."""

    def __init__(self, runner: Any, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
        self.runner, self.shape, self.dtype = runner, shape, np.dtype(dtype)
        self.ptr = runner.alloc(max(int(np.prod(shape)) * self.dtype.itemsize, 4))

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "version": 3, "strides": None, "stream": None}

    def get(self) -> np.ndarray:
        host = np.empty(self.shape, dtype=self.dtype)
        self.runner.download(host, self.ptr)
        return host

    def free(self) -> None:
        self.runner.free(self.ptr)


@pytest.fixture()
def mfcc(runner: Any) -> Iterator[CudaMfcc]:
    gpu = CudaMfcc(CONFIG, MfccMatrices.default(), max_streams=8, max_chunk_samples=4000,
                   history_frames=2000, runner=runner)
    yield gpu
    gpu.close()


def read_mfcc(gpu: CudaMfcc, stream: int) -> np.ndarray:
    count = int(gpu.mfcc_frames_ready([stream])[0])
    out = DeviceBuffer(gpu.runner, (1, count, CONFIG.n_mfcc))
    gpu.write_mfcc([stream], [0], count, out.ptr)
    host = out.get()[0]
    out.free()
    return host


def test_mfcc_on_device_matches_reference_for_several_ragged_streams(
    mfcc: CudaMfcc, speech_16k: np.ndarray, rng: np.random.Generator
) -> None:
    clips = {0: speech_16k, 5: rng.uniform(-1, 1, 40000).astype(np.float32),
             7: speech_16k[30000:90000]}
    positions = dict.fromkeys(clips, 0)
    while any(positions[s] < clips[s].size for s in clips):
        ids = [s for s in clips if positions[s] < clips[s].size]
        sizes = [int(rng.integers(0, 7000)) for _ in ids]
        mfcc.accept(ids, [clips[s][positions[s]:positions[s] + n] for s, n in zip(ids, sizes,
                                                                                  strict=True)])
        for s, n in zip(ids, sizes, strict=True):
            positions[s] += n
    for s, clip in clips.items():
        got = read_mfcc(mfcc, s)
        want = mfcc_offline(clip, CONFIG, MfccMatrices.default(), got.shape[0])
        error = float(np.abs(got - want).max())
        print(f"stream {s}: {got.shape[0]} MFCC frames, max abs error vs numpy {error:.3g}")
        assert error <= MFCC_ATOL


def test_mfcc_on_device_is_chunking_invariant(mfcc: CudaMfcc, speech_16k: np.ndarray) -> None:
    audio = speech_16k[:64000]
    mfcc.accept([1], [audio])
    for start in range(0, audio.size, 777):
        mfcc.accept([2], [audio[start:start + 777]])
    np.testing.assert_array_equal(read_mfcc(mfcc, 1), read_mfcc(mfcc, 2))


def test_feature_frames_written_into_an_engine_input_buffer(
    mfcc: CudaMfcc, speech_16k: np.ndarray
) -> None:
    audio = speech_16k[:48000]
    mfcc.accept([3, 4], [audio, audio[:24000]])
    mfcc.accept([4], [audio[24000:]])
    k = int(mfcc.feature_frames_ready([3])[0])
    engine_input = DeviceBuffer(mfcc.runner, (2, k, CONFIG.feature_dim))
    mfcc.write_features([3, 4], [0, 0], k, engine_input.ptr)
    want = extract_features(audio, CONFIG, MfccMatrices.default(), k)
    got = engine_input.get()
    engine_input.free()
    assert np.abs(got - want[None]).max() <= MFCC_ATOL


def test_accept_captured_in_a_cuda_graph_and_replayed(runner: Any, mfcc: CudaMfcc,
                                                      speech_16k: np.ndarray) -> None:
    driver, check, stream = runner.driver, runner.check, runner.stream
    chunk = 1600
    audio = DeviceBuffer(runner, (2 * chunk,))
    mfcc.upload_accept_items([0, 6], [0, chunk], [chunk, chunk])
    mode = driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
    check(driver.cuStreamBeginCapture(stream, mode), "cuStreamBeginCapture")
    mfcc.launch_accept_items(2, chunk, audio.ptr)
    graph = check(driver.cuStreamEndCapture(stream), "cuStreamEndCapture")
    executable = check(driver.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
    clip_a, clip_b = speech_16k[:32000], speech_16k[40000:72000]
    for start in range(0, 32000, chunk):
        runner.upload(audio.ptr, np.concatenate([clip_a[start:start + chunk],
                                                      clip_b[start:start + chunk]]))
        check(driver.cuGraphLaunch(executable, stream), "cuGraphLaunch")
        mfcc.advance_host([0, 6], [chunk, chunk])
    for s, clip in ((0, clip_a), (6, clip_b)):
        got = read_mfcc(mfcc, s)
        assert got.shape[0] == CONFIG.num_mfcc_frames(clip.size - CONFIG.n_fft // 2)
        want = mfcc_offline(clip, CONFIG, MfccMatrices.default(), got.shape[0])
        assert np.abs(got - want).max() <= MFCC_ATOL
    check(driver.cuGraphExecDestroy(executable), "cuGraphExecDestroy")
    check(driver.cuGraphDestroy(graph), "cuGraphDestroy")
    audio.free()


def test_pose_images_on_device_equal_the_reference(runner: Any,
                                                   rng: np.random.Generator) -> None:
    config = ImagingConfig()
    canonical = rng.normal(0.3, 0.9, (4, 9, MODEL_SKELETON.num_joints, 2)).astype(np.float32)
    canonical[1, 2, 30] = np.nan
    points = DeviceBuffer(runner, canonical.shape)
    runner.upload(points.ptr, canonical)
    out = DeviceBuffer(runner, (4, 9, config.height, config.width))
    imager = CudaPoseImager(MODEL_SKELETON, config, runner=runner)
    imager.images(points, out)  # device in, device out
    want = pose_images(canonical, MODEL_SKELETON, config)
    np.testing.assert_array_equal(out.get(), want)
    imager.images(canonical, out)  # host poses are uploaded
    np.testing.assert_array_equal(out.get(), want)
    imager.close()
    points.free()
    out.free()


def test_rgb_preview_on_device_equals_render(runner: Any, rng: np.random.Generator) -> None:
    canonical = rng.normal(0.3, 0.9, (6, MODEL_SKELETON.num_joints, 2)).astype(np.float32)
    pixels = fit_to_canvas(canonical, (96, 72))
    saliency = rng.uniform(0, 1, 6).astype(np.float32)
    out = DeviceBuffer(runner, (6, 72, 96, 3), np.uint8)
    imager = CudaPoseImager(MODEL_SKELETON, ImagingConfig(), runner=runner)
    imager.preview(pixels, (96, 72), out.ptr, saliency=saliency)
    want = render_video_frames(pixels, MODEL_SKELETON, (96, 72), saliency=saliency)
    np.testing.assert_array_equal(out.get(), want)
    imager.close()
    out.free()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs PyTorch")
def test_torch_tensors_work_through_cai_and_dlpack(mfcc: CudaMfcc,
                                                   speech_16k: np.ndarray) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("PyTorch here has no CUDA")

    class DlpackOnly:  # hides __cuda_array_interface__: forces the DLPack path
        def __init__(self, tensor: Any) -> None:
            self.tensor = tensor

        def __dlpack__(self, stream: Any = None) -> Any:
            return self.tensor.__dlpack__(stream=stream)

        def __dlpack_device__(self) -> Any:
            return self.tensor.__dlpack_device__()

    audio = torch.from_numpy(speech_16k[:32000]).cuda()
    mfcc.accept_device([0], DlpackOnly(audio), [32000])
    k = int(mfcc.feature_frames_ready([0])[0])
    features = torch.empty((1, k, CONFIG.feature_dim), device="cuda")
    mfcc.write_features([0], [0], k, features)  # __cuda_array_interface__
    mfcc.runner.synchronize()
    want = extract_features(speech_16k[:32000], CONFIG, MfccMatrices.default(), k)
    assert np.abs(features.cpu().numpy()[0] - want).max() <= MFCC_ATOL


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs PyTorch")
def test_a_tensor_torch_is_still_writing_is_read_after_torch_finished(
        mfcc: CudaMfcc, speech_16k: np.ndarray) -> None:
    """The review's race: torch fills the audio on its own (busy) stream while CudaMfcc
    reads it on a private stream. DLPack's stream handshake must order the two."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("PyTorch here has no CUDA")
    side = torch.cuda.Stream()
    source = torch.from_numpy(speech_16k[:32000]).cuda()
    with torch.cuda.stream(side):
        busy = torch.randn(4096, 4096, device="cuda")
        for _ in range(20):  # ~tens of ms of work queued before the copy
            busy = busy @ busy / 64.0
        audio = source * 1.0  # written last on the busy stream
    audio.record_stream(side)
    with torch.cuda.stream(side):
        mfcc.accept_device([1], audio, [32000])  # the producer's current stream: `side`
    del audio  # only the kept-alive capsule holds the memory now
    got = read_mfcc(mfcc, 1)
    want = mfcc_offline(speech_16k[:32000], CONFIG, MfccMatrices.default(), got.shape[0])
    assert np.abs(got - want).max() <= MFCC_ATOL


def test_pose_images_of_70000_frames(runner: Any) -> None:
    """gridDim.y is limited to 65535: the frames are split over launches."""
    config = ImagingConfig(height=8, width=8)
    frames = 70000
    canonical = np.zeros((frames, MODEL_SKELETON.num_joints, 2), np.float32)
    canonical[-1] = 0.25  # the last frame (in the second launch) draws something
    out = DeviceBuffer(runner, (frames, 8, 8))
    imager = CudaPoseImager(MODEL_SKELETON, config, runner=runner)
    imager.images(canonical, out)
    got = out.get()
    np.testing.assert_array_equal(got[-3:], pose_images(canonical[-3:], MODEL_SKELETON,
                                                        config))
    imager.close()
    out.free()


def test_a_large_fft_opts_in_to_more_shared_memory(runner: Any) -> None:
    from sdk.features import FeatureConfig
    from sdk.mfcc import mfcc_offline as reference

    config = FeatureConfig(sample_rate=48000, n_fft=8192, win_length=4096, hop_length=960,
                           n_mels=64, fmax=24000.0)
    rng = np.random.default_rng(0)
    window = np.zeros(8192, np.float32)
    window[2048:6144] = np.hanning(4097)[:4096]
    mel = rng.uniform(0, 1, (64, config.n_freqs)).astype(np.float32) / config.n_freqs
    m = np.arange(64)
    dct = np.cos(np.pi / 64 * (m[None, :] + 0.5) * np.arange(13)[:, None]) * np.sqrt(2 / 64)
    matrices = MfccMatrices(config, window, mel, dct)
    gpu = CudaMfcc(config, matrices, max_streams=1, max_chunk_samples=48000, runner=runner)
    audio = rng.standard_normal(48000).astype(np.float32) * 0.1
    gpu.accept([0], [audio])
    count = int(gpu.mfcc_frames_ready([0])[0])
    out = DeviceBuffer(runner, (1, count, 13))
    gpu.write_mfcc([0], [0], count, out.ptr)
    want = reference(audio, config, matrices, count)
    assert np.abs(out.get()[0] - want).max() <= 2e-6 * np.abs(want).max() + 1e-3
    gpu.close()
    out.free()
