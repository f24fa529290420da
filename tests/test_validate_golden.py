"""``gesturert validate`` against the golden reference: the pristine bundle passes with
margin, every deployment-level fault of the tamper corpus fails naming the stage, and
validation runs where torch and librosa cannot be imported.

The corpus (issue 15): copies of the test bundle, each with one fault, its checksums
rewritten with the project's own manifest writer so every copy loads; no checkpoint given.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers_bundle import TINY_GENERATOR, tiny_bundle  # noqa: F401  (session fixture)
from onnx import numpy_helper

from sdk.bundle import Manifest, load_bundle, write_bundle_manifest
from sdk.cli import main
from sdk.mfcc import MfccMatrices

REPO = Path(__file__).resolve().parents[1]
FAILURE = re.compile(r"(\w+) (\w+) \[(\w+)\] on (\S+) (\S+): (\S+) .* > tolerance")


def _validate(bundle: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", str(bundle), "--out", str(out)])
    return code, capsys.readouterr().err


def _rehash(root: Path) -> None:
    write_bundle_manifest(root, load_bundle(root, verify=False).manifest)


def _edit_weights(root: Path, edit: Callable[[str, np.ndarray], np.ndarray | None]) -> None:
    """Replace generator.onnx initializers by ``edit(name, array)`` (None: unchanged)."""
    model = onnx.load(str(root / "generator.onnx"))
    for tensor in model.graph.initializer:
        changed = edit(tensor.name, numpy_helper.to_array(tensor))
        if changed is not None:
            tensor.CopyFrom(numpy_helper.from_array(changed.astype(np.float32), tensor.name))
    onnx.save(model, str(root / "generator.onnx"))
    _rehash(root)


def _is_weight(name: str, array: np.ndarray) -> bool:
    return name.startswith("generator.") and array.dtype == np.float32 and array.size > 1 \
        and "feature_" not in name


def _largest_weight(root: Path) -> str:
    model = onnx.load(str(root / "generator.onnx"))
    return max((t for t in model.graph.initializer if t.name.startswith("generator.")),
               key=lambda t: int(np.prod(t.dims))).name


def _edit_matrices(root: Path, edit: Callable[[MfccMatrices], dict[str, np.ndarray]]) -> None:
    manifest = load_bundle(root).manifest
    m = MfccMatrices.load(root / manifest.mfcc_matrices, manifest.features)
    arrays = {"window": m.window, "mel": m.mel, "dct": m.dct, **edit(m)}
    MfccMatrices(m.config, provenance=m.provenance, **arrays).save(root / manifest.mfcc_matrices)
    _rehash(root)


def _edit_manifest(root: Path, edit: Callable[[Manifest], Manifest]) -> None:
    write_bundle_manifest(root, edit(load_bundle(root).manifest))


def _normalization(**change: object) -> Callable[[Manifest], Manifest]:
    def edit(m: Manifest) -> Manifest:
        norm = m.normalization
        values = {"scale_px": norm.scale_px * 1.5} if "scale" in change else \
            {"anchor_px": (norm.anchor_px[0] + 37.0, norm.anchor_px[1])} if "anchor" in change \
            else {"std": norm.std * np.float32(1.03)}
        return dataclasses.replace(m, normalization=dataclasses.replace(norm, **values))
    return edit


def _lookahead(delta: int) -> Callable[[Manifest], Manifest]:
    def edit(m: Manifest) -> Manifest:
        return dataclasses.replace(m, generator=dataclasses.replace(
            m.generator, lookahead_frames=m.generator.lookahead_frames + delta))
    return edit


def _swap_mel_rows(m: MfccMatrices) -> dict[str, np.ndarray]:
    mel = m.mel.copy()
    mel[[10, 11]] = mel[[11, 10]]
    return {"mel": mel}


def _negate_dct_row(m: MfccMatrices) -> dict[str, np.ndarray]:
    dct = m.dct.copy()
    dct[3] *= -1
    return {"dct": dct}


def _noise(name: str, a: np.ndarray) -> np.ndarray | None:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return a * (1 + 0.02 * rng.standard_normal(a.shape)) if _is_weight(name, a) else None


# fault -> (how to make it, the stage and metric the failure must name)
CORPUS: dict[str, tuple[Callable[[Path], None], str]] = {
    "one weight tensor x1.01": (lambda r: _edit_weights(
        r, lambda n, a: a * 1.01 if n == _largest_weight(r) else None),
        "generator keypoints_max_px"),
    "all weights +2% noise": (lambda r: _edit_weights(r, _noise), "generator keypoints_max_px"),
    "saliency head zeroed": (lambda r: _edit_weights(
        r, lambda n, a: np.zeros_like(a) if n.startswith("generator.detector.2.") else None),
        "generator saliency_max_abs"),
    "mel filterbank x1.03": (lambda r: _edit_matrices(r, lambda m: {"mel": m.mel * 1.03}),
                             "mfcc mfcc_max_abs"),
    "two mel rows swapped": (lambda r: _edit_matrices(r, _swap_mel_rows), "mfcc mfcc_max_abs"),
    "a DCT row negated": (lambda r: _edit_matrices(r, _negate_dct_row), "mfcc mfcc_max_abs"),
    "normalisation scale x1.5": (lambda r: _edit_manifest(r, _normalization(scale=True)),
                                 "generator keypoints_max_px"),
    "anchor shifted 37 px": (lambda r: _edit_manifest(r, _normalization(anchor=True)),
                             "generator keypoints_max_px"),
    "std x1.03": (lambda r: _edit_manifest(r, _normalization(std=True)),
                  "generator keypoints_max_px"),
    "lookahead +1": (lambda r: _edit_manifest(r, _lookahead(+1)), "generator keypoints_max_px"),
    "lookahead -1": (lambda r: _edit_manifest(r, _lookahead(-1)), "generator keypoints_max_px"),
}


def test_the_pristine_bundle_passes_clearing_fp32_tolerances_tenfold(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    code, err = _validate(tiny_bundle, tmp_path, capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "validate.json").read_text())
    assert report["passed"] and report["exit_code"] == 0
    stages = {(c["stage"], c["mode"]) for c in report["checks"]}
    assert {("mfcc", "offline"), ("generator", "offline"), ("generator", "streaming/4"),
            ("posesync", "clips"), ("psd", "offline")} <= stages
    groups = {c["group"] for c in report["checks"] if c["metric"] == "keypoints_p99_px"}
    assert groups == {"body", "hands", "face", "lips"}
    assert report["min_margin"]["fp32"] >= 10
    assert "PASSED" in (tmp_path / "validate.md").read_text()


@pytest.mark.parametrize("fault", sorted(CORPUS))
def test_each_fault_of_the_corpus_fails_naming_the_stage(
        fault: str, tiny_bundle: Path, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    make, expected = CORPUS[fault]
    make(root)
    load_bundle(root)  # the checksums were rewritten: the copy loads
    code, err = _validate(root, tmp_path / "report", capsys)
    assert code == 1, err
    named = {" ".join(m.group(1, 2)) for m in FAILURE.finditer(err)}
    assert expected in named, err
    report = json.loads((tmp_path / "report" / "validate.json").read_text())
    assert not report["passed"] and any(expected.split()[1] == c["metric"]
                                        for c in report["checks"] if not c["passed"])


@pytest.mark.slow
def test_a_generator_from_another_training_fails(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    import torch

    from export.onnx_export import export_generator
    from train.models.generator import SalientPostureGenerator

    torch.manual_seed(1)  # the test bundle's generator is seed 0
    other = SalientPostureGenerator(TINY_GENERATOR).eval()
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    export_generator(other, root / "generator.onnx")
    _rehash(root)
    code, err = _validate(root, tmp_path / "report", capsys)
    assert code == 1
    assert "generator keypoints_max_px" in err


def test_a_bundle_without_reference_cannot_be_validated(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    _edit_manifest(root, lambda m: dataclasses.replace(m, reference=None))
    shutil.rmtree(root / "reference")
    _rehash(root)
    code, err = _validate(root, tmp_path / "report", capsys)
    assert code == 2 and "no golden reference" in err


def test_a_changed_golden_value_is_caught(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    _edit_manifest(root, lambda m: dataclasses.replace(m, reference=dataclasses.replace(
        m.reference, psd=m.reference.psd * 1.001)))  # type: ignore[union-attr]
    code, err = _validate(root, tmp_path / "report", capsys)
    assert code == 1 and "psd psd_rel [all] on onnxruntime-cpu offline" in err


def test_a_requested_backend_that_cannot_run_exits_2(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    code = main(["validate", str(tiny_bundle), "--backends", "onnxruntime-gpu",
                 "--out", str(tmp_path)])
    assert code == 2
    assert "no CUDAExecutionProvider" in capsys.readouterr().err


BLOCKER = '''
import importlib.abc, sys
BLOCKED = {"torch", "librosa", "train", "export"}
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is blocked in this test", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
'''


def test_validate_runs_where_torch_and_librosa_cannot_be_imported(
        tiny_bundle: Path, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO)])}
    blocked = subprocess.run([sys.executable, "-c", "import torch"], env=env, text=True,
                             capture_output=True, timeout=120)
    assert blocked.returncode != 0 and "blocked in this test" in blocked.stderr
    result = subprocess.run(
        [sys.executable, "-m", "sdk.cli", "validate", str(tiny_bundle), "--out",
         str(tmp_path / "out")], env=env, text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "validate: all within tolerance" in result.stdout
    # and a fault is still caught there
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    _edit_manifest(root, _lookahead(+1))
    result = subprocess.run(
        [sys.executable, "-m", "sdk.cli", "validate", str(root), "--out", str(tmp_path / "o2")],
        env=env, text=True, capture_output=True, timeout=300)
    assert result.returncode == 1 and "generator keypoints_max_px" in result.stderr
