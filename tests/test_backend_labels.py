"""Backend names tell the truth: when ONNX Runtime silently drops a requested GPU provider
(as it does when a CUDA/cuDNN library is missing), the runner refuses naming it, or, with
fallback allowed, the backend is labelled onnxruntime-cpu and says why.

ONNX Runtime here is a CPU build, so the dropping session is faked: a real CPU session
that ignores the GPU providers it was asked for, exactly what ORT does when they fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnxruntime
import pytest
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

from sdk import StreamingGenerator
from sdk.runners import select
from sdk.runners.onnxrt import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    OnnxRuntimeRunner,
    ProviderDroppedError,
    provider_load_error,
)
from sdk.runners.select import BackendChoice, BackendConfig, BackendError
from sdk.streaming import GeneratorConfig

REAL_SESSION = onnxruntime.InferenceSession


def _dropping_session(*args: Any, providers: Any = None, **kwargs: Any) -> Any:
    """ORT's behaviour with a GPU provider that fails to load: the session runs on the CPU."""
    return REAL_SESSION(*args, providers=[CPU_PROVIDER], **kwargs)


@pytest.fixture()
def gpu_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    if CUDA_PROVIDER in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a real CUDA provider")
    monkeypatch.setattr(onnxruntime, "InferenceSession", _dropping_session)
    gpu = BackendChoice("onnxruntime-gpu", "pretend the CUDA provider is available",
                        providers=(CUDA_PROVIDER, CPU_PROVIDER))
    monkeypatch.setattr(select, "choose_backend", lambda bundle, config: gpu)


def test_the_runner_refuses_a_session_without_the_provider_asked_for(
        tiny_bundle: Path, gpu_dropped: None) -> None:  # noqa: F811
    runner = OnnxRuntimeRunner(tiny_bundle / "generator.onnx",
                               providers=(CUDA_PROVIDER, CPU_PROVIDER))
    with pytest.raises(ProviderDroppedError, match=CUDA_PROVIDER) as info:
        runner.activate()
    assert "libonnxruntime_providers_cuda.so" in str(info.value)  # why: the library
    assert not runner.is_active


def test_the_runner_keeps_the_session_when_fallback_is_allowed_and_says_why(
        tiny_bundle: Path, gpu_dropped: None) -> None:  # noqa: F811
    runner = OnnxRuntimeRunner(tiny_bundle / "generator.onnx",
                               providers=(CUDA_PROVIDER, CPU_PROVIDER),
                               allow_provider_fallback=True)
    with runner:
        assert runner.providers == [CPU_PROVIDER]
        assert set(runner.dropped_providers) == {CUDA_PROVIDER}


def test_a_generator_asked_for_the_gpu_raises_backend_error_naming_the_provider(
        tiny_bundle: Path, gpu_dropped: None) -> None:  # noqa: F811
    with pytest.raises(BackendError, match=f"onnxruntime-gpu.*{CUDA_PROVIDER}"):
        StreamingGenerator(GeneratorConfig(tiny_bundle, BackendConfig("onnxruntime-gpu")))


def test_with_fallback_the_label_says_onnxruntime_cpu_and_why(
        tiny_bundle: Path, gpu_dropped: None) -> None:  # noqa: F811
    config = BackendConfig("onnxruntime-gpu", fallback_to_onnxruntime=True)
    with StreamingGenerator(GeneratorConfig(tiny_bundle, config)) as generator:
        assert generator.backend_name == "onnxruntime-cpu"
        assert "dropped" in generator.backend.reason
        assert CUDA_PROVIDER in generator.backend.rejected["onnxruntime-gpu"]


def test_a_cpu_session_is_not_a_dropped_provider(tiny_bundle: Path) -> None:  # noqa: F811
    with OnnxRuntimeRunner(tiny_bundle / "generator.onnx") as runner:
        assert runner.dropped_providers == {}


def test_the_load_error_names_what_is_missing() -> None:
    if CUDA_PROVIDER in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a real CUDA provider")
    assert "has no libonnxruntime_providers_cuda.so" in provider_load_error(CUDA_PROVIDER)
