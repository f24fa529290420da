"""Analytic cost of the CUDA preprocessing kernels and the roofline floor of a GPU.

Counts follow the kernels as written (``sdk/cuda/mfcc.cu``: a real FFT, ``sdk/cuda/pose_image.cu``);
a multiply-add is 2 FLOPs, a division, square root, log10 or comparison 1. Bytes are the
compulsory device-memory traffic: every input value read once, every output written once
(constant tables such as the mel matrix are read once per launch: they stay in L2).

Roofline floor of a measurement = ``max(bytes / peak bandwidth, FLOPs / peak fp32 rate)``;
``efficiency = floor / measured`` (1.0 = at the roof). Peaks come from
``cuDeviceGetAttribute``: bandwidth = 2 (double data rate) x memory clock x bus width / 8,
fp32 rate = 2 x SMs x fp32 lanes per SM x SM clock.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sdk.cuda.mfcc import uses_fft
from sdk.features import FeatureConfig

#: fp32 FMA lanes per SM by compute capability major.minor (CUDA C Programming Guide,
#: "Arithmetic Instructions" throughput table); unknown newer archs use the last entry.
FP32_LANES_PER_SM = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128,
                     (8, 9): 128, (9, 0): 128, (10, 0): 128, (12, 0): 128}
#: pose_images, per pixel and bone: 4 x (sub, mul, sub) canonical -> pixels = 12,
#: dx, dy, qx, qy = 4, len2 = 3, t = (2 mul + add + div + 2 clamp) = 6, ex, ey = 4,
#: d = 3 + sqrt = 4, reach - d + 2 clamp = 3, running max = 1: 37 FLOPs.
POSE_FLOPS_PER_PIXEL_BONE = 37
F32 = 4  # bytes


@dataclass(frozen=True)
class DeviceSpec:
    """What cuDeviceGetAttribute says about a GPU (clocks in kHz, as the driver gives them)."""

    name: str
    compute_capability: str  # "9.0"
    sm_count: int
    clock_khz: int
    memory_clock_khz: int
    bus_width_bits: int
    total_memory_bytes: int

    @property
    def fp32_lanes_per_sm(self) -> int:
        major, minor = (int(v) for v in self.compute_capability.split("."))
        known = sorted(FP32_LANES_PER_SM)
        fits = [cc for cc in known if cc <= (major, minor)]
        return FP32_LANES_PER_SM[fits[-1] if fits else known[0]]

    @property
    def peak_bandwidth(self) -> float:
        """Bytes per second of device memory."""
        return 2.0 * self.memory_clock_khz * 1e3 * self.bus_width_bits / 8

    @property
    def peak_fp32_flops(self) -> float:
        """fp32 FLOPs per second (FMA = 2)."""
        return 2.0 * self.sm_count * self.fp32_lanes_per_sm * self.clock_khz * 1e3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fp32_lanes_per_sm": self.fp32_lanes_per_sm,
                "peak_bandwidth_gb_s": self.peak_bandwidth / 1e9,
                "peak_fp32_tflops": self.peak_fp32_flops / 1e12}


@dataclass(frozen=True)
class Cost:
    """Work of one call: fp32 FLOPs as implemented, compulsory bytes, and (optional)
    ``algorithmic_flops``: what the best known algorithm needs (real FFT for MFCC)."""

    flops: float
    bytes: float
    algorithmic_flops: float | None = None

    def floor_seconds(self, spec: DeviceSpec) -> float:
        return max(self.bytes / spec.peak_bandwidth, self.flops / spec.peak_fp32_flops)

    def bound(self, spec: DeviceSpec) -> str:
        """"memory" or "compute": which roof sets the floor."""
        return ("memory" if self.bytes / spec.peak_bandwidth
                >= self.flops / spec.peak_fp32_flops else "compute")


def _frame_common_flops(config: FeatureConfig) -> int:
    """Window, mel, log10 floor (max + log10 + mul) and DCT of one frame."""
    return (config.n_fft + 2 * config.n_mels * config.n_freqs + 3 * config.n_mels
            + 2 * config.n_mfcc * config.n_mels)


def mfcc_frame_flops(config: FeatureConfig) -> int:
    """FLOPs of one MFCC frame in ``mfcc_frames`` as written (sdk/cuda/mfcc.cu).

    Power-of-two n_fft (real FFT): log2(M) radix-2 stages of M/2 butterflies (complex
    multiply 6 + two complex adds 4 = 10) on M = n_fft/2 packed points, the split into the
    real spectrum (16 per bin) and the power (3 per bin) for bins 1..M-1, 2 each for bins 0
    and M. Otherwise the direct DFT: 2 multiply-adds per bin and sample, power 3 per bin.
    """
    if uses_fft(config):
        m = config.n_fft // 2
        spectrum = 5 * m * int(math.log2(m)) + (16 + 3) * (m - 1) + 2 * 2
    else:
        spectrum = 2 * 2 * config.n_freqs * config.n_fft + 3 * config.n_freqs
    return _frame_common_flops(config) + spectrum


def mfcc_frame_fft_flops(config: FeatureConfig) -> float:
    """The frame at the algorithmic minimum: a real FFT (2.5 n log2 n FLOPs) and the power
    (3 per bin), plus window, mel, log and DCT."""
    n_fft = config.n_fft
    return _frame_common_flops(config) + 2.5 * n_fft * math.log2(n_fft) + 3 * config.n_freqs


def mfcc_accept_cost(config: FeatureConfig, streams: int, chunk_samples: int) -> Cost:
    """One ``CudaMfcc.accept_device`` of ``chunk_samples`` per stream (frames per chunk:
    ``chunk_samples / hop`` on average). Bytes: new samples read, ring tail written
    (min(chunk, n_fft) samples), MFCC frames written, tables (window, mel, DCT) once."""
    frames = streams * chunk_samples / config.hop_length
    tables = (config.n_fft + config.n_mels * config.n_freqs + config.n_mfcc * config.n_mels) * F32
    bytes_ = (streams * chunk_samples * F32 + streams * min(chunk_samples, config.n_fft) * F32
              + frames * config.n_mfcc * F32 + tables + streams * 3 * 8 + streams * 8)
    return Cost(flops=frames * mfcc_frame_flops(config), bytes=bytes_,
                algorithmic_flops=frames * mfcc_frame_fft_flops(config))


def feature_gather_cost(config: FeatureConfig, streams: int, frames: int) -> Cost:
    """``write_features`` of ``frames`` feature frames per stream: read and write each value."""
    values = streams * frames * config.feature_dim
    return Cost(flops=0.0, bytes=2 * values * F32 + streams * 2 * 8)


def pose_imaging_cost(frames: int, height: int, width: int, joints: int, bones: int) -> Cost:
    """``CudaPoseImager.images`` of ``frames`` poses: every pixel tests every bone."""
    pixels = frames * height * width
    return Cost(flops=float(pixels * bones * POSE_FLOPS_PER_PIXEL_BONE),
                bytes=float(pixels * F32 + frames * joints * 2 * F32 + bones * 3 * F32))


def roofline_row(cost: Cost, spec: DeviceSpec, measured_seconds: float) -> dict[str, Any]:
    """A table row: counts, floor, measured time, efficiency and achieved rates."""
    floor = cost.floor_seconds(spec)
    return {"flops": cost.flops, "bytes": cost.bytes, "algorithmic_flops": cost.algorithmic_flops,
            "floor_us": floor * 1e6, "bound": cost.bound(spec),
            "measured_us": measured_seconds * 1e6,
            "efficiency": floor / measured_seconds if measured_seconds > 0 else None,
            "achieved_gflops": cost.flops / measured_seconds / 1e9 if measured_seconds > 0
            else None,
            "achieved_gb_s": cost.bytes / measured_seconds / 1e9 if measured_seconds > 0
            else None}
