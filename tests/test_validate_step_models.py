"""`gesturert validate` holds a bundle's one-frame step models (fp32, int8) to their records.

The shipped default bundle carries both (gesturert export-step). On onnxruntime-cpu one
frame per step runs the fp32 step model, so the golden checks see it; the step-model
checks compare every step model with generator.onnx under the record's tolerances.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export.tamper import edit_manifest, rehash
from sdk.bundle import Manifest, load_bundle
from sdk.cli import main

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "sdk" / "data" / "default_bundle"


def _copy(tmp_path: Path) -> Path:
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        pytest.skip("the shipped default bundle is absent")
    root = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, root)
    return root


def _validate(root: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict,
                                                                                  str]:
    code = main(["validate", str(root), "--out", str(out), "--backends", "onnxruntime-cpu"])
    return code, json.loads((out / "validate.json").read_text()), capsys.readouterr().err


def test_the_shipped_step_models_pass_and_are_checked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, err = _validate(_copy(tmp_path), tmp_path / "out", capsys)
    assert code == 0, err
    step = [c for c in report["checks"] if c["stage"] == "step-model"]
    assert {c["precision"] for c in step} == {"fp32", "int8"}
    assert all(c["passed"] and c["tolerance"] is not None for c in step)


def test_an_int8_model_beyond_its_tolerance_fails_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(tmp_path)

    def tighten(m: Manifest) -> Manifest:
        models = tuple(dataclasses.replace(s, tolerances={**s.tolerances,
                                                          "keypoints_max_abs": 1e-6})
                       if s.precision == "int8" else s for s in m.step_models)
        return dataclasses.replace(m, step_models=models)

    edit_manifest(root, tighten)
    code, report, err = _validate(root, tmp_path / "out", capsys)
    assert code == 1, err
    assert "step-model step_keypoints_max_abs" in err and "generator_step_int8.onnx" in err
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [(c["stage"], c["precision"]) for c in failed] == [("step-model", "int8")]


@pytest.mark.slow
def test_a_changed_fp32_step_model_fails(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(tmp_path)
    model = onnx.load(str(root / "generator_step.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    scaled = numpy_helper.to_array(tensor).astype(np.float32) * np.float32(1.01)
    tensor.CopyFrom(numpy_helper.from_array(scaled, tensor.name))
    onnx.save(model, str(root / "generator_step.onnx"))
    rehash(root)
    code, report, err = _validate(root, tmp_path / "out", capsys)
    assert code == 1, err
    failed = {(c["stage"], c["mode"]) for c in report["checks"] if not c["passed"]}
    assert ("generator", "offline") in failed  # the golden check sees the step model
    assert any(stage == "step-model" for stage, _ in failed)


def test_a_generator_onnx_whose_other_style_differs_from_its_step_models_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The runtime steps through the step models, so the golden checks of the other style
    pass; only comparing generator.onnx with each step model in every style sees it."""
    from export.tamper import shift_other_style

    root = _copy(tmp_path)
    if len(load_bundle(root).manifest.generator.styles) < 2:
        pytest.skip("the shipped bundle has one style")
    shift_other_style(root)
    code, report, err = _validate(root, tmp_path / "out", capsys)
    assert code == 1, err
    failed = {(c["stage"], c["metric"]) for c in report["checks"] if not c["passed"]}
    assert ("step-model", "step_keypoints_max_abs") in failed
