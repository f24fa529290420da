"""benchmarks/gpu_pipeline.py: CUDA MFCC -> torch generator -> CUDA pose imaging -> torch
PoseSyncNet -> PSD, against the CPU reference (numpy MFCC + ONNX Runtime).

On a GPU (marker ``gpu``; skipped with the reason otherwise) the real pipeline runs; on
the CPU the same code runs with the kernels on the CPU emulator (tests/cuda_emu) and the
models on torch's CPU device, which checks everything but the CUDA runtime itself:
streaming and trailing silence, buffer hand-over, clip cutting, the offset sweep.
Tolerances: :data:`benchmarks.gpu_pipeline.TOLERANCES` (max abs) and the bundle's fp32
PSD tolerance (relative), the same best offset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cuda_emu.emulator import EmulatedRunner, build_emulator
from test_torch_runner import Exported, exported_once

from benchmarks.gpu_pipeline import (
    TOLERANCES,
    PipelineResult,
    compare,
    run_cpu_reference,
    run_gpu_pipeline,
)
from sdk.bundle import load_bundle
from sdk.cuda import nvrtc
from sdk.features import DEFAULT_FEATURES

CLIP_SAMPLES = 64000  # 4 s: 60 pose frames, 52 PoseSyncNet clips (a +-15 sweep needs 31)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return exported_once(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(exported: Exported, speech_16k: np.ndarray) -> PipelineResult:
    return run_cpu_reference(exported.bundle, speech_16k[:CLIP_SAMPLES])


def assert_matches_reference(got: PipelineResult, want: PipelineResult, bundle: Path) -> None:
    diffs = compare(got, want)
    print({name: diffs[name] for name in (*TOLERANCES, "psd_relative")})
    for name, tolerance in TOLERANCES.items():
        assert diffs[name] <= tolerance, (name, diffs[name])
    psd_reference = load_bundle(bundle).manifest.psd_reference
    assert psd_reference is not None  # export always measures it
    assert diffs["psd_relative"] <= psd_reference.tolerance_fp32
    assert diffs["best_offset_gpu"] == diffs["best_offset_cpu"]


def test_cpu_reference_is_how_export_measured_the_psd(exported: Exported) -> None:
    from export.bundle_writer import SPEECH_SAMPLE
    from sdk.audio import load_audio

    audio = load_audio(SPEECH_SAMPLE, DEFAULT_FEATURES.sample_rate)
    reference = load_bundle(exported.bundle).manifest.psd_reference
    assert reference is not None
    sweep = run_cpu_reference(exported.bundle, audio).sweep
    assert sweep.psd == pytest.approx(reference.value, rel=1e-6)
    assert sweep.best_offset == reference.offset


@pytest.mark.slow
@pytest.mark.parametrize(("chunk_samples", "chunk_frames"), [(320, None), (1600, 4)])
def test_pipeline_with_emulated_kernels_matches_the_reference(
        exported: Exported, reference: PipelineResult, speech_16k: np.ndarray,
        tmp_path: Path, chunk_samples: int, chunk_frames: int | None) -> None:
    library = build_emulator(nvrtc.feature_defines(DEFAULT_FEATURES), tmp_path)
    got = run_gpu_pipeline(exported.bundle, exported.generator_ckpt, exported.posesync_ckpt,
                           speech_16k[:CLIP_SAMPLES], chunk_samples=chunk_samples,
                           chunk_frames=chunk_frames, device="cpu",
                           kernel_runner=EmulatedRunner(library))
    assert_matches_reference(got, reference, exported.bundle)
    assert set(got.seconds) == {"mfcc_and_generator", "pose_imaging", "posesync", "wall"}


def test_a_cpu_device_without_a_kernel_runner_is_refused(exported: Exported) -> None:
    with pytest.raises(ValueError, match="needs a CUDA device"):
        run_gpu_pipeline(exported.bundle, exported.generator_ckpt, exported.posesync_ckpt,
                         np.zeros(16000, np.float32), device="cpu")


@pytest.mark.gpu
@pytest.mark.parametrize(("chunk_samples", "chunk_frames"), [(320, None), (16000, 8)])
def test_gpu_pipeline_matches_the_cpu_reference(
        exported: Exported, reference: PipelineResult, speech_16k: np.ndarray,
        chunk_samples: int, chunk_frames: int | None) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} has no CUDA (a CPU-only build)")
    got = run_gpu_pipeline(exported.bundle, exported.generator_ckpt, exported.posesync_ckpt,
                           speech_16k[:CLIP_SAMPLES], chunk_samples=chunk_samples,
                           chunk_frames=chunk_frames)
    print("stage seconds:", got.seconds)
    assert_matches_reference(got, reference, exported.bundle)


@pytest.mark.gpu
def test_the_torch_device_stepper_on_the_gpu_gives_the_cpu_frames(
        exported: Exported, speech_16k: np.ndarray) -> None:
    """export.torch_device_stepper on a real GPU: the CUDA MFCC writes the features into the
    torch step's CUDA tensor; ragged chunks give the frames of ONNX Runtime on the CPU (the
    emulator twin: tests/test_device_front_end_checks.py). The runner's default is fp32 with
    TF32 off (the first H200 run measured torch's default TF32 at 1.25e-2 px, beyond the
    1e-3 px parity); ``allow_tf32`` gives torch's defaults back, which must move the frames
    on a GPU with TF32 (sm80+)."""
    import itertools

    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} has no CUDA (a CPU-only build)")
    from helpers_device_path import assert_same_frames

    from export.torch_device_stepper import TorchDeviceStepper
    from export.torch_runner import TorchGeneratorRunner
    from sdk.streaming import StreamingGenerator

    audio = np.ascontiguousarray(speech_16k[:CLIP_SAMPLES])
    chunks = [1, 700, 3000]
    with StreamingGenerator(exported.bundle, backend="onnxruntime-cpu") as cpu:
        want = cpu.generate(audio, 16000, seed=2)
    runner = TorchGeneratorRunner(exported.generator_ckpt, bundle=exported.bundle,
                                  device="cuda")
    assert torch.backends.cudnn.allow_tf32  # torch's default, which the runner overrides
    with StreamingGenerator(exported.bundle, backend=TorchDeviceStepper(runner)) as gpu:
        assert gpu.device_front_end is not None and gpu._stepper.launch_bound
        got = gpu.generate(audio, 16000, seed=2, chunk_samples=itertools.cycle(chunks))
        runner.allow_tf32 = True
        tf32 = gpu.generate(audio, 16000, seed=2, chunk_samples=itertools.cycle(chunks))
    exact, fast = (float(np.abs(x.keypoints - want.keypoints).max()) for x in (got, tf32))
    print(f"{len(got)} frames; max keypoint difference to the CPU: runner default (TF32 "
          f"off) {exact:.3g} px, allow_tf32 {fast:.3g} px")
    assert_same_frames(got, want)
    if torch.cuda.get_device_capability() >= (8, 0):
        assert fast > exact, "allow_tf32 changed nothing on a GPU with TF32"
