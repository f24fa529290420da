"""The GPU review's defects (notes/gpu-review.md), each shown on the CPU emulator or a fake
driver: pose launches over 65535 frames, stream ordering and lifetime of device arrays
from other libraries, resource release, cuda-python/NVRTC/driver versions, PTX fallback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib
from cuda_emu.emulator import CheckingModule, EmulatedRunner, build_emulator
from cuda_emu.fake_driver import FakeDriver

from sdk.cuda import nvrtc, pose
from sdk.cuda.interop import LEGACY_DEFAULT_STREAM, device_array
from sdk.cuda.mfcc import CudaMfcc
from sdk.cuda.pose import CudaPoseImager
from sdk.features import DEFAULT_FEATURES
from sdk.mfcc import MfccMatrices
from sdk.pose_image import ImagingConfig, pose_images
from sdk.render import fit_to_canvas, render_video_frames
from sdk.skeleton import MODEL_SKELETON

REPO = Path(__file__).resolve().parents[1]
J = MODEL_SKELETON.num_joints


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_emulator(nvrtc.feature_defines(DEFAULT_FEATURES),
                          tmp_path_factory.mktemp("cuda_emu"))


@pytest.fixture()
def fake(library: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeDriver:
    import cuda.bindings

    driver = FakeDriver(library)
    monkeypatch.setattr(cuda.bindings, "driver", driver)
    monkeypatch.setenv("GESTURERT_CACHE", str(tmp_path))
    return driver


class FakeCai:
    """A CAI-only device array (CuPy/Numba style) at a made-up address."""

    def __init__(self, shape: tuple[int, ...], *, version: int = 3, stream: Any = None,
                 read_only: bool = False, ptr: int = 4096, typestr: str = "<f4") -> None:
        cai: dict[str, Any] = {"shape": shape, "typestr": typestr, "data": (ptr, read_only),
                               "strides": None, "version": version}
        if version >= 3:
            cai["stream"] = stream
        self.__cuda_array_interface__ = cai


class TorchLike:
    """What a torch CUDA tensor offers: CAI version 2 (no stream) and DLPack, here over a
    host array labelled as CUDA memory (the emulator's device memory is host memory)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.dlpack_streams: list[Any] = []
        self.__cuda_array_interface__ = {"shape": array.shape, "typestr": "<f4",
                                         "data": (array.ctypes.data, False), "version": 2}

    def __dlpack__(self, stream: Any = None) -> object:
        self.dlpack_streams.append(stream)
        return self.array.__dlpack__()

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)


# ---- 1. interop: DLPack first, CAI stream and readonly, lifetime ----
def test_dlpack_is_preferred_and_told_the_consumer_stream() -> None:
    tensor = TorchLike(np.zeros((2, 3), np.float32))
    view = device_array(tensor, np.float32, (2, 3), consumer_stream=0x5EED)
    assert tensor.dlpack_streams == [0x5EED]  # the producer orders its work before ours
    assert view.owner is not None and view.stream is None


def test_cai_stream_is_honoured_and_v2_means_the_legacy_default_stream() -> None:
    assert device_array(FakeCai((3,), stream=77)).stream == 77
    assert device_array(FakeCai((3,), stream=None)).stream is None  # v3: already safe
    assert device_array(FakeCai((3,), version=2)).stream == LEGACY_DEFAULT_STREAM


def test_read_only_cai_is_refused_as_a_kernel_output() -> None:
    array = FakeCai((1, 5, DEFAULT_FEATURES.feature_dim), read_only=True)
    assert device_array(array, np.float32).ptr == 4096  # reading it is fine
    with pytest.raises(ValueError, match="read-only"):
        device_array(array, np.float32, writable=True)


def test_cai_v2_input_makes_the_runner_wait_for_the_legacy_stream(
        fake: FakeDriver, speech_16k: np.ndarray) -> None:
    from sdk.cuda.launch import CudaRunner

    runner = CudaRunner()
    gpu = CudaMfcc(DEFAULT_FEATURES, MfccMatrices.default(), max_streams=1,
                   max_chunk_samples=2000, runner=runner)
    audio = np.ascontiguousarray(speech_16k[:1600])
    cai_only = FakeCai((1600,), version=2, ptr=audio.ctypes.data)
    gpu.accept_device([0], cai_only, [1600])
    assert LEGACY_DEFAULT_STREAM in fake.recorded_on  # event on stream 1, waited on
    gpu.close()
    runner.close()


def test_dlpack_memory_stays_alive_until_the_kernels_finished(
        fake: FakeDriver, speech_16k: np.ndarray) -> None:
    from sdk.cuda.launch import CudaRunner

    runner = CudaRunner()
    gpu = CudaMfcc(DEFAULT_FEATURES, MfccMatrices.default(), max_streams=1,
                   max_chunk_samples=2000, runner=runner)
    audio = np.ascontiguousarray(speech_16k[:1600])
    before = sys.getrefcount(audio)
    gpu.accept_device([0], TorchLike(audio), [1600])  # the wrapper is a temporary
    # The fake driver's work stays "in flight" until a synchronize: the capsule (which
    # references the array) must still be held.
    assert sys.getrefcount(audio) > before and runner.kept_alive == 1
    runner.synchronize()
    assert sys.getrefcount(audio) == before and runner.kept_alive == 0
    gpu.close()
    runner.close()


# ---- 2. pose imaging over 65535 frames ----
class CheckingRunner(EmulatedRunner):
    """Checks launch configurations without running them (too big to emulate)."""

    def __init__(self, library: Path) -> None:
        super().__init__(library)
        self.module = CheckingModule(self.module._library)  # type: ignore[assignment]


def test_pose_images_of_70000_frames_stay_within_grid_y(library: Path) -> None:
    runner = CheckingRunner(library)
    imager = CudaPoseImager(MODEL_SKELETON, ImagingConfig(), runner=runner)
    frames = 70000  # ~39 min at 30 fps
    imager.images(FakeCai((frames, J, 2)), FakeCai((frames, 48, 48), ptr=1 << 20))
    imager.preview(FakeCai((frames, J, 2)), (64, 48), FakeCai((frames, 48, 64, 3), typestr="|u1"))
    rows = [grid[1] for kernel, grid, _ in runner.module.launches]
    assert max(rows) <= 65535 and sum(rows) == 2 * frames


def test_split_pose_launches_equal_the_reference(library: Path, monkeypatch: pytest.MonkeyPatch,
                                                 rng: np.random.Generator) -> None:
    monkeypatch.setattr(pose, "MAX_GRID_Y", 4)  # 10 frames: launches of 4, 4 and 2
    runner = EmulatedRunner(library)
    config = ImagingConfig(height=20, width=24)
    imager = CudaPoseImager(MODEL_SKELETON, config, runner=runner)
    canonical = rng.normal(0.3, 0.9, (10, J, 2)).astype(np.float32)
    out = np.full((10, 20, 24), np.nan, dtype=np.float32)
    imager.images(canonical, out.ctypes.data)
    np.testing.assert_array_equal(out, pose_images(canonical, MODEL_SKELETON, config))
    pixels = fit_to_canvas(canonical, (40, 32))
    saliency = rng.uniform(0, 1, 10).astype(np.float32)
    rgb = np.zeros((10, 32, 40, 3), dtype=np.uint8)
    imager.preview(pixels, (40, 32), rgb.ctypes.data, saliency=saliency)
    np.testing.assert_array_equal(rgb, render_video_frames(pixels, MODEL_SKELETON, (40, 32),
                                                           saliency=saliency))
    assert [g[1] for k, g, _ in runner.module.launches if k == "pose_images"] == [4, 4, 2]


# ---- 7. resources are released ----
def test_closing_releases_everything_the_objects_created(fake: FakeDriver,
                                                         speech_16k: np.ndarray) -> None:
    gpu = CudaMfcc(DEFAULT_FEATURES, MfccMatrices.default(), max_streams=2,
                   max_chunk_samples=2000)  # makes its own CudaRunner
    for start in range(0, 12000, 1000):  # more uploads than pinned staging slots
        gpu.accept([0, 1], [speech_16k[start:start + 1000]] * 2)
    imager = CudaPoseImager(MODEL_SKELETON, ImagingConfig())
    images = np.zeros((2, 48, 48), np.float32)
    imager.images(np.zeros((2, J, 2), np.float32), images.ctypes.data)
    live = fake.live_handles()
    assert live["streams"] == 2 and live["pinned"] > 0 and live["primary_context"] == 2
    gpu.close()
    imager.close()
    imager.close()  # idempotent
    assert fake.live_handles() == {"memory": 0, "pinned": 0, "modules": 0, "streams": 0,
                                   "events": 0, "primary_context": 0}


# ---- 8. versions, PTX fallback ----
def test_cuda_python_floor_is_the_first_release_with_cuda_bindings() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    pins = [r for group in extras.values() for r in group if r.startswith("cuda-python")]
    assert pins and all(r == "cuda-python>=12.6.1" for r in pins), pins


def test_mismatched_cuda_versions_are_refused_with_the_fix() -> None:
    nvrtc.check_cuda_versions("13.4.4", (13, 5), 13000)
    nvrtc.check_cuda_versions("12.9.0", (12, 9), 13000)  # a newer driver runs older code
    with pytest.raises(RuntimeError, match="major versions must match"):
        nvrtc.check_cuda_versions("13.4.4", (12, 9), 13000)
    with pytest.raises(RuntimeError, match=r"older than NVRTC 13.5.*cuda-python==12\.\*"):
        nvrtc.check_cuda_versions("13.4.4", (13, 5), 12080)


def test_a_cuda_12_driver_is_refused_before_anything_is_compiled(fake: FakeDriver) -> None:
    from sdk.cuda.launch import CudaRunner

    fake.driver_version = 12080
    with pytest.raises(RuntimeError, match=r"CUDA 12\.8"):
        CudaRunner()
    assert fake.live_handles()["primary_context"] == 0


def test_an_architecture_nvrtc_does_not_know_gets_ptx(fake: FakeDriver) -> None:
    from sdk.cuda.launch import CudaRunner

    supported = nvrtc.nvrtc_supported_archs()
    assert nvrtc.choose_target(86, supported) == ("cubin", 86)
    unknown = max(supported) + 10  # a GPU newer than this NVRTC
    assert nvrtc.choose_target(unknown, supported) == ("ptx", max(supported))
    with pytest.raises(RuntimeError, match="older than all of them"):
        nvrtc.choose_target(min(supported) - 5, supported)
    fake.compute_capability = divmod(unknown, 10)
    runner = CudaRunner()
    imager = CudaPoseImager(MODEL_SKELETON, ImagingConfig(height=8, width=8), runner=runner)
    image = fake.modules_loaded[-1]
    assert image.endswith(b"\0") and f".target sm_{max(supported)}".encode() in image
    out = np.zeros((1, 8, 8), np.float32)
    imager.images(np.zeros((1, J, 2), np.float32), out.ctypes.data)
    assert fake.launched == ["pose_images"]
    imager.close()
    runner.close()


def test_the_driver_helper_needs_cuda_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdk.runners import cuda_driver
    from sdk.runners.base import RunnerError

    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # only the old cuda.cuda
    with pytest.raises(RunnerError, match=r"12\.6\.1"):
        cuda_driver.driver()



# ---- the PSD's pose images drawn by the CUDA kernel ----
def test_psd_pose_clips_imaged_on_the_device_equal_the_host_ones(
        library: Path, rng: np.random.Generator) -> None:
    from sdk.psd import pose_clips, sequence_embeddings

    imager = CudaPoseImager(MODEL_SKELETON, ImagingConfig(), runner=EmulatedRunner(library))
    canonical = rng.normal(0.3, 0.9, (14, J, 2)).astype(np.float32)
    starts = [0, 2, 5]
    want = pose_clips(canonical, starts)
    np.testing.assert_array_equal(pose_clips(canonical, starts, imager=imager), want)

    def embed(mfcc: np.ndarray, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return mfcc.reshape(len(mfcc), -1)[:, :4], poses.reshape(len(poses), -1)[:, :4]
    mfcc = rng.normal(0, 1, (60, DEFAULT_FEATURES.n_mfcc)).astype(np.float32)
    host = sequence_embeddings(embed, mfcc, canonical)
    device = sequence_embeddings(embed, mfcc, canonical, imager=imager)
    np.testing.assert_array_equal(device[1], host[1])
    with pytest.raises(ValueError, match="another skeleton or imaging"):
        pose_clips(canonical, starts, ImagingConfig(height=20, width=20), imager=imager)
    imager.close()
