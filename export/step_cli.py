"""``gesturert export-step``: add one-frame step models (fp32, int8) to a bundle.

Registered in pyproject.toml (``gesturert.commands``); the work is
:func:`export.step_bundle.add_step_models`. Exit codes: 0 done, 1 rejected (message on
stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1


def _run_export_step(args: argparse.Namespace) -> int:
    from export.bundle_writer import ExportError, load_generator
    from export.onnx_export import OnnxExportError
    from export.step_bundle import add_step_models
    from sdk.bundle import BundleError
    from train.checkpoint import CheckpointError

    try:
        generator, _ = load_generator(args.generator)
        export = add_step_models(args.bundle, generator, int8=not args.no_int8)
    except (CheckpointError, ExportError, OnnxExportError, BundleError) as exc:
        print(f"gesturert export-step: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if export.int8_problem:
        print(f"gesturert export-step: {export.int8_problem}", file=sys.stderr)
    for record in export.manifest.step_models:
        shown = {k: round(v, 6) if isinstance(v, float) else v
                 for k, v in record.measured.items()}
        print(f"{record.file} ({record.precision}): {shown}")
    return EXIT_OK


def register_export_step(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export-step", help="add one-frame step models (fp32 GEMM-shaped, int8) to a bundle",
        description="Write generator_step.onnx (each causal conv one matrix product) and its "
        "int8 quantisation into a bundle, check them against PyTorch and generator.onnx, "
        "and record them with tolerances and measured deltas in the manifest.")
    p.add_argument("bundle", type=Path, help="bundle directory (rewritten in place)")
    p.add_argument("--generator", required=True, type=Path,
                   help="the generator checkpoint the bundle was exported from")
    p.add_argument("--no-int8", action="store_true", help="the fp32 step model only")
    p.set_defaults(func=_run_export_step)
