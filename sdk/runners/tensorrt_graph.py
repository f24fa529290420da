"""CUDA-graph replay of the generator step on TensorRT, and the bookkeeping around it.

The lower module of the TensorRT backend (``tensorrt.py`` and ``tensorrt_stepper.py``
import it; it imports neither): I/O tensor records, batch buckets, and :class:`StepGraph`.

A :class:`StepGraph` is one execution context with fixed (batch, frames) shapes, bound to
the runner's I/O buffers, and the CUDA graph that replays a whole step in one launch:

1. host -> device: the batch's state slots (int32), the features (unless a device
   producer such as :class:`sdk.cuda.mfcc.CudaMfcc` already wrote them into the engine's
   ``features`` binding) and the noise, from pinned buffers;
2. ``gather_state_rows``: the slots' rows of the device state table -> ``state``;
3. the engine (``execute_async_v3``);
4. ``scatter_state_rows``: ``state_out`` -> the slots' rows of the table;
5. device -> host: poses and saliency, into pinned buffers.

Contexts are created with user-managed activation memory and all share one buffer
(they run one at a time on one stream). When stream capture fails (a TensorRT plugin or
driver that cannot be captured) the step falls back to enqueuing the same work directly.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sdk.runners.base import (
    FEATURES,
    NOISE,
    POSES,
    SALIENCY,
    STATE,
    STATE_OUT,
    STYLE,
    RunnerError,
)
from sdk.runners.cuda_driver import DeviceArray, PinnedArray, check, driver

if TYPE_CHECKING:
    import tensorrt as trt

LOG = logging.getLogger(__name__)
STATE_THREADS = 128  # threads per block of the state gather/scatter kernels


def tensor_dims(dims: trt.Dims | Sequence[int]) -> tuple[int, ...]:
    """A TensorRT Dims (or any int sequence) as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def batch_buckets(min_batch: int, max_batch: int) -> tuple[int, ...]:
    """Batch sizes CUDA graphs are captured for: powers of two in [min, max], and max."""
    sizes = {max_batch}
    size = 1
    while size < max_batch:
        if size >= min_batch:
            sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


@dataclass
class IOTensor:
    """One engine I/O tensor: device buffer and pinned host buffer at the largest shape."""

    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: tuple[int, ...]
    device: DeviceArray
    host: PinnedArray


class BoundEngine(Protocol):
    """What a StepGraph needs of :class:`sdk.runners.tensorrt.TensorRTRunner`."""

    name: str
    engine: Any
    tensors: dict[str, IOTensor]
    stream: Any

    @property
    def stream_handle(self) -> int: ...

    def synchronize(self) -> None: ...


@dataclass
class StateKernels:
    """The state gather/scatter launches of one stepper: a launch function
    ``(kernel, grid, block, args)`` on the runner's stream, the device table and the
    device slot buffer (int32, one per batch row)."""

    launch: Callable[[str, tuple[int, int, int], tuple[int, int, int], list[Any]], None]
    table_ptr: int
    slots: DeviceArray
    slots_host: PinnedArray
    state_size: int


class StepGraph:
    """One execution context with fixed shapes and the CUDA graph that replays a step.

    Args:
        runner: the engine, its I/O buffers and stream.
        batch, frames: the fixed input shapes (batch is a bucket: rows past the real batch
            are padding, their slot is -1).
        state: the state kernels and buffers.
        features_on_device: the features are written into the engine binding on the
            stream before each launch: no host -> device copy of them.
        context_memory: a device buffer of ``engine.device_memory_size_v2`` bytes shared
            by every context, or None for TensorRT's own allocation.
        use_cuda_graph: capture a graph (False: enqueue the work directly every step).
    """

    def __init__(self, runner: BoundEngine, batch: int, frames: int, state: StateKernels,
                 features_on_device: bool, context_memory: DeviceArray | None,
                 use_cuda_graph: bool) -> None:
        import tensorrt as trt

        self.runner = runner
        self.batch = batch
        self.state = state
        self.features_on_device = features_on_device
        if context_memory is not None:
            strategy = trt.ExecutionContextAllocationStrategy.USER_MANAGED
            self.context = runner.engine.create_execution_context(strategy)
            if hasattr(self.context, "set_device_memory"):  # TensorRT >= 10.1
                self.context.set_device_memory(context_memory.ptr, context_memory.nbytes)
            else:
                self.context.device_memory = context_memory.ptr
        else:
            self.context = runner.engine.create_execution_context()
        if self.context is None:
            raise RunnerError(f"{runner.name}: TensorRT could not create an execution context")
        for name, tensor in runner.tensors.items():
            if tensor.is_input:
                self.context.set_input_shape(name, self._shape(name, batch, frames))
            self.context.set_tensor_address(name, tensor.device.ptr)
        self.graph: Any = None
        self.graph_exec: Any = None
        #: why the step runs without a graph (None: it replays one)
        self.capture_error: str | None = None if use_cuda_graph else "disabled"
        self._enqueue()  # a first run outside capture lets TensorRT finish lazy set-up
        runner.synchronize()
        if use_cuda_graph:
            self._capture()

    def _capture(self) -> None:
        cu = driver()
        stream = self.runner.stream
        check(cu.cuStreamBeginCapture(
            stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
            "cuStreamBeginCapture")
        failure: str | None = None
        try:
            self._enqueue()
        except Exception as exc:  # enqueue refused during capture: end it, then fall back
            failure = str(exc)
        err, *graph = cu.cuStreamEndCapture(stream)
        if failure is None and err != cu.CUresult.CUDA_SUCCESS:
            failure = f"cuStreamEndCapture: {getattr(err, 'name', err)}"
        if failure is None:
            self.graph = graph[0]
            err, *graph_exec = cu.cuGraphInstantiate(self.graph, 0)
            if err == cu.CUresult.CUDA_SUCCESS:
                self.graph_exec = graph_exec[0]
                return
            failure = f"cuGraphInstantiate: {getattr(err, 'name', err)}"
        self.destroy()
        self.capture_error = failure
        LOG.warning("%s: CUDA graph capture of the (batch %d) step failed (%s); enqueuing "
                    "the step directly instead", self.runner.name, self.batch, failure)

    def _shape(self, name: str, batch: int, frames: int) -> tuple[int, ...]:
        max_shape = self.runner.tensors[name].max_shape
        if name == STYLE:  # (batch,) int32, an engine with styles
            return (batch,)
        return (batch, frames, *max_shape[2:]) if name != STATE else (batch, max_shape[1])

    def _enqueue(self) -> None:
        """Slots, (features,) noise H2D; gather; engine; scatter; poses, saliency D2H."""
        cu = driver()
        tensors, stream = self.runner.tensors, self.runner.stream
        state = self.state
        check(cu.cuMemcpyHtoDAsync(state.slots.ptr, state.slots_host.ptr, 4 * self.batch,
                                    stream), "cuMemcpyHtoDAsync")
        copied = (NOISE,) if self.features_on_device else (FEATURES, NOISE)
        for name in copied + ((STYLE,) if STYLE in tensors else ()):
            check(cu.cuMemcpyHtoDAsync(tensors[name].device.ptr, tensors[name].host.ptr,
                                        self._nbytes(name), stream), "cuMemcpyHtoDAsync")
        grid = (-(-state.state_size // STATE_THREADS), self.batch, 1)
        state.launch("gather_state_rows", grid, (STATE_THREADS, 1, 1),
                     [ctypes.c_void_p(state.slots.ptr), ctypes.c_int(state.state_size),
                      ctypes.c_void_p(state.table_ptr),
                      ctypes.c_void_p(tensors[STATE].device.ptr)])
        if not self.context.execute_async_v3(self.runner.stream_handle):
            raise RunnerError(f"{self.runner.name}: execute_async_v3 failed (see TensorRT's log)")
        state.launch("scatter_state_rows", grid, (STATE_THREADS, 1, 1),
                     [ctypes.c_void_p(state.slots.ptr), ctypes.c_int(state.state_size),
                      ctypes.c_void_p(tensors[STATE_OUT].device.ptr),
                      ctypes.c_void_p(state.table_ptr)])
        for name in (POSES, SALIENCY):
            check(cu.cuMemcpyDtoHAsync(tensors[name].host.ptr, tensors[name].device.ptr,
                                        self._nbytes(name), stream), "cuMemcpyDtoHAsync")

    def _nbytes(self, name: str) -> int:
        shape = tensor_dims(self.context.get_tensor_shape(name))
        return int(np.prod(shape)) * self.runner.tensors[name].dtype.itemsize

    def launch(self) -> None:
        if self.graph_exec is None:
            self._enqueue()
        else:
            check(driver().cuGraphLaunch(self.graph_exec, self.runner.stream), "cuGraphLaunch")

    def destroy(self) -> None:
        cu = driver()
        if self.graph_exec is not None:
            check(cu.cuGraphExecDestroy(self.graph_exec), "cuGraphExecDestroy")
            self.graph_exec = None
        if self.graph is not None:
            check(cu.cuGraphDestroy(self.graph), "cuGraphDestroy")
            self.graph = None
