"""Dependencies run one way: sdk never imports torch, librosa, export or train."""

from __future__ import annotations

import subprocess
import sys

NEVER_IN_SDK = ("torch", "librosa", "export", "train")
LAZY_ONLY = ("onnxruntime", "tensorrt", "cuda", "matplotlib", "scipy")


def _loaded_after(code: str, candidates: tuple[str, ...]) -> list[str]:
    probe = code + f"\nimport sys; print(','.join(m for m in {candidates!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_sdk_loads_nothing_heavy() -> None:
    assert _loaded_after("import sdk", NEVER_IN_SDK + LAZY_ONLY) == []


def test_every_sdk_module_stays_clear_of_torch_librosa_export_train() -> None:
    code = (
        "import importlib, pkgutil, sdk\n"
        "for m in pkgutil.walk_packages(sdk.__path__, 'sdk.'):\n"
        "    importlib.import_module(m.name)\n"
    )
    assert _loaded_after(code, NEVER_IN_SDK) == []


def test_readme_assertion_holds() -> None:
    code = "import sdk, sys; assert 'torch' not in sys.modules and 'librosa' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
