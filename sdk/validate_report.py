"""The result of ``gesturert validate``: run it on a bundle, write ``validate.json`` / ``.md``.

:func:`validate_bundle` opens a bundle, runs :func:`sdk.validate.run_checks` with the
manifest's tolerances and returns a :class:`ValidationReport`; :meth:`~ValidationReport.write`
writes every number as JSON and the table as Markdown. SDK only (numpy, onnxruntime).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sdk.bundle import load_bundle
from sdk.golden import METRICS, STEP_METRICS
from sdk.validate import BACKENDS, Check, ValidateUnavailable, run_checks

EXIT_OK, EXIT_MISMATCH, EXIT_CANNOT_RUN = 0, 1, 2


def machine() -> dict[str, Any]:
    """Where validation ran: platform, CPU count, load average, library versions."""
    versions = {}
    for package in ("onnxruntime", "onnxruntime-gpu", "numpy", "tensorrt"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    cpu = platform.processor()
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"platform": platform.platform(), "processor": cpu,
            "cpus": os.cpu_count(), "load_average_1_5_15": list(os.getloadavg()),
            "python": platform.python_version(), "versions": versions}


@dataclass
class ValidationReport:
    """Checks of one bundle against its golden reference, and what could not run."""

    bundle: str
    checks: list[Check]
    skipped: dict[str, str]
    reference: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=machine)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def exit_code(self) -> int:
        return EXIT_MISMATCH if self.failures else EXIT_OK

    def min_margin(self, precision: str) -> float | None:
        """Smallest tolerance/value over the checks of ``precision`` with a nonzero
        tolerance (decision checks, whose tolerance is 0, are pass/fail only)."""
        margins = [c.margin for c in self.checks if c.precision == precision and c.tolerance
                   and c.margin is not None]
        return min(margins) if margins else None

    def to_dict(self) -> dict[str, Any]:
        checks = [{**dataclasses.asdict(c), "unit": c.unit, "passed": c.passed,
                   "margin": c.margin} for c in self.checks]
        return {"bundle": self.bundle, "passed": not self.failures,
                "exit_code": self.exit_code,
                "failures": [c.describe() for c in self.failures],
                "skipped": self.skipped,
                "min_margin": {p: self.min_margin(p) for p in
                               sorted({c.precision for c in self.checks})},
                "reference": self.reference, "machine": self.machine, "checks": checks}

    def markdown(self) -> str:
        lines = [f"# gesturert validate {self.bundle}", "",
                 "Every backend present against the bundle's golden reference (the trained "
                 "PyTorch model, fp32, recorded at export).", "",
                 "| stage | metric | group | backend | mode | value | tolerance | margin | "
                 "worst frame | status |", "|---|---|---|---|---|---|---|---|---|---|"]
        for c in self.checks:
            margin = "-" if c.margin is None or not c.tolerance else \
                ("inf" if math.isinf(c.margin) else f"{c.margin:.0f}x")
            tolerance = "-" if c.tolerance is None else f"{c.tolerance:.3g}"
            lines.append(
                f"| {c.stage} | {c.metric} | {c.group} | {c.backend} | {c.mode} | "
                f"{c.value:.3g} {c.unit} | {tolerance} | {margin} | "
                f"{'-' if c.worst_frame is None else c.worst_frame} | "
                f"{'ok' if c.passed else 'FAIL'}{' (flat)' if c.flat else ''} |")
        lines += ["", *(f"- not run: {k}: {v}" for k, v in self.skipped.items())]
        margin32 = self.min_margin("fp32")
        if margin32 is not None:
            lines += ["", f"Smallest fp32 margin (tolerance / value): {margin32:.0f}x."]
        verdict = ["", "PASSED" if not self.failures else "FAILED:"]
        verdict += [f"- {c.describe()}" for c in self.failures]
        return "\n".join(lines + verdict) + "\n"

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """``validate.json`` and ``validate.md`` in ``out_dir``; returns both paths."""
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out_dir / "validate.json", out_dir / "validate.md"
        json_path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=True) + "\n")
        md_path.write_text(self.markdown())
        return json_path, md_path


def validate_bundle(path: str | os.PathLike[str], backends: list[str] | None = None,
                    name: str | None = None) -> ValidationReport:
    """Validate the bundle at ``path`` on ``backends`` (default: every one present).

    Args:
        name: how to call the bundle in the report (default: ``path`` as given).
    Raises:
        BundleError: the bundle cannot be read; ValidateUnavailable: validation cannot run.
    """
    unknown = sorted(set(backends or ()) - set(BACKENDS))
    if unknown:
        raise ValidateUnavailable(f"unknown backend(s) {unknown}; expected some of "
                                  f"{', '.join(BACKENDS)}")
    bundle = load_bundle(path)
    try:
        spec = bundle.manifest.reference
        tolerances = spec.tolerances if spec is not None else None
        if spec is not None and not tolerances:
            raise ValidateUnavailable(f"{path}: the reference has no tolerances; re-export")
        checks, skipped = run_checks(bundle, backends, tolerances)
    finally:
        if bundle.unpacked_dir is not None:
            shutil.rmtree(bundle.unpacked_dir, ignore_errors=True)
    assert spec is not None  # run_checks refuses a bundle without one
    reference = {"psd": spec.psd, "offset": spec.offset, "confidence": spec.confidence,
                 "tolerances": spec.tolerances, "measured_at_export": spec.measured,
                 "derivation": spec.derivation, "provenance": spec.provenance,
                 "metrics": {k: {"unit": u, "meaning": m}
                             for k, (u, m) in (METRICS | STEP_METRICS).items()}}
    return ValidationReport(name or str(path), checks, skipped, reference)
