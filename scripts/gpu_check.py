"""``make gpu-check``: everything that needs a GPU, in one command, in under 6 minutes.

For a lent GPU machine (docs/tensorrt.md, "A lent GPU"): Python 3.12 with torch, CuPy,
cuda-bindings/NVRTC 13, ONNX Runtime (CPU), numpy, scipy, pytest; no TensorRT, librosa,
soundfile or soxr (librosa, soundfile and soxr travel as wheels), no network. Steps, each
with its own time limit:

1. install the carried wheels (``.gpu_wheels/``, listed in ``scripts/gpu_wheels.txt``)
   with ``pip --target .gpu_site`` (no index, no dependencies resolved);
2. ``pytest -m "gpu or tensorrt"`` over every test module that has such tests (``-rsP``:
   the log keeps what passed tests print: parity errors, stage times);
3. ``benchmarks.gpu_preprocessing --quick`` (CUDA MFCC vs torchaudio / torch.stft on the
   GPU and librosa where installed; pose imaging; roofline efficiency);
4. ``benchmarks.gpu_streams`` (the runtime's GPU front end for up to 8192 streams at
   15 fps; the batched step where TensorRT is installed);
5. ``benchmarks.gpu_runtime`` (the runtime's GPU path end to end: StreamingGenerator on
   the shipped bundle with the CUDA MFCC writing the step's device input, live streams
   per tick, parity with the CPU path);
6. ``benchmarks.gpu_torch_runtime`` (the runtime without TensorRT: CUDA MFCC into the
   torch-CUDA step on the untrained default-config bundle; the step alone per batch, live
   streams per tick, parity with ONNX Runtime on the CPU).

Everything lands in one folder (``--out``, default ``benchmarks/results/gpu-check``):
each step's log, ``pytest_gpu.xml``, the benchmarks' JSON/Markdown, and the summary
``gpu_check.json`` / ``gpu_check.md``. Exit status 0 when every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".gpu_wheels"
SITE = REPO / ".gpu_site"
#: seconds per step; together under the 6 minutes a lent machine's command may take
LIMITS = {"install": 25, "pytest": 130, "gpu_preprocessing": 60, "gpu_streams": 40,
          "gpu_runtime": 35, "gpu_torch_runtime": 70}
TOTAL_LIMIT = 360  # seconds: what a lent machine's command may take
GPU_MARK = re.compile(r"pytest\.mark\.(gpu|tensorrt)\b")


def gpu_test_modules(tests: Path = REPO / "tests") -> list[Path]:
    """Test modules with a ``gpu`` or ``tensorrt`` mark (the ones a GPU run must collect)."""
    return sorted(p for p in tests.rglob("test_*.py") if GPU_MARK.search(p.read_text()))


def junit_counts(path: Path) -> dict[str, int]:
    """tests / failures / errors / skipped of a pytest junit XML file."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def run_step(name: str, command: list[str], out: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one step with its time limit; its output goes to ``out/<name>.log``."""
    begin = time.monotonic()
    log = out / f"{name}.log"
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=LIMITS[name])
        rc, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        rc = 124
        parts = [b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
                 for b in (exc.stdout, exc.stderr)]  # bytes even with text=True
        text = "".join(parts) + f"\n[timed out after {LIMITS[name]} s]"
    log.write_text(f"$ {' '.join(command)}\n{text}")
    return {"step": name, "command": command, "rc": rc,
            "seconds": round(time.monotonic() - begin, 1), "log": log.name,
            "tail": text.strip().splitlines()[-3:]}


def environment(python: str, env: dict[str, str]) -> dict[str, Any]:
    probe = (
        "import json, importlib\n"
        "out = {}\n"
        "for name in ('numpy', 'torch', 'cupy', 'cuda.bindings', 'onnxruntime', 'tensorrt',"
        " 'librosa', 'soundfile', 'soxr'):\n"
        "    try:\n"
        "        out[name] = getattr(importlib.import_module(name), '__version__', 'present')\n"
        "    except Exception as exc:\n"
        "        out[name] = f'absent ({type(exc).__name__})'\n"
        "try:\n"
        "    from cuda.bindings import driver, nvrtc\n"
        "    driver.cuInit(0)\n"
        "    out['driver'] = driver.cuDriverGetVersion()[1]\n"
        "    out['nvrtc'] = nvrtc.nvrtcVersion()[1:]\n"
        "    dev = driver.cuDeviceGet(0)[1]\n"
        "    out['gpu'] = driver.cuDeviceGetName(100, dev)[1].split(b'\\0')[0].decode()\n"
        "except Exception as exc:\n"
        "    out['gpu'] = f'none ({exc})'\n"
        "print(json.dumps(out, default=str))\n")
    done = subprocess.run([python, "-c", probe], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    try:
        found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        found = {"probe_error": done.stderr[-500:]}
    return {"python": platform.python_version(), "platform": platform.platform(), **found}


def git_sha() -> str | None:
    """benchmarks.common.git_sha (``$GESTURERT_GIT_SHA (stated)`` where set: a lent machine's
    copy of the tree carries the git metadata of the session's start)."""
    sys.path.insert(0, str(REPO))
    from benchmarks.common import git_sha as sha

    return sha()


def markdown(summary: dict[str, Any]) -> str:
    env = summary["environment"]
    lines = ["# make gpu-check", "",
             f"- GPU: {env.get('gpu')}; driver {env.get('driver')}, NVRTC {env.get('nvrtc')}",
             f"- Python {env.get('python')}; torch {env.get('torch')}, cupy {env.get('cupy')}, "
             f"cuda.bindings {env.get('cuda.bindings')}, onnxruntime {env.get('onnxruntime')},"
             f" tensorrt {env.get('tensorrt')}, librosa {env.get('librosa')}",
             f"- git {summary.get('git_sha')}; total {summary['seconds']} s; "
             f"passed: {summary['passed']}", "",
             "| step | rc | seconds | last line |", "|---|---|---|---|"]
    for step in summary["steps"]:
        last = (step["tail"] or [""])[-1].replace("|", "/")
        lines.append(f"| {step['step']} | {step['rc']} | {step['seconds']} | {last} |")
    if "pytest" in summary:
        lines += ["", f"pytest (gpu/tensorrt marks): {summary['pytest']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/gpu_check.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/gpu-check")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    extra = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SITE), str(REPO), *extra])}
    steps = []
    if WHEELS.is_dir():
        steps.append(run_step("install", [
            args.python, "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
            "--no-deps", "--upgrade", "--find-links", str(WHEELS), "--target", str(SITE),
            "-r", str(REPO / "scripts/gpu_wheels.txt")], out, env))
    modules = [str(p.relative_to(REPO)) for p in gpu_test_modules()]
    xml = out / "pytest_gpu.xml"
    steps.append(run_step("pytest", [
        args.python, "-m", "pytest", "-m", "gpu or tensorrt", "-q", "-rsP", "-p",
        "no:cacheprovider", f"--junitxml={xml}", *modules], out, env))
    steps.append(run_step("gpu_preprocessing", [
        args.python, "-m", "benchmarks.gpu_preprocessing", "--quick", "--out", str(out)],
        out, env))
    steps.append(run_step("gpu_streams", [
        args.python, "-m", "benchmarks.gpu_streams", "--out", str(out), "--repeats", "10"],
        out, env))
    steps.append(run_step("gpu_runtime", [
        args.python, "-m", "benchmarks.gpu_runtime", "--out", str(out)], out, env))
    steps.append(run_step("gpu_torch_runtime", [
        args.python, "-m", "benchmarks.gpu_torch_runtime", "--out", str(out)], out, env))
    summary: dict[str, Any] = {"environment": environment(args.python, env),
                               "git_sha": git_sha(), "steps": steps,
                               "seconds": round(time.monotonic() - begin, 1),
                               "test_modules": modules}
    if xml.is_file():
        summary["pytest"] = junit_counts(xml)
    summary["passed"] = all(s["rc"] == 0 for s in steps)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
