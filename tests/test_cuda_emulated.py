"""The CUDA kernels' logic, executed on the CPU against the numpy references.

The same .cu files NVRTC compiles are built with g++ after tests/cuda_emu/cuda_emu.h
(threads as coroutines, __syncthreads as a barrier of the block's scheduler) and driven
through the production host classes (CudaMfcc, CudaPoseImager) on an EmulatedRunner.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cuda_emu.emulator import EmulatedRunner, build_emulator
from cuda_emu.fake_driver import FakeDriver

from sdk.cuda import nvrtc
from sdk.cuda.interop import device_array
from sdk.cuda.mfcc import CudaMfcc
from sdk.cuda.pose import CudaPoseImager
from sdk.features import DEFAULT_FEATURES
from sdk.mfcc import MfccMatrices, extract_features, mfcc_offline
from sdk.pose_image import ImagingConfig, pose_images
from sdk.render import fit_to_canvas, render_video_frames
from sdk.skeleton import MODEL_SKELETON

CONFIG = DEFAULT_FEATURES
# Kernel (float32 real FFT) vs reference (numpy FFT): measured 4.2e-4 on the speech
# fixture, whose c0 spans +-589 (9e-7 of the range); both are ~2-5e-4 from a float64 truth.
MFCC_ATOL = 1e-3


@pytest.fixture(scope="session")
def emulator_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_emulator(nvrtc.feature_defines(CONFIG), tmp_path_factory.mktemp("cuda_emu"))


@pytest.fixture()
def runner(emulator_library: Path) -> EmulatedRunner:
    return EmulatedRunner(emulator_library)


@pytest.fixture(scope="session")
def matrices() -> MfccMatrices:
    return MfccMatrices.default()


@pytest.fixture()
def mfcc(runner: EmulatedRunner, matrices: MfccMatrices) -> Iterator[CudaMfcc]:
    gpu = CudaMfcc(CONFIG, matrices, max_streams=4, max_chunk_samples=4000,
                   history_frames=2000, runner=runner)
    yield gpu
    gpu.close()


def read_mfcc(gpu: CudaMfcc, stream: int, first: int = 0, count: int | None = None
              ) -> np.ndarray:
    count = int(gpu.mfcc_frames_ready([stream])[0]) - first if count is None else count
    out = np.full((1, count, CONFIG.n_mfcc), np.nan, dtype=np.float32)
    gpu.write_mfcc([stream], [first], count, out.ctypes.data)
    return out[0]


def ragged(rng: np.random.Generator, n: int, largest: int) -> list[int]:
    """Cut points of n samples into chunks of 0..largest samples (1-sample ones included)."""
    sizes = [0, 1, 1, 2]
    while sum(sizes) < n:
        sizes.append(int(rng.integers(0, largest)))
    cuts = np.minimum(np.cumsum(sizes), n)
    return [0, *cuts.tolist(), n]


def test_mfcc_matches_reference_on_speech_in_ragged_chunks(
    mfcc: CudaMfcc, matrices: MfccMatrices, speech_16k: np.ndarray, rng: np.random.Generator
) -> None:
    cuts = ragged(rng, speech_16k.size, 9000)  # also > max_chunk_samples: split launches
    for a, b in itertools.pairwise(cuts):
        mfcc.accept([2], [speech_16k[a:b]])
    got = read_mfcc(mfcc, 2)
    assert got.shape[0] == CONFIG.num_mfcc_frames(speech_16k.size - CONFIG.n_fft // 2)
    want = mfcc_offline(speech_16k, CONFIG, matrices, got.shape[0])
    error = np.abs(got - want).max()
    assert error <= MFCC_ATOL, f"max abs error {error}"


def test_mfcc_streams_are_independent_and_chunking_invariant(
    mfcc: CudaMfcc, matrices: MfccMatrices, speech_16k: np.ndarray, rng: np.random.Generator
) -> None:
    clips = {0: rng.uniform(-1, 1, 12000).astype(np.float32),
             1: speech_16k[16000:40000], 3: speech_16k[:20000]}
    cuts = {s: ragged(rng, clip.size, 2500) for s, clip in clips.items()}
    steps = max(len(c) for c in cuts.values())
    for i in range(steps - 1):  # interleaved: every call carries several streams
        ids = [s for s in clips if i + 1 < len(cuts[s])]
        mfcc.accept(ids, [clips[s][cuts[s][i]:cuts[s][i + 1]] for s in ids])
    results = {s: read_mfcc(mfcc, s) for s in clips}
    for s, clip in clips.items():
        want = mfcc_offline(clip, CONFIG, matrices, results[s].shape[0])
        assert np.abs(results[s] - want).max() <= MFCC_ATOL
    # Another chunking of stream 1, in one piece: identical bits, frame by frame.
    mfcc.reset([1])
    mfcc.accept([1], [clips[1]])
    np.testing.assert_array_equal(read_mfcc(mfcc, 1), results[1])


def test_feature_frames_written_like_the_reference_stacking(
    mfcc: CudaMfcc, matrices: MfccMatrices, speech_16k: np.ndarray
) -> None:
    audio = speech_16k[:48000]
    mfcc.accept([1, 0], [audio[:30001], audio])
    mfcc.accept([1], [audio[30001:]])
    ready = mfcc.feature_frames_ready([0, 1])
    assert ready[0] == ready[1] > 0
    k = int(ready[0])
    out = np.full((2, k - 5, CONFIG.feature_dim), np.nan, dtype=np.float32)
    mfcc.write_features([0, 1], [5, 5], k - 5, out.ctypes.data)  # (B, Tc, 91) engine input
    want = extract_features(audio, CONFIG, matrices, k)[5:]
    assert np.abs(out - want).max() <= MFCC_ATOL
    # The next feature frame needs MFCC frames that do not exist yet.
    with pytest.raises(ValueError, match="needs MFCC frames"):
        mfcc.write_features([0], [k], 1, out.ctypes.data)


def test_mfcc_clips_coefficient_major_for_posesync(mfcc: CudaMfcc, rng: np.random.Generator
                                                   ) -> None:
    mfcc.accept([3], [rng.normal(0, 0.1, 16000).astype(np.float32)])
    clip = np.full((1, CONFIG.n_mfcc, 60), np.nan, dtype=np.float32)
    mfcc.write_mfcc([3], [20], 60, clip.ctypes.data, coefficient_major=True)
    np.testing.assert_array_equal(clip[0], read_mfcc(mfcc, 3, 20, 60).T)


def test_device_audio_and_replayed_launches_continue_each_stream(
    mfcc: CudaMfcc, matrices: MfccMatrices, speech_16k: np.ndarray
) -> None:
    audio = speech_16k[:32000]
    mfcc.accept_device([0, 1], audio[:20000].ctypes.data, [12000, 8000])
    np.testing.assert_array_equal(mfcc.samples_received([0, 1]), [12000, 8000])
    # The graph path: items uploaded once, the same launches replayed with new audio.
    buffer = np.zeros(2 * 1600, dtype=np.float32)
    mfcc.upload_accept_items([2, 3], [0, 1600], [1600, 1600])
    for start in range(0, 16000, 1600):
        buffer[:1600] = audio[start:start + 1600]
        buffer[1600:] = audio[16000 + start:16000 + start + 1600]
        mfcc.launch_accept_items(2, 1600, buffer.ctypes.data)
        mfcc.advance_host([2, 3], [1600, 1600])
    for stream, clip in ((0, audio[:12000]), (1, audio[12000:20000]),
                         (2, audio[:16000]), (3, audio[16000:])):
        got = read_mfcc(mfcc, stream)
        want = mfcc_offline(clip, CONFIG, matrices, got.shape[0])
        assert np.abs(got - want).max() <= MFCC_ATOL, f"stream {stream}"


def test_mfcc_history_is_bounded_and_reset_restarts(
    runner: EmulatedRunner, matrices: MfccMatrices, rng: np.random.Generator
) -> None:
    gpu = CudaMfcc(CONFIG, matrices, max_streams=2, max_chunk_samples=800,
                   history_frames=60, runner=runner)
    noise = rng.uniform(-0.5, 0.5, 24000).astype(np.float32)
    gpu.accept([0], [noise])
    ready = int(gpu.mfcc_frames_ready([0])[0])
    assert gpu.ring_frames >= 60
    with pytest.raises(ValueError, match="raise history_frames"):
        read_mfcc(gpu, 0, 0, 10)
    tail = read_mfcc(gpu, 0, ready - 60, 60)
    want = mfcc_offline(noise, CONFIG, matrices, ready)[-60:]
    assert np.abs(tail - want).max() <= MFCC_ATOL
    gpu.reset([0])
    gpu.accept([0], [noise[:4000]])
    fresh = read_mfcc(gpu, 0)
    np.testing.assert_array_equal(fresh, read_mfcc_fresh(runner, matrices, noise[:4000]))


def read_mfcc_fresh(runner: EmulatedRunner, matrices: MfccMatrices, audio: np.ndarray
                    ) -> np.ndarray:
    gpu = CudaMfcc(CONFIG, matrices, max_streams=1, runner=runner)
    gpu.accept([0], [audio])
    return read_mfcc(gpu, 0)


@pytest.mark.parametrize(
    ("ids", "chunks", "message"),
    [
        ([0, 0], [np.zeros(4, np.float32)] * 2, "once per call"),
        ([4], [np.zeros(4, np.float32)], "0..3"),
        ([0], [np.zeros((2, 4), np.float32)], "float mono"),
        ([0], [np.arange(4)], "float mono"),
        ([0], [np.array([0.0, np.nan], np.float32)], "NaN"),
        ([0, 1], [np.zeros(4, np.float32)], "2 stream ids but 1 chunks"),
    ],
)
def test_bad_accept_input_raises_and_leaves_streams_untouched(
    mfcc: CudaMfcc, ids: list[int], chunks: list[np.ndarray], message: str
) -> None:
    mfcc.accept([0], [np.ones(100, np.float32)])
    with pytest.raises(ValueError, match=message):
        mfcc.accept(ids, chunks)
    np.testing.assert_array_equal(mfcc.samples_received([0, 1]), [100, 0])


def test_matrices_of_another_config_are_refused(runner: EmulatedRunner,
                                                matrices: MfccMatrices) -> None:
    other = CONFIG.__class__(n_mfcc=12)
    with pytest.raises(ValueError, match="matching matrices"):
        CudaMfcc(other, matrices, max_streams=1, runner=runner)


# ---- pose imaging ----
@pytest.fixture()
def imager(runner: EmulatedRunner) -> Iterator[CudaPoseImager]:
    gpu = CudaPoseImager(MODEL_SKELETON, ImagingConfig(), runner=runner)
    yield gpu
    gpu.close()


def random_poses(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    poses = rng.normal(0.3, 0.9, (*shape, MODEL_SKELETON.num_joints, 2)).astype(np.float32)
    poses.reshape(-1, 2)[rng.choice(poses.size // 2, 20, replace=False)] = np.nan
    return poses


def test_pose_images_equal_the_reference_bit_for_bit(imager: CudaPoseImager,
                                                      rng: np.random.Generator) -> None:
    config = imager.imaging
    canonical = random_poses(rng, (2, 9))  # a PoseSyncNet batch (B, 9, J, 2)
    out = np.full((2, 9, config.height, config.width), np.nan, dtype=np.float32)
    imager.images(canonical, out.ctypes.data)
    want = pose_images(canonical, MODEL_SKELETON, config)
    assert (want > 0).mean() > 0.2  # the poses draw plenty of limbs
    np.testing.assert_array_equal(out, want)


def test_pose_images_of_another_size_and_window(runner: EmulatedRunner,
                                                rng: np.random.Generator) -> None:
    config = ImagingConfig(height=37, width=70, x_min=-3.0, x_max=2.5, half_width=1.7,
                           detail_half_width=0.3)
    imager = CudaPoseImager(MODEL_SKELETON, config, runner=runner)
    canonical = random_poses(rng, (3,))
    out = np.full((3, 37, 70), np.nan, dtype=np.float32)
    imager.images(canonical, out.ctypes.data)
    np.testing.assert_array_equal(out, pose_images(canonical, MODEL_SKELETON, config))
    with pytest.raises(ValueError, match=r"\(\.\.\., 122, 2\)"):
        imager.images(canonical[..., :5, :], out.ctypes.data)


@pytest.mark.parametrize("with_saliency", [False, True])
def test_rgb_preview_equals_render_video_frames(imager: CudaPoseImager,
                                                rng: np.random.Generator,
                                                with_saliency: bool) -> None:
    pixels = fit_to_canvas(random_poses(rng, (4,)), (80, 64))
    saliency = rng.uniform(0, 1, 4).astype(np.float32) if with_saliency else None
    colors = {"lips": (255, 0, 0)}
    out = np.zeros((4, 64, 80, 3), dtype=np.uint8)
    imager.preview(pixels, (80, 64), out.ctypes.data, saliency=saliency, colors=colors)
    want = render_video_frames(pixels, MODEL_SKELETON, (80, 64), saliency=saliency,
                               colors=colors)
    np.testing.assert_array_equal(out, want)


# ---- the production CUDA runner, on a fake driver that launches the emulator ----
def test_cuda_runner_host_path_on_a_fake_driver(
    emulator_library: Path, matrices: MfccMatrices, speech_16k: np.ndarray,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import cuda.bindings

    from sdk.cuda.launch import CudaRunner

    fake = FakeDriver(emulator_library)
    monkeypatch.setattr(cuda.bindings, "driver", fake)
    monkeypatch.setenv("GESTURERT_CACHE", str(tmp_path))
    runner = CudaRunner()
    assert runner.arch == 86
    gpu = CudaMfcc(CONFIG, matrices, max_streams=2, max_chunk_samples=3000, runner=runner)
    audio = speech_16k[:20000]
    for start in range(0, audio.size, 2500):  # more uploads than pinned staging slots
        gpu.accept([1, 0], [audio[start:start + 2500], audio[start:start + 2500] * 0.5])
    k = int(gpu.feature_frames_ready([0])[0])
    features = runner.alloc(2 * k * CONFIG.feature_dim * 4)
    gpu.write_features([0, 1], [0, 0], k, features)
    got = np.empty((2, k, CONFIG.feature_dim), dtype=np.float32)
    runner.download(got, features)
    assert np.abs(got[1] - extract_features(audio, CONFIG, matrices, k)).max() <= MFCC_ATOL
    assert np.abs(got[0] - extract_features(audio * 0.5, CONFIG, matrices, k)).max() <= MFCC_ATOL

    imager = CudaPoseImager(MODEL_SKELETON, ImagingConfig(), runner=runner)
    canonical = random_poses(np.random.default_rng(5), (3,))
    images = np.zeros((3, 48, 48), dtype=np.float32)
    imager.images(canonical, images.ctypes.data)
    np.testing.assert_array_equal(images, pose_images(canonical, MODEL_SKELETON,
                                                      ImagingConfig()))
    assert set(fake.launched) == {"mfcc_frames", "mfcc_commit", "gather_feature_frames",
                                  "pose_images"}
    assert len(list((tmp_path / "kernels").glob("*.sm86.*.cubin"))) == 2  # cached cubins
    gpu.close()
    imager.close()
    runner.close()


# ---- device arrays from other libraries ----
class FakeCai:
    def __init__(self, shape: tuple[int, ...], typestr: str = "<f4",
                 strides: tuple[int, ...] | None = None, stream: int | None = None) -> None:
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (4096, False),
                                         "strides": strides, "version": 3, "stream": stream}


class CudaLabelledDlpack:  # a host array's DLPack capsule, presented as if on CUDA
    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __dlpack__(self, stream: int | None = None) -> object:
        return self.array.__dlpack__()

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)


def test_cuda_array_interface_views_are_checked() -> None:
    view = device_array(FakeCai((2, 3), stream=77), np.float32, (2, 3))
    assert (view.ptr, view.shape, view.stream) == (4096, (2, 3), 77)
    assert device_array(FakeCai((2, 3), strides=(12, 4))).shape == (2, 3)
    with pytest.raises(ValueError, match="C-contiguous"):
        device_array(FakeCai((2, 3), strides=(4, 8)))
    with pytest.raises(TypeError, match="float32"):
        device_array(FakeCai((2, 3), typestr="<f2"))
    with pytest.raises(ValueError, match=r"expected shape \(3, 2\)"):
        device_array(FakeCai((2, 3)), np.float32, (3, 2))
    with pytest.raises(TypeError, match="not CUDA"):
        device_array(np.zeros(3, np.float32))  # numpy is not a device array
    with pytest.raises(TypeError, match="CuPy, PyTorch"):
        device_array([1.0, 2.0])
    with pytest.raises(TypeError, match="explicit shape"):
        device_array(4096)


def test_dlpack_capsules_are_read_without_a_library() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    view = device_array(CudaLabelledDlpack(array), np.float32, (3, 4))
    assert view.ptr == array.ctypes.data and view.owner is not None
    with pytest.raises(ValueError, match="C-contiguous"):
        device_array(CudaLabelledDlpack(array.T))
    with pytest.raises(TypeError, match="not CUDA"):
        device_array(_HostDlpack(array))


class _HostDlpack(CudaLabelledDlpack):
    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)
