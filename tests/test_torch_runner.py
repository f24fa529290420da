"""The PyTorch runners (export/torch_runner.py) on the CPU against ONNX Runtime.

A tiny generator and PoseSyncNet are saved as checkpoints and exported to a bundle with
``export_bundle``; the torch runners loaded from those checkpoints must give ONNX
Runtime's outputs (same names, shapes, dtypes) within 1e-5, and StreamingGenerator driven
by :class:`TorchGeneratorStepper` must give the ONNX Runtime backend's frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_bundle import TINY_GENERATOR, TINY_POSESYNC, tiny_normalization

from export.bundle_writer import export_bundle, speech_inputs
from export.torch_runner import (
    TorchGeneratorRunner,
    TorchGeneratorStepper,
    TorchPoseSyncRunner,
)
from sdk.bundle import load_bundle
from sdk.features import DEFAULT_FEATURES
from sdk.noise import frame_noise
from sdk.runners.base import (
    FEATURES,
    GENERATOR_OUTPUTS,
    MFCC_CLIPS,
    NOISE,
    POSE_IMAGES,
    POSESYNC_OUTPUTS,
    STATE,
    STATE_OUT,
    RunnerError,
    RunnerInputError,
)
from sdk.runners.onnxrt import OnnxRuntimeRunner
from sdk.runners.select import BackendConfig
from sdk.streaming import StreamingGenerator
from train.checkpoint import save_checkpoint
from train.models.generator import SalientPostureGenerator
from train.models.posesync import PoseSyncNet

TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class Exported:
    bundle: Path
    generator_ckpt: Path
    posesync_ckpt: Path


def export_tiny_checkpoints(root: Path) -> Exported:
    """Tiny checkpoints (seeded random weights, speech feature statistics) and their
    bundle under ``root`` (~10 s; also used by tests/test_gpu_pipeline.py)."""
    torch.manual_seed(3)
    generator = SalientPostureGenerator(TINY_GENERATOR)
    _, speech, clips = speech_inputs(DEFAULT_FEATURES, 0)
    generator.set_feature_normalization(speech.mean(0), speech.std(0) + 1e-3)
    posesync = PoseSyncNet(TINY_POSESYNC, DEFAULT_FEATURES)
    posesync.set_mfcc_stats(clips.mean((0, 2)), clips.std((0, 2)) + 1e-3)
    gen_ckpt = save_checkpoint(root / "generator.pt", kind="generator",
                               config={"model": TINY_GENERATOR.to_dict()}, model=generator,
                               features=DEFAULT_FEATURES, normalization=tiny_normalization())
    sync_config = {"model": {**dataclasses.asdict(TINY_POSESYNC),
                             "imaging": TINY_POSESYNC.imaging.to_dict()}}
    sync_ckpt = save_checkpoint(root / "posesync.pt", kind="posesync", config=sync_config,
                                model=posesync, features=DEFAULT_FEATURES)
    export_bundle(gen_ckpt, sync_ckpt, root / "bundle", progress=False)
    return Exported(root / "bundle", gen_ckpt, sync_ckpt)


def exported_once(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The tiny checkpoints and bundle, exported once per test session (shared by every
    module that asks, like helpers_bundle.tiny_bundle)."""
    root = tmp_path_factory.getbasetemp() / "torch_runner_export"
    if (root / "bundle" / "manifest.json").is_file():
        return Exported(root / "bundle", root / "generator.pt", root / "posesync.pt")
    root.mkdir(parents=True, exist_ok=True)
    return export_tiny_checkpoints(root)


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return exported_once(tmp_path_factory)


@pytest.fixture(scope="module")
def ort_generator(exported: Exported) -> Iterator[OnnxRuntimeRunner]:
    bundle = load_bundle(exported.bundle)
    runner = OnnxRuntimeRunner(bundle.path(bundle.manifest.generator.model.file),
                               intra_op_num_threads=1)
    with runner:
        yield runner


def assert_outputs_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=TOLERANCE, err_msg=name)


def test_generator_runner_equals_onnxruntime_over_chained_steps(
        exported: Exported, ort_generator: OnnxRuntimeRunner, rng: np.random.Generator) -> None:
    runner = TorchGeneratorRunner(exported.generator_ckpt, bundle=exported.bundle, device="cpu")
    with runner:
        assert runner.get_input_metadata() == ort_generator.get_input_metadata()
        batch, size = 3, runner.state_size
        _, speech, _ = speech_inputs(DEFAULT_FEATURES, 0)
        state_torch = state_ort = np.zeros((batch, size), np.float32)
        first = 0
        for frames in (1, 4, 7):  # ragged steps: the state carries the causal context
            features = np.stack([speech[first + 5 * b:first + 5 * b + frames]
                                 for b in range(batch)]).astype(np.float32)
            noise = np.stack([frame_noise(b, first, frames, TINY_GENERATOR.noise_dim)
                              for b in range(batch)])
            got = runner.infer({FEATURES: features, NOISE: noise, STATE: state_torch})
            want = ort_generator.infer({FEATURES: features, NOISE: noise, STATE: state_ort})
            assert_outputs_close(got, want)
            assert set(got) == set(GENERATOR_OUTPUTS)
            state_torch, state_ort = got[STATE_OUT], want[STATE_OUT]
            first += frames
        assert np.abs(state_torch).max() > 0  # the state really evolved
        with pytest.raises(RunnerInputError, match="float32"):
            runner.infer({FEATURES: features.astype(np.float64), NOISE: noise,
                          STATE: state_torch})
        bad_state = rng.standard_normal((batch, size + 1)).astype(np.float32)
        with pytest.raises(RunnerInputError, match="state"):
            runner.infer({FEATURES: features, NOISE: noise, STATE: bad_state})


def test_posesync_runner_equals_onnxruntime(exported: Exported,
                                            rng: np.random.Generator) -> None:
    bundle = load_bundle(exported.bundle)
    assert bundle.manifest.posesync is not None
    ort = OnnxRuntimeRunner(bundle.path(bundle.manifest.posesync.model.file),
                            intra_op_num_threads=1)
    torch_runner = TorchPoseSyncRunner(exported.posesync_ckpt, bundle=bundle, device="cpu")
    with ort, torch_runner:
        assert torch_runner.get_input_metadata() == ort.get_input_metadata()
        h, w = bundle.manifest.imaging["height"], bundle.manifest.imaging["width"]
        feed = {MFCC_CLIPS: (rng.standard_normal((5, 13, 60)) * 20).astype(np.float32),
                POSE_IMAGES: rng.uniform(0, 1, (5, 9, h, w)).astype(np.float32)}
        got, want = torch_runner.infer(feed), ort.infer(feed)
        assert_outputs_close(got, want)
        assert set(got) == set(POSESYNC_OUTPUTS)
        audio_emb, pose_emb = torch_runner.embed(feed[MFCC_CLIPS], feed[POSE_IMAGES])
        np.testing.assert_array_equal(audio_emb, got["audio_emb"])
        np.testing.assert_array_equal(pose_emb, got["pose_emb"])


def test_the_model_runs_with_tf32_off_unless_allowed(
        exported: Exported, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch turns cuDNN TF32 on by default; a runner turns it off around its forward (an
    H200 measured 1.25e-2 px off ONNX Runtime with it on, 1.2e-4 px off) and restores the
    process-wide flags; ``allow_tf32`` leaves them as the caller set them."""
    bundle = load_bundle(exported.bundle)
    runner = TorchPoseSyncRunner(exported.posesync_ckpt, bundle=bundle, device="cpu")
    seen: list[tuple[bool, bool]] = []
    forward = runner._forward

    def spy(inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return forward(inputs)

    monkeypatch.setattr(runner, "_forward", spy)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    h, w = bundle.manifest.imaging["height"], bundle.manifest.imaging["width"]
    feed = {MFCC_CLIPS: (rng.standard_normal((2, 13, 60)) * 20).astype(np.float32),
            POSE_IMAGES: rng.uniform(0, 1, (2, 9, h, w)).astype(np.float32)}
    try:
        with runner:
            runner.infer(feed)
            assert seen.pop() == (False, False)
            assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
            runner.allow_tf32 = True
            runner.infer(feed)
            assert seen.pop() == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_streaming_generator_with_the_torch_stepper_gives_the_onnxruntime_frames(
        exported: Exported, speech_16k: np.ndarray) -> None:
    audio = speech_16k[:48000]  # 3 s: 45 frames over two streams at different positions
    ort_config = BackendConfig("onnxruntime-cpu", intra_op_num_threads=1)
    with StreamingGenerator(exported.bundle, backend=ort_config) as gen:
        want = [gen.generate(audio, 16000, seed=s) for s in (0, 7)]
    stepper = TorchGeneratorStepper(
        TorchGeneratorRunner(exported.generator_ckpt, bundle=exported.bundle, device="cpu"))
    with StreamingGenerator(exported.bundle, backend=stepper) as gen:
        assert gen.backend_name == "torch-cpu"
        a, b = gen.create_stream(0), gen.create_stream(7)
        a.accept_waveform(audio, 16000)
        b.accept_waveform(audio[:16000], 16000)  # b lags: batched steps mix positions
        while gen.is_ready(a) and gen.is_ready(b):
            gen.step([a, b])
        b.accept_waveform(audio[16000:], 16000)
        for stream in (a, b):
            stream.input_finished()
        while ready := [s for s in (a, b) if gen.is_ready(s)]:
            gen.step(ready)
        got = [a.pop_frames(), b.pop_frames()]
        norm = gen.manifest.normalization
    assert not stepper.runner.is_active  # closed with the generator
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.index, w.index)
        canon = np.abs(norm.pixels_to_canonical(g.keypoints) - norm.pixels_to_canonical(
            w.keypoints)).max()
        assert canon <= TOLERANCE
        np.testing.assert_allclose(g.saliency, w.saliency, rtol=0, atol=TOLERANCE)


def test_stepper_keeps_state_per_slot_and_resets_it(exported: Exported) -> None:
    stepper = TorchGeneratorStepper(TorchGeneratorRunner(exported.generator_ckpt, device="cpu"))
    try:
        assert not stepper.launch_bound  # a CPU step: batching callers keep to STEP_BATCH
        a, b = stepper.allocate_slot(), stepper.allocate_slot()
        features = np.ones((1, 2, DEFAULT_FEATURES.feature_dim), np.float32)
        noise = np.zeros((1, 2, TINY_GENERATOR.noise_dim), np.float32)
        stepper.step(features, noise, [a])
        assert np.abs(stepper.read_state(a)).max() > 0
        assert np.abs(stepper.read_state(b)).max() == 0
        stepper.reset_slot(a)
        assert np.abs(stepper.read_state(a)).max() == 0
        with pytest.raises(ValueError, match="same slot"):
            stepper.step(np.concatenate([features] * 2), np.concatenate([noise] * 2), [b, b])
    finally:
        stepper.close()


def test_a_bundle_alone_names_its_checkpoints_but_holds_no_path_to_them(
        exported: Exported) -> None:
    for runner in (TorchGeneratorRunner, TorchPoseSyncRunner):
        with pytest.raises(ValueError, match=r"\.pt', sha256 [0-9a-f]{12}.*checkpoint=PATH"):
            runner(bundle=exported.bundle, device="cpu")
    with pytest.raises(ValueError, match="checkpoint=PATH"):
        TorchGeneratorRunner(device="cpu")


def test_a_checkpoint_that_does_not_fit_the_bundle_is_refused(exported: Exported) -> None:
    other = SalientPostureGenerator(dataclasses.replace(TINY_GENERATOR, noise_dim=5))
    with pytest.raises(RunnerError, match="noise_dim: checkpoint 5, bundle 3"):
        TorchGeneratorRunner(model=other, bundle=exported.bundle, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_says_so_at_activation(exported: Exported) -> None:
    runner = TorchGeneratorRunner(exported.generator_ckpt, device="cuda")
    with pytest.raises(RunnerError, match="no CUDA GPU"):
        runner.activate()
