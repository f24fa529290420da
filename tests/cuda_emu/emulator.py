"""Run the CUDA kernels of sdk/cuda on the CPU: a KernelRunner backed by g++ and ctypes.

``build_emulator(defines, out_dir)`` compiles ``harness.cpp`` (which #includes the
``.cu`` files after ``cuda_emu.h``) with the same ``-D`` defines NVRTC gets, into a shared
library. :class:`EmulatedRunner` implements :class:`sdk.cuda.launch.KernelRunner` with
host memory, so ``CudaMfcc`` / ``CudaPoseImager`` run unchanged on top of it and the CPU
tests cover their bookkeeping as well as the kernels.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdk.cuda import nvrtc

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness.cpp"


def build_emulator(defines: nvrtc.Defines, out_dir: Path) -> Path:
    """Compile the harness into ``out_dir/cuda_emu.so``; returns its path.

    -ffp-contract=off keeps ``a*b + c`` unfused, like the numpy references (NVCC fuses,
    which the GPU tests allow for in their tolerances).
    """
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("the CUDA emulation tests need a C++17 compiler (g++) on PATH")
    library = out_dir / "cuda_emu.so"
    command = [compiler, "-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC",
               "-fvisibility=hidden", "-fvisibility-inlines-hidden",
               f"-I{HERE}", f"-I{nvrtc.SOURCE_DIR}", *nvrtc.define_flags(defines),
               str(HARNESS), "-o", str(library)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building the CUDA emulator failed:\n{' '.join(command)}\n"
                           f"{result.stderr}")
    return library


#: emu::Schedule: the order threads run in each phase of a block (and blocks in a grid).
FORWARD, REVERSED, RANDOM = 0, 1, 2


class LaunchError(RuntimeError):
    """An emulated launch failed: a bad configuration, too much shared memory, or a block
    that broke the __syncthreads contract (the message says which)."""

    def __init__(self, kernel: str, status: int, message: str) -> None:
        super().__init__(f"{kernel}: {message}")
        self.status = status


def configure(library: ctypes.CDLL, schedule: int = RANDOM, seed: int = 1) -> None:
    """Set the thread/block order of later launches (RANDOM: a new permutation per launch
    and per phase, drawn from ``seed``)."""
    library.emu_set_schedule.argtypes = [ctypes.c_int, ctypes.c_ulonglong]
    library.emu_set_schedule(schedule, seed)


def last_error(library: ctypes.CDLL) -> str:
    library.emu_last_error.restype = ctypes.c_char_p
    return library.emu_last_error().decode()


def set_max_dynamic_shared(library: ctypes.CDLL, kernel: str, nbytes: int) -> None:
    """The emulator's cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)."""
    library.emu_set_max_dynamic_shared.argtypes = [ctypes.c_char_p, ctypes.c_uint]
    library.emu_set_max_dynamic_shared(kernel.encode(), nbytes)


class CheckingModule:
    """A KernelModule that only checks each launch's configuration against the GPU limits
    (the emulator's rules) and records it: for launches too big to execute on the CPU."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._library = library
        self.launches: list[tuple[str, tuple[int, int, int], tuple[int, int, int]]] = []

    def launch(self, kernel: str, grid: tuple[int, int, int], block: tuple[int, int, int],
               args: Sequence[ctypes._SimpleCData], shared_bytes: int = 0) -> None:
        del args
        dims = [ctypes.c_uint(int(n)) for n in (*grid, *block, shared_bytes, 0)]
        self._library.emu_check_launch.restype = ctypes.c_int
        status = self._library.emu_check_launch(kernel.encode(), *dims)
        if status != 0:
            raise LaunchError(kernel, status, last_error(self._library))
        self.launches.append((kernel, grid, block))


class EmulatedModule:
    def __init__(self, library: ctypes.CDLL) -> None:
        self._library = library
        self.launches: list[tuple[str, tuple[int, int, int], tuple[int, int, int]]] = []

    def set_max_dynamic_shared(self, kernel: str, nbytes: int) -> None:
        set_max_dynamic_shared(self._library, kernel, nbytes)

    def launch(self, kernel: str, grid: tuple[int, int, int], block: tuple[int, int, int],
               args: Sequence[ctypes._SimpleCData], shared_bytes: int = 0) -> None:
        function = getattr(self._library, f"emu_{kernel}")
        function.restype = ctypes.c_int
        if min(grid) < 0 or min(block) < 0 or max(*grid, *block) >= 2**32:
            raise ValueError(f"{kernel}: launch dimensions out of range grid={grid} "
                             f"block={block}")
        dims = [ctypes.c_uint(int(n)) for n in (*grid, *block, shared_bytes)]
        self.launches.append((kernel, grid, block))
        status = function(*dims, *args)
        if status != 0:
            raise LaunchError(kernel, status, last_error(self._library))


class EmulatedRunner:
    """KernelRunner on host memory: 'device' pointers are addresses of numpy buffers."""

    def __init__(self, library_path: Path) -> None:
        self.module = EmulatedModule(ctypes.CDLL(str(library_path)))
        self._buffers: dict[int, np.ndarray] = {}

    def load(self, source: str, defines: nvrtc.Defines) -> EmulatedModule:
        del source, defines  # the library holds every kernel, built with these defines
        return self.module

    def alloc(self, nbytes: int) -> int:
        # Filled with NaN bytes so that reading memory nobody wrote shows up in results.
        buffer = np.full(-(-nbytes // 4), np.nan, dtype=np.float32)
        ptr = buffer.ctypes.data
        self._buffers[ptr] = buffer
        return ptr

    def free(self, ptr: int) -> None:
        del self._buffers[ptr]

    def upload(self, dst: int, src: np.ndarray) -> None:
        src = np.ascontiguousarray(src)
        ctypes.memmove(dst, src.ctypes.data, src.nbytes)

    def download(self, dst: np.ndarray, src: int) -> None:
        ctypes.memmove(dst.ctypes.data, src, dst.nbytes)

    def wait_for(self, producer_stream: int | None) -> None:
        del producer_stream

    def keep_alive(self, *views: object) -> None:
        del views  # launches are synchronous: the memory is no longer in use

    def synchronize(self) -> None:
        pass
