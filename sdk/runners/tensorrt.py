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

tensorrt and cuda-python are imported inside functions only; importing this module
costs nothing. The GPU context is the device's primary context, made current on every
public call, so the objects may be used from any thread (one at a time).
"""

from __future__ import annotations

import ctypes
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

if TYPE_CHECKING:
    import tensorrt as trt

LOG = logging.getLogger(__name__)
_FLOAT32 = np.dtype(np.float32)


def _driver() -> Any:
    """cuda-python's driver module (``cuda.bindings.driver``; ``cuda.cuda`` before 12.6)."""
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver  # type: ignore[no-redef]
        except ImportError as exc:
            raise RunnerError(
                "cuda-python is not installed; pip install 'gesturert[gpu]'"
            ) from exc
    return driver


def _check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(CUresult, value...)`` tuple; raise RunnerError on failure."""
    cu = _driver()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cu.CUresult.CUDA_SUCCESS:
        name = cu.cuGetErrorName(err)[1]
        text = name.decode() if isinstance(name, bytes) else str(name)
        raise RunnerError(f"CUDA {what} failed: {text}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def cuda_compute_capability(device: int = 0) -> str:
    """Compute capability of CUDA device ``device`` as "major.minor" (e.g. "9.0").

    Raises:
        RunnerError: cuda-python or the driver is missing, or there is no such device.
    """
    cu = _driver()
    try:
        _check(cu.cuInit(0), "cuInit")
    except RunnerError:
        raise
    except Exception as exc:  # the driver library itself is missing
        raise RunnerError(f"no CUDA driver ({exc})") from exc
    count = _check(cu.cuDeviceGetCount(), "cuDeviceGetCount")
    if not 0 <= device < count:
        raise RunnerError(f"CUDA device {device} does not exist ({count} devices)")
    dev = _check(cu.cuDeviceGet(device), "cuDeviceGet")
    attr = cu.CUdevice_attribute
    major = _check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                           dev), "cuDeviceGetAttribute")
    minor = _check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                           dev), "cuDeviceGetAttribute")
    return f"{major}.{minor}"


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


def _dims(dims: trt.Dims | Sequence[int]) -> tuple[int, ...]:
    """A TensorRT Dims (or any int sequence) as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def contiguous_runs(slots: Sequence[int]) -> list[tuple[int, int, int]]:
    """Group batch rows whose slots are consecutive: [(first_row, first_slot, count), ...].

    Rows b..b+n-1 with slots s..s+n-1 move with one copy of n state rows.
    """
    runs: list[tuple[int, int, int]] = []
    for row, slot in enumerate(int(s) for s in slots):
        if runs and runs[-1][1] + runs[-1][2] == slot:
            first_row, first_slot, count = runs[-1]
            runs[-1] = (first_row, first_slot, count + 1)
        else:
            runs.append((row, slot, 1))
    return runs


def batch_buckets(min_batch: int, max_batch: int) -> tuple[int, ...]:
    """Batch sizes CUDA graphs are captured for: powers of two in [min, max], and max."""
    sizes = {max_batch}
    size = 1
    while size < max_batch:
        if size >= min_batch:
            sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


class _DeviceArray:
    """A device allocation of ``nbytes`` bytes (freed by :meth:`free`)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(_check(_driver().cuMemAlloc(self.nbytes), "cuMemAlloc"))

    def free(self) -> None:
        if self.ptr:
            _check(_driver().cuMemFree(self.ptr), "cuMemFree")
            self.ptr = 0


class _PinnedArray:
    """Page-locked host memory of ``nbytes`` with a numpy view (zero-filled)."""

    def __init__(self, nbytes: int, dtype: np.dtype) -> None:
        self.nbytes = max(int(nbytes), dtype.itemsize)
        self.ptr = int(_check(_driver().cuMemHostAlloc(self.nbytes, 0), "cuMemHostAlloc"))
        raw = np.ctypeslib.as_array(ctypes.cast(self.ptr, ctypes.POINTER(ctypes.c_byte)),
                                    shape=(self.nbytes,))
        self.array = raw.view(dtype)
        self.array[:] = 0

    def view(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.array[: int(np.prod(shape))].reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = np.zeros(0, self.array.dtype)
            _check(_driver().cuMemFreeHost(self.ptr), "cuMemFreeHost")
            self.ptr = 0


@dataclass
class _IOTensor:
    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: tuple[int, ...]
    device: _DeviceArray
    host: _PinnedArray


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
        _check(_driver().cuCtxSetCurrent(self._cu_context), "cuCtxSetCurrent")

    def synchronize(self) -> None:
        _check(_driver().cuStreamSynchronize(self.stream), "cuStreamSynchronize")

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    # ---- lifecycle ----
    def _activate(self) -> None:
        import tensorrt as trt

        cu = _driver()
        cuda_compute_capability(self.device)  # cuInit + a clear error without a device
        self._cu_device = _check(cu.cuDeviceGet(self.device), "cuDeviceGet")
        self._cu_context = _check(cu.cuDevicePrimaryCtxRetain(self._cu_device),
                                  "cuDevicePrimaryCtxRetain")
        self.make_current()
        self.stream = _check(cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING.value),
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
            self.context.set_input_shape(name, _dims(engine.get_tensor_profile_shape(name, 0)[2]))
        for name in names:
            is_input = name in inputs
            shape = _dims(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RunnerError(f"{self.name}: cannot size tensor {name} (shape {shape})")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            tensor = _IOTensor(name, is_input, dtype, shape, _DeviceArray(nbytes),
                               _PinnedArray(nbytes, dtype))
            self.tensors[name] = tensor
            self.context.set_tensor_address(name, tensor.device.ptr)

    def _release_cuda(self) -> None:
        cu = _driver()
        if self.stream is not None:
            _check(cu.cuStreamDestroy(self.stream), "cuStreamDestroy")
            self.stream = None
        if self._cu_context is not None:
            _check(cu.cuDevicePrimaryCtxRelease(self._cu_device), "cuDevicePrimaryCtxRelease")
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
                dims = _dims(self.engine.get_tensor_shape(name))
                shape = tuple(d if d >= 0 else f"dim{i}" for i, d in enumerate(dims))
                meta[name] = TensorMeta(name, tensor.dtype, shape)
        return meta

    # ---- inference ----
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.context is not None
        cu = _driver()
        self.make_current()
        for name, array in feed.items():
            tensor = self.tensors[name]
            if any(a > m for a, m in zip(array.shape, tensor.max_shape, strict=True)):
                raise RunnerError(f"{self.name}: input {name} shape {array.shape} exceeds the "
                                  f"engine profile's maximum {tensor.max_shape}")
            self.context.set_input_shape(name, array.shape)
            tensor.host.view(array.shape)[...] = array
            _check(cu.cuMemcpyHtoDAsync(tensor.device.ptr, tensor.host.ptr, array.nbytes,
                                        self.stream), "cuMemcpyHtoDAsync")
        if not self.context.execute_async_v3(self.stream_handle):
            raise RunnerError(f"{self.name}: execute_async_v3 failed (see TensorRT's log)")
        outputs = {}
        for tensor in self.tensors.values():
            if tensor.is_input:
                continue
            shape = _dims(self.context.get_tensor_shape(tensor.name))
            out = tensor.host.view(shape)
            _check(cu.cuMemcpyDtoHAsync(tensor.host.ptr, tensor.device.ptr, out.nbytes,
                                        self.stream), "cuMemcpyDtoHAsync")
            outputs[tensor.name] = out
        self.synchronize()
        return outputs


class _Graph:
    """One execution context with fixed shapes and the CUDA graph that replays it."""

    def __init__(self, runner: TensorRTRunner, batch: int, frames: int,
                 use_cuda_graph: bool) -> None:
        assert runner.engine is not None
        cu = _driver()
        self.runner = runner
        self.batch = batch
        self.context = runner.engine.create_execution_context()
        for name, tensor in runner.tensors.items():
            if tensor.is_input:
                self.context.set_input_shape(name, self._shape(name, batch, frames))
            self.context.set_tensor_address(name, tensor.device.ptr)
        self.graph: Any = None
        self.graph_exec: Any = None
        self._enqueue()  # a first run outside capture lets TensorRT finish lazy set-up
        runner.synchronize()
        if not use_cuda_graph:
            return
        stream = runner.stream
        _check(cu.cuStreamBeginCapture(
            stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
            "cuStreamBeginCapture")
        try:
            self._enqueue()
        finally:
            graph = _check(cu.cuStreamEndCapture(stream), "cuStreamEndCapture")
        self.graph = graph
        self.graph_exec = _check(cu.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")

    def _shape(self, name: str, batch: int, frames: int) -> tuple[int, ...]:
        max_shape = self.runner.tensors[name].max_shape
        return (batch, frames, *max_shape[2:]) if name != STATE else (batch, max_shape[1])

    def _enqueue(self) -> None:
        """H2D features and noise, the engine, D2H poses and saliency (``batch`` rows)."""
        cu = _driver()
        tensors, stream = self.runner.tensors, self.runner.stream
        for name in (FEATURES, NOISE):
            nbytes = self._nbytes(name)
            _check(cu.cuMemcpyHtoDAsync(tensors[name].device.ptr, tensors[name].host.ptr,
                                        nbytes, stream), "cuMemcpyHtoDAsync")
        if not self.context.execute_async_v3(self.runner.stream_handle):
            raise RunnerError(f"{self.runner.name}: execute_async_v3 failed (see TensorRT's log)")
        for name in (POSES, SALIENCY):
            nbytes = self._nbytes(name)
            _check(cu.cuMemcpyDtoHAsync(tensors[name].host.ptr, tensors[name].device.ptr,
                                        nbytes, stream), "cuMemcpyDtoHAsync")

    def _nbytes(self, name: str) -> int:
        shape = _dims(self.context.get_tensor_shape(name))
        return int(np.prod(shape)) * self.runner.tensors[name].dtype.itemsize

    def launch(self) -> None:
        if self.graph_exec is None:
            self._enqueue()
        else:
            _check(_driver().cuGraphLaunch(self.graph_exec, self.runner.stream), "cuGraphLaunch")

    def destroy(self) -> None:
        cu = _driver()
        if self.graph_exec is not None:
            _check(cu.cuGraphExecDestroy(self.graph_exec), "cuGraphExecDestroy")
            self.graph_exec = None
        if self.graph is not None:
            _check(cu.cuGraphDestroy(self.graph), "cuGraphDestroy")
            self.graph = None


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
        self._graphs: dict[tuple[int, int], _Graph] = {}
        self._slots = SlotAllocator()
        self._row_bytes = state_size * _FLOAT32.itemsize
        self._capacity = 0
        self._table: _DeviceArray | None = None
        self._grow(max(16, self._max_batch))

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def _grow(self, capacity: int) -> None:
        cu = _driver()
        self.runner.make_current()
        table = _DeviceArray(capacity * self._row_bytes)
        _check(cu.cuMemsetD8Async(table.ptr, 0, table.nbytes, self.runner.stream),
               "cuMemsetD8Async")
        if self._table is not None:
            _check(cu.cuMemcpyDtoDAsync(table.ptr, self._table.ptr,
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
        _check(_driver().cuMemsetD8Async(self._row(slot), 0, self._row_bytes, self.runner.stream),
               "cuMemsetD8Async")

    def read_state(self, slot: int) -> np.ndarray:
        self._slots.check_live(slot)
        self.runner.make_current()
        self.runner.synchronize()
        out = np.empty(self.state_size, dtype=np.float32)
        _check(_driver().cuMemcpyDtoH(out.ctypes.data, self._row(slot), self._row_bytes),
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
        cu = _driver()
        runner = self.runner
        runner.make_current()
        bucket = self._bucket(batch)
        graph = self._graphs.get((bucket, frames))
        if graph is None:
            graph = _Graph(runner, bucket, frames, self.use_cuda_graphs)
            self._graphs[(bucket, frames)] = graph
        tensors = runner.tensors
        tensors[FEATURES].host.view((bucket, *features.shape[1:]))[:batch] = features
        tensors[NOISE].host.view((bucket, *noise.shape[1:]))[:batch] = noise
        runs = contiguous_runs(slots)
        state_in, state_out = tensors[STATE].device.ptr, tensors[STATE_OUT].device.ptr
        for row, slot, count in runs:  # gather: table -> engine input
            _check(cu.cuMemcpyDtoDAsync(state_in + row * self._row_bytes, self._row(slot),
                                        count * self._row_bytes, runner.stream),
                   "cuMemcpyDtoDAsync")
        graph.launch()
        for row, slot, count in runs:  # scatter: engine output -> table
            _check(cu.cuMemcpyDtoDAsync(self._row(slot), state_out + row * self._row_bytes,
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
