"""Native TensorRT backend: an engine from the bundle, run with cuda-python.

* :class:`TensorRTRunner` (the :class:`~sdk.runners.base.Runner` interface): deserialises
  an engine plan, makes one CUDA stream, allocates one device buffer and one pinned host
  buffer per I/O tensor at the optimisation profile's largest shape, binds them with
  ``set_tensor_address`` and runs ``execute_async_v3``. ``infer`` returns views of the
  pinned output buffers: they are overwritten by the next call.
* :class:`TensorRTStepper` (the generator's :class:`~sdk.runners.base.GeneratorStepper`):
  keeps every stream's state row in a device table between steps; a step gathers the
  rows of its streams into the engine's ``state`` input and scatters ``state_out`` back
  with device-to-device copies (one per run of consecutive slots), and replays a CUDA
  graph captured once per (batch bucket, frames) — host-to-device copies, the engine,
  device-to-host copies — from its own execution context. Batches are padded up to the
  next bucket (powers of two up to the profile's maximum); padded rows are ignored.

CUDA driver calls and allocations live in :mod:`sdk.runners.cuda_driver`, graph capture
and batch buckets in :mod:`sdk.runners.tensorrt_graph`. tensorrt and cuda-python are
imported inside functions only; importing this module costs nothing. The GPU context is
the device's primary context, made current on every public call, so the objects may be
used from any thread (one at a time).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sdk.runners.base import (
    FEATURES,
    GENERATOR_INPUTS,
    GENERATOR_OUTPUTS,
    NOISE,
    POSES,
    SALIENCY,
    STATE,
    STATE_OUT,
    GeneratorStepper,
    Runner,
    RunnerError,
    SlotAllocator,
    StepOutputs,
    TensorMeta,
)
from sdk.runners.cuda_driver import (
    DeviceArray,
    PinnedArray,
    check,
    cuda_compute_capability,
    driver,
)
from sdk.runners.tensorrt_graph import StepGraph, batch_buckets, contiguous_runs, tensor_dims

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


@dataclass
class _IOTensor:
    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: tuple[int, ...]
    device: DeviceArray
    host: PinnedArray


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
        self.tensors: dict[str, _IOTensor] = {}
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
        self.context = engine.create_execution_context()
        self._allocate_io(engine)

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
            tensor = _IOTensor(name, is_input, dtype, shape, DeviceArray(nbytes),
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

    def _deactivate(self) -> None:
        self.make_current()
        self.synchronize()
        for tensor in self.tensors.values():
            tensor.device.free()
            tensor.host.free()
        self.tensors = {}
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
            tensor.host.view(array.shape)[...] = array
            check(cu.cuMemcpyHtoDAsync(tensor.device.ptr, tensor.host.ptr, array.nbytes,
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


class TensorRTStepper(GeneratorStepper):
    """The generator step on TensorRT with every stream's state kept on the device.

    Args:
        runner: an active-able :class:`TensorRTRunner` of ``generator`` engine (activated here).
        state_size: S from the manifest; must match the engine's ``state`` input.
        use_cuda_graphs: capture one CUDA graph per (batch bucket, frames); False runs
            ``execute_async_v3`` directly every step (for debugging).

    ``step`` returns views of pinned buffers, overwritten by the next step.
    """

    backend = "tensorrt"
    runner: TensorRTRunner

    def __init__(self, runner: TensorRTRunner, state_size: int,
                 use_cuda_graphs: bool = True) -> None:
        runner.activate()
        self.runner = runner
        self.state_size = state_size
        self.use_cuda_graphs = use_cuda_graphs
        tensors = runner.tensors
        missing = [n for n in GENERATOR_INPUTS + GENERATOR_OUTPUTS if n not in tensors]
        if missing:
            raise RunnerError(f"{runner.name}: engine lacks tensors {missing} of the step contract")
        wrong = [n for n in tensors if tensors[n].dtype != _FLOAT32]
        if wrong:
            raise RunnerError(f"{runner.name}: tensors {wrong} are not float32; the step "
                              f"contract keeps float32 I/O (build with fp32 I/O)")
        if tensors[STATE].max_shape[1] != state_size:
            raise RunnerError(f"{runner.name}: engine state has {tensors[STATE].max_shape[1]} "
                              f"floats per stream, the manifest says {state_size}")
        assert runner.engine is not None
        profile = runner.engine.get_tensor_profile_shape(STATE, 0)
        self._min_batch, self._max_batch = int(profile[0][0]), int(profile[2][0])
        frames_profile = runner.engine.get_tensor_profile_shape(FEATURES, 0)
        self._min_frames, self._max_frames = int(frames_profile[0][1]), int(frames_profile[2][1])
        self.buckets = batch_buckets(self._min_batch, self._max_batch)
        self._graphs: dict[tuple[int, int], StepGraph] = {}
        self._slots = SlotAllocator()
        self._row_bytes = state_size * _FLOAT32.itemsize
        self._capacity = 0
        self._table: DeviceArray | None = None
        self._grow(max(16, self._max_batch))

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def _grow(self, capacity: int) -> None:
        cu = driver()
        self.runner.make_current()
        table = DeviceArray(capacity * self._row_bytes)
        check(cu.cuMemsetD8Async(table.ptr, 0, table.nbytes, self.runner.stream),
               "cuMemsetD8Async")
        if self._table is not None:
            check(cu.cuMemcpyDtoDAsync(table.ptr, self._table.ptr,
                                        self._capacity * self._row_bytes, self.runner.stream),
                   "cuMemcpyDtoDAsync")
            self.runner.synchronize()
            self._table.free()
        self._table, self._capacity = table, capacity

    def _row(self, slot: int) -> int:
        assert self._table is not None
        return self._table.ptr + slot * self._row_bytes

    def allocate_slot(self) -> int:
        slot = self._slots.allocate()
        if slot >= self._capacity:
            self._grow(2 * self._capacity)
        self.reset_slot(slot)
        return slot

    def release_slot(self, slot: int) -> None:
        self._slots.release(slot)

    def reset_slot(self, slot: int) -> None:
        self._slots.check_live(slot)
        self.runner.make_current()
        check(driver().cuMemsetD8Async(self._row(slot), 0, self._row_bytes, self.runner.stream),
               "cuMemsetD8Async")

    def read_state(self, slot: int) -> np.ndarray:
        self._slots.check_live(slot)
        self.runner.make_current()
        self.runner.synchronize()
        out = np.empty(self.state_size, dtype=np.float32)
        check(driver().cuMemcpyDtoH(out.ctypes.data, self._row(slot), self._row_bytes),
               "cuMemcpyDtoH")
        return out

    def _bucket(self, batch: int) -> int:
        for size in self.buckets:
            if size >= batch:
                return size
        raise RunnerError(f"{self.runner.name}: {batch} streams in one step exceed the engine's "
                          f"maximum batch {self._max_batch}")

    def step(self, features: np.ndarray, noise: np.ndarray, slots: Sequence[int]) -> StepOutputs:
        batch, frames = features.shape[0], features.shape[1]
        self._check_slots(slots, batch)
        for slot in slots:
            self._slots.check_live(int(slot))
        if not self._min_frames <= frames <= self._max_frames:
            raise RunnerError(f"{self.runner.name}: {frames} frames per step is outside the "
                              f"engine profile [{self._min_frames}, {self._max_frames}]")
        cu = driver()
        runner = self.runner
        runner.make_current()
        bucket = self._bucket(batch)
        graph = self._graphs.get((bucket, frames))
        if graph is None:
            graph = StepGraph(runner, bucket, frames, self.use_cuda_graphs)
            self._graphs[(bucket, frames)] = graph
        tensors = runner.tensors
        tensors[FEATURES].host.view((bucket, *features.shape[1:]))[:batch] = features
        tensors[NOISE].host.view((bucket, *noise.shape[1:]))[:batch] = noise
        runs = contiguous_runs(slots)
        state_in, state_out = tensors[STATE].device.ptr, tensors[STATE_OUT].device.ptr
        for row, slot, count in runs:  # gather: table -> engine input
            check(cu.cuMemcpyDtoDAsync(state_in + row * self._row_bytes, self._row(slot),
                                        count * self._row_bytes, runner.stream),
                   "cuMemcpyDtoDAsync")
        graph.launch()
        for row, slot, count in runs:  # scatter: engine output -> table
            check(cu.cuMemcpyDtoDAsync(self._row(slot), state_out + row * self._row_bytes,
                                        count * self._row_bytes, runner.stream),
                   "cuMemcpyDtoDAsync")
        runner.synchronize()
        poses_shape = (bucket, frames, *tensors[POSES].max_shape[2:])
        return StepOutputs(
            poses=tensors[POSES].host.view(poses_shape)[:batch],
            saliency=tensors[SALIENCY].host.view((bucket, frames))[:batch],
        )

    def close(self) -> None:
        if not self.runner.is_active:
            return
        self.runner.make_current()
        self.runner.synchronize()
        for graph in self._graphs.values():
            graph.destroy()
        self._graphs = {}
        if self._table is not None:
            self._table.free()
            self._table = None
        self.runner.deactivate()
