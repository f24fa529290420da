"""Compile the CUDA C sources of ``sdk/cuda`` with NVRTC, cached on disk per GPU architecture.

NVRTC comes from the ``nvidia-cuda-nvrtc`` wheel through ``cuda-python``
(``cuda.bindings.nvrtc``), imported lazily here. It needs no GPU and no driver, so every
kernel compiles on a CPU machine too (the tests compile each one for every supported
architecture).

Every FeatureConfig number reaches the kernels as a ``-D`` define made by
:func:`feature_defines`; the ``.cu`` files never spell a rate, hop or size themselves.

Cache: ``$GESTURERT_CACHE`` or ``~/.cache/gesturert``, under ``kernels/``, one ``.cubin``
per (source text, defines, architecture, NVRTC version), named by the sha256 of those.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from sdk.features import FeatureConfig

SOURCE_DIR = Path(__file__).resolve().parent
#: Architectures every kernel must compile for (the CI test checks each one).
SUPPORTED_ARCHS = (75, 80, 86, 89, 90)

Defines = Mapping[str, int | float]


def feature_defines(config: FeatureConfig) -> dict[str, int | float]:
    """The FeatureConfig numbers the kernels use, as ``GRT_*`` defines (ints and floats)."""
    return {
        "GRT_SAMPLE_RATE": config.sample_rate,
        "GRT_FPS": config.fps,
        "GRT_N_FFT": config.n_fft,
        "GRT_HOP_LENGTH": config.hop_length,
        "GRT_N_FREQS": config.n_freqs,
        "GRT_N_MELS": config.n_mels,
        "GRT_N_MFCC": config.n_mfcc,
        "GRT_MFCC_CONTEXT": config.mfcc_context,
        "GRT_FEATURE_DIM": config.feature_dim,
        "GRT_AMIN": float(config.amin),
    }


def define_flags(defines: Defines) -> list[str]:
    """``-DNAME=value`` flags; floats become float literals (``1e-10f``), ints stay ints."""
    flags = []
    for name, value in sorted(defines.items()):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"define {name} must be an int or a float, got {value!r}")
        text = f"{float(value)!r}f" if isinstance(value, float) else str(int(value))
        flags.append(f"-D{name}={text}")
    return flags


def read_source(name: str) -> str:
    """Text of ``sdk/cuda/<name>`` (for example ``"mfcc.cu"``)."""
    path = SOURCE_DIR / name
    if not path.is_file():
        known = sorted(p.name for p in SOURCE_DIR.glob("*.cu"))
        raise FileNotFoundError(f"no CUDA source {name!r} in {SOURCE_DIR}; have {known}")
    return path.read_text()


def cache_dir() -> Path:
    root = os.environ.get("GESTURERT_CACHE") or Path.home() / ".cache" / "gesturert"
    return Path(root) / "kernels"


def nvrtc_version() -> tuple[int, int]:
    from cuda.bindings import nvrtc

    err, major, minor = nvrtc.nvrtcVersion()
    _check(err, "nvrtcVersion")
    return int(major), int(minor)


def nvrtc_supported_archs() -> tuple[int, ...]:
    """The ``sm_XX`` targets this NVRTC can compile cubins for (``nvrtcGetSupportedArchs``)."""
    from cuda.bindings import nvrtc

    err, archs = nvrtc.nvrtcGetSupportedArchs()
    _check(err, "nvrtcGetSupportedArchs")
    return tuple(int(a) for a in archs)


def choose_target(arch: int, supported: Sequence[int]) -> tuple[str, int]:
    """What to compile for a device of compute capability ``arch``: ``("cubin", arch)`` when
    NVRTC knows it, else ``("ptx", newest supported arch below it)``: PTX for an older
    virtual architecture that the driver JIT-compiles for the device (a GPU newer than this
    NVRTC still runs the kernels).

    Raises:
        RuntimeError: the device is older than every architecture NVRTC supports.
    """
    if arch in supported:
        return "cubin", arch
    older = [a for a in supported if a < arch]
    if not older:
        raise RuntimeError(
            f"this NVRTC compiles for sm_{min(supported)}..sm_{max(supported)}; the GPU is "
            f"sm_{arch}, older than all of them: install an older cuda-python/NVRTC "
            f"(pip install 'cuda-python<13' nvidia-cuda-nvrtc-cu12) for this GPU"
        )
    return "ptx", max(older)


def compile_for_device(name: str, defines: Defines, arch: int) -> tuple[str, bytes]:
    """``(kind, image)`` to load on a device of compute capability ``arch``: a cubin, or
    PTX (NUL-terminated) when NVRTC does not know ``arch`` (see :func:`choose_target`)."""
    kind, target = choose_target(arch, nvrtc_supported_archs())
    return kind, compile_source(name, defines, target, ptx=kind == "ptx")


def compile_source(
    name: str,
    defines: Defines,
    arch: int,
    *,
    use_cache: bool = True,
    ptx: bool = False,
) -> bytes:
    """Compile ``sdk/cuda/<name>`` to a cubin for ``sm_<arch>`` and return its bytes
    (with ``ptx``: PTX text for ``compute_<arch>``, NUL-terminated, for the driver's JIT).

    Args:
        name: source file in ``sdk/cuda`` (``"mfcc.cu"``, ``"pose_image.cu"``).
        defines: ``-D`` defines, usually :func:`feature_defines` plus the kernel's own.
        arch: compute capability as an int, 75 .. 90 (``major * 10 + minor``).
        use_cache: read and write the on-disk cache.
        ptx: emit PTX instead of a cubin.
    Raises:
        RuntimeError: with NVRTC's log when the source does not compile.
    """
    return compile_text(read_source(name), name, defines, arch, use_cache=use_cache, ptx=ptx)


def compile_text(source: str, name: str, defines: Defines, arch: int, *,
                 use_cache: bool = True, ptx: bool = False) -> bytes:
    """Like :func:`compile_source` for source text (``name`` is used in messages)."""
    if isinstance(arch, bool) or not isinstance(arch, int) or arch < 50:
        raise ValueError(f"arch must be a compute capability like 86 (sm_86), got {arch!r}")
    target = f"compute_{arch}" if ptx else f"sm_{arch}"
    options = [f"--gpu-architecture={target}", "--std=c++17", *define_flags(defines)]
    key = hashlib.sha256(
        "\0".join([source, *options, repr(nvrtc_version())]).encode()
    ).hexdigest()[:24]
    suffix = "ptx" if ptx else "cubin"
    cached = cache_dir() / f"{Path(name).stem}.sm{arch}.{key}.{suffix}"
    if use_cache and cached.is_file():
        return cached.read_bytes()
    cubin = _nvrtc_compile(source, name, options, ptx)
    if use_cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(cubin)
        partial.replace(cached)  # atomic: concurrent compilers never read half a file
    return cubin


def _nvrtc_compile(source: str, name: str, options: list[str], ptx: bool = False) -> bytes:
    from cuda.bindings import nvrtc

    err, program = nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], [])
    _check(err, "nvrtcCreateProgram")
    try:
        encoded = [o.encode() for o in options]
        (result,) = nvrtc.nvrtcCompileProgram(program, len(encoded), encoded)
        if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            err, size = nvrtc.nvrtcGetProgramLogSize(program)
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(program, log)
            text = log.decode(errors="replace").strip()
            raise RuntimeError(f"NVRTC failed to compile {name} with {options}:\n{text}")
        if ptx:
            err, size = nvrtc.nvrtcGetPTXSize(program)
            _check(err, "nvrtcGetPTXSize")
            text = b" " * size
            (err,) = nvrtc.nvrtcGetPTX(program, text)
            _check(err, "nvrtcGetPTX")
            return bytes(text)  # NUL-terminated, as cuModuleLoadData wants PTX
        err, size = nvrtc.nvrtcGetCUBINSize(program)
        _check(err, "nvrtcGetCUBINSize")
        cubin = b" " * size
        (err,) = nvrtc.nvrtcGetCUBIN(program, cubin)
        _check(err, "nvrtcGetCUBIN")
        return bytes(cubin)
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def _check(err: object, what: str) -> None:
    from cuda.bindings import nvrtc

    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"{what} failed: {err}")


def check_cuda_versions(bindings: str, nvrtc: tuple[int, int], driver: int) -> None:
    """Refuse a cuda-python / NVRTC / driver combination whose kernels cannot load.

    Args:
        bindings: ``cuda.bindings.__version__`` (for example "13.4.4").
        nvrtc: NVRTC's (major, minor).
        driver: ``cuDriverGetVersion`` (for example 13000 for CUDA 13.0).
    Raises:
        RuntimeError: naming the mismatch and the pip command that fixes it: the bindings
            and NVRTC must share a major version, and the driver must be at least that
            major (NVRTC's output targets a PTX ISA the older driver cannot JIT or load).
    """
    bindings_major = int(bindings.split(".")[0])
    driver_major = int(driver) // 1000
    fix = (f"pip install 'cuda-python=={driver_major}.*' "
           f"'nvidia-cuda-nvrtc-cu{driver_major}'" if driver_major < 13 else
           f"pip install 'cuda-python=={driver_major}.*' 'nvidia-cuda-nvrtc=={driver_major}.*'")
    if bindings_major != nvrtc[0]:
        raise RuntimeError(f"cuda-python bindings {bindings} with NVRTC {nvrtc[0]}.{nvrtc[1]}: "
                           f"their major versions must match; {fix}")
    if driver_major < nvrtc[0]:
        raise RuntimeError(f"the CUDA driver supports CUDA {driver_major}.{driver % 1000 // 10}"
                           f", older than NVRTC {nvrtc[0]}.{nvrtc[1]} whose kernels it would "
                           f"have to load; update the driver or {fix}")
