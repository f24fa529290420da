"""Step models in a bundle: export-step, the runtime's choice, int8 and its tolerances."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from export import step_bundle, step_int8
from export.bundle_writer import ExportError
from export.gemm_step import STEP_FILE, STEP_INT8_FILE
from export.gemm_step_check import generator_from_onnx
from export.trt_ops import check_bundle
from sdk.bundle import load_bundle
from sdk.runners.select import BackendConfig, BackendError
from sdk.step_precision import check_step_model, measure_step_model
from sdk.streaming import GeneratorConfig, StreamingGenerator
from tests.helpers_bundle import TINY_GENERATOR, tiny_bundle  # noqa: F401  (fixture)
from tests.helpers_streaming import run_chunks


@pytest.fixture(scope="module")
def step_bundle_dir(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
                    ) -> Path:
    root = tmp_path_factory.mktemp("step") / "bundle"
    shutil.copytree(tiny_bundle, root)
    generator = generator_from_onnx(root / "generator.onnx", TINY_GENERATOR)
    step_bundle.add_step_models(root, generator)
    return root


def test_export_step_records_both_models_within_tolerance(step_bundle_dir: Path) -> None:
    manifest = load_bundle(step_bundle_dir).manifest  # checksums of the new files verified
    records = {r.precision: r for r in manifest.step_models}
    assert set(records) == {"fp32", "int8"}
    assert records["fp32"].file == STEP_FILE and records["int8"].file == STEP_INT8_FILE
    for record in records.values():
        assert record.measured["frames"] > 100
        assert not check_step_model(record, record.measured)
    assert records["fp32"].measured["keypoints_max_abs"] < 1e-5
    assert records["int8"].measured["keypoints_max_abs"] > 1e-5  # really quantised
    assert records["fp32"].measured["pytorch_parity_max_abs"] <= 1e-5


def test_check_step_model_names_what_is_out_of_tolerance(step_bundle_dir: Path) -> None:
    record = next(r for r in load_bundle(step_bundle_dir).manifest.step_models
                  if r.precision == "int8")
    broken = {**record.measured, "keypoints_max_abs": 1.0, "offset": 5, "offset_reference": 0}
    problems = check_step_model(record, broken)
    assert len(problems) == 2
    assert any("keypoints_max_abs" in p for p in problems)
    assert any("offset" in p for p in problems)


def test_runtime_picks_the_step_model_and_matches_generator_onnx(step_bundle_dir: Path,
                                                                 speech_16k: np.ndarray) -> None:
    audio = speech_16k[:16000 * 3]
    with StreamingGenerator(step_bundle_dir, backend="onnxruntime-cpu") as gen:
        assert gen.backend.step_model is not None and gen.backend.step_model.file == STEP_FILE
        assert STEP_FILE in gen.describe() or STEP_FILE in gen.backend.describe()
        step = gen.generate(audio, 16000, seed=3)
        chunked = run_chunks(gen, [(audio[i:i + 777], 16000) for i in range(0, len(audio), 777)],
                             seed=3)
    config = GeneratorConfig(step_bundle_dir, BackendConfig("onnxruntime-cpu",
                                                            use_step_model=False))
    with StreamingGenerator(config) as gen:
        assert gen.backend.step_model is None
        traced = gen.generate(audio, 16000, seed=3)
    assert len(step) == len(traced) == len(chunked) > 10
    np.testing.assert_allclose(step.keypoints, traced.keypoints, atol=2e-3)  # pixels
    np.testing.assert_allclose(step.saliency, traced.saliency, atol=1e-5)
    np.testing.assert_array_equal(chunked.index, step.index)  # chunk invariance
    np.testing.assert_allclose(chunked.keypoints, step.keypoints, atol=1e-3)


def test_int8_is_chosen_like_an_engine_precision(step_bundle_dir: Path) -> None:
    config = GeneratorConfig(step_bundle_dir, BackendConfig("onnxruntime-cpu", precision="int8"))
    with StreamingGenerator(config) as gen:
        assert gen.backend.step_model is not None
        assert gen.backend.step_model.file == STEP_INT8_FILE
    with pytest.raises(BackendError, match="one frame per step"):
        StreamingGenerator(dataclasses.replace(config, chunk_frames=2))
    with StreamingGenerator(GeneratorConfig(step_bundle_dir, BackendConfig("onnxruntime-cpu"),
                                            chunk_frames=2)) as gen:
        assert gen.backend.step_model is None  # multi-frame steps keep generator.onnx


def test_int8_without_an_int8_model_is_refused(tiny_bundle: Path) -> None:  # noqa: F811
    with pytest.raises(BackendError, match="no int8 step model"):
        StreamingGenerator(GeneratorConfig(tiny_bundle, BackendConfig("onnxruntime-cpu",
                                                                      precision="int8")))


def test_check_trt_covers_the_fp32_step_model(step_bundle_dir: Path) -> None:
    reports = check_bundle(step_bundle_dir)
    names = [r.model for r in reports]
    assert any(STEP_FILE in n for n in names) and not any(STEP_INT8_FILE in n for n in names)
    assert all(r.ok for r in reports), [r.format() for r in reports]


def test_an_int8_model_out_of_tolerance_is_not_added_but_fp32_is(
        tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    monkeypatch.setattr(step_bundle, "INT8_TOLERANCES", {"keypoints_max_abs": 1e-9})
    monkeypatch.setattr(step_int8, "MAX_FP32_LAYERS", 2)
    export = step_bundle.add_step_models(root, generator_from_onnx(root / "generator.onnx",
                                                                   TINY_GENERATOR))
    assert "keypoints_max_abs" in export.int8_problem
    assert "2 Gemm layers kept fp32" in export.int8_problem
    manifest = load_bundle(root).manifest
    assert [r.precision for r in manifest.step_models] == ["fp32"] == \
        [r.precision for r in export.manifest.step_models]
    assert (root / STEP_FILE).exists() and not (root / STEP_INT8_FILE).exists()


def test_an_fp32_step_model_out_of_tolerance_adds_nothing(
        tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    monkeypatch.setattr(step_bundle, "FP32_TOLERANCES", {"keypoints_max_abs": 0.0})
    with pytest.raises(ExportError, match="keypoints_max_abs"):
        step_bundle.add_step_models(root, generator_from_onnx(root / "generator.onnx",
                                                              TINY_GENERATOR))
    assert load_bundle(root).manifest.step_models == ()
    assert not (root / STEP_FILE).exists() and not (root / STEP_INT8_FILE).exists()


def test_int8_keeps_the_most_sensitive_gemms_fp32_when_all_int8_is_too_far(
        step_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tolerances between 'all Gemms int8' and 'none': the search must keep some fp32, the
    model on disk must be the one recorded, and validate's check must pass on it."""
    record = next(r for r in load_bundle(step_bundle_dir).manifest.step_models
                  if r.precision == "int8")
    all_int8 = float(record.measured["keypoints_max_abs"])
    root = tmp_path / "bundle"
    shutil.copytree(step_bundle_dir, root)
    # half of all-int8's error allowed, so 'within HEADROOM' needs <= a quarter of it
    monkeypatch.setattr(step_bundle, "INT8_TOLERANCES", {"keypoints_max_abs": all_int8 / 2})
    export = step_bundle.add_step_models(root, generator_from_onnx(root / "generator.onnx",
                                                                   TINY_GENERATOR))
    int8 = next(r for r in export.manifest.step_models if r.precision == "int8")
    kept = int8.measured["fp32_layers"]
    assert kept and int8.measured["keypoints_max_abs"] <= all_int8 / 4
    sensitivity = int8.measured["layer_sensitivity"]
    assert kept[0] == max(sensitivity, key=sensitivity.get)  # most sensitive first
    assert set(sensitivity) == set(step_int8.gemm_nodes(root / STEP_FILE))
    assert all(name.endswith("_gemm") for name in sensitivity)
    assert ", ".join(kept) in int8.quantization
    ops = {n.name: n.op_type for n in onnx.load(str(root / STEP_INT8_FILE)).graph.node}
    for name in sensitivity:  # the kept layers are fp32 MatMul, every other is int8
        if name in kept:
            assert ops[f"{name}_MatMul"] == "MatMul"
        else:
            assert ops[f"{name}_MatMul_quant"] == "MatMulInteger"
    assert not check_step_model(int8, measure_step_model(root, "int8"))
