"""``gesturert validate`` against the golden reference: the pristine bundle passes with
margin, every deployment-level fault of the tamper corpus fails naming the stage, and
validation runs where torch and librosa cannot be imported.

The corpus (export/tamper.py, issue 15): copies of the test bundle, each with one fault,
its checksums rewritten with the project's own manifest writer so every copy loads; no
checkpoint given.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_bundle import TINY_GENERATOR, tiny_bundle  # noqa: F401  (session fixture)

from export.tamper import CORPUS, edit_manifest, lookahead, rehash
from sdk.bundle import Manifest, load_bundle
from sdk.cli import main

REPO = Path(__file__).resolve().parents[1]
FAILURE = re.compile(r"(\w+) (\w+) \[(\w+)\] on (\S+) (\S+): (\S+) .* > tolerance")


def _validate(bundle: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", str(bundle), "--out", str(out)])
    return code, capsys.readouterr().err


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
    rehash(root)
    code, err = _validate(root, tmp_path / "report", capsys)
    assert code == 1
    assert "generator keypoints_max_px" in err


def test_a_bundle_without_reference_cannot_be_validated(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    edit_manifest(root, lambda m: dataclasses.replace(m, reference=None))
    shutil.rmtree(root / "reference")
    rehash(root)
    code, err = _validate(root, tmp_path / "report", capsys)
    assert code == 2 and "no golden reference" in err


def test_a_changed_golden_value_is_caught(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    def move_psd(m: Manifest) -> Manifest:
        assert m.reference is not None
        return dataclasses.replace(m, reference=dataclasses.replace(
            m.reference, psd=m.reference.psd * 1.001))

    edit_manifest(root, move_psd)
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
    # the PyTorch extra says what it needs
    result = subprocess.run(
        [sys.executable, "-m", "sdk.cli", "validate", str(tiny_bundle), "--generator",
         str(tmp_path / "generator.pt"), "--out", str(tmp_path / "o1")],
        env=env, text=True, capture_output=True, timeout=300)
    assert result.returncode == 2 and "--generator needs torch" in result.stderr
    # and a fault is still caught there
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    edit_manifest(root, lookahead(+1))
    result = subprocess.run(
        [sys.executable, "-m", "sdk.cli", "validate", str(root), "--out", str(tmp_path / "o2")],
        env=env, text=True, capture_output=True, timeout=300)
    assert result.returncode == 1 and "generator keypoints_max_px" in result.stderr
