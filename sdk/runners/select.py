"""Choosing a backend for a bundle: ``auto`` = tensorrt > onnxruntime-gpu > onnxruntime-cpu.

:func:`choose_backend` probes what this machine offers (TensorRT importable? a CUDA
device and its compute capability? an engine in the bundle built for that GPU and that
TensorRT version? onnxruntime's CUDA provider?) without loading any model, and returns a
:class:`BackendChoice` that names the pick and why every other candidate was not used;
:func:`create_stepper` then loads it. Both log the choice at INFO.

Engine matching: an :class:`~sdk.bundle.EngineRecord` fits when its ``model`` is
"generator", its ``compute_capability`` equals the device's ("9.0"), and its
``tensorrt_version`` equals the installed one on major.minor.patch (TensorRT refuses
plans from other builds). With several fits, the requested precision wins, else fp16,
else the first. Asking for ``tensorrt`` when nothing fits raises :class:`BackendError`
unless ``fallback_to_onnxruntime`` is set, in which case a warning says why.

The label says what runs: when ONNX Runtime drops the CUDA/TensorRT provider at session
creation (a library missing), :func:`create_stepper` raises :class:`BackendError` naming
it, or, with ``fallback_to_onnxruntime``, labels the backend ``onnxruntime-cpu`` and says
why (never "onnxruntime-gpu" running on the CPU).

Step models: on onnxruntime-cpu, a generator stepping one frame at a time runs the
bundle's one-frame step model (``manifest.step_models``, export/gemm_step.py) of the
requested precision ("fp32" by default, "int8" when asked) instead of ``generator.onnx``;
:func:`choose_step_model` says which and why.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sdk.bundle import Bundle, EngineRecord, StepModelRecord
from sdk.runners.base import GeneratorStepper, RunnerError
from sdk.runners.host_stepper import HostStateStepper
from sdk.runners.onnxrt import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    TENSORRT_PROVIDER,
    OnnxRuntimeRunner,
    ProviderDroppedError,
    available_providers,
)

LOG = logging.getLogger("sdk.runners")

AUTO = "auto"
TENSORRT = "tensorrt"
ONNXRUNTIME = "onnxruntime"  # GPU provider when present, else CPU
ONNXRUNTIME_GPU = "onnxruntime-gpu"
ONNXRUNTIME_CPU = "onnxruntime-cpu"
BACKENDS = (AUTO, TENSORRT, ONNXRUNTIME, ONNXRUNTIME_GPU, ONNXRUNTIME_CPU)
PRECISIONS = ("fp32", "fp16", "int8")  # int8: onnxruntime-cpu step models only
GENERATOR_MODEL = "generator"


class BackendError(RuntimeError):
    """The requested backend cannot run this bundle here; says why and what to do."""


@dataclass(frozen=True)
class BackendConfig:
    """How to pick and set up the inference backend.

    Attributes:
        backend: one of BACKENDS ("auto" picks tensorrt > onnxruntime-gpu > onnxruntime-cpu).
        device: CUDA device ordinal for GPU backends.
        precision: preferred engine precision ("fp16" | "fp32"); None prefers fp16.
            "int8" picks the bundle's int8 step model on onnxruntime-cpu (one frame per
            step); an error where there is none.
        fallback_to_onnxruntime: when ``backend="tensorrt"`` cannot run (no TensorRT, no
            GPU, no engine for this GPU/TensorRT), use onnxruntime instead of raising; and
            when onnxruntime drops its GPU providers, run on its CPU provider, labelled
            ``onnxruntime-cpu`` with the reason.
        intra_op_num_threads: onnxruntime threads per operator (0: its default).
        ort_tensorrt_ep: put onnxruntime's TensorRT EP before its CUDA EP (it builds its
            own engines at session start: minutes for big models).
        use_cuda_graphs: native TensorRT: one CUDA graph per batch bucket.
        use_step_model: onnxruntime-cpu with one frame per step: run the bundle's one-frame
            step model when it has one (False: always ``generator.onnx``).
    """

    backend: str = AUTO
    device: int = 0
    precision: str | None = None
    fallback_to_onnxruntime: bool = False
    intra_op_num_threads: int = 0
    ort_tensorrt_ep: bool = False
    use_cuda_graphs: bool = True
    use_step_model: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or None, got "
                             f"{self.precision!r}")
        if self.device < 0:
            raise ValueError(f"device must be >= 0, got {self.device}")


@dataclass(frozen=True)
class BackendChoice:
    """What was picked and why the others were not.

    backend: "tensorrt" | "onnxruntime-gpu" | "onnxruntime-cpu".
    reason: why this one.
    rejected: candidate -> why it was not used.
    engine: the engine record (tensorrt only).
    providers: onnxruntime providers in priority order (onnxruntime only).
    """

    backend: str
    reason: str
    rejected: dict[str, str] = field(default_factory=dict)
    engine: EngineRecord | None = None
    providers: tuple[str, ...] = ()
    step_model: StepModelRecord | None = None

    def describe(self) -> str:
        text = f"{self.backend} ({self.reason})"
        if self.step_model is not None:
            text += f"; step model {self.step_model.file} ({self.step_model.precision})"
        if self.rejected:
            text += "; not used: " + "; ".join(f"{k}: {v}" for k, v in self.rejected.items())
        return text


def _version_key(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:3])


def match_engine(
    engines: Sequence[EngineRecord],
    compute_capability: str,
    tensorrt_version: str,
    precision: str | None = None,
    model: str = GENERATOR_MODEL,
) -> tuple[EngineRecord | None, str]:
    """The engine for this GPU and TensorRT, and a sentence on why (or why none fits)."""
    own = [e for e in engines if e.model == model]
    if not own:
        return None, f"the bundle has no {model} engine (build one: gesturert build-engine)"
    fits = [
        e for e in own
        if e.compute_capability == compute_capability
        and _version_key(e.tensorrt_version) == _version_key(tensorrt_version)
    ]
    if not fits:
        have = ", ".join(f"sm{e.compute_capability}/TensorRT {e.tensorrt_version}" for e in own)
        return None, (
            f"no {model} engine for sm{compute_capability} with TensorRT {tensorrt_version} "
            f"(the bundle has {have}); rebuild with gesturert build-engine on this machine"
        )
    wanted = [e for e in fits if e.precision == (precision or "fp16")]
    if precision is not None and not wanted:
        return None, (f"no {precision} {model} engine for sm{compute_capability}/TensorRT "
                      f"{tensorrt_version} (have {[e.precision for e in fits]})")
    engine = (wanted or fits)[0]
    return engine, (f"engine {engine.file} ({engine.precision}) matches sm{compute_capability} "
                    f"and TensorRT {tensorrt_version}")


def _tensorrt_candidate(bundle: Bundle, config: BackendConfig
                        ) -> tuple[EngineRecord | None, str]:
    from sdk.runners.tensorrt import cuda_compute_capability, tensorrt_version

    try:
        version = tensorrt_version()
        capability = cuda_compute_capability(config.device)
    except RunnerError as exc:
        return None, str(exc)
    return match_engine(bundle.manifest.engines, capability, version, config.precision)


def _cuda_device_reason(device: int) -> str | None:
    from sdk.runners.tensorrt import cuda_compute_capability

    try:
        cuda_compute_capability(device)
    except RunnerError as exc:
        return str(exc)
    return None


def _ort_gpu_candidate(config: BackendConfig) -> tuple[tuple[str, ...] | None, str]:
    providers = available_providers()
    if not providers:
        return None, "onnxruntime is not installed"
    if CUDA_PROVIDER not in providers:
        return None, f"onnxruntime has no {CUDA_PROVIDER} (install onnxruntime-gpu)"
    reason = _cuda_device_reason(config.device)
    if reason is not None:
        return None, reason
    chosen: tuple[str, ...] = (CUDA_PROVIDER, CPU_PROVIDER)
    if config.ort_tensorrt_ep and TENSORRT_PROVIDER in providers:
        chosen = (TENSORRT_PROVIDER, *chosen)
    return chosen, f"onnxruntime with {chosen[0]} on CUDA device {config.device}"


def choose_backend(bundle: Bundle, config: BackendConfig) -> BackendChoice:
    """Decide the backend for ``bundle`` on this machine (nothing is loaded)."""
    rejected: dict[str, str] = {}
    wanted = config.backend
    if wanted in (AUTO, TENSORRT):
        engine, why = _tensorrt_candidate(bundle, config)
        if engine is not None:
            return BackendChoice(TENSORRT, why, rejected, engine=engine)
        if wanted == TENSORRT and not config.fallback_to_onnxruntime:
            raise BackendError(
                f"backend 'tensorrt' cannot run here: {why}. Use backend='onnxruntime', or "
                f"set fallback_to_onnxruntime=True to fall back automatically"
            )
        rejected[TENSORRT] = why
        if wanted == TENSORRT:
            LOG.warning("TensorRT requested but not usable (%s); falling back to onnxruntime", why)
    if wanted in (AUTO, TENSORRT, ONNXRUNTIME, ONNXRUNTIME_GPU):
        providers, why = _ort_gpu_candidate(config)
        if providers is not None:
            return BackendChoice(ONNXRUNTIME_GPU, why, rejected, providers=providers)
        if wanted == ONNXRUNTIME_GPU:
            raise BackendError(f"backend 'onnxruntime-gpu' cannot run here: {why}")
        rejected[ONNXRUNTIME_GPU] = why
    if CPU_PROVIDER not in available_providers():
        raise BackendError(
            "no backend available: onnxruntime is not installed "
            f"({'; '.join(rejected.values()) or 'cpu requested'}); pip install 'gesturert[cpu]'"
        )
    reason = "requested" if wanted == ONNXRUNTIME_CPU else "the fallback that always works"
    return BackendChoice(ONNXRUNTIME_CPU, f"onnxruntime on the CPU: {reason}", rejected,
                         providers=(CPU_PROVIDER,))


def choose_step_model(bundle: Bundle, config: BackendConfig, backend: str,
                      chunk_frames: int | None) -> tuple[StepModelRecord | None, str]:
    """The one-frame step model to run instead of ``generator.onnx``, and why (or why not).

    Used on onnxruntime-cpu with ``chunk_frames == 1`` and ``config.use_step_model``; the
    precision is ``config.precision`` when it is "int8", else "fp32".
    Raises:
        BackendError: "int8" was asked for and cannot be served (no int8 step model, another
            backend, more than one frame per step, or ``use_step_model=False``).
    """
    int8 = config.precision == "int8"
    wanted = "int8" if int8 else "fp32"
    why_not = None
    if backend != ONNXRUNTIME_CPU:
        why_not = f"step models run on onnxruntime-cpu, the backend is {backend}"
    elif chunk_frames != 1:
        why_not = f"step models take one frame per step, chunk_frames is {chunk_frames}"
    elif not config.use_step_model:
        why_not = "use_step_model=False"
    records = [m for m in bundle.manifest.step_models if m.precision == wanted]
    if why_not is None and not records:
        have = [m.precision for m in bundle.manifest.step_models] or "none"
        why_not = f"the bundle has no {wanted} step model (has: {have}; gesturert export-step)"
    if why_not is not None:
        if int8:
            raise BackendError(f"precision 'int8' cannot be served: {why_not}")
        return None, why_not
    return records[0], f"{records[0].file}: one-frame {wanted} step model"


def create_stepper(bundle: Bundle, config: BackendConfig, chunk_frames: int | None = None
                   ) -> tuple[GeneratorStepper, BackendChoice]:
    """Pick a backend (see :func:`choose_backend`), load the generator on it, log the choice.

    ``chunk_frames``: feature frames per step the caller will use (1 allows a step model).
    """
    choice = choose_backend(bundle, config)
    step, _ = choose_step_model(bundle, config, choice.backend, chunk_frames)
    if step is not None:
        choice = dataclasses.replace(choice, step_model=step)
    LOG.info("gesturert backend: %s", choice.describe())
    spec = bundle.manifest.generator
    if choice.backend == TENSORRT:
        from sdk.runners.tensorrt import TensorRTRunner
        from sdk.runners.tensorrt_stepper import TensorRTStepper

        assert choice.engine is not None  # choose_backend sets it for tensorrt
        engine_runner = TensorRTRunner(bundle.path(choice.engine.file), device=config.device)
        return TensorRTStepper(engine_runner, spec.state_size, config.use_cuda_graphs), choice
    providers: list[Any] = list(choice.providers)
    if choice.backend == ONNXRUNTIME_GPU:
        providers = [(p, {"device_id": config.device}) if p != CPU_PROVIDER else p
                     for p in providers]
    model_file = spec.model.file if choice.step_model is None else choice.step_model.file
    runner = OnnxRuntimeRunner(bundle.path(model_file), providers=providers,
                               intra_op_num_threads=config.intra_op_num_threads,
                               allow_provider_fallback=config.fallback_to_onnxruntime,
                               reuse_outputs=True)  # HostStateStepper copies what it keeps
    try:
        runner.activate()
    except ProviderDroppedError as exc:
        raise BackendError(f"backend {choice.backend!r} cannot run here: {exc}. Set "
                           "fallback_to_onnxruntime=True to run on the CPU instead") from exc
    choice = _label_what_runs(choice, runner)
    return HostStateStepper(runner, spec.state_size, choice.backend), choice


def _label_what_runs(choice: BackendChoice, runner: OnnxRuntimeRunner) -> BackendChoice:
    """The choice relabelled ``onnxruntime-cpu`` (saying why) when ORT dropped its GPU
    providers and fallback was allowed; unchanged otherwise."""
    used = tuple(runner.providers)
    if choice.backend != ONNXRUNTIME_GPU or any(p != CPU_PROVIDER for p in used):
        return choice
    why = "; ".join(f"{p}: {w}" for p, w in runner.dropped_providers.items())
    LOG.warning("onnxruntime dropped its GPU providers (%s); running on the CPU", why)
    return BackendChoice(ONNXRUNTIME_CPU, f"onnxruntime on the CPU: the GPU providers were "
                         f"dropped ({why}) and fallback is allowed",
                         {**choice.rejected, ONNXRUNTIME_GPU: why}, providers=used)
