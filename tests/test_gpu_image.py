"""Rehearsal of a lent GPU machine's image on this CPU machine (CI).

``scripts/gpu_image/sitecustomize.py`` lets only the image's packages, the carried wheels
(``scripts/gpu_wheels.txt``) and the repository import; every test module with a ``gpu``
or ``tensorrt`` mark must still collect there, or ``make gpu-check`` would lose it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE_SITE = REPO / "scripts" / "gpu_image"
sys.path.insert(0, str(REPO / "scripts"))

import gpu_check  # noqa: E402


def on_the_image(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(IMAGE_SITE), str(REPO)])}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_every_gpu_test_module_collects_with_only_the_image_and_carried_packages() -> None:
    modules = [str(p.relative_to(REPO)) for p in gpu_check.gpu_test_modules()]
    assert "tests/test_cuda_gpu.py" in modules and "tests/test_runners.py" in modules
    done = on_the_image("-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "-m", "gpu or tensorrt", *modules)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "error" not in done.stdout.lower().split("collected")[-1]
    assert re.search(r"(\d+)/\d+ tests collected", done.stdout), done.stdout[-500:]


def test_the_image_blocks_what_it_lacks() -> None:
    """The rehearsal can fail: websockets (installed here) is not importable there, and a
    module that needs it at import would not collect."""
    done = on_the_image("-c", "import websockets")
    assert done.returncode != 0 and "No module named 'websockets'" in done.stderr
    done = on_the_image("-c", "import sdk, soundfile, soxr, numpy, scipy; print('ok')")
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_the_tiny_bundle_exports_with_only_the_image_and_carried_packages(
        tmp_path: Path) -> None:
    """tests/test_gpu_pipeline.py's gpu tests export the tiny bundle on the GPU machine;
    export records its golden references with librosa (carried). The first lent run
    failed there for want of librosa; this rehearses it (~15 s)."""
    code = ("import sys; sys.path.insert(0, 'tests'); from pathlib import Path; "
            "from test_torch_runner import export_tiny_checkpoints; "
            f"e = export_tiny_checkpoints(Path({str(tmp_path)!r})); "
            "print('exported', (e.bundle / 'manifest.json').is_file())")
    done = on_the_image("-c", code)
    assert done.returncode == 0 and "exported True" in done.stdout, done.stderr[-3000:]


def test_carried_wheels_are_pinned_and_cover_what_the_image_lacks() -> None:
    lines = [line.split("#")[0].strip() for line in
             (REPO / "scripts" / "gpu_wheels.txt").read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if line)
    assert all(re.fullmatch(r"[\w.]+", v) for v in pins.values()), pins
    assert {"soundfile", "soxr", "cffi", "pycparser", "pytest-timeout", "librosa"} <= set(pins)


def test_every_gpu_test_module_type_checks() -> None:
    """CI cannot run the gpu/tensorrt tests, so a signature they rely on can drift unseen
    (a lent GPU found a test's stand-in for the step missing the ``styles`` argument added
    months before). mypy checks them here as it checks sdk/export/train/benchmarks (the
    repository on MYPYPATH: without it sdk and benchmarks were unresolved, every type Any,
    and the check could not fail on them)."""
    stubs = REPO / ".stubs"
    assert stubs.is_dir(), "make setup writes the patched TensorRT stubs to .stubs/"
    tests = REPO / "tests"
    modules = [str(p.relative_to(tests)) for p in gpu_check.gpu_test_modules()]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
         "--cache-dir", str(REPO / ".mypy_cache"),  # make typecheck's: sdk etc. are cached
         *modules], cwd=tests, capture_output=True, text=True, timeout=600,
        env={**os.environ, "MYPYPATH": os.pathsep.join([str(stubs), str(tests), str(REPO)])})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
