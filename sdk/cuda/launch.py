"""Where kernels run: the :class:`KernelRunner` interface and its CUDA driver implementation.

The host classes (:class:`sdk.cuda.mfcc.CudaMfcc`, :class:`sdk.cuda.pose.CudaPoseImager`)
only talk to a runner: allocate, upload, download, load a module, launch. Two runners
exist: :class:`CudaRunner` (cuda-python driver API, NVRTC cubins, one CUDA stream) here,
and the CPU emulator of the tests (``tests/cuda_emu``), which executes the same ``.cu``
files compiled with g++. Both see the same launches, so the CPU tests cover the host-side
bookkeeping too.

Pointers are plain ints (device addresses for CUDA, host addresses for the emulator).
Kernel arguments are ctypes scalars (``c_void_p``, ``c_int``, ``c_longlong``, ``c_float``).
cuda-python is imported lazily, inside :class:`CudaRunner`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from sdk.cuda import nvrtc
from sdk.cuda.interop import DeviceArray

Dim3 = tuple[int, int, int]
KernelArg = ctypes.c_void_p | ctypes.c_int | ctypes.c_longlong | ctypes.c_float


class KernelModule(Protocol):
    def launch(self, kernel: str, grid: Dim3, block: Dim3, args: Sequence[KernelArg],
               shared_bytes: int = 0) -> None:
        """Enqueue ``kernel<<<grid, block, shared_bytes>>>(args...)`` on the runner's stream
        (``shared_bytes``: dynamic shared memory)."""

    def set_max_dynamic_shared(self, kernel: str, nbytes: int) -> None:
        """Let ``kernel`` use up to ``nbytes`` of dynamic shared memory (over 48 KiB needs
        this opt-in; the device's maximum still applies)."""


class KernelRunner(Protocol):
    def load(self, source: str, defines: nvrtc.Defines) -> KernelModule:
        """Compile/load ``sdk/cuda/<source>`` with ``defines``."""

    def alloc(self, nbytes: int) -> int:
        """Device allocation of ``nbytes`` (> 0); returns its address."""

    def free(self, ptr: int) -> None: ...

    def upload(self, dst: int, src: np.ndarray) -> None:
        """Enqueue a copy of ``src`` (C-contiguous) to ``dst``; ``src`` may be reused at once."""

    def download(self, dst: np.ndarray, src: int) -> None:
        """Copy ``dst.nbytes`` from ``src`` into ``dst`` after all enqueued work; blocks."""

    def wait_for(self, producer_stream: int | None) -> None:
        """Order later work after what ``producer_stream`` has enqueued (None: nothing)."""

    def keep_alive(self, *views: DeviceArray) -> None:
        """Keep the views' owners (DLPack capsules, CAI producers) alive until the work
        enqueued so far has finished."""

    def synchronize(self) -> None: ...


def pointer(value: int) -> ctypes.c_void_p:
    return ctypes.c_void_p(value)


class CudaModule:
    """A cubin loaded with ``cuModuleLoadData``; kernels looked up once by name."""

    def __init__(self, runner: CudaRunner, cubin: bytes) -> None:
        self._runner = runner
        self._driver = runner.driver
        self._module = runner.check(self._driver.cuModuleLoadData(cubin), "cuModuleLoadData")
        self._functions: dict[str, Any] = {}

    def _function(self, kernel: str) -> Any:
        function = self._functions.get(kernel)
        if function is None:
            function = self._runner.check(
                self._driver.cuModuleGetFunction(self._module, kernel.encode()),
                f"cuModuleGetFunction({kernel})",
            )
            self._functions[kernel] = function
        return function

    def set_max_dynamic_shared(self, kernel: str, nbytes: int) -> None:
        attribute = self._driver.CUfunction_attribute
        self._runner.check(
            self._driver.cuFuncSetAttribute(
                self._function(kernel),
                attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, int(nbytes)),
            f"cuFuncSetAttribute({kernel}, MAX_DYNAMIC_SHARED_SIZE_BYTES={nbytes})")

    def launch(self, kernel: str, grid: Dim3, block: Dim3, args: Sequence[KernelArg],
               shared_bytes: int = 0) -> None:
        function = self._function(kernel)
        # kernelParams: an array of pointers, each to one argument's value.
        addresses = np.array([ctypes.addressof(a) for a in args], dtype=np.uint64)
        self._runner.check(
            self._driver.cuLaunchKernel(
                function, *grid, *block, int(shared_bytes), self._runner.stream,
                addresses.ctypes.data, 0
            ),
            f"cuLaunchKernel({kernel}, grid={grid}, block={block}, shared={shared_bytes})",
        )

    def unload(self) -> None:
        if self._module is not None:
            self._runner.check(self._driver.cuModuleUnload(self._module), "cuModuleUnload")
            self._module = None
            self._functions = {}


class _PinnedSlot:
    def __init__(self) -> None:
        self.host = 0
        self.size = 0
        self.event: Any = None


class CudaRunner:
    """CUDA driver API runner on one device, its primary context and one CUDA stream.

    Args:
        device: CUDA device ordinal.
        stream: a ``CUstream`` handle as int (for example ``torch.cuda.current_stream()
            .cuda_stream`` or the generator's stream); None creates a non-blocking stream
            owned by this runner.
    Uploads go through a few pinned staging buffers, each reused only after the copy that
    read it has finished, so callers may reuse their arrays at once. The driver API needs
    the context current on the calling thread: it is made current here; other threads call
    :meth:`make_current` first. :meth:`close` releases everything this runner made (stream,
    events, pinned buffers, modules) and its hold on the primary context.

    Raises:
        RuntimeError: cuda-python, NVRTC and the driver do not fit together
            (:func:`sdk.cuda.nvrtc.check_cuda_versions`).
    """

    PINNED_SLOTS = 4

    def __init__(self, device: int = 0, stream: int | None = None) -> None:
        import cuda.bindings
        from cuda.bindings import driver

        self.driver = driver
        self.check(driver.cuInit(0), "cuInit")
        nvrtc.check_cuda_versions(cuda.bindings.__version__, nvrtc.nvrtc_version(),
                                  int(self.check(driver.cuDriverGetVersion(),
                                                 "cuDriverGetVersion")))
        self.device = self.check(driver.cuDeviceGet(device), f"cuDeviceGet({device})")
        self.context = self.check(
            driver.cuDevicePrimaryCtxRetain(self.device), "cuDevicePrimaryCtxRetain"
        )
        self._holds_context = True
        self.owns_stream = False
        self._slots: list[_PinnedSlot] = []
        self._modules: dict[tuple[str, tuple[tuple[str, int | float], ...]], CudaModule] = {}
        self._kept: list[tuple[Any, tuple[Any, ...]]] = []  # (event, owners) pending
        try:
            self.check(driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
            attr = driver.CUdevice_attribute
            major = self.check(
                driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                            self.device), "cuDeviceGetAttribute")
            minor = self.check(
                driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                            self.device), "cuDeviceGetAttribute")
            self.arch = int(major) * 10 + int(minor)
            #: dynamic shared memory a kernel may opt in to (bytes), this device's maximum
            self.max_shared_optin = int(self.check(driver.cuDeviceGetAttribute(
                attr.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, self.device),
                "cuDeviceGetAttribute"))
            if stream is None:
                flags = driver.CUstream_flags.CU_STREAM_NON_BLOCKING
                self.stream = self.check(driver.cuStreamCreate(flags), "cuStreamCreate")
                self.owns_stream = True
            else:
                self.stream = driver.CUstream(int(stream))
        except Exception:
            self._release_context()
            raise
        self._slots = [_PinnedSlot() for _ in range(self.PINNED_SLOTS)]
        self._next_slot = 0

    def make_current(self) -> None:
        """Make this runner's (primary) context current on the calling thread."""
        self.check(self.driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def check(self, result: Any, what: str) -> Any:
        """Unpack a cuda-python ``(CUresult, value...)`` tuple; raise on an error code."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.driver.CUresult.CUDA_SUCCESS:
            _, name = self.driver.cuGetErrorName(err)
            raise RuntimeError(f"{what} failed: {name.decode() if name else err}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def load(self, source: str, defines: nvrtc.Defines) -> CudaModule:
        """The module of ``sdk/cuda/<source>`` built with ``defines``: a cubin for this GPU,
        or PTX for the driver to JIT when NVRTC does not know the GPU's architecture."""
        key = (source, tuple(sorted(defines.items())))
        module = self._modules.get(key)
        if module is None:
            _, image = nvrtc.compile_for_device(source, defines, self.arch)
            module = CudaModule(self, image)
            self._modules[key] = module
        return module

    def alloc(self, nbytes: int) -> int:
        return int(self.check(self.driver.cuMemAlloc(nbytes), f"cuMemAlloc({nbytes})"))

    def free(self, ptr: int) -> None:
        self.check(self.driver.cuMemFree(self.driver.CUdeviceptr(ptr)), "cuMemFree")

    def upload(self, dst: int, src: np.ndarray) -> None:
        src = np.ascontiguousarray(src)
        if src.nbytes == 0:
            return
        d = self.driver
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        if slot.event is not None:
            self.check(d.cuEventSynchronize(slot.event), "cuEventSynchronize")
        else:
            flags = d.CUevent_flags.CU_EVENT_DISABLE_TIMING
            slot.event = self.check(d.cuEventCreate(flags), "cuEventCreate")
        if slot.size < src.nbytes:
            if slot.host:
                self.check(d.cuMemFreeHost(slot.host), "cuMemFreeHost")
                slot.host, slot.size = 0, 0
            size = max(src.nbytes, 1 << 16)
            slot.host = int(self.check(d.cuMemHostAlloc(size, 0), f"cuMemHostAlloc({size})"))
            slot.size = size
        ctypes.memmove(slot.host, src.ctypes.data, src.nbytes)
        self.check(d.cuMemcpyHtoDAsync(d.CUdeviceptr(dst), slot.host, src.nbytes, self.stream),
                   "cuMemcpyHtoDAsync")
        self.check(d.cuEventRecord(slot.event, self.stream), "cuEventRecord")

    def download(self, dst: np.ndarray, src: int) -> None:
        if not dst.flags.c_contiguous or not dst.flags.writeable:
            raise ValueError("download needs a writeable C-contiguous numpy array")
        self.synchronize()
        d = self.driver
        self.check(d.cuMemcpyDtoH(dst.ctypes.data, d.CUdeviceptr(src), dst.nbytes), "cuMemcpyDtoH")

    def wait_for(self, producer_stream: int | None) -> None:
        if producer_stream is None or int(producer_stream) == self.stream_handle:
            return
        d = self.driver
        event = self.check(d.cuEventCreate(d.CUevent_flags.CU_EVENT_DISABLE_TIMING),
                           "cuEventCreate")
        self.check(d.cuEventRecord(event, d.CUstream(int(producer_stream))), "cuEventRecord")
        self.check(d.cuStreamWaitEvent(self.stream, event, 0), "cuStreamWaitEvent")
        self.check(d.cuEventDestroy(event), "cuEventDestroy")  # released once it fired

    def keep_alive(self, *views: DeviceArray) -> None:
        """Hold the views' owners until the work enqueued so far has finished: an event
        recorded now; owners of finished events are dropped here and in synchronize."""
        self._drop_finished()
        owners = tuple(v.owner for v in views if v.owner is not None)
        if not owners:
            return
        d = self.driver
        event = self.check(d.cuEventCreate(d.CUevent_flags.CU_EVENT_DISABLE_TIMING),
                           "cuEventCreate")
        self.check(d.cuEventRecord(event, self.stream), "cuEventRecord")
        self._kept.append((event, owners))

    @property
    def kept_alive(self) -> int:
        """Owners held for work still in flight."""
        return sum(len(owners) for _, owners in self._kept)

    def _drop_finished(self, all_done: bool = False) -> None:
        d = self.driver
        pending = []
        for event, owners in self._kept:
            if not all_done:
                (err,) = d.cuEventQuery(event)
                if err == d.CUresult.CUDA_ERROR_NOT_READY:
                    pending.append((event, owners))
                    continue
                self.check((err,), "cuEventQuery")
            self.check(d.cuEventDestroy(event), "cuEventDestroy")
        self._kept = pending

    def synchronize(self) -> None:
        self.check(self.driver.cuStreamSynchronize(self.stream), "cuStreamSynchronize")
        self._drop_finished(all_done=True)

    def _release_context(self) -> None:
        if self._holds_context:
            self.check(self.driver.cuDevicePrimaryCtxRelease(self.device),
                       "cuDevicePrimaryCtxRelease")
            self._holds_context = False

    def close(self) -> None:
        """Wait for the enqueued work, then release pinned buffers, events, the modules,
        an owned stream and this runner's hold on the primary context (device buffers
        belong to their owners, who free them first). Idempotent."""
        if not self._holds_context:
            return
        d = self.driver
        self.make_current()
        self.synchronize()
        for slot in self._slots:
            if slot.host:
                self.check(d.cuMemFreeHost(slot.host), "cuMemFreeHost")
            if slot.event is not None:
                self.check(d.cuEventDestroy(slot.event), "cuEventDestroy")
        self._slots = [_PinnedSlot() for _ in range(self.PINNED_SLOTS)]
        for module in self._modules.values():
            module.unload()
        self._modules = {}
        if self.owns_stream:
            self.check(d.cuStreamDestroy(self.stream), "cuStreamDestroy")
            self.owns_stream = False
        self._release_context()
