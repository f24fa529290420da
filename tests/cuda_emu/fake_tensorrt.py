"""A stand-in for the ``tensorrt`` module whose engines run an ONNX model with ONNX Runtime.

Together with :class:`cuda_emu.fake_driver.FakeDriver` ("device" memory is host memory)
it runs :class:`sdk.runners.tensorrt.TensorRTRunner` and
:class:`sdk.runners.tensorrt_stepper.TensorRTStepper` unchanged on the CPU: an execution
context reads its inputs from the addresses bound with ``set_tensor_address`` at the
shapes set with ``set_input_shape``, runs the real model, and writes the outputs to their
bound addresses — enqueued on the fake driver, so it is captured into CUDA graphs like the
copies and kernels around it. The profile is given by the test (what the engine was
built with). Contexts created with USER_MANAGED memory refuse to run without it.
"""

from __future__ import annotations

import ctypes
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .fake_driver import FakeDriver

Profile = Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


class _Enum:
    def __init__(self, **members: int) -> None:
        for name, value in members.items():
            setattr(self, name, value)


class FakeContext:
    def __init__(self, engine: FakeEngine, strategy: int) -> None:
        self.engine = engine
        self.strategy = strategy
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.device_memory: int | None = None
        self.runs = 0

    def set_device_memory(self, ptr: int, size: int) -> None:
        assert size >= self.engine.device_memory_size_v2
        self.device_memory = ptr

    def set_input_shape(self, name: str, shape: Any) -> bool:
        self.shapes[name] = tuple(int(d) for d in shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = int(ptr)
        return True

    def _dims(self) -> dict[str, int]:
        dims: dict[str, int] = {}
        for meta in self.engine.session.get_inputs():
            for axis, size in zip(meta.shape, self.shapes.get(meta.name, ()), strict=False):
                if isinstance(axis, str):
                    dims[axis] = size
        return dims

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.shapes:
            return self.shapes[name]
        meta = self.engine.outputs[name]
        dims = self._dims()
        return tuple(dims.get(a, -1) if isinstance(a, str) else int(a) for a in meta.shape)

    def execute_async_v3(self, stream: int) -> bool:
        if self.strategy == FakeEngine.USER_MANAGED and self.device_memory is None:
            return False  # TensorRT: no activation memory was given
        self.engine.driver.enqueue(self._run)
        return True

    def _array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        buffer = (ctypes.c_float * count).from_address(self.addresses[name])
        return np.ctypeslib.as_array(buffer).reshape(shape)  # float32, a view

    def _run(self) -> None:
        self.runs += 1
        feed = {n: self._array(n, s).copy() for n, s in self.shapes.items()}
        names = list(self.engine.outputs)
        for name, value in zip(names, self.engine.session.run(names, feed), strict=True):
            self._array(name, value.shape)[...] = value


class FakeEngine:
    STATIC, USER_MANAGED = 0, 2

    def __init__(self, onnx_path: Path, profile: Profile, driver: FakeDriver) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.profile = profile
        self.driver = driver
        self.inputs = {m.name: m for m in self.session.get_inputs()}
        self.outputs = {m.name: m for m in self.session.get_outputs()}
        self.names = [*self.inputs, *self.outputs]
        self.device_memory_size_v2 = 1 << 16
        self.contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> int:
        return 0 if name in self.inputs else 1

    def get_tensor_dtype(self, name: str) -> str:
        return "float32"

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        meta = self.inputs.get(name) or self.outputs[name]
        return tuple(-1 if isinstance(a, str) else int(a) for a in meta.shape)

    def get_tensor_profile_shape(self, name: str, index: int) -> tuple[tuple[int, ...], ...]:
        return self.profile[name]

    def create_execution_context(self, strategy: int = 0) -> FakeContext:
        context = FakeContext(self, strategy)
        self.contexts.append(context)
        return context


def fake_tensorrt(onnx_path: Path, profile: Profile, driver: FakeDriver) -> types.ModuleType:
    """A ``tensorrt`` module whose Runtime deserialises every plan as ``onnx_path``."""
    module = types.ModuleType("tensorrt")
    engines: list[FakeEngine] = []

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, plan: bytes) -> FakeEngine:
            engine = FakeEngine(onnx_path, profile, driver)
            engines.append(engine)
            return engine

    module.__version__ = "10.13.0.35"  # type: ignore[attr-defined]
    module.Logger = Logger  # type: ignore[attr-defined]
    module.Runtime = Runtime  # type: ignore[attr-defined]
    module.TensorIOMode = _Enum(INPUT=0, OUTPUT=1)  # type: ignore[attr-defined]
    module.ExecutionContextAllocationStrategy = _Enum(  # type: ignore[attr-defined]
        STATIC=FakeEngine.STATIC, ON_PROFILE_CHANGE=1, USER_MANAGED=FakeEngine.USER_MANAGED)
    module.nptype = lambda dtype: np.float32  # type: ignore[attr-defined]
    module.engines = engines  # type: ignore[attr-defined]
    return module
