"""The generator step on TensorRT with every stream's state on the device.

:class:`TensorRTStepper` keeps a device table of state rows (one per slot) and runs each
step as one CUDA graph replay (:class:`sdk.runners.tensorrt_graph.StepGraph`): the slots,
features and noise go host -> device from pinned buffers, the ``gather_state_rows`` kernel
(``sdk/cuda/state.cu``) fills the engine's ``state`` input, the engine runs,
``scatter_state_rows`` writes ``state_out`` back, and poses and saliency come back to pinned
buffers. A step is therefore two driver calls (graph launch, synchronize) whatever the
slots. Batches are padded up to the next bucket (powers of two up to the profile's
maximum); padded rows read zeros and write nothing.

Device features: :meth:`TensorRTStepper.step_device_features` runs a step whose features
a device producer already wrote into :meth:`TensorRTStepper.features_binding` on the same
stream (:class:`sdk.cuda.mfcc.CudaMfcc` with ``runner=stepper.kernel_runner``): nothing is
copied from the host but the noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sdk.runners.base import (
    FEATURES,
    GENERATOR_INPUTS,
    GENERATOR_OUTPUTS,
    NOISE,
    POSES,
    SALIENCY,
    STATE,
    STYLE,
    GeneratorStepper,
    RunnerError,
    RunnerInputError,
    SlotAllocator,
    StepOutputs,
)
from sdk.runners.cuda_driver import DeviceArray, PinnedArray, check, driver
from sdk.runners.tensorrt import TensorRTRunner
from sdk.runners.tensorrt_graph import StateKernels, StepGraph, batch_buckets

_FLOAT32 = np.dtype(np.float32)
STATE_SOURCE = "state.cu"


class TensorRTStepper(GeneratorStepper):
    """The generator step on TensorRT with every stream's state kept on the device.

    Args:
        runner: a :class:`TensorRTRunner` of the ``generator`` engine (activated here).
        state_size: S from the manifest; must match the engine's ``state`` input.
        use_cuda_graphs: capture one CUDA graph per (batch bucket, frames); False runs
            the same work directly every step (for debugging). A capture that fails falls
            back to direct enqueuing too (logged once per graph).

    ``step`` returns views of pinned buffers, overwritten by the next step.
    """

    backend = "tensorrt"
    launch_bound = True  # a GPU step (GeneratorStepper.launch_bound)
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
        wrong = [n for n in tensors
                 if tensors[n].dtype != (np.dtype(np.int32) if n == STYLE else _FLOAT32)]
        if wrong:
            raise RunnerError(f"{runner.name}: tensors {wrong} are not float32 (style: int32); "
                              f"the step contract keeps float32 I/O (build with fp32 I/O)")
        self.styled = STYLE in tensors
        if tensors[STATE].max_shape[1] != state_size:
            raise RunnerError(f"{runner.name}: engine state has {tensors[STATE].max_shape[1]} "
                              f"floats per stream, the manifest says {state_size}")
        assert runner.engine is not None
        engine = runner.engine
        profile = engine.get_tensor_profile_shape(STATE, 0)
        self._min_batch, self._max_batch = int(profile[0][0]), int(profile[2][0])
        if self._max_batch > 65535:
            raise RunnerError(f"{runner.name}: the engine's batch profile reaches "
                              f"{self._max_batch} streams; steps launch one grid row per "
                              "stream (at most 65535): rebuild with a smaller batch profile")
        frames_profile = engine.get_tensor_profile_shape(FEATURES, 0)
        self._min_frames, self._max_frames = int(frames_profile[0][1]), int(frames_profile[2][1])
        self.feature_dim = int(tensors[FEATURES].max_shape[2])
        self.noise_dim = int(tensors[NOISE].max_shape[2])
        self.buckets = batch_buckets(self._min_batch, self._max_batch)
        self._graphs: dict[tuple[int, int, bool], StepGraph] = {}
        self._slots = SlotAllocator()
        self._row_bytes = state_size * _FLOAT32.itemsize
        self._capacity = 0
        self._table: DeviceArray | None = None
        from sdk.cuda.launch import CudaRunner

        #: kernels on the engine's stream (state gather/scatter; give it to CudaMfcc too)
        self.kernel_runner = CudaRunner(runner.device, stream=runner.stream_handle)
        self._module = self.kernel_runner.load(STATE_SOURCE, {})
        self._slot_rows = DeviceArray(4 * self._max_batch)
        self._slot_rows_host = PinnedArray(4 * self._max_batch, np.dtype(np.int32))
        size: Any = getattr(engine, "device_memory_size_v2", None)
        if size is None:  # TensorRT 10.0
            size = getattr(engine, "device_memory_size", 0)
        #: activation memory shared by every (bucket, frames) context
        self._context_memory = DeviceArray(int(size))
        self._grow(max(16, self._max_batch))

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def features_binding(self) -> int:
        """Device address of the engine's ``features`` input: (batch, frames, feature_dim)
        float32, C-contiguous, for a step of ``batch`` streams and ``frames`` frames."""
        return self.runner.tensors[FEATURES].device.ptr

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
        self._destroy_graphs()  # they captured the old table's address

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

    def _check_array(self, name: str, array: Any, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(array, np.ndarray) or array.dtype != _FLOAT32:
            raise RunnerInputError(
                f"{self.runner.name}: {name} must be a float32 numpy array, got "
                f"{getattr(array, 'dtype', type(array).__name__)}")
        if array.shape != shape:
            raise RunnerInputError(f"{self.runner.name}: {name} must have shape {shape} "
                                   f"(batch, frames, {shape[-1]}), got {array.shape}")
        return array

    def step(self, features: np.ndarray, noise: np.ndarray, slots: Sequence[int],
             styles: np.ndarray | None = None) -> StepOutputs:
        if not isinstance(features, np.ndarray) or features.ndim != 3:
            raise RunnerInputError(f"{self.runner.name}: features must be a (batch, frames, "
                                   f"{self.feature_dim}) float32 array, got "
                                   f"{getattr(features, 'shape', type(features).__name__)}")
        batch, frames = features.shape[0], features.shape[1]
        self._check_array(FEATURES, features, (batch, frames, self.feature_dim))
        return self._run(batch, frames, noise, slots, features, styles)

    def step_device_features(self, noise: np.ndarray, slots: Sequence[int],
                             styles: np.ndarray | None = None) -> StepOutputs:
        """A step whose features are already in :attr:`features_binding` (written on the
        engine's stream, rows 0..len(slots)-1); ``noise`` (B, frames, noise_dim) as in
        :meth:`step` gives the frame count."""
        if not isinstance(noise, np.ndarray) or noise.ndim != 3:
            raise RunnerInputError(f"{self.runner.name}: noise must be (batch, frames, "
                                   f"{self.noise_dim}) float32")
        return self._run(noise.shape[0], noise.shape[1], noise, slots, None, styles)

    def _run(self, batch: int, frames: int, noise: np.ndarray, slots: Sequence[int],
             features: np.ndarray | None, styles: np.ndarray | None = None) -> StepOutputs:
        self._check_array(NOISE, noise, (batch, frames, self.noise_dim))
        style_feed = self._style_feed(self.styled, styles, batch)
        index = self._check_slots(slots, batch)
        for slot in index:
            self._slots.check_live(int(slot))
        if not self._min_frames <= frames <= self._max_frames:
            raise RunnerError(f"{self.runner.name}: {frames} frames per step is outside the "
                              f"engine profile [{self._min_frames}, {self._max_frames}]")
        runner = self.runner
        runner.make_current()
        bucket = self._bucket(batch)
        key = (bucket, frames, features is None)
        graph = self._graphs.get(key)
        tensors = runner.tensors
        rows = self._slot_rows_host.view((bucket,))
        rows[:] = -1
        rows[:batch] = index
        if features is not None:
            tensors[FEATURES].host.view((bucket, frames, self.feature_dim))[:batch] = features
        tensors[NOISE].host.view((bucket, frames, self.noise_dim))[:batch] = noise
        if STYLE in style_feed:  # padded rows take style 0 (their outputs are dropped)
            style_rows = tensors[STYLE].host.view((bucket,))
            style_rows[:] = 0
            style_rows[:batch] = style_feed[STYLE]
        if graph is None:  # its first run (outside capture) is this step
            graph = StepGraph(runner, bucket, frames, self._state_kernels(), features is None,
                              self._context_memory, self.use_cuda_graphs)
            self._graphs[key] = graph
        else:
            graph.launch()
        runner.synchronize()
        poses_shape = (bucket, frames, *tensors[POSES].max_shape[2:])
        return StepOutputs(
            poses=tensors[POSES].host.view(poses_shape)[:batch],
            saliency=tensors[SALIENCY].host.view((bucket, frames))[:batch],
        )

    def _state_kernels(self) -> StateKernels:
        assert self._table is not None
        return StateKernels(launch=self._module.launch, table_ptr=self._table.ptr,
                            slots=self._slot_rows, slots_host=self._slot_rows_host,
                            state_size=self.state_size)

    def _destroy_graphs(self) -> None:
        for graph in self._graphs.values():
            graph.destroy()
        self._graphs = {}

    def close(self) -> None:
        if not self.runner.is_active:
            return
        self.runner.make_current()
        self.runner.synchronize()
        self._destroy_graphs()
        for buffer in (self._table, self._slot_rows, self._context_memory):
            if buffer is not None:
                buffer.free()
        self._table = None
        self._slot_rows_host.free()
        self.kernel_runner.close()
        self.runner.deactivate()
