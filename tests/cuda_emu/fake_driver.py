"""A stand-in for ``cuda.bindings.driver`` that runs launches on the CPU emulator.

It lets the CPU tests drive :class:`sdk.cuda.launch.CudaRunner` itself (result-tuple
unpacking, pinned staging, the kernelParams pointer array, NVRTC compile + cache) with
no GPU: "device" memory is host memory, and cuLaunchKernel reads each argument from the
void** array with the C type parsed from the kernel's signature in the .cu source (so
an argument packed with the wrong type or order reads garbage and the test fails).
Types, enums and handles are the real cuda-python ones.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path
from typing import Any

import numpy as np
from cuda.bindings import driver as real

from sdk.cuda import nvrtc

from .emulator import last_error

_SIGNATURE = re.compile(r'extern "C" __global__ void (\w+)\((.*?)\)', re.S)


def kernel_signatures() -> dict[str, list[Any]]:
    """Kernel name -> ctypes type of each parameter, from the sdk/cuda/*.cu sources."""
    out: dict[str, list[Any]] = {}
    for path in nvrtc.SOURCE_DIR.glob("*.cu"):
        code = re.sub(r"//[^\n]*", "", path.read_text())
        for name, params in _SIGNATURE.findall(code):
            types: list[Any] = []  # ctypes scalar classes
            for param in params.split(","):
                if "*" in param:
                    types.append(ctypes.c_void_p)
                elif "long long" in param:
                    types.append(ctypes.c_longlong)
                elif "float" in param:
                    types.append(ctypes.c_float)
                elif "int" in param:
                    types.append(ctypes.c_int)
                else:
                    raise ValueError(f"{path.name}: {name}: unknown parameter type {param!r}")
            out[name] = types
    return out


class FakeDriver:
    """The subset of the driver API that CudaRunner uses, on host memory."""

    CUresult = real.CUresult
    CUdevice_attribute = real.CUdevice_attribute
    CUstream_flags = real.CUstream_flags
    CUevent_flags = real.CUevent_flags
    CUdeviceptr = real.CUdeviceptr
    CUstream = real.CUstream
    CUfunction_attribute = real.CUfunction_attribute
    CUstreamCaptureMode = real.CUstreamCaptureMode

    def __init__(self, library: Path, compute_capability: tuple[int, int] = (8, 6),
                 driver_version: int = 13000) -> None:
        self.library = ctypes.CDLL(str(library))
        self.signatures = kernel_signatures()
        self.compute_capability = compute_capability
        self.driver_version = driver_version
        self.memory: dict[int, np.ndarray] = {}
        self.pinned: set[int] = set()
        self.launched: list[str] = []
        self.launch_errors: list[str] = []
        self.modules_loaded: list[bytes] = []
        self.modules: set[int] = set()
        self.streams: set[int] = set()
        self.live_events: set[int] = set()
        self.recorded_on: list[int] = []  # stream of every cuEventRecord
        #: events recorded but not yet complete: work is "in flight" until a synchronize
        self.pending_events: set[int] = set()
        self.primary_retains = 0
        self._handles = 0x1000
        self.ok = real.CUresult.CUDA_SUCCESS
        #: stream work recorded while a stream capture is open (None: not capturing)
        self.capturing: list[Any] | None = None
        self.capture_fails = False  # make cuStreamEndCapture report an invalidated capture
        self.graphs: dict[int, list[Any]] = {}
        self.graph_execs: dict[int, list[Any]] = {}
        self.calls: list[str] = []  # name of every driver call, in order

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("cu"):
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)

    def enqueue(self, work: Any) -> None:
        """Run stream work now, or record it into the open capture."""
        if self.capturing is not None:
            self.capturing.append(work)
        else:
            work()

    def cuDeviceGetCount(self) -> tuple[Any, int]:
        return self.ok, 1

    def cuStreamBeginCapture(self, stream: Any, mode: Any) -> tuple[Any]:
        assert self.capturing is None, "nested capture"
        self.capturing = []
        return (self.ok,)

    def cuStreamEndCapture(self, stream: Any) -> tuple[Any, Any]:
        work, self.capturing = self.capturing, None
        if self.capture_fails:
            return real.CUresult.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, None
        handle = self._handle()
        self.graphs[handle] = list(work or [])
        return self.ok, handle

    def cuGraphInstantiate(self, graph: Any, flags: int) -> tuple[Any, int]:
        handle = self._handle()
        self.graph_execs[handle] = self.graphs[graph]
        return self.ok, handle

    def cuGraphLaunch(self, graph_exec: Any, stream: Any) -> tuple[Any]:
        for work in self.graph_execs[graph_exec]:
            work()
        return (self.ok,)

    def cuGraphExecDestroy(self, graph_exec: Any) -> tuple[Any]:
        del self.graph_execs[graph_exec]
        return (self.ok,)

    def cuGraphDestroy(self, graph: Any) -> tuple[Any]:
        del self.graphs[graph]
        return (self.ok,)

    def cuMemsetD8Async(self, dst: Any, value: int, nbytes: int, stream: Any) -> tuple[Any]:
        self.enqueue(lambda: ctypes.memset(int(dst), value, nbytes))
        return (self.ok,)

    def cuMemcpyDtoDAsync(self, dst: Any, src: Any, nbytes: int, stream: Any) -> tuple[Any]:
        self.enqueue(lambda: ctypes.memmove(int(dst), int(src), nbytes))
        return (self.ok,)

    def cuMemcpyDtoHAsync(self, dst: Any, src: Any, nbytes: int, stream: Any) -> tuple[Any]:
        self.enqueue(lambda: ctypes.memmove(int(dst), int(src), nbytes))
        return (self.ok,)

    def _handle(self) -> int:
        self._handles += 1
        return self._handles

    def live_handles(self) -> dict[str, int]:
        """What was created and not yet released (a leak test's view)."""
        return {"memory": len(self.memory) - len(self.pinned), "pinned": len(self.pinned),
                "modules": len(self.modules), "streams": len(self.streams),
                "events": len(self.live_events), "primary_context": self.primary_retains}

    def cuDriverGetVersion(self) -> tuple[Any, int]:
        return self.ok, self.driver_version

    def cuDevicePrimaryCtxRelease(self, device: int) -> tuple[Any]:
        self.primary_retains -= 1
        return (self.ok,)

    def cuModuleUnload(self, module: Any) -> tuple[Any]:
        self.modules.remove(module)
        return (self.ok,)

    def cuFuncSetAttribute(self, function: str, attribute: Any, value: int) -> tuple[Any]:
        wanted = real.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        assert attribute == wanted
        self.library.emu_set_max_dynamic_shared.argtypes = [ctypes.c_char_p, ctypes.c_uint]
        self.library.emu_set_max_dynamic_shared(function.encode(), int(value))
        return (self.ok,)

    def cuEventQuery(self, event: Any) -> tuple[Any]:
        if event in self.pending_events:
            return (real.CUresult.CUDA_ERROR_NOT_READY,)
        return (self.ok,)

    def _alloc(self, nbytes: int) -> int:
        buffer = np.full(-(-nbytes // 4), np.nan, dtype=np.float32)
        self.memory[buffer.ctypes.data] = buffer
        return buffer.ctypes.data

    def cuInit(self, flags: int) -> tuple[Any]:
        return (self.ok,)

    def cuDeviceGet(self, ordinal: int) -> tuple[Any, int]:
        return self.ok, ordinal

    def cuDevicePrimaryCtxRetain(self, device: int) -> tuple[Any, str]:
        self.primary_retains += 1
        return self.ok, "context"

    def cuCtxSetCurrent(self, context: Any) -> tuple[Any]:
        return (self.ok,)

    def cuDeviceGetAttribute(self, attribute: Any, device: int) -> tuple[Any, int]:
        attr = real.CUdevice_attribute
        if attribute == attr.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN:
            return self.ok, 227 * 1024
        major = attribute == attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        return self.ok, self.compute_capability[0 if major else 1]

    def cuStreamCreate(self, flags: Any) -> tuple[Any, Any]:
        handle = self._handle()
        self.streams.add(handle)
        return self.ok, real.CUstream(handle)

    def cuModuleLoadData(self, image: bytes) -> tuple[Any, int]:
        is_cubin = image[:4] == b"\x7fELF"
        is_ptx = b".target" in image[:4096] and image.endswith(b"\0")
        assert is_cubin or is_ptx, "CudaRunner must load an NVRTC cubin or NUL-ended PTX"
        self.modules_loaded.append(image)
        handle = self._handle()
        self.modules.add(handle)
        return self.ok, handle

    def cuModuleGetFunction(self, module: Any, name: bytes) -> tuple[Any, str]:
        if name.decode() not in self.signatures:
            return real.CUresult.CUDA_ERROR_NOT_FOUND, ""
        return self.ok, name.decode()

    def cuLaunchKernel(self, function: str, gx: int, gy: int, gz: int, bx: int, by: int,
                       bz: int, shared: int, stream: Any, params: int, extra: int
                       ) -> tuple[Any]:
        types = self.signatures[function]
        pointers = (ctypes.c_void_p * len(types)).from_address(params)
        values = [t.from_address(p) for t, p in zip(types, pointers, strict=True)]
        args = [t(v.value) for t, v in zip(types, values, strict=True)]  # read at launch
        dims = [ctypes.c_uint(n) for n in (gx, gy, gz, bx, by, bz, shared)]
        if self.capturing is not None:  # a graph node keeps the arguments it was given
            entry = getattr(self.library, f"emu_{function}")
            self.capturing.append(lambda: entry(*dims, *args))
            self.launched.append(function)
            return (self.ok,)
        status = getattr(self.library, f"emu_{function}")(*dims, *args)
        if status != 0:
            self.launch_errors.append(last_error(self.library))
            if status == 1:  # a broken barrier: the kernel traps
                return (real.CUresult.CUDA_ERROR_LAUNCH_FAILED,)
            return (real.CUresult.CUDA_ERROR_INVALID_VALUE,)  # rejected configuration
        self.launched.append(function)
        return (self.ok,)

    def cuMemAlloc(self, nbytes: int) -> tuple[Any, Any]:
        return self.ok, real.CUdeviceptr(self._alloc(nbytes))

    def cuMemFree(self, ptr: Any) -> tuple[Any]:
        del self.memory[int(ptr)]
        return (self.ok,)

    def cuMemHostAlloc(self, nbytes: int, flags: int) -> tuple[Any, int]:
        ptr = self._alloc(nbytes)
        self.pinned.add(ptr)
        return self.ok, ptr

    def cuMemFreeHost(self, ptr: int) -> tuple[Any]:
        del self.memory[int(ptr)]
        self.pinned.remove(int(ptr))
        return (self.ok,)

    def cuMemcpyHtoDAsync(self, dst: Any, src: int, nbytes: int, stream: Any) -> tuple[Any]:
        self.enqueue(lambda: ctypes.memmove(int(dst), int(src), nbytes))
        return (self.ok,)

    def cuMemcpyDtoH(self, dst: int, src: Any, nbytes: int) -> tuple[Any]:
        ctypes.memmove(int(dst), int(src), nbytes)
        return (self.ok,)

    def cuEventCreate(self, flags: Any) -> tuple[Any, int]:
        handle = self._handle()
        self.live_events.add(handle)
        return self.ok, handle

    def cuEventRecord(self, event: Any, stream: Any) -> tuple[Any]:
        self.pending_events.add(event)
        self.recorded_on.append(int(stream))
        return (self.ok,)

    def cuEventSynchronize(self, event: Any) -> tuple[Any]:
        self.pending_events.discard(event)
        return (self.ok,)

    def cuEventDestroy(self, event: Any) -> tuple[Any]:
        self.live_events.discard(event)
        self.pending_events.discard(event)
        return (self.ok,)

    def cuStreamWaitEvent(self, stream: Any, event: Any, flags: int) -> tuple[Any]:
        return (self.ok,)

    def cuStreamSynchronize(self, stream: Any) -> tuple[Any]:
        self.pending_events.clear()  # one stream in these tests: everything finished
        return (self.ok,)

    def cuStreamDestroy(self, stream: Any) -> tuple[Any]:
        self.streams.remove(int(stream))
        return (self.ok,)

    def cuGetErrorName(self, err: Any) -> tuple[Any, bytes]:
        return self.ok, err.name.encode()
