"""cuda-python driver access for the TensorRT backend: error checking, device and
pinned host allocations, the device's compute capability.

cuda-python is imported inside functions only; importing this module costs nothing.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from sdk.runners.base import RunnerError


def driver() -> Any:
    """cuda-python's driver module, ``cuda.bindings.driver`` (cuda-python >= 12.6.1; the
    older ``cuda.cuda`` module is gone in 13.0 and not used)."""
    try:
        from cuda.bindings import driver
    except ImportError as exc:
        raise RunnerError(
            "cuda-python >= 12.6.1 (cuda.bindings) is not installed; "
            "pip install 'gesturert[gpu]'"
        ) from exc
    return driver


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(CUresult, value...)`` tuple; raise RunnerError on failure."""
    cu = driver()
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
    cu = driver()
    try:
        check(cu.cuInit(0), "cuInit")
    except RunnerError:
        raise
    except Exception as exc:  # the driver library itself is missing
        raise RunnerError(f"no CUDA driver ({exc})") from exc
    count = check(cu.cuDeviceGetCount(), "cuDeviceGetCount")
    if not 0 <= device < count:
        raise RunnerError(f"CUDA device {device} does not exist ({count} devices)")
    dev = check(cu.cuDeviceGet(device), "cuDeviceGet")
    attr = cu.CUdevice_attribute
    major = check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                           dev), "cuDeviceGetAttribute")
    minor = check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                           dev), "cuDeviceGetAttribute")
    return f"{major}.{minor}"


class DeviceArray:
    """A device allocation of ``nbytes`` bytes (freed by :meth:`free`)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(driver().cuMemAlloc(self.nbytes), "cuMemAlloc"))

    def free(self) -> None:
        if self.ptr:
            check(driver().cuMemFree(self.ptr), "cuMemFree")
            self.ptr = 0


class PinnedArray:
    """Page-locked host memory of ``nbytes`` with a numpy view (zero-filled)."""

    def __init__(self, nbytes: int, dtype: np.dtype) -> None:
        self.nbytes = max(int(nbytes), dtype.itemsize)
        self.ptr = int(check(driver().cuMemHostAlloc(self.nbytes, 0), "cuMemHostAlloc"))
        raw = np.ctypeslib.as_array(ctypes.cast(self.ptr, ctypes.POINTER(ctypes.c_byte)),
                                    shape=(self.nbytes,))
        self.array = raw.view(dtype)
        self.array[:] = 0

    def view(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.array[: int(np.prod(shape))].reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = np.zeros(0, self.array.dtype)
            check(driver().cuMemFreeHost(self.ptr), "cuMemFreeHost")
            self.ptr = 0
