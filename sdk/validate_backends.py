"""The backends ``gesturert validate`` can run here (see :mod:`sdk.validate`).

:func:`generator_backends` and :func:`posesync_backends` list, for the names asked for,
what this machine offers (ONNX Runtime CPU and GPU providers, each TensorRT engine
precision built for this GPU and TensorRT version) and why the others cannot run; nothing
is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdk.bundle import Bundle
from sdk.runners.base import Runner, RunnerError
from sdk.runners.onnxrt import CPU_PROVIDER, CUDA_PROVIDER, OnnxRuntimeRunner, available_providers
from sdk.runners.select import BackendConfig, BackendError, match_engine

BACKENDS = ("onnxruntime-cpu", "onnxruntime-gpu", "tensorrt")


class ValidateUnavailable(RuntimeError):
    """Validation cannot run here (no reference, a requested backend missing); exit 2."""


@dataclass(frozen=True)
class BackendRun:
    """A backend to validate: its label, its precision, how to open it."""

    label: str
    precision: str
    config: BackendConfig | None = None  # generator backends
    # posesync: ("onnxruntime", providers) or ("tensorrt", precision)
    runner_spec: tuple[str, Any] | None = None


def _tensorrt_engines(bundle: Bundle, model: str) -> tuple[list[str], dict[str, str], Any]:
    """Precisions of ``model`` engines that fit this GPU and TensorRT; skipped ones, why."""
    from sdk.runners.tensorrt import cuda_compute_capability, tensorrt_version

    engines = [e for e in bundle.manifest.engines if e.model == model]
    if not engines:
        return [], {f"tensorrt ({model})": f"the bundle has no {model} engine"}, None
    try:
        version, capability = tensorrt_version(), cuda_compute_capability(0)
    except RunnerError as exc:
        return [], {f"tensorrt ({model})": str(exc)}, None
    fits, skipped = [], {}
    for precision in sorted({e.precision for e in engines}):
        engine, why = match_engine(engines, capability, version, precision, model=model)
        if engine is None:
            skipped[f"tensorrt-{precision} ({model})"] = why
        else:
            fits.append(precision)
    return fits, skipped, (capability, version)


def generator_backends(bundle: Bundle, requested: list[str]) -> tuple[list[BackendRun],
                                                                       dict[str, str]]:
    """The generator backends of ``requested`` that can run here, and the others with why."""
    runs, skipped = [], {}
    for name in requested:
        if name == "onnxruntime-cpu":
            if CPU_PROVIDER not in available_providers():
                skipped[name] = "onnxruntime is not installed (pip install 'gesturert[cpu]')"
            else:
                runs.append(BackendRun(name, "fp32", BackendConfig(name)))
        elif name == "onnxruntime-gpu":
            if CUDA_PROVIDER not in available_providers():
                skipped[name] = f"onnxruntime has no {CUDA_PROVIDER} (install onnxruntime-gpu)"
            else:
                runs.append(BackendRun(name, "fp32", BackendConfig(name)))
        elif name == "tensorrt":
            precisions, why, _ = _tensorrt_engines(bundle, "generator")
            skipped.update(why)
            runs += [BackendRun(f"tensorrt-{p}", p, BackendConfig("tensorrt", precision=p))
                     for p in precisions]
        else:
            raise ValidateUnavailable(f"unknown backend {name!r}; expected one of {BACKENDS}")
    return runs, skipped


def posesync_backends(bundle: Bundle, requested: list[str]) -> tuple[list[BackendRun],
                                                                      dict[str, str]]:
    """PoseSyncNet backends of ``requested`` present here (ONNX Runtime CPU always tried)."""
    runs: list[BackendRun] = []
    skipped: dict[str, str] = {}
    providers = available_providers()
    if "onnxruntime-gpu" in requested and CUDA_PROVIDER in providers:
        runs.append(BackendRun("onnxruntime-gpu", "fp32",
                               runner_spec=("onnxruntime", (CUDA_PROVIDER, CPU_PROVIDER))))
    if "tensorrt" in requested:
        precisions, why, _ = _tensorrt_engines(bundle, "posesync")
        skipped.update(why)
        runs += [BackendRun(f"tensorrt-{p}", p, runner_spec=("tensorrt", p)) for p in precisions]
    if CPU_PROVIDER in providers:
        runs.insert(0, BackendRun("onnxruntime-cpu", "fp32",
                                  runner_spec=("onnxruntime", (CPU_PROVIDER,))))
    return runs, skipped


def posesync_runner(bundle: Bundle, run: BackendRun) -> Runner:
    assert run.runner_spec is not None and bundle.manifest.posesync is not None
    kind, arg = run.runner_spec
    if kind == "onnxruntime":
        return OnnxRuntimeRunner(bundle.path(bundle.manifest.posesync.model.file),
                                 providers=arg, intra_op_num_threads=1)
    from sdk.runners.tensorrt import TensorRTRunner, cuda_compute_capability, tensorrt_version

    engine, why = match_engine(bundle.manifest.engines, cuda_compute_capability(0),
                               tensorrt_version(), arg, model="posesync")
    if engine is None:
        raise BackendError(why)
    return TensorRTRunner(bundle.path(engine.file))
