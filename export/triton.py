"""``gesturert export-triton``: a Triton Inference Server model repository from a bundle.

Models written (``REPO/<name>/config.pbtxt`` + ``REPO/<name>/1/<file>``):

* ``gesturert_generator_onnx`` (platform ``onnxruntime_onnx``) and, when the bundle holds
  engines, ``gesturert_generator_trt`` (``tensorrt_plan``, one plan per GPU compute
  capability through ``cc_model_filenames``). The **sequence batcher** batches streams
  (one sequence = one stream, Oldest strategy); ``state``/``state_out`` are Triton
  **implicit state** with a zero ``initial_state``, so a sequence starts from zeros as the
  contract requires and clients send only ``features`` and ``noise``. No control inputs
  (START/END/READY/CORRID) are declared: the graph has no such inputs, and implicit state
  with ``initial_state`` already resets at the sequence start. Requests batched together
  must carry the same number of frames (send ``chunk_frames`` per request).
* ``gesturert_posesync_onnx`` / ``_trt``: stateless, dynamic batching over clips.

Each ``config.pbtxt`` is checked by parsing it into Triton's own ``inference.ModelConfig``
protobuf (shipped by the ``tritonclient`` package) and by comparing its tensors with the
ONNX graph's (names, dtypes, dims without the batch axis).
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from export.onnx_export import read_model_spec
from export.tensorrt_build import BATCH_AXIS
from sdk.bundle import Bundle, ModelSpec, load_bundle

MODEL_VERSION = "1"
SEQUENCE_IDLE_US = 5_000_000  # a stream silent for 5 s is dropped (its state freed)
QUEUE_DELAY_US = 500  # how long the batcher may wait to fill a batch
TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32",
                 "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}
STATE_INPUT, STATE_OUTPUT = "state", "state_out"


class TritonConfigError(ValueError):
    """A generated config is not valid Triton model configuration or does not fit the model."""


@dataclass(frozen=True)
class Enum:
    """A protobuf enum value: rendered bare (``TYPE_FP32``), not quoted."""

    name: str


# ---- pbtxt rendering -------------------------------------------------------------------

def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot render {value!r} as protobuf text")


def render_pbtxt(message: dict[str, Any], indent: int = 0) -> str:
    """Nested dict -> protobuf text format (lists of dicts as repeated messages)."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines += [f"{pad}{key} {{", render_pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{pad}{key} [")
            blocks = [f"{pad}  {{\n{render_pbtxt(v, indent + 2)}\n{pad}  }}" for v in value]
            lines += [",\n".join(blocks), f"{pad}]"]
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(lines)


# ---- configs ---------------------------------------------------------------------------

def _dims(shape: tuple[int | str, ...], name: str) -> list[int]:
    """Manifest shape -> Triton dims: the leading batch axis dropped, other axes -1."""
    if not shape or shape[0] != BATCH_AXIS:
        raise TritonConfigError(f"tensor {name!r} has shape {shape}; Triton batching needs "
                                f"the first axis to be {BATCH_AXIS!r}")
    return [d if isinstance(d, int) else -1 for d in shape[1:]]


def _tensor(t: Any) -> dict[str, Any]:
    """A config tensor; one value per batch item (the generator's ``style``, (batch,)) is
    ``dims: [1]`` reshaped to ``[]``, as Triton wants for per-item scalars."""
    dims = _dims(t.shape, t.name)
    out = {"name": t.name, "data_type": Enum(TRITON_DTYPES[t.dtype]), "dims": dims or [1]}
    return out if dims else out | {"reshape": {"shape": []}}


def generator_config(bundle: Bundle, name: str, platform: str,
                     cc_files: dict[str, str] | None = None) -> dict[str, Any]:
    """Sequence-batched generator config with ``state`` as implicit state."""
    spec = bundle.manifest.generator
    _, opt, high = spec.batch_profile
    state = next(t for t in spec.model.inputs if t.name == STATE_INPUT)
    state_dims = _dims(state.shape, STATE_INPUT)
    config: dict[str, Any] = {
        "name": name, "platform": platform, "max_batch_size": high,
        "input": [_tensor(t) for t in spec.model.inputs if t.name != STATE_INPUT],
        "output": [_tensor(t) for t in spec.model.outputs if t.name != STATE_OUTPUT],
        "sequence_batching": {
            "max_sequence_idle_microseconds": SEQUENCE_IDLE_US,
            "oldest": {"max_candidate_sequences": high, "preferred_batch_size": [opt],
                       "max_queue_delay_microseconds": QUEUE_DELAY_US},
            "state": [{
                "input_name": STATE_INPUT, "output_name": STATE_OUTPUT,
                "data_type": Enum(TRITON_DTYPES[state.dtype]), "dims": state_dims,
                "initial_state": [{"data_type": Enum(TRITON_DTYPES[state.dtype]),
                                   "dims": state_dims, "zero_data": True,
                                   "name": "stream_start_zeros"}],
            }],
        },
    }
    return _with_files(config, platform, cc_files)


def posesync_config(bundle: Bundle, name: str, platform: str,
                    cc_files: dict[str, str] | None = None) -> dict[str, Any]:
    """Stateless PoseSyncNet config with dynamic batching over clips."""
    if bundle.manifest.posesync is None:
        raise TritonConfigError(f"bundle {bundle.root} has no posesync model")
    spec = bundle.manifest.posesync.model
    _, opt, high = bundle.manifest.generator.batch_profile
    config: dict[str, Any] = {
        "name": name, "platform": platform, "max_batch_size": high,
        "input": [_tensor(t) for t in spec.inputs],
        "output": [_tensor(t) for t in spec.outputs],
        "dynamic_batching": {"preferred_batch_size": [opt],
                             "max_queue_delay_microseconds": QUEUE_DELAY_US},
    }
    return _with_files(config, platform, cc_files)


def _with_files(config: dict[str, Any], platform: str, cc_files: dict[str, str] | None
                ) -> dict[str, Any]:
    if platform == "tensorrt_plan":
        config["instance_group"] = [{"count": 1, "kind": Enum("KIND_GPU")}]
        config["cc_model_filenames"] = [{"key": cc, "value": file}
                                        for cc, file in sorted((cc_files or {}).items())]
    return config


# ---- validation ------------------------------------------------------------------------

def model_config_module() -> ModuleType:
    """Triton's ``model_config_pb2`` as shipped in the ``tritonclient`` package.

    Loaded from its file so that tritonclient's gRPC client (and grpcio) is not needed.
    """
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise TritonConfigError("validating Triton configs needs Triton's ModelConfig schema "
                                "from the tritonclient package: pip install tritonclient")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", path)
    if module_spec is None or module_spec.loader is None or not path.is_file():
        raise TritonConfigError(f"{path}: tritonclient ships no model_config_pb2.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parse_config(text: str, source: str = "config.pbtxt") -> Any:
    """Parse pbtxt into ``inference.ModelConfig``; TritonConfigError naming the problem."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, model_config_module().ModelConfig())
    except text_format.ParseError as exc:
        raise TritonConfigError(f"{source}: not a valid Triton ModelConfig: {exc}") from exc


def check_config_against_onnx(config: Any, onnx_spec: ModelSpec, source: str) -> None:
    """Names, dtypes and dims of a parsed config vs the ONNX graph's I/O."""
    model_pb2 = model_config_module()
    dtype_name = model_pb2.DataType.Name
    expected = {t.name: t for t in (*onnx_spec.inputs, *onnx_spec.outputs)}
    declared = [("input", t) for t in config.input] + [("output", t) for t in config.output]
    states = list(config.sequence_batching.state) if config.HasField("sequence_batching") else []
    for state in states:
        for name in (state.input_name, state.output_name):
            declared.append(("state", _StateTensor(name, state.data_type, list(state.dims))))
    seen = set()
    for kind, tensor in declared:
        onnx_tensor = expected.get(tensor.name)
        if onnx_tensor is None:
            raise TritonConfigError(f"{source}: {kind} {tensor.name!r} is not a tensor of "
                                    f"{onnx_spec.file} (it has {sorted(expected)})")
        want_dtype = TRITON_DTYPES[onnx_tensor.dtype]
        if dtype_name(tensor.data_type) != want_dtype:
            raise TritonConfigError(f"{source}: {tensor.name!r} is {dtype_name(tensor.data_type)}"
                                    f", the ONNX graph has {want_dtype}")
        want_dims = _dims(onnx_tensor.shape, onnx_tensor.name)
        dims = list(tensor.dims)
        if kind != "state" and tensor.HasField("reshape"):
            dims = list(tensor.reshape.shape)
        if dims != want_dims:
            raise TritonConfigError(f"{source}: {tensor.name!r} has dims {list(tensor.dims)}, "
                                    f"the ONNX graph has {want_dims} (batch axis excluded)")
        seen.add(tensor.name)
    missing = sorted(set(expected) - seen)
    if missing:
        raise TritonConfigError(f"{source}: ONNX tensors {missing} of {onnx_spec.file} are "
                                "neither inputs, outputs nor implicit state in the config")


@dataclass(frozen=True)
class _StateTensor:
    name: str
    data_type: int
    dims: list[int]


# ---- repository ------------------------------------------------------------------------

def export_triton_repository(bundle_dir: str | Path, repo_dir: str | Path) -> list[Path]:
    """Write the model repository; returns the config files written (all validated)."""
    bundle = load_bundle(bundle_dir)
    repo = Path(repo_dir)
    manifest = bundle.manifest
    models: list[tuple[str, str, ModelSpec, Any]] = [
        ("generator", "gesturert_generator", manifest.generator.model, generator_config)]
    if manifest.posesync is not None:
        models.append(("posesync", "gesturert_posesync", manifest.posesync.model,
                       posesync_config))
    written = []
    for model, prefix, spec, make_config in models:
        onnx_spec = read_model_spec(bundle.path(spec.file))
        variants: list[tuple[str, str, dict[str, str], list[str]]] = [
            (f"{prefix}_onnx", "onnxruntime_onnx", {}, [spec.file])]
        engines = [e for e in manifest.engines if e.model == model and e.precision == "fp32"]
        if engines:
            cc_files = {e.compute_capability: Path(e.file).name for e in engines}
            variants.append((f"{prefix}_trt", "tensorrt_plan", cc_files,
                             [e.file for e in engines]))
        for name, platform, cc_files, files in variants:
            version_dir = repo / name / MODEL_VERSION
            version_dir.mkdir(parents=True, exist_ok=True)
            for file in files:
                target = "model.onnx" if platform == "onnxruntime_onnx" else Path(file).name
                shutil.copyfile(bundle.path(file), version_dir / target)
            text = render_pbtxt(make_config(bundle, name, platform, cc_files or None)) + "\n"
            config_path = repo / name / "config.pbtxt"
            check_config_against_onnx(parse_config(text, str(config_path)), onnx_spec,
                                      str(config_path))
            config_path.write_text(text)
            written.append(config_path)
    return written
