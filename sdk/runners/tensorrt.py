"""Native TensorRT backend: an engine from the bundle, run with cuda-python.

* :class:`TensorRTRunner` (the :class:`~sdk.runners.base.Runner` interface): deserialises
  an engine plan, makes one CUDA stream, allocates one device buffer and one pinned host
  buffer per I/O tensor at the optimisation profile's largest shape, binds them with
  ``set_tensor_address`` and runs ``execute_async_v3``. ``infer`` returns views of the
  pinned output buffers: they are overwritten by the next call.
* :class:`sdk.runners.tensorrt_stepper.TensorRTStepper` (the generator's
  :class:`~sdk.runners.base.GeneratorStepper`) runs on top of it, with every stream's state
  on the device and one CUDA graph replay per step.

CUDA driver calls and allocations live in :mod:`sdk.runners.cuda_driver`, graph capture
and batch buckets in :mod:`sdk.runners.tensorrt_graph`. tensorrt and cuda-python are
imported inside functions only; importing this module costs nothing. The GPU context is
the device's primary context, made current on every public call, so the objects may be
used from any thread (one at a time).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sdk.runners.base import Runner, RunnerError, TensorMeta
from sdk.runners.cuda_driver import (
    DeviceArray,
    PinnedArray,
    check,
    cuda_compute_capability,
    driver,
)
from sdk.runners.tensorrt_graph import IOTensor, tensor_dims

if TYPE_CHECKING:
    import tensorrt as trt

LOG = logging.getLogger(__name__)
_FLOAT32 = np.dtype(np.float32)


def tensorrt_version() -> str:
    """The installed TensorRT's version string. Raises RunnerError when it cannot load."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or OSError from missing shared libraries
        raise RunnerError(f"TensorRT is not importable ({exc})") from exc
    version = getattr(trt, "__version__", None)
    if version is None or not hasattr(trt, "Runtime"):
        # tensorrt-stubs alone installs a bare `tensorrt` directory that imports as an
        # empty namespace package.
        raise RunnerError("TensorRT is not installed (the `tensorrt` found holds no "
                          "libraries, only type stubs); pip install 'gesturert[gpu]'")
    return str(version)


class TensorRTRunner(Runner):
    """Runs a serialised TensorRT engine (a ``.plan``) on CUDA device ``device``.

    Uses optimisation profile 0. Buffers are sized for the profile's largest shapes.
    """

    def __init__(self, engine_path: str | os.PathLike[str], device: int = 0,
                 name: str | None = None) -> None:
        super().__init__(name or f"tensorrt:{Path(engine_path).name}")
        self.engine_path = Path(engine_path)
        self.device = device
        self.engine: trt.ICudaEngine | None = None
        self.context: trt.IExecutionContext | None = None
        self.stream: Any = None
        self.tensors: dict[str, IOTensor] = {}
        self._cu_device: Any = None
        self._cu_context: Any = None
        self._logger: Any = None

    # ---- CUDA context ----
    def make_current(self) -> None:
        """Make this runner's CUDA context current on the calling thread."""
        check(driver().cuCtxSetCurrent(self._cu_context), "cuCtxSetCurrent")

    def synchronize(self) -> None:
        check(driver().cuStreamSynchronize(self.stream), "cuStreamSynchronize")

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    # ---- lifecycle ----
    def _activate(self) -> None:
        import tensorrt as trt

        cu = driver()
        cuda_compute_capability(self.device)  # cuInit + a clear error without a device
        self._cu_device = check(cu.cuDeviceGet(self.device), "cuDeviceGet")
        self._cu_context = check(cu.cuDevicePrimaryCtxRetain(self._cu_device),
                                  "cuDevicePrimaryCtxRetain")
        self.make_current()
        self.stream = check(cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING.value),
                             "cuStreamCreate")
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        try:
            plan = self.engine_path.read_bytes()
        except OSError as exc:
            self._release_cuda()
            raise RunnerError(f"{self.name}: cannot read the engine file ({exc})") from exc
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            self._release_cuda()
            raise RunnerError(
                f"{self.name}: TensorRT {trt.__version__} could not deserialise the engine; "
                f"it was built for another TensorRT version or GPU: rebuild it "
                f"(gesturert build-engine) or use the onnxruntime backend"
            )
        self.engine = engine
        try:
            self.context = engine.create_execution_context()
            self._allocate_io(engine)
        except BaseException:  # no buffer, stream or context hold may outlive a failure
            self._free_io()
            self.context = None
            self.engine = None
            self._release_cuda()
            raise

    def _allocate_io(self, engine: trt.ICudaEngine) -> None:
        import tensorrt as trt

        assert self.context is not None  # set by _activate just before
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs:  # largest profile shape of every input, to size the outputs
            largest = engine.get_tensor_profile_shape(name, 0)[2]
            self.context.set_input_shape(name, tensor_dims(largest))
        for name in names:
            is_input = name in inputs
            shape = tensor_dims(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RunnerError(f"{self.name}: cannot size tensor {name} (shape {shape})")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            tensor = IOTensor(name, is_input, dtype, shape, DeviceArray(nbytes),
                              PinnedArray(nbytes, dtype))
            self.tensors[name] = tensor
            self.context.set_tensor_address(name, tensor.device.ptr)

    def _release_cuda(self) -> None:
        cu = driver()
        if self.stream is not None:
            check(cu.cuStreamDestroy(self.stream), "cuStreamDestroy")
            self.stream = None
        if self._cu_context is not None:
            check(cu.cuDevicePrimaryCtxRelease(self._cu_device), "cuDevicePrimaryCtxRelease")
            self._cu_context = None

    def _free_io(self) -> None:
        for tensor in self.tensors.values():
            tensor.device.free()
            tensor.host.free()
        self.tensors = {}

    def _deactivate(self) -> None:
        self.make_current()
        self.synchronize()
        self._free_io()
        self.context = None
        self.engine = None
        self._release_cuda()

    def _read_input_metadata(self) -> dict[str, TensorMeta]:
        assert self.engine is not None
        meta = {}
        for name, tensor in self.tensors.items():
            if tensor.is_input:
                dims = tensor_dims(self.engine.get_tensor_shape(name))
                shape = tuple(d if d >= 0 else f"dim{i}" for i, d in enumerate(dims))
                meta[name] = TensorMeta(name, tensor.dtype, shape)
        return meta

    # ---- inference ----
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.context is not None
        cu = driver()
        self.make_current()
        for name, array in feed.items():
            tensor = self.tensors[name]
            if any(a > m for a, m in zip(array.shape, tensor.max_shape, strict=True)):
                raise RunnerError(f"{self.name}: input {name} shape {array.shape} exceeds the "
                                  f"engine profile's maximum {tensor.max_shape}")
            self.context.set_input_shape(name, array.shape)
            staged = tensor.host.view(array.shape)
            staged[...] = array  # cast to the engine's dtype: never more bytes than the buffer
            check(cu.cuMemcpyHtoDAsync(tensor.device.ptr, tensor.host.ptr, staged.nbytes,
                                        self.stream), "cuMemcpyHtoDAsync")
        if not self.context.execute_async_v3(self.stream_handle):
            raise RunnerError(f"{self.name}: execute_async_v3 failed (see TensorRT's log)")
        outputs = {}
        for tensor in self.tensors.values():
            if tensor.is_input:
                continue
            shape = tensor_dims(self.context.get_tensor_shape(tensor.name))
            out = tensor.host.view(shape)
            check(cu.cuMemcpyDtoHAsync(tensor.host.ptr, tensor.device.ptr, out.nbytes,
                                        self.stream), "cuMemcpyDtoHAsync")
            outputs[tensor.name] = out
        self.synchronize()
        return outputs
