"""benchmarks/gpu_torch_runtime.py: the runtime on a GPU without TensorRT (CUDA MFCC into
the torch-CUDA step). Here the same code runs with the kernels on the CPU emulator and the
model on torch's CPU device, which checks everything but CUDA itself: the benchmark bundle,
the step timing over batches, live streams through StreamingGenerator, parity, the report.
On a GPU, ``make gpu-check`` runs it for real (its own step)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cuda_emu.emulator import EmulatedRunner, build_emulator

from benchmarks import gpu_torch_runtime
from sdk.cuda import nvrtc
from sdk.features import DEFAULT_FEATURES


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module: the benchmark bundle in it is exported once (~17 s)."""
    return tmp_path_factory.mktemp("gpu_torch_runtime")


@pytest.fixture(scope="module")
def result(workdir: Path) -> dict[str, Any]:
    tmp = workdir
    library = build_emulator(nvrtc.feature_defines(DEFAULT_FEATURES), tmp)
    return gpu_torch_runtime.run(tmp / "bundle", step_batches=(1, 4), tick_streams=(1, 3),
                                 batch_streams=(2, 5),
                                 device="cpu", kernel_runner=EmulatedRunner(library), ticks=5)


def test_the_emulated_run_gives_the_cpu_frames_and_a_report(result: dict[str, Any],
                                                            tmp_path: Path) -> None:
    check = result["parity"]
    assert check["same_indices"] and check["frames"] > 20
    assert check["max_keypoint_px"] <= 1e-3 and check["max_saliency"] <= 1e-4
    assert [s["batch"] for s in result["step"]] == [1, 4]
    assert all(s["step_p50_ms"] > 0 for s in result["step"])
    assert [t["streams"] for t in result["ticks"]] == [1, 3]
    assert [t["streams"] for t in result["batch_ticks"]] == [2, 5]
    # every stream got frames (5 ticks of 1/15 s, less the lookahead)
    assert all(t["frames_per_stream"] > 0 for t in result["batch_ticks"])
    assert result["step_backend"] == "torch-cpu" and result["tf32"] is False
    assert "untrained" in result["bundle"]
    text = gpu_torch_runtime.markdown(result)
    assert "| 4 |" in text and "max keypoint difference" in text and "TF32 off" in text
    assert "| 5 |" in text and "StreamBatch" in text
    json.dumps(result)  # the report is plain JSON


def test_parity_catches_a_step_that_is_not_the_bundle_s_model(workdir: Path) -> None:
    """The parity measure can fail: the torch step on other weights (seed 1) than the
    exported ones (seed 0) is far from ONNX Runtime's frames."""
    from benchmarks.bundle import default_generator, make_benchmark_bundle
    from benchmarks.gpu_runtime import parity
    from export.torch_runner import TorchGeneratorRunner, TorchGeneratorStepper
    from sdk.audio import load_audio
    from sdk.streaming import StreamingGenerator

    bundle = make_benchmark_bundle(workdir / "bundle")  # the one run() exported, if it ran
    other = TorchGeneratorRunner(model=default_generator(seed=1), bundle=bundle, device="cpu")
    audio = load_audio(Path(gpu_torch_runtime.__file__).resolve().parents[1]
                       / "sdk/data/samples/speech_en.flac", 16000)[:16000].astype(np.float32)
    with StreamingGenerator(bundle, backend=TorchGeneratorStepper(other)) as gen:
        check = parity(gen, bundle, audio, 16000)
    assert check["same_indices"] and check["max_keypoint_px"] > 1e-2
