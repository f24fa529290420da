"""The table and files of ``gesturert validate`` (see :mod:`export.validate`).

A :class:`Row` is one generator output (audio x backend x mode) with its differences from
the reference run; :func:`format_table` renders rows as Markdown (what is printed) and
:func:`write_report` writes ``validate.json`` (every number) and ``validate.md``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

KEYPOINT_TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}  # max abs, canonical units (shoulder widths)


@dataclass
class Row:
    """One generator output of the validation table (differences vs the reference run)."""

    audio: str
    seed: int  # noise seed of the run
    backend: str
    mode: str  # "offline" | "streaming/<frames per step>" | "streaming/random" (torch)
    precision: str
    frames: int
    psd: float
    psd_reference: float
    psd_rel_diff: float
    offset: int
    offset_reference: int
    offset_flat: bool
    confidence: float
    keypoints_max_abs: float | None = None
    keypoints_mean_abs: float | None = None
    saliency_max_abs: float | None = None
    saliency_agreement: float | None = None  # fraction of frames on the same side of 0.5
    is_reference: bool = False
    failures: list[str] = field(default_factory=list)


COLUMNS = ("audio", "seed", "backend", "mode", "prec", "frames", "kp max", "kp mean", "sal max",
           "sal agree", "PSD", "ref PSD", "ΔPSD %", "offset", "conf", "status")


def _cells(row: Row) -> tuple[str, ...]:
    def num(v: float | None, fmt: str) -> str:
        return "ref" if row.is_reference else ("-" if v is None else format(v, fmt))

    offset = f"{row.offset:+d}" + (" (flat)" if row.offset_flat else "")
    return (row.audio, str(row.seed), row.backend, row.mode, row.precision, str(row.frames),
            num(row.keypoints_max_abs, ".2e"), num(row.keypoints_mean_abs, ".2e"),
            num(row.saliency_max_abs, ".2e"),
            num(None if row.saliency_agreement is None else 100 * row.saliency_agreement,
                ".1f"),
            f"{row.psd:.5f}", f"{row.psd_reference:.5f}", f"{100 * row.psd_rel_diff:.1e}",
            offset, f"{row.confidence:.4f}", "FAIL" if row.failures else "ok")


def format_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (also what is printed)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out_dir: Path, bundle: Path, rows: list[Row], skipped: dict[str, str]
                 ) -> tuple[Path, Path]:
    """``validate.json`` (every number) and ``validate.md`` (the table); returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = [f for r in rows for f in r.failures]
    data = {"bundle": str(bundle), "passed": not failures, "failures": failures,
            "skipped": skipped, "keypoint_tolerance": KEYPOINT_TOLERANCE,
            "rows": [asdict(r) for r in rows]}
    json_path, md_path = out_dir / "validate.json", out_dir / "validate.md"
    json_path.write_text(json.dumps(data, indent=1, allow_nan=True))
    skipped_md = "".join(f"- skipped {k}: {v}\n" for k, v in skipped.items())
    verdict = "PASSED" if not failures else "FAILED:\n" + "".join(f"- {f}\n" for f in failures)
    md_path.write_text(f"# gesturert validate {bundle}\n\n{format_table(rows)}\n\n"
                       f"{skipped_md}\n{verdict}\n")
    return json_path, md_path
