"""gesturert export: tiny checkpoints -> validated bundle, and the errors on the way.

One export of a tiny real generator and PoseSyncNet (module fixture, ~20 s on 2 cores)
backs the bundle-content tests; error cases stop before any ONNX export.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from export import bundle_writer
from export.bundle_writer import (
    SPEECH_SAMPLE,
    ExportError,
    export_bundle,
    load_export_inputs,
    speech_inputs,
    write_bundle,
)
from export.onnx_export import check_onnx, read_model_spec
from export.parity import DEFAULT_TOLERANCE, ParityError
from export.trt_ops import check_bundle
from sdk.audio import load_audio
from sdk.bundle import MANIFEST_NAME, BundleError, load_bundle, sha256_file
from sdk.cli import main as gesturert
from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.golden import GoldenArrays
from sdk.mfcc import MfccMatrices
from sdk.normalization import PoseNormalization
from sdk.pose_image import ImagingConfig
from sdk.skeleton import MODEL_SKELETON
from train.checkpoint import CheckpointError, save_checkpoint
from train.models.generator import GeneratorConfig, SalientPostureGenerator
from train.models.posesync import PoseSyncConfig, PoseSyncNet

REPO = Path(__file__).resolve().parents[1]

TINY_GENERATOR = GeneratorConfig(face_hidden=8, body_hidden=8, embedding_dim=8, pose_hidden=8,
                                 decoder_hidden=8, detector_hidden=4, body_dilations=(1, 2),
                                 lookahead_frames=2, noise_dim=3)
TINY_POSESYNC = PoseSyncConfig(imaging=ImagingConfig(height=16, width=16), audio_channels=(4, 4),
                               pose_channels=(4, 4), hidden_dim=8, embedding_dim=8)


def _normalization() -> PoseNormalization:
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 0.5, (MODEL_SKELETON.num_joints, 2)).astype(np.float32)
    std = rng.uniform(0.1, 0.4, (MODEL_SKELETON.num_joints, 2)).astype(np.float32)
    mean[0], std[0] = 0.0, 1.0
    return PoseNormalization((640.0, 300.0), 150.0, mean, std, (1280, 720))


def _write_checkpoints(root: Path, posesync_features: FeatureConfig = DEFAULT_FEATURES
                       ) -> tuple[Path, Path]:
    """Tiny generator/posesync checkpoints with the feature statistics of real speech."""
    torch.manual_seed(0)
    generator = SalientPostureGenerator(TINY_GENERATOR)
    _, speech, clips = speech_inputs(DEFAULT_FEATURES, 0)
    generator.set_feature_normalization(speech.mean(0), speech.std(0) + 1e-3)
    posesync = PoseSyncNet(TINY_POSESYNC, posesync_features)
    if posesync_features == DEFAULT_FEATURES:
        posesync.set_mfcc_stats(torch.from_numpy(clips.mean((0, 2))),
                                torch.from_numpy(clips.std((0, 2)) + 1e-3))
    gen_path = save_checkpoint(root / "generator.pt", kind="generator",
                               config={"model": TINY_GENERATOR.to_dict()}, model=generator,
                               features=DEFAULT_FEATURES, normalization=_normalization())
    sync_config = {"model": {**dataclasses.asdict(TINY_POSESYNC),
                             "imaging": TINY_POSESYNC.imaging.to_dict()}}
    sync_path = save_checkpoint(root / "posesync.pt", kind="posesync", config=sync_config,
                                model=posesync, features=posesync_features)
    return gen_path, sync_path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny convolutions run faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _write_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def exported(checkpoints: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "bundle"
    export_bundle(*checkpoints, out, progress=False)
    return out


def test_bundle_has_contract_tensors_and_verified_checksums(exported: Path) -> None:
    bundle = load_bundle(exported)
    gen = bundle.manifest.generator
    shapes = {t.name: t.shape for t in (*gen.model.inputs, *gen.model.outputs)}
    s = gen.state_size
    assert shapes == {
        "features": ("batch", "frames", DEFAULT_FEATURES.feature_dim),
        "noise": ("batch", "frames", TINY_GENERATOR.noise_dim), "state": ("batch", s),
        "poses": ("batch", "frames", MODEL_SKELETON.num_joints, 2),
        "saliency": ("batch", "frames"), "state_out": ("batch", s)}
    assert s == SalientPostureGenerator(TINY_GENERATOR).state_size
    assert gen.lookahead_frames == TINY_GENERATOR.lookahead_frames
    assert (gen.chunk_frames, gen.frames_profile) == (1, (1, 1, bundle_writer.MAX_STEP_FRAMES))
    sync = bundle.manifest.posesync
    assert sync is not None and sync.embedding_dim == TINY_POSESYNC.embedding_dim
    assert [t.shape for t in sync.model.inputs] == [("batch", 13, 60), ("batch", 9, 16, 16)]
    assert set(bundle.manifest.files) == {"generator.onnx", "posesync.onnx",
                                          "mfcc_matrices.npz", "reference/golden.npz",
                                          "reference/audio.flac"}
    assert bundle.manifest.imaging == TINY_POSESYNC.imaging.to_dict()
    assert read_model_spec(exported / "generator.onnx").opset >= 17
    MfccMatrices.load(exported / "mfcc_matrices.npz", bundle.manifest.features)


def test_export_passes_checker_parity_and_tensorrt_op_check(exported: Path) -> None:
    check_onnx(exported / "generator.onnx")
    check_onnx(exported / "posesync.onnx")
    parity = load_bundle(exported).manifest.training["parity"]
    assert set(parity["generator"]["max_abs"]) == {
        "random_step", "speech_step", "speech_streaming", "speech_streaming_vs_one_step"}
    assert set(parity["posesync"]["max_abs"]) == {"random_clips", "speech_clips"}
    for report in parity.values():
        assert report["worst"]["max_abs"] <= DEFAULT_TOLERANCE
    assert all(report.ok for report in check_bundle(exported))
    assert gesturert(["check-trt", str(exported)]) == 0


def test_psd_reference_is_recorded(exported: Path) -> None:
    ref = load_bundle(exported).manifest.psd_reference
    assert ref is not None and 0.0 <= ref.value <= 2.0  # L2-normalised embeddings
    assert abs(ref.offset) <= 15 and "speech_en.flac" in ref.audio


def test_the_bundle_names_its_checkpoints_but_holds_no_machine_path(
        exported: Path, checkpoints: tuple[Path, Path]) -> None:
    text = (exported / "manifest.json").read_text()
    for path in (*checkpoints, exported):
        assert str(path.parent) not in text
    for file in exported.rglob("*"):  # the ONNX files held source paths once (stack traces)
        if file.is_file():
            data = file.read_bytes()
            assert str(REPO).encode() not in data and str(checkpoints[0].parent).encode() \
                not in data, file
    recorded = load_bundle(exported).manifest.training["checkpoints"]
    for kind, path in zip(("generator", "posesync"), checkpoints, strict=True):
        assert recorded[kind]["file"] == path.name
        assert recorded[kind]["sha256"] == sha256_file(path)


def test_the_golden_reference_is_the_checkpoints_run(
        exported: Path, checkpoints: tuple[Path, Path]) -> None:
    """Keypoints through the checkpoint's normalisation; tolerances per precision, derived
    (fp16 never stricter than fp32); the reference audio is the sample, byte for byte."""
    bundle = load_bundle(exported)
    spec = bundle.manifest.reference
    assert spec is not None and spec.provenance["torch"] == torch.__version__
    golden = GoldenArrays.load(bundle)
    pixels = _normalization().canonical_to_pixels(golden.canonical)
    np.testing.assert_array_equal(golden.keypoints_px, pixels)
    assert golden.keypoints_px.shape == (bundle.manifest.features.num_pose_frames(
        load_audio(SPEECH_SAMPLE, 16000).size), MODEL_SKELETON.num_joints, 2)
    assert (exported / spec.audio_file).read_bytes() == SPEECH_SAMPLE.read_bytes()
    assert set(spec.tolerances) == {"fp32", "fp16"} == set(spec.measured)
    for metric, tolerance in spec.tolerances["fp32"].items():
        assert spec.tolerances["fp16"][metric] >= tolerance
        assert tolerance == 0 or tolerance >= 100 * spec.measured["fp32"][metric]


def test_tampered_file_is_named_at_load(exported: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(exported, tmp_path / "bundle")
    data = bytearray((copy / "posesync.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "posesync.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"posesync\.onnx"):
        load_bundle(copy)


def test_lookahead_other_than_trained_is_refused(checkpoints: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="trained lookahead"):
        export_bundle(*checkpoints, tmp_path / "b", lookahead_frames=5, progress=False)
    assert not (tmp_path / "b").exists()


def test_parity_failure_names_tensor_and_leaves_no_manifest(
        exported: Path, checkpoints: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = load_export_inputs(*checkpoints)
    head = inputs.generator.detector[-1]
    assert isinstance(head, torch.nn.Conv1d) and head.bias is not None
    with torch.no_grad():  # the PyTorch model drifts from the (good) ONNX file in saliency only
        head.bias.add_(0.5)

    def copy_exported(model: object, path: Path, opset: int = 18) -> object:
        shutil.copyfile(exported / Path(path).name, path)
        return read_model_spec(path)

    monkeypatch.setattr(bundle_writer, "export_generator", copy_exported)
    monkeypatch.setattr(bundle_writer, "export_posesync", copy_exported)
    with pytest.raises(ParityError, match="'saliency'"):
        write_bundle(inputs, tmp_path / "b", progress=False)
    assert (tmp_path / "b" / "generator.onnx").is_file()
    assert not (tmp_path / "b" / MANIFEST_NAME).exists()


def test_missing_checkpoint_is_a_clear_cli_error(checkpoints: tuple[Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = gesturert(["export", "--generator", str(tmp_path / "nope.pt"), "--posesync",
                      str(checkpoints[1]), "--out", str(tmp_path / "b"), "--quiet"])
    assert code == 1
    assert "nope.pt does not exist" in capsys.readouterr().err


def test_wrong_checkpoint_kind_is_refused(checkpoints: tuple[Path, Path]) -> None:
    generator, posesync = checkpoints
    with pytest.raises(CheckpointError, match="holds a 'posesync' model, expected 'generator'"):
        load_export_inputs(posesync, generator)


def test_feature_config_mismatch_is_refused(tmp_path: Path) -> None:
    other = FeatureConfig(n_mels=32)
    generator, posesync = _write_checkpoints(tmp_path, posesync_features=other)
    with pytest.raises(CheckpointError, match=f"trained with features {other.config_hash()}"):
        load_export_inputs(generator, posesync)


def test_existing_foreign_directory_is_not_overwritten(checkpoints: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not bundle files"):
        export_bundle(*checkpoints, tmp_path, overwrite=True, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
