"""``gesturert build-engine``: TensorRT engines for a bundle's ONNX models.

Thin and typed over the TensorRT Python API (10.x; 11.x has the same calls):

* a **strongly typed** network (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``): tensor
  types come from the ONNX graph, not from builder precision flags. TensorRT 11 removed
  the FP16 builder flag, so fp16 engines are built from an fp16 *graph*: onnxconverter-
  common's ``convert_float_to_float16(keep_io_types=True)`` writes
  ``engines/<model>-fp16.onnx`` with float32 inputs and outputs (and the in-model input
  normalisation still in fp32), and that is parsed;
* ``OnnxParser.parse_from_file`` with every parser error reported (node, code, text);
* one optimization profile from the manifest: every dynamic axis named ``batch`` gets the
  (min, opt, max) batch profile and ``frames`` the generator's ``frames_profile``;
* a timing cache loaded from / saved to ``--timing-cache FILE`` (a missing file is created);
* the plan saved as ``engines/<model>[-fp16].sm<cc>.trt<version>.plan`` and recorded in the
  manifest as an :class:`~sdk.bundle.EngineRecord`, with the checksums rewritten.

Without the TensorRT libraries or a GPU every entry point raises
:class:`TensorRTUnavailable` (the CLI prints it and exits with code 2).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import onnx

from sdk.bundle import Bundle, EngineRecord, ModelSpec, load_bundle, write_bundle_manifest

ENGINES_DIR = "engines"
MODELS = ("generator", "posesync")
BATCH_AXIS = "batch"
FRAMES_AXIS = "frames"
WORKSPACE_BYTES = 1 << 30  # 1 GiB builder workspace: ample for these models

Shape = tuple[int, ...]
ProfileShapes = dict[str, tuple[Shape, Shape, Shape]]  # input -> (min, opt, max)


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is missing: nothing can be built here."""


class EngineBuildError(RuntimeError):
    """TensorRT refused the network (parser errors) or the build failed."""


def parse_profile(text: str) -> tuple[int, int, int]:
    """'MIN:OPT:MAX' -> (min, opt, max) with 1 <= min <= opt <= max; ValueError otherwise."""
    parts = text.split(":")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise ValueError(f"expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX (e.g. 1:16:256), "
                         f"got {text!r}")
    return values[0], values[1], values[2]


def profile_shapes(spec: ModelSpec, axes: dict[str, tuple[int, int, int]]) -> ProfileShapes:
    """(min, opt, max) shape of every input, axis names replaced from ``axes``.

    Args:
        spec: the model's manifest entry (shapes hold ints and axis names).
        axes: axis name -> (min, opt, max), e.g. {"batch": (1, 16, 256), "frames": (1, 1, 64)}.
    """
    shapes: ProfileShapes = {}
    for tensor in spec.inputs:
        bounds: list[tuple[int, int, int]] = []
        for dim in tensor.shape:
            if isinstance(dim, int):
                bounds.append((dim, dim, dim))
            elif dim in axes:
                bounds.append(axes[dim])
            else:
                raise ValueError(f"{spec.file}: input {tensor.name!r} has axis {dim!r}; only "
                                 f"{sorted(axes)} have a profile")
        shapes[tensor.name] = (tuple(b[0] for b in bounds), tuple(b[1] for b in bounds),
                               tuple(b[2] for b in bounds))
    return shapes


def model_profiles(bundle: Bundle, model: str, batch: tuple[int, int, int] | None = None
                   ) -> tuple[ModelSpec, ProfileShapes]:
    """A bundle model's spec and profile shapes (batch profile from the manifest by default)."""
    manifest = bundle.manifest
    generator = manifest.generator
    axes = {BATCH_AXIS: batch or generator.batch_profile, FRAMES_AXIS: generator.frames_profile}
    if model == "generator":
        spec = generator.model
    elif model == "posesync" and manifest.posesync is not None:
        spec = manifest.posesync.model
    else:
        raise ValueError(f"bundle {bundle.root} has no model {model!r}; it has "
                         f"{['generator'] + (['posesync'] if manifest.posesync else [])}")
    return spec, profile_shapes(spec, axes)


_INPUT_PRELUDE_OPS = frozenset({"Sub", "Div", "Mul", "Add"})


def input_prelude_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the elementwise nodes that only read graph inputs and constants.

    These are the in-model input normalisations (``(features - mean) / std``): raw MFCCs
    reach several hundred, where fp16 spacing is ~0.25-0.5, so they stay fp32 and the
    cast to fp16 happens on the standardised values.
    """
    available = {v.name for v in model.graph.input} | {i.name for i in model.graph.initializer}
    kept: list[str] = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            available.update(node.output)
        elif node.op_type in _INPUT_PRELUDE_OPS and all(i in available for i in node.input):
            kept.append(node.name)
            available.update(node.output)
    return kept


def convert_to_fp16(onnx_path: Path, out_path: Path) -> Path:
    """fp16 copy of an fp32 ONNX graph keeping float32 I/O (onnxconverter-common).

    The input normalisation (:func:`input_prelude_nodes`) is kept in fp32.
    """
    from onnxconverter_common import float16

    model = onnx.load(str(onnx_path))
    model = float16.convert_float_to_float16(model, keep_io_types=True,
                                             node_block_list=input_prelude_nodes(model))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    onnx.checker.check_model(str(out_path), full_check=True)
    return out_path


def tensorrt_version() -> str:
    """The importable TensorRT's version; TensorRTUnavailable when there is none."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"TensorRT is not installed ({exc}). Install it on a machine with an NVIDIA GPU "
            "(pip install 'gesturert[gpu]') and run build-engine there.") from exc
    if not hasattr(trt, "Builder"):  # only the type stubs (a namespace package) are present
        raise TensorRTUnavailable(
            "only TensorRT's type stubs are installed, not its libraries; build engines on a "
            "machine with TensorRT and an NVIDIA GPU (pip install 'gesturert[gpu]')")
    return str(trt.__version__)


def gpu_compute_capability(device: int = 0) -> str:
    """'major.minor' of CUDA device ``device``; TensorRTUnavailable without a GPU."""
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        raise TensorRTUnavailable(f"cuda-python is not installed ({exc}); it reads the GPU's "
                                  "compute capability (pip install 'gesturert[gpu]')") from exc
    err, props = runtime.cudaGetDeviceProperties(device)
    if err != runtime.cudaError_t.cudaSuccess:
        raise TensorRTUnavailable(f"no usable CUDA GPU {device} ({err.name}); engines must be "
                                  "built on the GPU model they will run on")
    return f"{props.major}.{props.minor}"


def engine_file_name(model: str, precision: str, compute_capability: str, version: str) -> str:
    """``<model>[-fp16].sm<cc>.trt<version>.plan``, e.g. ``generator-fp16.sm90.trt10.13.0.plan``."""
    name = model if precision == "fp32" else f"{model}-{precision}"
    return f"{name}.sm{compute_capability.replace('.', '')}.trt{version}.plan"


def build_serialized_engine(onnx_path: Path, shapes: ProfileShapes,
                            timing_cache: Path | None = None,
                            workspace_bytes: int = WORKSPACE_BYTES) -> bytes:
    """Parse ``onnx_path`` into a strongly typed network and build a serialized engine.

    TF32 is turned off (TensorRT enables it by default): fp32 layers stay IEEE fp32, so an
    "fp32" engine keeps the 1e-4 parity with ONNX Runtime; fp16 comes only from the fp16
    graph's types.

    Args:
        onnx_path: the ONNX file (fp32, or fp16 with fp32 I/O).
        shapes: (min, opt, max) per network input (see :func:`profile_shapes`).
        timing_cache: file to read the timing cache from (if present) and write it back to.
    Raises:
        TensorRTUnavailable, EngineBuildError (with every parser error listed).
    """
    tensorrt_version()
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        listed = "\n".join(f"  - node {e.node()} ({e.node_operator()}): {e.code()}: {e.desc()}"
                           for e in errors)
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser failed with "
                               f"{len(errors)} error(s):\n{listed}")
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        name = network.get_input(index).name
        if name not in shapes:
            raise EngineBuildError(f"{onnx_path}: network input {name!r} has no profile shape "
                                   f"(manifest inputs: {sorted(shapes)})")
        low, opt, high = shapes[name]
        profile.set_shape(name, trt.Dims(list(low)), trt.Dims(list(opt)), trt.Dims(list(high)))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build an engine (see the "
                               "TensorRT log above)")
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def build_bundle_engines(bundle_dir: str | Path, fp16: bool = False,
                         batch: tuple[int, int, int] | None = None,
                         timing_cache: Path | None = None,
                         models: tuple[str, ...] = MODELS) -> list[EngineRecord]:
    """Build an engine per model, save it under ``engines/`` and record it in the manifest.

    An earlier engine for the same file name is replaced (file and record).
    Returns the records added.
    """
    version = tensorrt_version()
    capability = gpu_compute_capability()
    bundle = load_bundle(bundle_dir)
    precision = "fp16" if fp16 else "fp32"
    batch_profile = batch or bundle.manifest.generator.batch_profile
    records: list[EngineRecord] = []
    for model in models:
        if model == "posesync" and bundle.manifest.posesync is None:
            continue
        spec, shapes = model_profiles(bundle, model, batch_profile)
        source = bundle.path(spec.file)
        if fp16:
            source = convert_to_fp16(source, bundle.path(f"{ENGINES_DIR}/{model}-fp16.onnx"))
        plan = build_serialized_engine(source, shapes, timing_cache)
        relative = f"{ENGINES_DIR}/{engine_file_name(model, precision, capability, version)}"
        bundle.path(relative).parent.mkdir(parents=True, exist_ok=True)
        bundle.path(relative).write_bytes(plan)
        records.append(EngineRecord(
            model=model, file=relative, compute_capability=capability, tensorrt_version=version,
            precision=precision, batch_profile=batch_profile,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds")))
    new_files = {r.file for r in records}
    kept = tuple(e for e in bundle.manifest.engines if e.file not in new_files)
    write_bundle_manifest(bundle.root,
                          dataclasses.replace(bundle.manifest, engines=kept + tuple(records)))
    return records
