"""TensorRT compatibility check of ONNX graphs, before any TensorRT is at hand.

TensorRT's ONNX parser accepts a subset of ONNX: the operators of onnx-tensorrt's
support matrix (kept as data in ``export/data/trt_supported_ops.json``, with its source
commit), some inputs only as build-time constants (``axes`` of Slice/Squeeze/Reduce*,
``pads``' axes, ...), and network I/O of the types an engine binds. This module walks a
graph (local functions inlined, subgraphs of If/Loop/Scan included) and lists every
problem with the node and the op named, so an export that would fail ``build-engine``
on the GPU machine fails here first, on a CPU.

``gesturert check-trt BUNDLE`` prints :func:`check_bundle`'s reports.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnx.inliner

SUPPORT_DATA = Path(__file__).resolve().parent / "data" / "trt_supported_ops.json"
DEFAULT_DOMAINS = ("", "ai.onnx")
# I/O element types an engine binds without a cast in the graph. INT64 is refused on
# purpose: TensorRT 10 binds it, but older engines and many runtimes do not, and our
# contract (docs/architecture.md) has float32 I/O only.
IO_TYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
}


@dataclass(frozen=True)
class TrtOpSupport:
    """The support matrix as data: op names, opset range, constant-input rules."""

    supported: frozenset[str]
    unsupported: frozenset[str]
    initializer_inputs: dict[str, tuple[int, ...]]
    opset_range: tuple[int, int]
    source: str

    @classmethod
    def load(cls, path: Path = SUPPORT_DATA) -> TrtOpSupport:
        data = json.loads(Path(path).read_text())
        src = data["source"]
        return cls(
            supported=frozenset(data["supported"]),
            unsupported=frozenset(data["unsupported"]),
            initializer_inputs={k: tuple(v) for k, v in data["initializer_inputs"].items()},
            opset_range=(int(data["opset_range"][0]), int(data["opset_range"][1])),
            source=f"{src['repository']}/blob/{src['commit']}/{src['path']} ({src['release']})",
        )


@dataclass(frozen=True)
class TrtIssue:
    """One reason TensorRT would refuse the graph."""

    where: str  # node name, or "input x" / "output y" / "model"
    op_type: str  # the node's op, "" for I/O and model-level issues
    message: str

    def __str__(self) -> str:
        op = f" ({self.op_type})" if self.op_type else ""
        return f"{self.where}{op}: {self.message}"


@dataclass(frozen=True)
class TrtCheckReport:
    """The check of one model: its problems and how often each op occurs."""

    model: str
    issues: tuple[TrtIssue, ...]
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.issues

    def format(self) -> str:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(self.op_counts.items()))
        if self.ok:
            nodes = sum(self.op_counts.values())
            return f"{self.model}: OK for TensorRT 10.x ({nodes} nodes: {ops})"
        lines = [f"{self.model}: {len(self.issues)} problem(s) for TensorRT:"]
        lines += [f"  - {issue}" for issue in self.issues]
        return "\n".join(lines)


def _walk_nodes(graph: onnx.GraphProto) -> Iterator[tuple[onnx.NodeProto, set[str]]]:
    """Every node of ``graph`` and its subgraphs, with the constant tensor names in scope."""
    constants = {init.name for init in graph.initializer}
    constants |= {init.values.name for init in graph.sparse_initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
            constants.update(node.output)
    for node in graph.node:
        yield node, constants
        for attr in node.attribute:
            subgraphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
            for sub in subgraphs:
                for inner, inner_constants in _walk_nodes(sub):
                    yield inner, inner_constants | constants


def _check_io(value: onnx.ValueInfoProto, kind: str) -> list[TrtIssue]:
    where = f"{kind} {value.name}"
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return [TrtIssue(where, "", "is not a tensor (sequence/map/optional I/O is unsupported)")]
    issues = []
    if tensor.elem_type not in IO_TYPES:
        name = onnx.TensorProto.DataType.Name(tensor.elem_type)
        issues.append(TrtIssue(
            where, "", f"has element type {name}; engine I/O must be one of "
            f"{sorted(IO_TYPES.values())} (cast inside the model)"))
    if not tensor.HasField("shape"):
        issues.append(TrtIssue(
            where, "", "has no shape (dynamic rank); TensorRT needs a fixed rank for "
            "optimization profiles: export with explicit dynamic axes"))
    return issues


def check_model(model: onnx.ModelProto | str | Path, name: str = "model",
                support: TrtOpSupport | None = None) -> TrtCheckReport:
    """Check one ONNX model against TensorRT's ONNX parser support.

    Args:
        model: a loaded model or a path to an .onnx file.
        name: how the report names the model.
        support: the matrix; the shipped data file by default.
    Returns:
        A report listing every problem (empty ``issues`` = passes).
    """
    support = support or TrtOpSupport.load()
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    model = onnx.inliner.inline_local_functions(model)
    issues: list[TrtIssue] = []
    low, high = support.opset_range
    for opset in model.opset_import:
        if opset.domain in DEFAULT_DOMAINS and not low <= opset.version <= high:
            issues.append(TrtIssue(
                "model", "", f"uses ONNX opset {opset.version}; TensorRT 10.x parses opsets "
                f"{low}..{high}: export with --opset in that range"))
    for value in model.graph.input:
        issues += _check_io(value, "input")
    for value in model.graph.output:
        issues += _check_io(value, "output")
    counts: Counter[str] = Counter()
    for node, constants in _walk_nodes(model.graph):
        where = node.name or f"<{node.op_type} -> {', '.join(node.output)}>"
        if node.domain not in DEFAULT_DOMAINS:
            counts[f"{node.domain}.{node.op_type}"] += 1
            issues.append(TrtIssue(
                where, node.op_type, f"custom-domain op ({node.domain}) would need a "
                "TensorRT plugin; gesturert models must use standard ONNX ops only"))
            continue
        counts[node.op_type] += 1
        if node.op_type in support.unsupported:
            issues.append(TrtIssue(where, node.op_type, "is not supported by TensorRT's "
                                   f"ONNX parser (support matrix: {support.source})"))
            continue
        if node.op_type not in support.supported:
            issues.append(TrtIssue(where, node.op_type, "is not in TensorRT's ONNX "
                                   f"support matrix ({support.source})"))
            continue
        for position in support.initializer_inputs.get(node.op_type, ()):
            if position < len(node.input) and node.input[position]:
                tensor = node.input[position]
                if tensor not in constants:
                    issues.append(TrtIssue(
                        where, node.op_type, f"input {position} ({tensor!r}) is computed at "
                        "run time; TensorRT needs it as an initializer (fold it to a constant)"))
    return TrtCheckReport(name, tuple(issues), dict(counts))


def check_bundle(bundle_dir: str | Path, support: TrtOpSupport | None = None
                 ) -> list[TrtCheckReport]:
    """Check every ONNX model a bundle's manifest lists (checksums verified first)."""
    from sdk.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    models = {"generator": manifest.generator.model.file}
    if manifest.posesync is not None:
        models["posesync"] = manifest.posesync.model.file
    for step in manifest.step_models:  # int8 step models are for ONNX Runtime CPU only
        if step.precision == "fp32":
            models["generator step"] = step.file
    return [check_model(bundle.path(file), name=f"{name} ({file})", support=support)
            for name, file in models.items()]
