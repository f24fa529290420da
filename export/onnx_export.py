"""torch -> ONNX for the two bundle models, with the names and dynamic axes of the contract.

``generator.onnx`` is ``SalientPostureGenerator.step`` (docs/architecture.md, "The generator
step contract"): inputs ``features`` (B, Tc, 91), ``noise`` (B, Tc, noise_dim), ``state``
(B, S), and for a generator with styles ``style`` (B,) int32; outputs ``poses``
(B, Tc, 122, 2), ``saliency`` (B, Tc), ``state_out`` (B, S), with B and Tc dynamic (axis
names ``batch`` and ``frames``). ``posesync.onnx`` is
``PoseSyncNet.forward``: ``mfcc`` (B, 13, 60), ``pose_images`` (B, 9, H, W) -> ``audio_emb``,
``pose_emb`` (B, E), B dynamic.

Both go through torch's dynamo exporter (``torch.onnx.export(dynamo=True)``, which needs
``onnxscript``) with ``torch.export.Dim`` dynamic shapes, then ``onnx.checker`` with full
shape inference. :func:`read_model_spec` reads the I/O back from the file, so the manifest
describes what was written, not what we meant to write.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from sdk.bundle import ModelSpec, TensorSpec
from sdk.runners.base import (
    AUDIO_EMB,
    FEATURES,
    GENERATOR_INPUTS,
    GENERATOR_OUTPUTS,
    MFCC_CLIPS,
    NOISE,
    POSE_EMB,
    POSE_IMAGES,
    POSES,
    POSESYNC_INPUTS,
    POSESYNC_OUTPUTS,
    SALIENCY,
    STATE,
    STATE_OUT,
    STYLE,
)
from train.models.generator import GeneratorStep, SalientPostureGenerator
from train.models.posesync import PoseSyncNet

BATCH_AXIS = "batch"  # streams (generator) or clips (posesync)
FRAMES_AXIS = "frames"  # feature frames per step (generator)
MIN_OPSET = 17
DEFAULT_OPSET = 18
# Example sizes traced by the exporter: > 1 so that no dynamic axis is specialised to 1.
_EXAMPLE_BATCH = 2
_EXAMPLE_FRAMES = 3

_ONNX_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.BOOL: "bool",
}


class OnnxExportError(RuntimeError):
    """The ONNX file could not be produced or does not pass the checker."""


def _check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (dynamo export, TensorRT 10), got {opset}")


STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"  # node debug info holding source file paths


def strip_stack_traces(path: Path) -> None:
    """Remove the exporter's per-node Python stack traces from the ONNX file at ``path``.

    They name source files by absolute path (``/home/me/gesturert/train/models/...``): a
    machine path in the bundle, and the reason the same weights exported from two
    checkouts differed in bytes. Nothing reads them.
    """
    model = onnx.load(str(path))

    def strip(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            kept = [p for p in node.metadata_props if p.key != STACK_TRACE_KEY]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    strip(attribute.g)
                for sub in attribute.graphs:
                    strip(sub)

    strip(model.graph)
    for function in model.functions:
        for node in function.node:
            kept = [p for p in node.metadata_props if p.key != STACK_TRACE_KEY]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
    onnx.save(model, str(path))


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path,
            input_names: Sequence[str], output_names: Sequence[str],
            dynamic_shapes: dict[str, dict[int, torch.export.Dim]], opset: int) -> None:
    _check_opset(opset)
    was_training = module.training
    module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The dynamo exporter is chatty about things that do not concern a model
            # without torchvision ops or with axes named once: keep real warnings only.
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            warnings.filterwarnings("ignore", category=FutureWarning)
            program = torch.onnx.export(
                module, args, dynamo=True, input_names=list(input_names),
                output_names=list(output_names), dynamic_shapes=dynamic_shapes,
                opset_version=opset, verbose=False,
            )
        if program is None:  # only the legacy exporter returns None
            raise OnnxExportError(f"{path}: the exporter returned no program")
        program.save(str(path))
        strip_stack_traces(path)
    except OnnxExportError:
        raise
    except Exception as exc:  # torch.export / onnxscript raise many types
        raise OnnxExportError(
            f"{path}: torch.onnx.export (dynamo) failed: {exc.__class__.__name__}: {exc}"
        ) from exc
    finally:
        module.train(was_training)
    check_onnx(path)


def export_generator(generator: SalientPostureGenerator, path: str | Path,
                     opset: int = DEFAULT_OPSET) -> ModelSpec:
    """Export ``generator.step`` to ``path``; returns the I/O read back from the file.

    Args:
        generator: the trained generator (its ``step`` is what is exported).
        path: where to write ``generator.onnx``.
        opset: ONNX opset (>= 17).
    """
    config = generator.config
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    frames = torch.export.Dim(FRAMES_AXIS, min=1)
    args: tuple[torch.Tensor, ...] = (
        torch.randn(_EXAMPLE_BATCH, _EXAMPLE_FRAMES, config.feature_dim),
        torch.randn(_EXAMPLE_BATCH, _EXAMPLE_FRAMES, config.noise_dim),
        torch.randn(_EXAMPLE_BATCH, generator.state_size),
    )
    dynamic = {FEATURES: {0: batch, 1: frames}, NOISE: {0: batch, 1: frames},
               STATE: {0: batch}}
    inputs: tuple[str, ...] = GENERATOR_INPUTS
    if config.styles:
        args += ((torch.arange(_EXAMPLE_BATCH) % len(config.styles)).to(torch.int32),)
        dynamic[STYLE] = {0: batch}
        inputs += (STYLE,)
    path = Path(path)
    _export(GeneratorStep(generator), args, path, inputs, GENERATOR_OUTPUTS, dynamic, opset)
    b, t, joints = BATCH_AXIS, FRAMES_AXIS, config.num_joints
    return _check_contract(read_model_spec(path), {
        FEATURES: (b, t, config.feature_dim), NOISE: (b, t, config.noise_dim),
        STATE: (b, generator.state_size)} | ({STYLE: (b,)} if config.styles else {}) | {
        POSES: (b, t, joints, 2), SALIENCY: (b, t), STATE_OUT: (b, generator.state_size)})


def export_posesync(posesync: PoseSyncNet, path: str | Path, opset: int = DEFAULT_OPSET
                    ) -> ModelSpec:
    """Export ``PoseSyncNet.forward`` to ``path`` with a dynamic batch axis.

    Example inputs: ``mfcc`` (2, *posesync.mfcc_shape), ``pose_images`` (2, clip_frames, H, W).
    """
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    args = (torch.randn(_EXAMPLE_BATCH, *posesync.mfcc_shape),
            torch.rand(_EXAMPLE_BATCH, posesync.config.clip_frames, *posesync.image_shape))
    dynamic = {MFCC_CLIPS: {0: batch}, POSE_IMAGES: {0: batch}}
    path = Path(path)
    _export(posesync, args, path, POSESYNC_INPUTS, POSESYNC_OUTPUTS, dynamic, opset)
    b, emb = BATCH_AXIS, posesync.config.embedding_dim
    return _check_contract(read_model_spec(path), {
        MFCC_CLIPS: (b, *posesync.mfcc_shape),
        POSE_IMAGES: (b, posesync.config.clip_frames, *posesync.image_shape),
        AUDIO_EMB: (b, emb), POSE_EMB: (b, emb)})


def _check_contract(spec: ModelSpec, expected: dict[str, tuple[int | str, ...]]) -> ModelSpec:
    """The written graph's I/O must be exactly the contract's (names, order, axes; float32
    except ``style``, int32: TensorRT engine I/O has no int64)."""
    got = {t.name: t.shape for t in (*spec.inputs, *spec.outputs)}
    if got != expected or any(
            t.dtype != ("int32" if t.name == STYLE else "float32")
            for t in (*spec.inputs, *spec.outputs)):
        raise OnnxExportError(
            f"{spec.file}: I/O {got} (dtypes {[t.dtype for t in (*spec.inputs, *spec.outputs)]})"
            f" differ from the contract {expected} (float32, style int32); see "
            "docs/architecture.md")
    return spec


def check_onnx(path: str | Path) -> None:
    """``onnx.checker`` with full (strict) shape inference; raises OnnxExportError."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxExportError(f"{path}: onnx.checker failed: {exc}") from exc


def _tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor = value.type.tensor_type
    dtype = _ONNX_DTYPES.get(tensor.elem_type, onnx.TensorProto.DataType.Name(tensor.elem_type))
    shape: list[int | str] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        elif dim.dim_param:
            shape.append(str(dim.dim_param))
        else:
            raise OnnxExportError(f"tensor {value.name!r} has an unnamed dynamic axis")
    return TensorSpec(value.name, dtype, tuple(shape))


def read_model_spec(path: str | Path) -> ModelSpec:
    """I/O names, dtypes and shapes (ints or axis names) and opset of an ONNX file."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelSpec(
        file=path.name,
        inputs=tuple(_tensor_spec(v) for v in model.graph.input),
        outputs=tuple(_tensor_spec(v) for v in model.graph.output),
        opset=int(opset),
    )
