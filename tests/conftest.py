"""Shared fixtures and the gpu / tensorrt skips (always with a reason)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SPEECH_SAMPLE = REPO / "sdk" / "data" / "samples" / "speech_en.flac"


def _gpu_reason() -> str | None:
    """None when a CUDA GPU is usable, else why not."""
    if importlib.util.find_spec("cuda") is None:
        return "cuda-python is not installed"
    try:
        from cuda.bindings import driver
    except ImportError as exc:
        return f"cuda-python driver bindings not importable: {exc}"
    try:
        (err,) = driver.cuInit(0)
    except Exception as exc:  # the driver library itself is missing
        return f"no CUDA driver: {exc}"
    if err != driver.CUresult.CUDA_SUCCESS:
        return f"no CUDA GPU (cuInit returned {err.name})"
    return None


def _tensorrt_reason() -> str | None:
    gpu = _gpu_reason()
    if gpu is not None:
        return gpu
    try:
        import tensorrt
    except Exception as exc:
        return f"TensorRT libraries are not installed ({exc})"
    if not hasattr(tensorrt, "Runtime"):  # tensorrt-stubs alone makes `import tensorrt` work
        return "only the tensorrt type stubs are installed, not TensorRT itself"
    return None


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread: tiny models on a 2-core CI machine run ~4x faster without
    oversubscription (ONNX Runtime sessions pick their own thread counts)."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_reason = tensorrt_reason = None
    for item in items:
        if "gpu" in item.keywords:
            gpu_reason = gpu_reason or _gpu_reason() or ""
            if gpu_reason:
                item.add_marker(pytest.mark.skip(reason=f"needs a GPU: {gpu_reason}"))
        if "tensorrt" in item.keywords:
            tensorrt_reason = tensorrt_reason or _tensorrt_reason() or ""
            if tensorrt_reason:
                item.add_marker(pytest.mark.skip(reason=f"needs TensorRT: {tensorrt_reason}"))


@pytest.fixture(scope="session")
def speech_16k() -> np.ndarray:
    """The shipped English speech sample: float32 (N,) at 16 kHz, ~15.7 s."""
    import soundfile as sf

    audio, rate = sf.read(SPEECH_SAMPLE, dtype="float32")
    assert rate == 16000  # shipped file, not user input
    return audio


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
