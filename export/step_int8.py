"""The int8 step model: ONNX Runtime dynamic quantisation, with the layers it cannot take kept fp32.

``quantize_dynamic`` makes every Gemm of ``generator_step.onnx`` an int8 MatMulInteger whose
input row is quantised per call to uint8 with ONE scale for the whole row. A row that mixes
scales loses its small parts: the input projection reads raw MFCC context (the feature
standardisation is folded into its weights, so the row spans ~100 dB) and the decoders'
input Gemm reads the body features, the noise, the face features and a one-hot style side
by side. On the default bundle those two, quantised alone, moved the keypoints several
times more than any other Gemm, and all Gemms together came within 4 % of the keypoint
tolerance; a retrained generator (the 3000-step experiment) fell outside it. The int8
record in the manifest keeps each Gemm's sensitivity (benchmarks/results/step_gemm/).

So the export does not take "all Gemms" on faith. :func:`choose_fp32_layers`

1. measures the model with every Gemm quantised; within ``HEADROOM`` x each tolerance, done;
2. else measures each Gemm quantised alone (its *sensitivity*: the largest ratio of a
   delta to its tolerance), and keeps the most sensitive fp32, one at a time, measuring
   after each, until the model is within ``HEADROOM`` x the tolerances or
   ``MAX_FP32_LAYERS`` are kept;
3. returns the layers kept fp32 and every measurement made, so the choice is recorded.

Within ``HEADROOM`` (not merely within the tolerance) because ``gesturert validate``
measures again on the deployment machine, where another CPU's kernels round differently.
The measurements are :func:`sdk.step_precision.measure_step_model` (the SDK against
``generator.onnx`` on the shipped speech sample, every gesture style).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

INT8_QUANTIZATION = "onnxruntime quantize_dynamic: int8 weights per channel, uint8 activations"
HEADROOM = 0.5
"""An int8 model is accepted at export within this fraction of each validate tolerance."""
MAX_FP32_LAYERS = 4
"""Most Gemm layers kept fp32 before int8 is given up (the rest is what makes it pay)."""

Measure = Callable[[tuple[str, ...]], dict[str, Any]]
"""Quantise with these Gemm nodes kept fp32, write the model, return its deltas
(:func:`sdk.step_precision.measure_step_model`)."""


def gemm_nodes(model_path: str | Path) -> list[str]:
    """Names of the Gemm nodes of an ONNX model, in graph order."""
    return [n.name for n in onnx.load(str(model_path), load_external_data=False).graph.node
            if n.op_type == "Gemm"]


def quantize_step(fp32_path: str | Path, int8_path: str | Path,
                  keep_fp32: Sequence[str] = ()) -> None:
    """ONNX Runtime dynamic quantisation of a step model, Gemm weights int8 per output
    channel, but for the Gemm nodes named in ``keep_fp32``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic first rewrites each Gemm as MatMul + Add, naming the MatMul
    # "<gemm>_MatMul": exclusions must name that node
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8,
                     per_channel=True, nodes_to_exclude=[f"{n}_MatMul" for n in keep_fp32])


def tolerance_ratio(measured: Mapping[str, Any], tolerances: Mapping[str, float]) -> float:
    """The largest delta / tolerance over the tolerances that were measured (<= 1: within).

    ``offset_frames`` compares ``|offset - offset_reference|`` with its limit (a limit of 0
    gives 0 when equal, inf otherwise); a missing measurement is skipped; NaN gives inf.
    """
    worst = 0.0
    for key, limit in tolerances.items():
        if key == "offset_frames":
            if "offset" not in measured:
                continue
            value = abs(float(measured["offset"]) - float(measured["offset_reference"]))
        elif key in measured:
            value = float(measured[key])
        else:
            continue
        if value != value:  # NaN
            return float("inf")
        ratio = value / limit if limit > 0 else (0.0 if value == 0 else float("inf"))
        worst = max(worst, ratio)
    return worst


@dataclass
class Int8Choice:
    """What :func:`choose_fp32_layers` decided and why.

    keep_fp32: the Gemm nodes kept fp32 (in the order they were added); measured: the
    deltas of the final model; sensitivity: tolerance ratio of each Gemm quantised alone
    (empty when all-int8 was within the headroom); trials: (kept fp32, ratio) per
    measurement of a candidate; accepted: the final model is within ``HEADROOM``.
    """

    keep_fp32: tuple[str, ...]
    measured: dict[str, Any]
    accepted: bool
    sensitivity: dict[str, float] = field(default_factory=dict)
    trials: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    def describe(self) -> str:
        """The quantisation as recorded in the manifest."""
        if not self.keep_fp32:
            return INT8_QUANTIZATION
        return (f"{INT8_QUANTIZATION}; kept fp32 (most sensitive, chosen at export to stay "
                f"within {HEADROOM:g} of each tolerance): {', '.join(self.keep_fp32)}")


def choose_fp32_layers(gemms: Sequence[str], measure: Measure,
                       tolerances: Mapping[str, float]) -> Int8Choice:
    """Which Gemm layers to keep fp32 (see the module docstring); ``measure`` is called
    1 + len(gemms) + (layers kept) times at most. The model ``measure`` wrote last is the
    returned choice's."""
    target = HEADROOM
    measured = measure(())
    ratio = tolerance_ratio(measured, tolerances)
    choice = Int8Choice((), measured, ratio <= target, trials=[((), ratio)])
    if choice.accepted:
        return choice
    for name in gemms:
        alone = measure(tuple(n for n in gemms if n != name))
        choice.sensitivity[name] = tolerance_ratio(alone, tolerances)
    order = sorted(gemms, key=lambda n: -choice.sensitivity[n])
    keep: tuple[str, ...] = ()
    for name in order[:MAX_FP32_LAYERS]:
        keep += (name,)
        measured = measure(keep)
        ratio = tolerance_ratio(measured, tolerances)
        choice.trials.append((keep, ratio))
        choice.keep_fp32, choice.measured = keep, measured
        if ratio <= target:
            choice.accepted = True
            break
    return choice
