"""``gesturert validate``: does this machine compute what was trained? (SDK only)

    gesturert validate BUNDLE [--backends onnxruntime-cpu,onnxruntime-gpu,tensorrt]
                       [--out out/validate]
                       [--generator generator.pt [--audio a.wav ...] [--seed 0]]

Compares every backend present here (ONNX Runtime CPU and GPU, each TensorRT engine
precision built for this GPU) with the golden reference the bundle carries in
``reference/``: what the trained PyTorch model computed at export on the reference audio.
Stages, each named in a failure: ``mfcc`` (the SDK's MFCC vs librosa's), ``generator``
(keypoints in pixels per group body/hands/face/lips: max and p99 distance; saliency
scores and decisions; offline and streaming), ``posesync`` (PoseSyncNet's embeddings),
``psd`` (PSD and sync offset end to end). Tolerances per precision come from the manifest
(derived at export from measured noise; docs/validation.md). Needs only the SDK
(``pip install gesturert[cpu]``): no torch, no librosa.

``--generator CKPT`` (needs torch: ``gesturert[train]``) adds the PyTorch comparison of
export/validate.py (found through the ``gesturert.validate_extras`` entry point): the
checkpoint's model vs each backend, offline and streaming, on the shipped sample and on
``--audio`` files, written to ``OUT/pytorch/``.

Writes ``validate.json`` (every number) and ``validate.md`` to ``--out``. Exit codes: 0
every check within tolerance; 1 a mismatch (each named on stderr: stage, metric, group,
backend, worst frame, value vs tolerance); 2 validation cannot run here (no reference in
the bundle, unreadable bundle, a requested backend missing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_MISMATCH, EXIT_CANNOT_RUN = 0, 1, 2
EXTRAS_GROUP = "gesturert.validate_extras"  # pyproject.toml: the export side's extras
PYTORCH_EXTRA = "pytorch"  # export.validate:pytorch_comparison


def register_validate(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "validate", help="every backend here vs the bundle's golden reference (SDK only)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="bundle directory or .tar")
    parser.add_argument("--backends", default=None,
                        help="comma-separated, of onnxruntime-cpu, onnxruntime-gpu, tensorrt "
                             "(default: every one present here; a named one that cannot run "
                             "exits 2)")
    parser.add_argument("--out", type=Path, default=Path("out/validate"),
                        help="directory for validate.json and validate.md (default "
                             "out/validate)")
    parser.add_argument("--generator", type=Path, default=None,
                        help="also compare with this PyTorch generator checkpoint (needs torch)")
    parser.add_argument("--audio", type=Path, nargs="+", default=[],
                        help="with --generator: more speech files for the PyTorch comparison")
    parser.add_argument("--seed", type=int, default=0,
                        help="with --generator: noise seed on --audio and chunking seed")
    parser.set_defaults(func=run_validate)


def _pytorch_comparison(args: argparse.Namespace, backends: list[str] | None) -> int:
    """The ``--generator`` extra, found through its entry point (sdk never imports export)."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=EXTRAS_GROUP) if ep.name == PYTORCH_EXTRA]
    try:
        if not found:
            raise ImportError(f"no {EXTRAS_GROUP!r} entry point {PYTORCH_EXTRA!r} installed")
        pytorch_comparison = found[0].load()
    except ImportError as exc:
        print(f"gesturert validate: --generator needs torch and the export package ({exc}); "
              "pip install 'gesturert[train]', or validate without --generator", file=sys.stderr)
        return EXIT_CANNOT_RUN
    return int(pytorch_comparison(args.bundle, list(args.audio), args.generator, backends,
                                  args.seed, args.out / "pytorch"))


def run_validate(args: argparse.Namespace) -> int:
    """The ``validate`` command; returns the exit code."""
    from sdk.audio import AudioError
    from sdk.bundle import BundleError
    from sdk.validate import ValidateUnavailable
    from sdk.validate_report import validate_bundle

    backends = None if args.backends is None else \
        [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.audio and args.generator is None:
        print("gesturert validate: --audio needs --generator: without the PyTorch model there "
              "is no reference for your audio (a backend compared with itself proves nothing)",
              file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        report = validate_bundle(args.bundle, backends)
    except (ValidateUnavailable, BundleError, AudioError) as exc:
        print(f"gesturert validate: cannot run: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(report.markdown())
    json_path, md_path = report.write(args.out)
    print(f"wrote {json_path}, {md_path}")
    code = report.exit_code
    if report.failures:
        print(f"gesturert validate: {len(report.failures)} check(s) out of tolerance:",
              file=sys.stderr)
        for check in report.failures:
            print(f"  {check.describe()}", file=sys.stderr)
    if args.generator is not None:
        torch_code = _pytorch_comparison(args, backends)
        code = max(code, torch_code) if torch_code != EXIT_CANNOT_RUN or code == 0 else code
    if code == EXIT_OK:
        print("validate: all within tolerance")
    return code
