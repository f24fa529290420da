"""The docs' passages on what has run on a GPU, generated from the committed GPU results.

Two kinds of GPU results count: a ``benchmarks/results/<machine>/bench.json`` whose machine
names a GPU (``gesturert bench`` on a GPU machine), and a ``make gpu-check`` folder
(``benchmarks/results/<machine>/gpu-check/``: ``gpu_check.json``, the pytest junit XML and
log, the GPU benchmarks' JSON). :func:`gpu_status` says which; :func:`gpu_numbers` quotes
the gpu-check benchmarks (a table) and the parity each path kept.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from benchmarks.doc_sources import RESULTS, markdown_table

#: what each gpu/tensorrt test module checks on a GPU (prose; the counts come from the XML)
MODULE_CHECKS = {
    "test_cuda_gpu": "the CUDA MFCC and pose-imaging kernels against the numpy references",
    "test_device_front_end_gpu": "the runtime's GPU path (CUDA MFCC into the step's device "
                                 "input) against the CPU path, one and many streams",
    "test_gpu_pipeline": "CUDA MFCC -> torch generator -> CUDA pose images -> torch "
                         "PoseSyncNet -> PSD against the CPU reference, and the torch step "
                         "fed on the device",
    "test_runners": "the TensorRT runner",
    "test_tensorrt_build": "TensorRT engine builds",
    "test_bundles": "a bundle's TensorRT validation",
}
TF32_LINE = re.compile(r"runner default \(TF32 off\) ([0-9.e+-]+) px, allow_tf32 ([0-9.e+-]+) px")


def gpu_bench_dirs(results: Path = RESULTS) -> list[Path]:
    """Result directories whose bench.json names at least one GPU of the machine."""
    found = []
    for path in sorted(results.glob("*/bench.json")):
        machine = json.loads(path.read_text()).get("machine", {})
        if machine.get("gpus"):
            found.append(path.parent)
    return found


def _load(folder: Path, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / f"{name}.json").read_text())
    return loaded


def gpu_check_dirs(results: Path = RESULTS) -> list[Path]:
    """``make gpu-check`` folders that ran on a GPU (their environment names one)."""
    found = []
    for path in sorted(results.glob("*/gpu-check/gpu_check.json")):
        gpu = str(_load(path.parent, "gpu_check")["environment"].get("gpu", "none"))
        if not gpu.startswith("none"):
            found.append(path.parent)
    return found


def module_counts(junit: Path) -> dict[str, dict[str, int]]:
    """Per test module (file stem): passed / skipped / failed test cases of a junit XML."""
    counts: dict[str, dict[str, int]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")[-1]
        row = counts.setdefault(module, {"passed": 0, "skipped": 0, "failed": 0})
        if case.find("skipped") is not None:
            row["skipped"] += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            row["failed"] += 1
        else:
            row["passed"] += 1
    return counts


def _relative(path: Path, results: Path = RESULTS) -> str:
    return f"`benchmarks/results/{path.relative_to(results)}/`"


def _check_sentence(folder: Path, results: Path) -> str:
    summary = _load(folder, "gpu_check")
    env, tests = summary["environment"], summary["pytest"]
    nvrtc = ".".join(str(v) for v in env.get("nvrtc") or [])
    counts = module_counts(folder / "pytest_gpu.xml")
    ran = [f"{MODULE_CHECKS.get(m, m)} (`{m}.py`, {c['passed']} passed)"
           for m, c in sorted(counts.items()) if c["passed"]]
    skipped = sorted(m for m, c in counts.items() if c["skipped"] and not c["passed"])
    failed = tests["failures"] + tests["errors"]
    return (f"`make gpu-check` on an {env['gpu']} (driver {env.get('driver')}, NVRTC {nvrtc}, "
            f"torch {env.get('torch')}, ONNX Runtime {env.get('onnxruntime')} CPU, TensorRT "
            f"{env.get('tensorrt')}; git {summary.get('git_sha')}; "
            f"{_relative(folder, results)}): "
            f"{tests['tests'] - tests['skipped'] - failed} of {tests['tests']} gpu/tensorrt "
            f"tests passed, {failed} failed, {tests['skipped']} skipped. On the GPU: "
            f"{'; '.join(ran)}. Skipped there: "
            f"{', '.join(f'`{m}.py`' for m in skipped) or 'none'}.")


def gpu_status(results: Path = RESULTS) -> str:
    """Which paths have run on a GPU: generated from the GPU results committed (if any)."""
    benches, checks = gpu_bench_dirs(results), gpu_check_dirs(results)
    if not benches and not checks:
        return ("**Nothing has run on a GPU yet.** No GPU results are committed (no "
                "`benchmarks/results/<machine>/bench.json` names a GPU, no "
                "`benchmarks/results/<machine>/gpu-check/` ran on one), and every measured "
                "number in these docs is from a CPU. What the GPU paths have been through "
                "instead: the CUDA preprocessing kernels (MFCC, pose images) compile with "
                "NVRTC for every supported architecture and their logic runs in a CPU "
                "emulator (`tests/cuda_emu`) against the numpy references; the TensorRT "
                "runner and engine builds are type-checked against the TensorRT stubs and "
                "tested up to the TensorRT calls; ONNX Runtime GPU has not run at all. The "
                "`gpu`/`tensorrt` tests skip here.")
    parts = ["**What has run on a GPU.**"]
    parts += [_check_sentence(folder, results) for folder in checks]
    if benches:
        parts.append("`gesturert bench` GPU results: "
                     + ", ".join(f"`benchmarks/results/{d.name}/`" for d in benches) + ".")
    tensorrt_ran = any(not str(_load(f, "gpu_check")["environment"].get("tensorrt", "absent"))
                       .startswith("absent") for f in checks)
    if not tensorrt_ran:
        parts.append("**Not run on a GPU:** TensorRT (engine builds, the TensorRT runner and "
                     "step, trtexec) and ONNX Runtime's GPU providers; those paths are "
                     "type-checked against the TensorRT stubs and tested up to the TensorRT "
                     "calls with the CPU emulator. Numbers that do not name a GPU are from "
                     "a CPU.")
    return " ".join(parts)


def _ms(value: float) -> str:
    return f"{value:.3g} ms" if value >= 1 else f"{value * 1e3:.0f} us"


def gpu_numbers(results: Path = RESULTS) -> str:
    """The newest gpu-check folder's benchmarks, one row each (empty when none ran)."""
    checks = gpu_check_dirs(results)
    if not checks:
        return "No `make gpu-check` results are committed."
    folder = checks[-1]
    gpu = _load(folder, "gpu_check")["environment"]["gpu"]
    pre, streams = _load(folder, "gpu_preprocessing"), _load(folder, "gpu_streams")
    runtime, torch_rt = _load(folder, "gpu_runtime"), _load(folder, "gpu_torch_runtime")
    rows = []
    for cell in pre["mfcc"]:
        cuda = cell["cuda_mfcc"]["gpu"]["p50_ms"]
        versus = [f"x{cell[k]['cuda_speedup']:.2f} {label}" for k, label in
                  (("torchaudio", "torchaudio on the GPU"), ("librosa_cpu", "librosa on the CPU"))
                  if cell[k].get("available")]
        rows.append([f"CUDA MFCC, {cell['chunk_ms']:.0f} ms chunks x {cell['streams']} "
                     f"stream(s) per call (p50)", _ms(cuda), ", ".join(versus)])
    for cell in pre["pose_imaging"]:
        rows.append([f"CUDA pose imaging, {cell['clips']} clip(s) of {cell['frames']} "
                     f"images (p50)", _ms(cell["gpu"]["p50_ms"]),
                     f"{cell['efficiency']:.1%} of the roofline floor"])
    top = max(streams["ticks"], key=lambda t: t["streams"] if t["fits_budget"] else 0)
    rows.append(["front end per 15 fps tick (host -> device, CUDA MFCC, step input): "
                 "largest measured stream count within 1/fps",
                 f"{streams['max_streams_front_end']} streams", f"{top['wall_p50_ms']:.1f} ms "
                 f"of {top['budget_ms']:.1f} ms"])
    for result, what in ((runtime, "runtime's GPU path, ONNX Runtime CPU step, the bundle "
                                   "shipped at the run's commit"),
                         (torch_rt, "runtime without TensorRT, torch-CUDA step, untrained "
                                    "default-config bundle")):
        tick = max(result["ticks"], key=lambda t: t["streams"] if t["fits_budget"] else 0)
        rows.append([f"{what}: live streams per tick within 1/fps (largest measured)",
                     f"{result['max_streams_in_budget']} streams",
                     f"{tick['tick_p50_ms']:.1f} ms p50; parity {result['parity']['frames']} "
                     f"frames, max {result['parity']['max_keypoint_px']:.2g} px"])
    for tick in torch_rt.get("batch_ticks", []):
        rows.append([f"runtime without TensorRT, torch-CUDA step: {tick['streams']} lockstep "
                     f"streams in one StreamBatch, per 15 fps tick",
                     f"{tick['tick_p50_ms']:.1f} ms p50",
                     f"of {tick['budget_ms']:.1f} ms: {'fits' if tick['fits_budget'] else 'over'}"])
    for step in torch_rt["step"]:
        rows.append([f"torch-CUDA generator step alone, {step['batch']} stream(s), one frame",
                     _ms(step["step_p50_ms"]), f"{step['per_stream_us']:.2f} us per stream"])
    tf32 = TF32_LINE.search((folder / "pytest.log").read_text())
    if tf32:
        rows.append(["torch step vs ONNX Runtime fp32 (tiny test generator): TF32 off "
                     "(the runners' default) / torch's default TF32",
                     f"{float(tf32.group(1)):.2g} px", f"{float(tf32.group(2)):.2g} px"])
    return (f"{gpu}, `make gpu-check` ({_relative(folder, results)}); CUDA-event times for kernels "
            "and the step, wall time for ticks.\n\n"
            + markdown_table(["measure", gpu, "beside it"], rows))
