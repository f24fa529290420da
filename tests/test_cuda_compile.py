"""Every CUDA kernel compiles with NVRTC for every supported architecture (no GPU needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sdk.cuda import nvrtc
from sdk.features import DEFAULT_FEATURES, FeatureConfig

pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-python (NVRTC bindings) not installed")

SOURCES = {"mfcc.cu": nvrtc.feature_defines(DEFAULT_FEATURES), "pose_image.cu": {},
           "state.cu": {}}
KERNELS = {
    "mfcc.cu": ("mfcc_frames", "mfcc_commit", "gather_feature_frames", "gather_mfcc"),
    "pose_image.cu": ("pose_images", "preview_rgb"),
    "state.cu": ("gather_state_rows", "scatter_state_rows"),
}


def test_every_cuda_source_is_tested() -> None:
    assert sorted(p.name for p in nvrtc.SOURCE_DIR.glob("*.cu")) == sorted(SOURCES)


@pytest.mark.parametrize("arch", nvrtc.SUPPORTED_ARCHS)
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_kernels_compile_for_every_supported_arch(source: str, arch: int) -> None:
    cubin = nvrtc.compile_source(source, SOURCES[source], arch, use_cache=False)
    assert cubin[:4] == b"\x7fELF"  # a cubin is an ELF image
    for kernel in KERNELS[source]:
        assert kernel.encode() in cubin, f"{kernel} missing from the {source} cubin"


#: FeatureConfigs the MFCC kernels must build for: other rates and FFT sizes, an n_fft of
#: 4096 and 8192 (their shared memory is dynamic: static arrays of ~12 n_fft bytes did not
#: fit the 48 KiB static limit), and an n_fft that is not a power of two (DFT fallback).
OTHER_CONFIGS = {
    "8k-256": FeatureConfig(sample_rate=8000, n_fft=256, win_length=200, hop_length=80,
                            fmax=4000.0),
    "48k-4096": FeatureConfig(sample_rate=48000, n_fft=4096, win_length=2048, hop_length=480,
                              n_mels=128, n_mfcc=20, fmax=24000.0),
    "48k-8192": FeatureConfig(sample_rate=48000, n_fft=8192, win_length=4096, hop_length=960,
                              n_mels=64, fmax=24000.0),
    "16k-400": FeatureConfig(n_fft=400, win_length=400),
}


@pytest.mark.parametrize("name", sorted(OTHER_CONFIGS))
def test_mfcc_kernels_compile_for_other_feature_configs(name: str) -> None:
    defines = nvrtc.feature_defines(OTHER_CONFIGS[name])
    cubin = nvrtc.compile_source("mfcc.cu", defines, 90, use_cache=False)
    for kernel in KERNELS["mfcc.cu"]:
        assert kernel.encode() in cubin


def test_compile_errors_fail_with_the_nvrtc_log() -> None:
    broken = 'extern "C" __global__ void k(float* x) { x[0] = undefined_name; }'
    with pytest.raises(RuntimeError, match="undefined_name"):
        nvrtc.compile_text(broken, "broken.cu", {}, 80, use_cache=False)


def test_mfcc_source_refuses_to_compile_without_the_feature_defines() -> None:
    with pytest.raises(RuntimeError, match="feature_defines"):
        nvrtc.compile_source("mfcc.cu", {}, 80, use_cache=False)


def test_cubins_are_cached_on_disk_per_arch_and_defines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GESTURERT_CACHE", str(tmp_path))
    first = nvrtc.compile_source("pose_image.cu", {}, 86)
    files = list((tmp_path / "kernels").glob("pose_image.sm86.*.cubin"))
    assert len(files) == 1
    files[0].write_bytes(first + b"marker")  # a cache hit returns the file as stored
    assert nvrtc.compile_source("pose_image.cu", {}, 86) == first + b"marker"
    nvrtc.compile_source("pose_image.cu", {"GRT_UNUSED": 1}, 86)
    assert len(list((tmp_path / "kernels").glob("pose_image.sm86.*.cubin"))) == 2


def test_feature_numbers_reach_the_kernels_only_as_defines() -> None:
    config = FeatureConfig()
    values = {config.sample_rate, config.n_fft, config.win_length, config.hop_length,
              config.n_freqs, config.feature_dim, config.n_mels, config.n_mfcc}
    for source in SOURCES:
        text = (nvrtc.SOURCE_DIR / source).read_text()
        code = re.sub(r"//[^\n]*", "", text)  # comments may name numbers
        literals = {int(m) for m in re.findall(r"(?<![\w.])(\d+)(?![\w.])", code)}
        assert not literals & values, f"{source} spells FeatureConfig numbers {literals & values}"
    flags = nvrtc.define_flags(nvrtc.feature_defines(config))
    assert "-DGRT_N_FFT=512" in flags and "-DGRT_AMIN=1e-10f" in flags


def test_define_flags_reject_non_numbers() -> None:
    with pytest.raises(TypeError, match="GRT_X"):
        nvrtc.define_flags({"GRT_X": "512"})  # type: ignore[dict-item]
