"""`gesturert validate` where only `pip install gesturert[cpu]` is installed (issue 15).

A fresh virtual environment gets the project with its `cpu` extra and nothing else (no
torch, no librosa: checked), then validates the shipped default bundle (exit 0) and copies
of it that carry a fault of the tamper corpus (exit 1). The faults are made here, in the
test's own environment (export.tamper needs onnx); the cpu-only environment only reads.
"""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from export.tamper import CORPUS
from sdk.bundle import load_bundle

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "sdk" / "data" / "default_bundle"
FAULTS = ("one weight tensor x1.01", "mel filterbank x1.03", "anchor shifted 37 px")


@pytest.fixture(scope="module")
def cpu_only_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a venv holding gesturert[cpu] (a copy of this checkout) and its deps only."""
    root = tmp_path_factory.mktemp("cpu_only")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".stubs", "*_cache", "__pycache__", "*.egg-info", "build", "out",
        "runs", ".gpu_wheels", ".gpu_site", ".kernel_cache"))
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    bin_dir = root / "venv" / "bin"
    install = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", f"{source}[cpu]"],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    for heavy in ("torch", "librosa", "onnx"):
        probe = subprocess.run([str(bin_dir / "python"), "-c", f"import {heavy}"],
                               capture_output=True, text=True, cwd=root)
        assert probe.returncode != 0, f"{heavy} is importable in the cpu-only environment"
    return bin_dir


def _validate(bin_dir: Path, bundle: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "gesturert"), "validate", str(bundle), "--out",
                           str(out)], capture_output=True, text=True, timeout=600,
                          cwd=out.parent)


@pytest.mark.slow
def test_the_shipped_bundle_validates_with_the_sdk_alone(cpu_only_env: Path,
                                                         tmp_path: Path) -> None:
    result = _validate(cpu_only_env, DEFAULT_BUNDLE, tmp_path / "report")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all within tolerance" in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_fails_with_the_sdk_alone(fault: str, cpu_only_env: Path,
                                          tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, root)
    make, expected = CORPUS[fault]
    make(root)
    load_bundle(root)  # checksums rewritten: the copy loads
    result = _validate(cpu_only_env, root, tmp_path / "report")
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr, result.stderr

