"""Device arrays from other libraries: ``__cuda_array_interface__`` and DLPack.

CuPy, PyTorch, Numba and pycuda ``GPUArray`` expose ``__cuda_array_interface__`` (v2/v3);
PyTorch, CuPy and JAX also speak DLPack (``__dlpack__`` / ``__dlpack_device__``). A raw
``int`` is taken as a device address the caller vouches for. No library is imported.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

_KDL_CUDA = 2  # DLPack device types: kDLCUDA
_KDL_CUDA_MANAGED = 13


@dataclass(frozen=True)
class DeviceArray:
    """A view of device memory: address, shape, C-contiguous, dtype, producer stream.

    ``stream`` is the producer's CUDA stream handle when it named one (CAI v3), else None;
    consumers order their work after it (:meth:`KernelRunner.wait_for`).
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    stream: int | None = None
    owner: Any = None  # keeps a DLPack capsule (and so the memory) alive while in use


def device_array(obj: Any, dtype: Any = np.float32, shape: tuple[int, ...] | None = None,
                 what: str = "array", consumer_stream: int | None = None) -> DeviceArray:
    """View ``obj`` as a C-contiguous device array of ``dtype`` (and ``shape``, if given).

    Args:
        obj: an object with ``__cuda_array_interface__`` or ``__dlpack__``, or an int address
            (then ``shape`` is required and trusted).
        dtype: the element type the kernel expects.
        shape: the exact shape expected, or None for any.
        what: the argument's name, for error messages.
        consumer_stream: the CUDA stream handle that will read the array; a DLPack producer
            orders its pending work before it (``__dlpack__(stream=...)``).
    Raises:
        TypeError / ValueError saying what came and what was expected.
    """
    want = np.dtype(dtype)
    if isinstance(obj, int | np.integer) and not isinstance(obj, bool):
        if shape is None:
            raise TypeError(f"{what}: a raw device address needs an explicit shape")
        return DeviceArray(int(obj), tuple(shape), want)
    if hasattr(obj, "__cuda_array_interface__"):
        view = _from_cai(obj.__cuda_array_interface__, what)
    elif hasattr(obj, "__dlpack__"):
        view = _from_dlpack(obj, what, consumer_stream)
    else:
        raise TypeError(
            f"{what}: expected a CUDA device array (__cuda_array_interface__ or DLPack: CuPy, "
            f"PyTorch CUDA tensor, Numba, pycuda GPUArray) or an int address, got "
            f"{type(obj).__name__}; host arrays go through the host API instead"
        )
    if view.dtype != want:
        raise TypeError(f"{what}: expected dtype {want}, got {view.dtype}")
    if shape is not None and view.shape != tuple(shape):
        raise ValueError(f"{what}: expected shape {tuple(shape)}, got {view.shape}")
    return view


def _contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _check_contiguous(shape: tuple[int, ...], strides: tuple[int, ...] | None, itemsize: int,
                      what: str) -> None:
    if strides is None:
        return
    want = _contiguous_strides(shape, itemsize)
    # Strides of size-1 axes carry no meaning; compare the others only.
    if any(s != w for s, w, n in zip(strides, want, shape, strict=True) if n > 1):
        raise ValueError(
            f"{what}: needs a C-contiguous array, got strides {strides} (bytes) for shape "
            f"{shape}; call .contiguous() / cupy.ascontiguousarray first"
        )


def _from_cai(cai: dict[str, Any], what: str) -> DeviceArray:
    shape = tuple(int(n) for n in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    ptr, read_only = cai["data"]
    del read_only
    strides = cai.get("strides")
    _check_contiguous(shape, None if strides is None else tuple(strides), dtype.itemsize, what)
    stream = cai.get("stream")  # v3: None, 1 (legacy default), 2 (per-thread) or a handle
    return DeviceArray(int(ptr or 0), shape, dtype, None if stream is None else int(stream))


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_DL_CODES = {0: "i", 1: "u", 2: "f"}


def _from_dlpack(obj: Any, what: str, consumer_stream: int | None) -> DeviceArray:
    device_type, _ = obj.__dlpack_device__()
    if int(device_type) not in (_KDL_CUDA, _KDL_CUDA_MANAGED):
        raise TypeError(
            f"{what}: DLPack array lives on device type {device_type}, not CUDA (2); "
            "host arrays go through the host API (accept / numpy inputs) instead"
        )
    # DLPack's stream argument: 1 names the legacy default stream (0 is not allowed).
    capsule = obj.__dlpack__(stream=1 if not consumer_stream else int(consumer_stream))
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = get(capsule, b"dltensor")  # DLManagedTensor starts with its DLTensor
    tensor = _DLTensor.from_address(address)
    kind = _DL_CODES.get(tensor.dtype.code)
    if kind is None or tensor.dtype.lanes != 1:
        raise TypeError(f"{what}: unsupported DLPack dtype code {tensor.dtype.code}")
    dtype = np.dtype(f"{kind}{tensor.dtype.bits // 8}")
    shape = tuple(int(tensor.shape[i]) for i in range(tensor.ndim))
    strides = None
    if tensor.strides:
        strides = tuple(int(tensor.strides[i]) * dtype.itemsize for i in range(tensor.ndim))
    _check_contiguous(shape, strides, dtype.itemsize, what)
    ptr = int(tensor.data or 0) + int(tensor.byte_offset)
    # The unconsumed capsule's destructor hands the tensor back to its producer; the
    # producer has ordered its work before consumer_stream inside __dlpack__.
    return DeviceArray(ptr, shape, dtype, None, owner=capsule)
