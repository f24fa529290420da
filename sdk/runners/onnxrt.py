"""ONNX Runtime runner: CPU execution provider by default, CUDA / TensorRT EPs with onnxruntime-gpu.

onnxruntime is imported when a runner is activated, never at module import. ONNX Runtime
silently drops a requested provider it cannot load (missing CUDA/cuDNN/TensorRT
libraries, no device) and runs on the CPU; the runner checks ``session.get_providers()``
after creating the session and raises :class:`ProviderDroppedError` naming the provider
and, where it can find it, the library that failed to load, unless
``allow_provider_fallback`` is set (then ``dropped_providers`` says what was lost and why).
With a GPU
provider in the session the runner uses IO binding: inputs are bound from host memory
and outputs to host buffers ORT allocates, so ORT does the one copy each way itself
instead of ``session.run``'s extra staging. On the CPU, with ``reuse_outputs``, it binds
inputs and writes the outputs into numpy buffers it keeps per input shape (``session.run``
allocates and wraps fresh outputs every call: ~10 % of a one-stream step,
benchmarks/step_gemm.py); a model whose output axes are not named after input axes falls
back to ``session.run``. ``bind`` (CPU) makes one IO binding on the caller's arrays and
reuses it for every call: nothing is bound, allocated or copied per call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdk.runners.base import Runner, RunnerError, RunnerInputError, TensorMeta

_PROVIDER_LIBRARIES = {  # provider -> its shared library in onnxruntime/capi
    "CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
    "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so",
}

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


class ProviderDroppedError(RunnerError):
    """ONNX Runtime dropped a requested GPU execution provider (it would run on the CPU)."""


def provider_load_error(provider: str) -> str:
    """Why ``provider`` probably did not load: the loader's error for its shared library
    (which names the missing dependency, e.g. ``libcudnn.so.9``), or what else is known."""
    library = _PROVIDER_LIBRARIES.get(provider)
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if library is None:
        return f"onnxruntime could not initialise {provider}"
    path = Path(ort.__file__).parent / "capi" / library
    if not path.is_file():
        return f"this onnxruntime build has no {library} (install onnxruntime-gpu)"
    import ctypes

    try:
        ctypes.CDLL(str(path))
    except OSError as exc:
        return f"{library} does not load: {exc}"
    return (f"{library} loads, but onnxruntime could not initialise {provider} (no CUDA "
            "device or driver? see onnxruntime's warning)")


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers ([] when onnxruntime is absent)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX model with onnxruntime.

    Args:
        model_path: the .onnx file.
        providers: execution providers in priority order (default: CPU only). Entries
            may be names or ``(name, options)`` pairs, as onnxruntime takes them.
        intra_op_num_threads: threads per operator (0: onnxruntime's default, all cores).
        name: what to call the runner in messages (default: the file name).
        allow_provider_fallback: when ONNX Runtime drops a requested GPU provider, keep the
            session (recording why in ``dropped_providers``) instead of raising
            :class:`ProviderDroppedError`.
        reuse_outputs: CPU only: write outputs into buffers kept per input shape; the
            arrays ``infer`` returns are then overwritten by the next call with the same
            shapes (the base class's ownership rule). False: fresh arrays every call.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        providers: Sequence[str | tuple[str, dict[str, Any]]] = (CPU_PROVIDER,),
        intra_op_num_threads: int = 0,
        name: str | None = None,
        allow_provider_fallback: bool = False,
        reuse_outputs: bool = False,
    ) -> None:
        super().__init__(name or f"onnxruntime:{Path(model_path).name}")
        if intra_op_num_threads < 0:
            raise ValueError(f"intra_op_num_threads must be >= 0, got {intra_op_num_threads}")
        self.model_path = Path(model_path)
        self.requested_providers = list(providers)
        self.intra_op_num_threads = intra_op_num_threads
        self._session: Any = None
        self.reuse_outputs = reuse_outputs
        self._output_names: list[str] = []
        self._use_io_binding = False
        self.allow_provider_fallback = allow_provider_fallback
        self.dropped_providers: dict[str, str] = {}  # provider -> why it did not load
        self._output_shapes: list[tuple[int | str, ...]] = []
        self._cpu_outputs: dict[tuple[tuple[int, ...], ...], dict[str, np.ndarray]] = {}

    @property
    def providers(self) -> list[str]:
        """Providers the active session actually uses (ORT drops unavailable ones)."""
        if self._session is None:
            raise RunnerError(f"{self.name}: not active")
        return list(self._session.get_providers())

    def _activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RunnerError(
                f"{self.name}: onnxruntime is not installed; pip install 'gesturert[cpu]' "
                f"(or onnxruntime-gpu)"
            ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), sess_options=options, providers=self.requested_providers
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise RunnerError(f"{self.name}: onnxruntime could not load the model: {exc}") from exc
        self._check_providers()
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._use_io_binding = any(p != CPU_PROVIDER for p in self._session.get_providers())
        self._output_shapes = [tuple(d if isinstance(d, int) else str(d) for d in o.shape)
                               for o in self._session.get_outputs()]
        self._output_types = [_ORT_TYPES.get(o.type) for o in self._session.get_outputs()]
        self._cpu_outputs = {}

    def _check_providers(self) -> None:
        """Compare the providers asked for with those the session uses (ORT drops silently)."""
        used = set(self._session.get_providers())
        asked = [p if isinstance(p, str) else p[0] for p in self.requested_providers]
        self.dropped_providers = {p: provider_load_error(p) for p in asked
                                  if p not in used and p != CPU_PROVIDER}
        if self.dropped_providers and not self.allow_provider_fallback:
            self._session = None
            why = "; ".join(f"{p}: {w}" for p, w in self.dropped_providers.items())
            raise ProviderDroppedError(
                f"{self.name}: onnxruntime dropped {sorted(self.dropped_providers)} and would "
                f"run on {sorted(used)} instead ({why}); fix the GPU libraries, or ask for "
                "onnxruntime-cpu")

    def _deactivate(self) -> None:
        self._session = None
        self._cpu_outputs = {}

    def _preallocated(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Output buffers for these input shapes (made once per shape), or None when an
        output axis is not an input's named axis (its size is known only after the run)."""
        key = tuple(feed[name].shape for name in sorted(feed))
        buffers = self._cpu_outputs.get(key)
        if buffers is not None:
            return buffers
        sizes: dict[str, int] = {}
        for name, meta in self.get_input_metadata().items():
            for dim, size in zip(meta.shape, feed[name].shape, strict=True):
                if isinstance(dim, str):
                    sizes[dim] = int(size)
        buffers = {}
        for name, shape, dtype in zip(self._output_names, self._output_shapes,
                                      self._output_types, strict=True):
            if dtype is None or any(isinstance(d, str) and d not in sizes for d in shape):
                return None
            buffers[name] = np.empty(tuple(sizes[d] if isinstance(d, str) else d
                                           for d in shape), dtype=dtype)
        if len(self._cpu_outputs) >= 16:  # a few batch sizes in turn; bound the memory
            self._cpu_outputs.clear()
        self._cpu_outputs[key] = buffers
        return buffers

    def _read_input_metadata(self) -> dict[str, TensorMeta]:
        meta: dict[str, TensorMeta] = {}
        for arg in self._session.get_inputs():
            if arg.type not in _ORT_TYPES:
                raise RunnerError(f"{self.name}: input {arg.name} has unsupported type {arg.type}")
            shape = tuple(d if isinstance(d, int) else str(d) for d in arg.shape)
            meta[arg.name] = TensorMeta(arg.name, np.dtype(_ORT_TYPES[arg.type]), shape)
        return meta

    def _bind(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]
              ) -> Callable[[], None]:
        """CPU: one IO binding of the caller's arrays, made here and reused by every call
        (ONNX Runtime reads the inputs and writes the outputs in place, no copy)."""
        if self._use_io_binding:  # a GPU provider: ORT's own staging (see the module doc)
            return super()._bind(inputs, outputs)
        unknown = sorted(set(outputs) - set(self._output_names))
        if unknown:
            raise RunnerInputError(f"{self.name}: the model has no outputs {unknown}; it has "
                                   f"{self._output_names}")
        session, binding = self._session, self._session.io_binding()
        for name, array in inputs.items():
            binding.bind_cpu_input(name, array)
        for name, array in outputs.items():
            binding.bind_output(name, "cpu", element_type=array.dtype.type, shape=array.shape,
                                buffer_ptr=array.ctypes.data)

        def run() -> None:
            try:
                session.run_with_iobinding(binding)
            except Exception as exc:
                raise RunnerError(f"{self.name}: inference failed: {exc}") from exc
        return run

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            if not self._use_io_binding:
                buffers = self._preallocated(feed) if self.reuse_outputs else None
                if buffers is None:
                    values = self._session.run(self._output_names, dict(feed))
                    return dict(zip(self._output_names, values, strict=True))
                binding = self._session.io_binding()
                inputs = {name: np.ascontiguousarray(a) for name, a in feed.items()}  # alive
                for name, array in inputs.items():  # until the run returns
                    binding.bind_cpu_input(name, array)
                for name, array in buffers.items():
                    binding.bind_output(name, "cpu", element_type=array.dtype.type,
                                        shape=array.shape, buffer_ptr=array.ctypes.data)
                self._session.run_with_iobinding(binding)
                return dict(buffers)
            binding = self._session.io_binding()
            for name, array in feed.items():
                binding.bind_cpu_input(name, np.ascontiguousarray(array))
            for name in self._output_names:
                binding.bind_output(name, "cpu")
            self._session.run_with_iobinding(binding)
            return dict(zip(self._output_names, binding.copy_outputs_to_cpu(), strict=True))
        except Exception as exc:
            raise RunnerError(f"{self.name}: inference failed: {exc}") from exc
