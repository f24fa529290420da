"""The export subcommands of ``gesturert`` (entry points in pyproject.toml).

Each ``register_*`` adds one subparser and sets ``func(args) -> int``. Exit codes: 0 done,
1 the input was rejected (message on stderr), 2 a needed tool is missing here (TensorRT,
a GPU, trtexec). The work happens in library functions; these are thin shells.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sdk.bundle import BundleError

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


def _fail(command: str, error: BaseException, code: int = EXIT_FAILED) -> int:
    print(f"gesturert {command}: {error}", file=sys.stderr)
    return code


def _profile(text: str) -> tuple[int, int, int]:
    from export.tensorrt_build import parse_profile

    try:
        return parse_profile(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


# ---- export ----------------------------------------------------------------------------

def _run_export(args: argparse.Namespace) -> int:
    from export.bundle_writer import ExportError, export_bundle
    from export.onnx_export import OnnxExportError
    from export.parity import ParityError
    from train.checkpoint import CheckpointError

    options: dict[str, Any] = {"overwrite": args.overwrite, "progress": not args.quiet,
                               "chunk_frames": args.chunk_frames}
    if args.batch is not None:
        options["batch_profile"] = args.batch
    try:
        manifest = export_bundle(args.generator, args.posesync, args.out,
                                 lookahead_frames=args.lookahead_frames, opset=args.opset,
                                 corpus=args.corpus, **options)
    except (CheckpointError, ExportError, OnnxExportError, ParityError, BundleError) as exc:
        return _fail("export", exc)
    parity = manifest.training.get("parity", {})
    for model, report in parity.items():
        worst = report["worst"]
        print(f"{model}: ORT vs PyTorch max abs {worst['max_abs']:.2e} "
              f"(worst: {worst['tensor']} in {worst['case']}; tolerance {report['tolerance']:.0e})")
    if manifest.psd_reference is not None:
        ref = manifest.psd_reference
        print(f"PSD reference {ref.value:.4f} (offset {ref.offset}, confidence "
              f"{ref.confidence:.4f}) on {ref.audio}")
    for model, issues in manifest.training.get("tensorrt_check", {}).items():
        if issues:
            print(f"warning: {model} would not build with TensorRT: {issues}", file=sys.stderr)
    if manifest.pose_range is not None:
        own = manifest.pose_range
        print(f"training pose range: {len(own.joints)} body/hand joints over {own.frames} "
              f"training frames (their mean |z| {own.mean_abs_z:.2f})")
    else:
        print("no --corpus: the bundle carries no training pose range (stream and demo "
              "cannot say whether output strays past the training poses)", file=sys.stderr)
    print(f"wrote bundle {args.out} ({len(manifest.files)} files + manifest.json)")
    return EXIT_OK


def register_export(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="checkpoints -> validated bundle (ONNX, MFCC matrices, manifest)",
        description="Export the generator's streaming step and PoseSyncNet to ONNX, validate "
        "them against PyTorch and write a bundle directory (manifest.json last).")
    p.add_argument("--generator", required=True, type=Path, help="generator checkpoint")
    p.add_argument("--posesync", required=True, type=Path, help="PoseSyncNet checkpoint")
    p.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    p.add_argument("--corpus", type=Path, default=None, metavar="DIR",
                   help="the corpus the generator was trained on (checked against the "
                   "checkpoint's pose statistics): the bundle then carries the training "
                   "poses' range, so a deployment can tell when output strays past it")
    p.add_argument("--lookahead-frames", type=int, default=None,
                   help="must equal the trained lookahead (checked); default: the trained one")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 17 (default 18)")
    p.add_argument("--chunk-frames", type=int, default=1,
                   help="feature frames per step the runtime uses by default (default 1)")
    p.add_argument("--batch", type=_profile, default=None, metavar="MIN:OPT:MAX",
                   help="streams per step engines are built for (default 1:16:256)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing bundle in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_export)


# ---- check-trt -------------------------------------------------------------------------

def _run_check_trt(args: argparse.Namespace) -> int:
    from export.trt_ops import check_bundle

    try:
        reports = check_bundle(args.bundle)
    except BundleError as exc:
        return _fail("check-trt", exc)
    for report in reports:
        print(report.format())
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


def register_check_trt(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "check-trt", help="check a bundle's ONNX graphs against TensorRT 10.x op support",
        description="List ops TensorRT's ONNX parser does not support and shape patterns it "
        "rejects (exit 1 if any).")
    p.add_argument("bundle", type=Path, help="bundle directory or .tar")
    p.set_defaults(func=_run_check_trt)


# ---- build-engine ----------------------------------------------------------------------

def _run_build_engine(args: argparse.Namespace) -> int:
    from export.tensorrt_build import (
        EngineBuildError,
        TensorRTUnavailable,
        build_bundle_engines,
    )

    try:
        records = build_bundle_engines(args.bundle, fp16=args.fp16, batch=args.batch,
                                       timing_cache=args.timing_cache,
                                       models=tuple(args.models))
    except TensorRTUnavailable as exc:
        return _fail("build-engine", exc, EXIT_UNAVAILABLE)
    except (EngineBuildError, BundleError, ValueError) as exc:
        return _fail("build-engine", exc)
    for record in records:
        print(f"{record.model}: {record.file} ({record.precision}, sm {record.compute_capability}"
              f", TensorRT {record.tensorrt_version}, batch {record.batch_profile})")
    return EXIT_OK


def register_build_engine(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "build-engine", help="build TensorRT engines for a bundle (needs TensorRT and a GPU)",
        description="Build strongly typed TensorRT engines from the bundle's ONNX models, "
        "save them under engines/ and record them in the manifest.")
    p.add_argument("bundle", type=Path, help="bundle directory")
    p.add_argument("--fp16", action="store_true",
                   help="fp16 engine from an fp16 copy of the graph (fp32 inputs/outputs)")
    p.add_argument("--batch", type=_profile, default=None, metavar="MIN:OPT:MAX",
                   help="streams per step (default: the manifest's batch profile)")
    p.add_argument("--timing-cache", type=Path, default=None, metavar="FILE",
                   help="TensorRT timing cache to read and update")
    p.add_argument("--models", nargs="+", default=["generator", "posesync"],
                   choices=["generator", "posesync"], help="which models (default: both)")
    p.set_defaults(func=_run_build_engine)


# ---- trtexec ---------------------------------------------------------------------------

def _run_trtexec(args: argparse.Namespace) -> int:
    from export.trtexec import TrtexecError, plans_for_bundle, run_plans

    out = args.out or Path("trtexec") / Path(args.bundle).name
    try:
        plans = plans_for_bundle(args.bundle, out, fp16=args.fp16, legacy_fp16=args.legacy_fp16)
    except (BundleError, ValueError) as exc:
        return _fail("trtexec", exc)
    for plan in plans:
        print(plan.format())
    if not args.run:
        return EXIT_OK
    try:
        records = run_plans(plans)
    except TrtexecError as exc:
        missing = "not on PATH" in str(exc)
        return _fail("trtexec", exc, EXIT_UNAVAILABLE if missing else EXIT_FAILED)
    text = json.dumps(records, indent=1)
    (out / "trtexec_summary.json").write_text(text)
    print(text)
    return EXIT_OK


def register_trtexec(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trtexec", help="print (or --run) trtexec build/benchmark commands for a bundle",
        description="trtexec commands with the manifest's shapes; --run executes them and "
        "parses the performance summaries into JSON.")
    p.add_argument("bundle", type=Path, help="bundle directory or .tar")
    p.add_argument("--run", action="store_true", help="run the commands (needs trtexec)")
    p.add_argument("--fp16", action="store_true", help="fp16 engines (fp16 graph, fp32 I/O)")
    p.add_argument("--legacy-fp16", action="store_true",
                   help="with --fp16: trtexec --fp16 on the fp32 graph (TensorRT 10 only)")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for engines, timing cache, times (default trtexec/<bundle>)")
    p.set_defaults(func=_run_trtexec)


# ---- export-triton ---------------------------------------------------------------------

def _run_export_triton(args: argparse.Namespace) -> int:
    from export.triton import TritonConfigError, export_triton_repository

    try:
        written = export_triton_repository(args.bundle, args.out)
    except (BundleError, TritonConfigError) as exc:
        return _fail("export-triton", exc)
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def register_export_triton(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export-triton", help="write a Triton Inference Server model repository",
        description="Generator with the sequence batcher and implicit state, PoseSyncNet with "
        "dynamic batching; ONNX Runtime and (when built) TensorRT variants.")
    p.add_argument("bundle", type=Path, help="bundle directory or .tar")
    p.add_argument("--out", required=True, type=Path, help="model repository directory")
    p.set_defaults(func=_run_export_triton)
