"""``gesturert validate --generator``: the PyTorch comparison (export extra) passes on the
test bundle and fails (named) on a perturbed one; the command's input errors; the shipped
bundle. The golden-reference validation has its own tests (test_validate_golden.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile
import torch
from helpers_bundle import TINY_GENERATOR, tiny_bundle, tiny_normalization  # noqa: F401
from onnx import numpy_helper

from export.bundle_writer import SPEECH_SAMPLE, speech_inputs
from sdk.audio import load_audio
from sdk.bundle import load_bundle, write_bundle_manifest
from sdk.cli import main
from sdk.demo import DEFAULT_BUNDLE
from sdk.features import DEFAULT_FEATURES
from train.checkpoint import save_checkpoint
from train.models.generator import SalientPostureGenerator

SHORT_SECONDS = 3.0  # 45 frames: enough clips for a ±15-frame offset sweep


@pytest.fixture(scope="module")
def generator_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle's generator as a checkpoint: rebuilt as helpers_bundle builds it
    (seed 0, feature statistics of the speech sample), so validate has its PyTorch model."""
    torch.manual_seed(0)
    generator = SalientPostureGenerator(TINY_GENERATOR)
    _, speech, _ = speech_inputs(DEFAULT_FEATURES, 0)
    generator.set_feature_normalization(speech.mean(0), speech.std(0) + 1e-3)
    path = tmp_path_factory.mktemp("ckpt") / "generator.pt"
    return save_checkpoint(path, kind="generator", config={"model": TINY_GENERATOR.to_dict()},
                           model=generator.eval(), features=DEFAULT_FEATURES,
                           normalization=tiny_normalization(0))


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first seconds of the speech sample, at 22.05 kHz stereo (the sdk resamples)."""
    audio = load_audio(SPEECH_SAMPLE, 22050)[: int(SHORT_SECONDS * 22050)]
    path = tmp_path_factory.mktemp("audio") / "short.wav"
    soundfile.write(path, np.stack([audio, 0.5 * audio], axis=1), 22050)
    return path


def _copy_bundle(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _scale_largest_initializer(bundle: Path, factor: float) -> str:
    """Scale the generator's largest float weight; rewrite the checksums so the bundle loads."""
    model = onnx.load(bundle / "generator.onnx")
    weights = [t for t in model.graph.initializer
               if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) > 0]
    largest = max(weights, key=lambda t: int(np.prod(t.dims)))
    scaled = numpy_helper.to_array(largest) * np.float32(factor)
    largest.CopyFrom(numpy_helper.from_array(scaled, largest.name))
    onnx.save(model, bundle / "generator.onnx")
    write_bundle_manifest(bundle, load_bundle(bundle, verify=False).manifest)
    return largest.name


def test_validate_passes_on_the_test_bundle_against_pytorch(
        tiny_bundle: Path, generator_checkpoint: Path, short_speech: Path,  # noqa: F811
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(tiny_bundle), "--audio", str(short_speech), "--generator",
                 str(generator_checkpoint), "--out", str(tmp_path), "--seed", "3"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert json.loads((tmp_path / "validate.json").read_text())["passed"]  # golden reference
    report = json.loads((tmp_path / "pytorch" / "validate.json").read_text())
    assert report["passed"] and report["failures"] == []
    rows = report["rows"]
    # the sample (manifest reference) and the short file; torch + onnxruntime-cpu; two modes
    assert {(r["audio"], r["backend"], r["mode"].split("/")[0]) for r in rows} == {
        (a, b, m) for a in ("speech_en.flac", "short.wav")
        for b in ("torch", "onnxruntime-cpu") for m in ("offline", "streaming")}
    assert len(rows) == 8
    steps = {r["mode"] for r in rows if r["backend"] == "onnxruntime-cpu"} - {"offline"}
    assert len(steps) == 1 and 2 <= int(steps.pop().split("/")[1]) <= 8  # frames per step
    assert [r["is_reference"] for r in rows].count(True) == 2  # torch offline, per audio
    assert {(r["audio"], r["seed"]) for r in rows} == {("speech_en.flac", 0), ("short.wav", 3)}
    for row in rows:
        if not row["is_reference"]:
            assert row["keypoints_max_abs"] <= 1e-4 and row["saliency_max_abs"] <= 1e-4
            assert row["saliency_agreement"] == 1.0
        assert row["psd_rel_diff"] <= 0.005
    manifest = load_bundle(tiny_bundle).manifest
    assert manifest.psd_reference is not None
    sample = [r for r in rows if r["audio"] == "speech_en.flac"]
    assert all(r["psd_reference"] == manifest.psd_reference.value for r in sample)
    assert "skipped tensorrt" in printed.out or "tensorrt" not in report["skipped"]
    assert "| torch | streaming/random |" in (tmp_path / "pytorch" / "validate.md").read_text()


def test_validate_fails_naming_a_perturbed_generator(
        tiny_bundle: Path, generator_checkpoint: Path, short_speech: Path,  # noqa: F811
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy_bundle(tiny_bundle, tmp_path / "perturbed")
    _scale_largest_initializer(bundle, 1.1)
    code = main(["validate", str(bundle), "--audio", str(short_speech), "--generator",
                 str(generator_checkpoint), "--backends", "onnxruntime-cpu",
                 "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 1
    assert "generator keypoints_max_px" in err  # the golden reference caught it
    assert "onnxruntime-cpu offline on short.wav: keypoints max abs" in err  # and PyTorch
    assert re.search(r"onnxruntime-cpu streaming/\d on speech_en.flac: keypoints max abs", err)
    report = json.loads((tmp_path / "report" / "pytorch" / "validate.json").read_text())
    assert not report["passed"]
    failed = {(r["backend"], r["audio"]) for r in report["rows"] if r["failures"]}
    assert failed == {("onnxruntime-cpu", "short.wav"), ("onnxruntime-cpu", "speech_en.flac")}


def test_validate_refuses_audio_without_a_pytorch_reference(
        tiny_bundle: Path, short_speech: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert main(["validate", str(tiny_bundle), "--audio", str(short_speech)]) == 2
    assert "--audio needs --generator" in capsys.readouterr().err


def test_validate_rejects_unknown_backends(tiny_bundle: Path,  # noqa: F811
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tiny_bundle), "--backends", "onnxruntime-cpu,cuda"]) == 2
    assert "unknown backend(s) ['cuda']" in capsys.readouterr().err


def test_validate_reports_a_missing_bundle(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 2
    assert "no such bundle" in capsys.readouterr().err


@pytest.mark.skipif(not (DEFAULT_BUNDLE / "manifest.json").is_file(),
                    reason="the shipped default bundle (sdk/data/default_bundle) is not here")
def test_validate_passes_on_the_shipped_default_bundle(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(DEFAULT_BUNDLE), "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "validate.json").read_text())
    assert report["passed"] and report["min_margin"]["fp32"] >= 10
    assert {c["stage"] for c in report["checks"]} == {"mfcc", "generator", "posesync", "psd",
                                                      "step-model"}
