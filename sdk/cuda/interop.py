"""Device arrays from other libraries: DLPack and ``__cuda_array_interface__``.

PyTorch, CuPy and JAX speak DLPack (``__dlpack__`` / ``__dlpack_device__``); CuPy, PyTorch,
Numba and pycuda ``GPUArray`` expose ``__cuda_array_interface__`` (CAI, v2/v3). A raw
``int`` is taken as a device address the caller vouches for. No library is imported.

Stream ordering (the consumer's kernels must not race the producer's pending writes):

* DLPack is preferred when an object offers both: ``__dlpack__(stream=consumer)`` makes the
  producer order its pending work before the consumer's stream (PyTorch exports CAI v2,
  which names no stream at all).
* CAI v3 names the producer's stream (``stream``: None means "already safe"); a CAI without
  the key (v2) is taken to be written on the legacy default stream (1), the conservative
  reading. The consumer orders its work after it (:meth:`KernelRunner.wait_for`).
* CAI ``data = (ptr, readonly)``: a read-only array is refused where the kernel writes.

Lifetime: :attr:`DeviceArray.owner` holds the DLPack capsule (or the CAI producer); the
runner keeps it until the kernels that use the memory have finished
(:meth:`KernelRunner.keep_alive`), so a temporary tensor's memory cannot be reused by its
library's caching allocator while a kernel is still queued.
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


#: CAI/DLPack stream value naming CUDA's legacy default stream.
LEGACY_DEFAULT_STREAM = 1


def device_array(obj: Any, dtype: Any = np.float32, shape: tuple[int, ...] | None = None,
                 what: str = "array", consumer_stream: int | None = None, *,
                 writable: bool = False) -> DeviceArray:
    """View ``obj`` as a C-contiguous device array of ``dtype`` (and ``shape``, if given).

    Args:
        obj: an object with ``__cuda_array_interface__`` or ``__dlpack__``, or an int address
            (then ``shape`` is required and trusted).
        dtype: the element type the kernel expects.
        shape: the exact shape expected, or None for any.
        what: the argument's name, for error messages.
        consumer_stream: the CUDA stream handle that will read the array; a DLPack producer
            orders its pending work before it (``__dlpack__(stream=...)``).
        writable: the kernel writes the array: a CAI marked read-only is refused.
    Raises:
        TypeError / ValueError saying what came and what was expected.
    """
    want = np.dtype(dtype)
    if isinstance(obj, int | np.integer) and not isinstance(obj, bool):
        if shape is None:
            raise TypeError(f"{what}: a raw device address needs an explicit shape")
        return DeviceArray(int(obj), tuple(shape), want)
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        view = _from_dlpack(obj, what, consumer_stream)
    elif hasattr(obj, "__cuda_array_interface__"):
        view = _from_cai(obj, what, writable)
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


def _from_cai(obj: Any, what: str, writable: bool) -> DeviceArray:
    cai = obj.__cuda_array_interface__
    shape = tuple(int(n) for n in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    ptr, read_only = cai["data"]
    if writable and read_only:
        raise ValueError(f"{what}: the array is read-only (__cuda_array_interface__ data "
                         "flag) but the kernel writes it; pass a writable array")
    strides = cai.get("strides")
    _check_contiguous(shape, None if strides is None else tuple(strides), dtype.itemsize, what)
    # v3: None (nothing to wait for), 1 (legacy default), 2 (per-thread) or a handle;
    # no key (v2): assume the legacy default stream.
    stream = cai["stream"] if "stream" in cai else LEGACY_DEFAULT_STREAM
    return DeviceArray(int(ptr or 0), shape, dtype, None if stream is None else int(stream),
                       owner=obj)


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
    capsule = obj.__dlpack__(
        stream=LEGACY_DEFAULT_STREAM if not consumer_stream else int(consumer_stream))
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
    # producer has ordered its work before consumer_stream inside __dlpack__. The capsule
    # is the owner: the runner keeps it until the kernels using the memory finished.
    return DeviceArray(ptr, shape, dtype, None, owner=capsule)
