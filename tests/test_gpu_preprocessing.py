"""The GPU preprocessing benchmark's CPU-side pieces, and the whole benchmark on the CPU
emulator behind a fake driver (tests/cuda_emu): device peaks, analytic counts, timing on
the runner's stream, report files, and the exit status without a GPU."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cuda.bindings import driver as real
from cuda_emu.emulator import build_emulator
from cuda_emu.fake_driver import FakeDriver

from benchmarks import gpu_preprocessing
from benchmarks.common import TimingSummary
from benchmarks.gpu_report import markdown
from benchmarks.gpu_roofline import (
    Cost,
    DeviceSpec,
    feature_gather_cost,
    mfcc_accept_cost,
    mfcc_frame_fft_flops,
    mfcc_frame_flops,
    pose_imaging_cost,
    roofline_row,
)
from sdk.cuda import nvrtc
from sdk.features import DEFAULT_FEATURES, FeatureConfig

# H100 SXM5 as cuDeviceGetAttribute reports it; NVIDIA's data sheet: 3.35 TB/s, 67 TFLOP/s.
H100 = DeviceSpec(name="NVIDIA H100 80GB HBM3", compute_capability="9.0", sm_count=132,
                  clock_khz=1_980_000, memory_clock_khz=2_619_000, bus_width_bits=5120,
                  total_memory_bytes=85_029_158_912)
A = real.CUdevice_attribute
H100_ATTRIBUTES = {A.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: 9,
                   A.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: 0,
                   A.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: 132,
                   A.CU_DEVICE_ATTRIBUTE_CLOCK_RATE: 1_980_000,
                   A.CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: 2_619_000,
                   A.CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: 5120}


def test_device_peaks_match_the_h100_data_sheet() -> None:
    assert H100.peak_bandwidth == pytest.approx(3.35e12, rel=0.01)
    assert H100.peak_fp32_flops == pytest.approx(66.9e12, rel=0.01)
    turing = DeviceSpec("T4", "7.5", 40, 1_590_000, 5_001_000, 256, 0)
    assert turing.peak_bandwidth == pytest.approx(320e9, rel=0.01)  # T4: 320 GB/s
    assert turing.peak_fp32_flops == pytest.approx(8.1e12, rel=0.01)  # T4: 8.1 TFLOP/s


def test_mfcc_counts_follow_the_kernel() -> None:
    # window 512 + mel 2*40*257 + log 3*40 + DCT 2*13*40 = 22232; the kernel's real FFT:
    # 8 stages of 128 butterflies (10 FLOPs) + split and power 19 * 255 + 2 * 2 = 15089
    common = 512 + 2 * 40 * 257 + 3 * 40 + 2 * 13 * 40
    assert mfcc_frame_flops(DEFAULT_FEATURES) == common + 10 * 128 * 8 + 19 * 255 + 4
    # the algorithmic minimum: 2.5 * 512 * 9 = 11520 and the power 3 * 257
    assert mfcc_frame_fft_flops(DEFAULT_FEATURES) == pytest.approx(common + 11_520 + 771)
    # a direct-DFT config (n_fft 400): 2 multiply-adds per bin and sample
    dft = FeatureConfig(n_fft=400, win_length=400)
    assert mfcc_frame_flops(dft) == (400 + 2 * 40 * 201 + 3 * 40 + 2 * 13 * 40
                                     + 4 * 201 * 400 + 3 * 201)
    frame = mfcc_frame_flops(DEFAULT_FEATURES)
    cost = mfcc_accept_cost(DEFAULT_FEATURES, streams=4, chunk_samples=1600)  # 10 frames each
    assert cost.flops == 40 * frame
    tables = (512 + 40 * 257 + 13 * 40) * 4
    assert cost.bytes == 4 * 1600 * 4 + 4 * 512 * 4 + 40 * 13 * 4 + tables + 4 * 32
    gather = feature_gather_cost(DEFAULT_FEATURES, streams=8, frames=2)
    assert (gather.flops, gather.bytes) == (0.0, 2 * 8 * 2 * 91 * 4 + 8 * 16)
    pose = pose_imaging_cost(frames=9, height=48, width=48, joints=122, bones=121)
    assert pose.flops == 9 * 48 * 48 * 121 * 37


def test_roofline_row_picks_the_binding_roof() -> None:
    compute = Cost(flops=66.9e9, bytes=1e3)  # ~1 ms of fp32 work, nothing to move
    row = roofline_row(compute, H100, measured_seconds=2e-3)
    assert row["bound"] == "compute"
    assert row["floor_us"] == pytest.approx(66.9e9 / H100.peak_fp32_flops * 1e6, rel=1e-9)
    assert 990 < row["floor_us"] < 1010
    assert row["efficiency"] == pytest.approx(row["floor_us"] / 2e3)
    memory = Cost(flops=0.0, bytes=3.35e6)
    assert roofline_row(memory, H100, 1e-3)["bound"] == "memory"


def test_without_a_gpu_the_benchmark_exits_2_and_says_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if gpu_preprocessing.gpu_unavailable_reason() is None:
        pytest.skip("this machine has a usable CUDA GPU")
    assert gpu_preprocessing.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "nothing was written" in err
    assert not any(tmp_path.iterdir())


class TimedFakeDriver(FakeDriver):
    """The emulator driver with the calls the benchmark adds: device name, memory, count,
    H100 attributes, and events that time the (synchronous) emulated launches."""

    def __init__(self, library: Path) -> None:
        super().__init__(library, compute_capability=(9, 0))
        self.event_times: dict[int, float] = {}
        self.events = 0

    def cuDeviceGetCount(self) -> tuple[Any, int]:
        return self.ok, 1

    def cuDeviceGetName(self, length: int, device: int) -> tuple[Any, bytes]:
        return self.ok, H100.name.encode().ljust(length, b"\0")

    def cuDeviceTotalMem(self, device: int) -> tuple[Any, int]:
        return self.ok, H100.total_memory_bytes

    def cuDeviceGetAttribute(self, attribute: Any, device: int) -> tuple[Any, int]:
        if attribute not in H100_ATTRIBUTES:
            return super().cuDeviceGetAttribute(attribute, device)
        return self.ok, H100_ATTRIBUTES[attribute]

    def cuEventCreate(self, flags: Any) -> tuple[Any, Any]:
        self.events += 1
        return self.ok, self.events

    def cuEventRecord(self, event: Any, stream: Any) -> tuple[Any]:
        self.event_times[event] = time.perf_counter()
        return (self.ok,)

    def cuEventElapsedTime(self, start: Any, end: Any) -> tuple[Any, float]:
        return self.ok, (self.event_times[end] - self.event_times[start]) * 1e3


@pytest.mark.slow
def test_the_benchmark_runs_on_the_emulator_and_writes_its_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cuda.bindings

    (tmp_path / "emu").mkdir()
    library = build_emulator(nvrtc.feature_defines(DEFAULT_FEATURES), tmp_path / "emu")
    fake = TimedFakeDriver(library)
    monkeypatch.setattr(cuda.bindings, "driver", fake)
    monkeypatch.setenv("GESTURERT_CACHE", str(tmp_path / "cache"))
    assert gpu_preprocessing.gpu_unavailable_reason() is None
    result = gpu_preprocessing.run_benchmark(mode="emulated", chunks=(320,), streams=(1, 3),
                                             clips=(1,), repeats=2)
    assert result["device"]["name"] == H100.name
    assert result["device"]["peak_fp32_tflops"] == pytest.approx(H100.peak_fp32_flops / 1e12)
    assert {"mfcc_frames", "mfcc_commit", "gather_feature_frames", "pose_images"} <= set(
        fake.launched)
    assert [c["streams"] for c in result["mfcc"]] == [1, 3]
    for cell in result["mfcc"]:
        cuda = cell["cuda_mfcc"]
        assert cuda["flops"] == cell["streams"] * 2 * mfcc_frame_flops(DEFAULT_FEATURES)
        assert cuda["measured_us"] > 0 and 0 < cuda["efficiency"]
        assert cell["librosa_cpu"]["wall"]["count"] >= 3
        assert cell["torchaudio"]["available"] is False  # not installed here
        assert "torchaudio" in cell["torchaudio"]["reason"]
    assert result["pose_imaging"][0]["frames"] == 9
    paths = gpu_preprocessing.write_report(result, tmp_path / "out")
    assert [p.name for p in paths] == ["gpu_preprocessing.json", "gpu_preprocessing.md",
                                       "gpu_preprocessing.png"]
    assert json.loads(paths[0].read_text())["mode"] == "emulated"
    text = paths[1].read_text()
    assert H100.name in text and "torchaudio unavailable:" in text
    assert text.count("\n| 20 | ") == 2  # one MFCC row per stream count at 20 ms chunks
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(result["mfcc"][1]["cuda_mfcc"]["achieved_gflops"])
    # a machine with torchaudio: its time and the speed-up get their columns
    result["mfcc"][0]["torchaudio"] = {"available": True, "cuda_speedup": 2.5,
                                       "gpu": TimingSummary.of([4e-4]).to_dict()}
    row = next(r for r in markdown(result).splitlines() if r.startswith("| 20 | 1 |"))
    cells = row.split(" | ")
    assert (cells[9], cells[11]) == ("400", "2.5")  # torchaudio p50 us, x torchaudio


def test_streams_benchmark_runs_on_the_emulator_and_says_what_it_did_not_measure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cuda.bindings

    from benchmarks import gpu_streams

    (tmp_path / "emu").mkdir()
    library = build_emulator(nvrtc.feature_defines(DEFAULT_FEATURES), tmp_path / "emu")
    fake = TimedFakeDriver(library)
    monkeypatch.setattr(cuda.bindings, "driver", fake)
    monkeypatch.setenv("GESTURERT_CACHE", str(tmp_path / "cache"))
    result = gpu_streams.run(streams=(2, 3), repeats=2)
    assert [t["streams"] for t in result["ticks"]] == [2, 3]
    assert result["ticks"][0]["chunk_samples"] == 1067  # 16 kHz at 15 fps, rounded up
    assert all(t["gpu_p50_ms"] > 0 for t in result["ticks"])
    assert {"mfcc_frames", "mfcc_commit", "gather_feature_frames"} <= set(fake.launched)
    assert result["step"]["available"] is False  # no TensorRT here: no number invented
    text = gpu_streams.markdown(result)
    assert "| 3 | 1067 |" in text and "the batched step was not measured" in text
