"""Make this Python look like the lent GPU machine's image: only its packages, the
carried wheels (scripts/gpu_wheels.txt) and the repository import; anything else that
happens to be installed here (websockets, TensorRT stubs, polygraphy, ...) raises
ImportError as it would there. Used by the CI rehearsal (tests/test_gpu_image.py):
``PYTHONPATH=scripts/gpu_image python -m pytest --collect-only -m "gpu or tensorrt"``.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

#: Top-level import names on the image: Python 3.12, torch 2.11+cu130 (and its deps),
#: CuPy 13, cuda-bindings/NVRTC 13, ONNX Runtime 1.30 (CPU), numpy, scipy, numba,
#: scikit-learn, matplotlib, onnx, onnxscript, pytest — with their own dependencies.
IMAGE = {
    "torch", "torchgen", "functorch", "triton", "nvidia", "sympy", "mpmath", "networkx",
    "jinja2", "markupsafe", "filelock", "fsspec", "typing_extensions",
    "cupy", "cupyx", "cupy_backends", "fastrlock",
    "cuda", "cuda_pathfinder",
    "onnxruntime", "coloredlogs", "humanfriendly", "flatbuffers", "google",
    "numpy", "scipy", "numba", "llvmlite", "sklearn", "joblib", "threadpoolctl",
    "matplotlib", "mpl_toolkits", "PIL", "contourpy", "cycler", "fontTools", "kiwisolver",
    "pyparsing", "dateutil", "six", "packaging",
    "onnx", "onnxscript", "onnx_ir", "ml_dtypes",
    "pytest", "_pytest", "pluggy", "iniconfig", "py", "pygments",
    "pip", "setuptools", "pkg_resources", "_distutils_hack",
}
#: What scripts/gpu_wheels.txt carries (import names).
CARRIED = {"soundfile", "_soundfile", "_soundfile_data", "cffi", "_cffi_backend",
           "pycparser", "soxr", "pytest_timeout", "yaml", "_yaml", "tqdm",
           "librosa", "audioread", "decorator", "lazy_loader", "msgpack", "pooch",
           "platformdirs", "requests", "idna", "urllib3", "certifi", "charset_normalizer",
           "cloudpickle"}  # joblib >= 1.6 (scikit-learn's) imports it; the image's may not
#: The repository and the test suite's own modules.
REPOSITORY = {"sdk", "export", "train", "benchmarks", "scripts", "tests", "conftest", "reliability",
              "cuda_emu", "gesturert"}


def allowed(name: str) -> bool:
    top = name.split(".")[0]
    return (top in sys.stdlib_module_names or top in IMAGE or top in CARRIED
            or top in REPOSITORY
            or top.startswith(("helpers_", "test_", "__editable__", "_sysconfigdata"))
            or top in sys.builtin_module_names)


class _OnTheImageOnly(importlib.abc.MetaPathFinder):
    """One of this machine's finders, blind to what the image lacks: such a module is not
    found, by ``import`` (ModuleNotFoundError) as by ``importlib.util.find_spec`` probes
    (None; torch probes for optional packages such as tensorrt)."""

    def __init__(self, finder: Any) -> None:
        self.finder = finder

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if not allowed(name):
            return None
        return self.finder.find_spec(name, path, target)

    def find_distributions(self, *args: Any, **kwargs: Any) -> Any:  # importlib.metadata
        find = getattr(self.finder, "find_distributions", None)
        return find(*args, **kwargs) if find else iter(())

    def invalidate_caches(self) -> None:
        if hasattr(self.finder, "invalidate_caches"):
            self.finder.invalidate_caches()


sys.meta_path[:] = [_OnTheImageOnly(f) if hasattr(f, "find_spec") else f
                    for f in sys.meta_path]
