"""``gesturert export-step``: add one-frame step models (fp32, int8) to a bundle.

For a bundle and the generator checkpoint it was exported from:

1. ``generator_step.onnx`` (export/gemm_step.py), checked against PyTorch frame by frame
   on the shipped speech sample from a random state (max abs <= ``STEP_PARITY_TOLERANCE``)
   and against the bundle's ``generator.onnx`` through the SDK (:mod:`sdk.step_precision`,
   within ``FP32_TOLERANCES``);
2. with ``int8``: ``generator_step_int8.onnx``, ONNX Runtime's dynamic quantisation of
   it (weights int8 per output channel, activations quantised per call, so no calibration
   set is needed), measured the same way; the Gemm layers it cannot take are kept fp32
   (:mod:`export.step_int8`: by measured sensitivity, until within half of each of
   ``INT8_TOLERANCES``). An int8 model still outside ``INT8_TOLERANCES`` is not added
   (the fp32 one is, and :attr:`StepExport.int8_problem` says why);
3. ``manifest.json`` rewritten with a ``step_models`` record per model (file, precision,
   state layout, tolerances, measured deltas) and every file's checksum.

The rest of the bundle is untouched: ``generator.onnx`` still serves multi-frame steps,
TensorRT and Triton. Dynamic quantisation was chosen over static QDQ / QOperator after
trying both on the step (a prototype, not kept as a benchmark): static, calibrated on
random inputs, was ~20x further from fp32 and no faster on the 2-core EPYC.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from export.bundle_writer import ExportError, speech_inputs
from export.gemm_step import STATE_LAYOUT, STEP_FILE, STEP_INT8_FILE, export_step
from export.gemm_step_check import step_parity
from export.step_int8 import Int8Choice, choose_fp32_layers, gemm_nodes, quantize_step
from sdk.bundle import Manifest, StepModelRecord, load_bundle, write_bundle_manifest
from sdk.step_precision import check_step_model, measure_step_model
from train.models.generator import SalientPostureGenerator

STEP_PARITY_TOLERANCE = 1e-5  # standardised pose units / saliency / state, vs PyTorch
PARITY_FRAMES = 48  # one-frame steps checked against PyTorch (covers the 31-frame field)
FP32_TOLERANCES = {"keypoints_max_abs": 1e-4, "saliency_max_abs": 1e-4, "psd_relative": 0.005,
                   "offset_frames": 0}
"""The fp32 step computes generator.onnx's function: validate's fp32 limits."""
INT8_TOLERANCES = {"keypoints_max_abs": 0.05, "keypoints_mean_abs": 0.005,
                   "saliency_max_abs": 0.15, "psd_relative": 0.02, "offset_frames": 1}
"""int8 limits, canonical units (shoulder widths; 1 = ~150 px in the shipped bundle): no
joint further than 5 % of a shoulder width, 0.5 % on average, saliency within 0.15, PSD
within 2 %, the sync offset within a frame. What the default bundle's int8 model measured:
benchmarks/results/step_gemm/step_gemm.md ("Step models in the bundle")."""


@dataclasses.dataclass(frozen=True)
class StepExport:
    """What :func:`add_step_models` wrote: the new manifest, and why an int8 model that was
    asked for is missing from it ("" when it is there or was not asked for)."""

    manifest: Manifest
    int8_problem: str = ""


def add_step_models(bundle_dir: str | Path, generator: SalientPostureGenerator,
                    int8: bool = True) -> StepExport:
    """Write the step models into ``bundle_dir`` and rewrite its manifest.

    Raises:
        ExportError: the bundle's generator is not ``generator`` (state size or parity),
            or the fp32 model is out of its tolerances (no step model is added then).
    """
    root = Path(bundle_dir)
    bundle = load_bundle(root)
    manifest = bundle.manifest
    if manifest.generator.state_size != generator.state_size:
        raise ExportError(f"{root}: the bundle's generator has state size "
                          f"{manifest.generator.state_size}, the checkpoint's "
                          f"{generator.state_size}: not the checkpoint this bundle came from")
    stale = [root / STEP_FILE, root / STEP_INT8_FILE]
    base = dataclasses.replace(manifest, step_models=())
    for path in stale:
        path.unlink(missing_ok=True)
    write_bundle_manifest(root, base)  # a bundle without step models while they are made
    export_step(generator, root / STEP_FILE)
    _, features, _ = speech_inputs(manifest.features, 0)
    parity = step_parity(generator, root / STEP_FILE, features[:PARITY_FRAMES])
    if not parity.max_abs <= STEP_PARITY_TOLERANCE:
        raise ExportError(f"{root / STEP_FILE}: differs from PyTorch by {parity.max_abs:.3g} "
                          f"(> {STEP_PARITY_TOLERANCE}); the checkpoint is not this bundle's "
                          f"or the step graph is wrong")
    fp32 = StepModelRecord(STEP_FILE, "fp32", STATE_LAYOUT, "", dict(FP32_TOLERANCES),
                           {"pytorch_parity_max_abs": parity.max_abs})
    write_bundle_manifest(root, dataclasses.replace(base, step_models=(fp32,)))
    deltas = measure_step_model(root, "fp32")
    problems = check_step_model(fp32, deltas)
    if problems:
        for path in stale:
            path.unlink(missing_ok=True)
        write_bundle_manifest(root, base)
        raise ExportError("step model out of tolerance, not added: " + "; ".join(problems))
    fp32 = dataclasses.replace(fp32, measured={**fp32.measured, **deltas})
    with_fp32 = dataclasses.replace(base, step_models=(fp32,))
    if not int8:
        return StepExport(write_bundle_manifest(root, with_fp32))
    choice = _choose_int8(root, with_fp32)
    record = StepModelRecord(STEP_INT8_FILE, "int8", STATE_LAYOUT, choice.describe(),
                             dict(INT8_TOLERANCES), _int8_measured(choice))
    problems = check_step_model(record, choice.measured)
    if problems:
        (root / STEP_INT8_FILE).unlink(missing_ok=True)
        return StepExport(write_bundle_manifest(root, with_fp32),
                          "int8 step model out of tolerance with "
                          f"{len(choice.keep_fp32)} Gemm layers kept fp32, not added: "
                          + "; ".join(problems))
    return StepExport(write_bundle_manifest(
        root, dataclasses.replace(with_fp32, step_models=(fp32, record))))


def _choose_int8(root: Path, with_fp32: Manifest) -> Int8Choice:
    """Quantise ``root``'s step model, keeping fp32 what must be (:mod:`export.step_int8`);
    the chosen model is left in ``root``."""
    trial = StepModelRecord(STEP_INT8_FILE, "int8", STATE_LAYOUT, "", dict(INT8_TOLERANCES))
    with_int8 = dataclasses.replace(with_fp32, step_models=(*with_fp32.step_models, trial))

    def measure(keep_fp32: tuple[str, ...]) -> dict[str, Any]:
        quantize_step(root / STEP_FILE, root / STEP_INT8_FILE, keep_fp32)
        write_bundle_manifest(root, with_int8)  # the new file's checksum
        return measure_step_model(root, "int8")

    return choose_fp32_layers(gemm_nodes(root / STEP_FILE), measure, INT8_TOLERANCES)


def _int8_measured(choice: Int8Choice) -> dict[str, Any]:
    """The int8 record's ``measured``: the deltas, the layers kept fp32, and (when a search
    was needed) each Gemm's sensitivity (largest delta / tolerance, quantised alone)."""
    out: dict[str, Any] = {**choice.measured, "fp32_layers": list(choice.keep_fp32)}
    if choice.sensitivity:
        out["layer_sensitivity"] = {k: round(v, 4) for k, v in choice.sensitivity.items()}
    return out
