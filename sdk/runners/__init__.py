"""Inference backends behind one runner interface (see :mod:`sdk.runners.base`).

``onnxrt`` (ONNX Runtime: CPU, CUDA and TensorRT execution providers) and ``tensorrt``
(native TensorRT through cuda-python) import their libraries only when activated;
``select`` picks one for a bundle (``auto``: tensorrt > onnxruntime-gpu > onnxruntime-cpu).
"""

from sdk.runners.base import (
    GeneratorStepper,
    Runner,
    RunnerError,
    RunnerInputError,
    StepOutputs,
    TensorMeta,
)
from sdk.runners.host_stepper import HostStateStepper
from sdk.runners.onnxrt import OnnxRuntimeRunner
from sdk.runners.select import (
    BACKENDS,
    BackendChoice,
    BackendConfig,
    BackendError,
    choose_backend,
    create_stepper,
    match_engine,
)

__all__ = [
    "BACKENDS",
    "BackendChoice",
    "BackendConfig",
    "BackendError",
    "GeneratorStepper",
    "HostStateStepper",
    "OnnxRuntimeRunner",
    "Runner",
    "RunnerError",
    "RunnerInputError",
    "StepOutputs",
    "TensorMeta",
    "choose_backend",
    "create_stepper",
    "match_engine",
]
