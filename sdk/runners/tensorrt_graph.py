"""CUDA-graph replay of the generator step on TensorRT, and the batch bookkeeping around it.

:class:`StepGraph` holds one execution context with fixed (batch, frames) shapes bound to
a :class:`~sdk.runners.tensorrt.TensorRTRunner`'s I/O buffers, and the CUDA graph that
replays host-to-device copies, the engine and device-to-host copies in one launch.
:func:`batch_buckets` lists the batch sizes graphs are captured for;
:func:`contiguous_runs` groups state rows that move with one copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sdk.runners.base import FEATURES, NOISE, POSES, SALIENCY, STATE, RunnerError
from sdk.runners.cuda_driver import check, driver

if TYPE_CHECKING:
    import tensorrt as trt

    from sdk.runners.tensorrt import TensorRTRunner


def tensor_dims(dims: trt.Dims | Sequence[int]) -> tuple[int, ...]:
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


class StepGraph:
    """One execution context with fixed shapes and the CUDA graph that replays it."""

    def __init__(self, runner: TensorRTRunner, batch: int, frames: int,
                 use_cuda_graph: bool) -> None:
        assert runner.engine is not None
        cu = driver()
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
        check(cu.cuStreamBeginCapture(
            stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
            "cuStreamBeginCapture")
        try:
            self._enqueue()
        finally:
            graph = check(cu.cuStreamEndCapture(stream), "cuStreamEndCapture")
        self.graph = graph
        self.graph_exec = check(cu.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")

    def _shape(self, name: str, batch: int, frames: int) -> tuple[int, ...]:
        max_shape = self.runner.tensors[name].max_shape
        return (batch, frames, *max_shape[2:]) if name != STATE else (batch, max_shape[1])

    def _enqueue(self) -> None:
        """H2D features and noise, the engine, D2H poses and saliency (``batch`` rows)."""
        cu = driver()
        tensors, stream = self.runner.tensors, self.runner.stream
        for name in (FEATURES, NOISE):
            nbytes = self._nbytes(name)
            check(cu.cuMemcpyHtoDAsync(tensors[name].device.ptr, tensors[name].host.ptr,
                                        nbytes, stream), "cuMemcpyHtoDAsync")
        if not self.context.execute_async_v3(self.runner.stream_handle):
            raise RunnerError(f"{self.runner.name}: execute_async_v3 failed (see TensorRT's log)")
        for name in (POSES, SALIENCY):
            nbytes = self._nbytes(name)
            check(cu.cuMemcpyDtoHAsync(tensors[name].host.ptr, tensors[name].device.ptr,
                                        nbytes, stream), "cuMemcpyDtoHAsync")

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
