"""Result files shared by ``gesturert evaluate`` and ``gesturert ablate``: the machine they
ran on, Markdown tables, and the Markdown + JSON pair written per report."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def machine_description() -> dict[str, Any]:
    """CPU model (/proc/cpuinfo), cores, load average and Python/torch versions, now."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": [round(x, 2) for x in load],
            "python": platform.python_version(), "torch": torch.__version__,
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def format_value(value: float, fmt: str) -> str:
    return "—" if value is None or not np.isfinite(value) else format(value, fmt)


def markdown_table(rows: dict[str, dict[str, float]], columns: Sequence[tuple[str, str, str]],
                   first: str = "method") -> str:
    """A Markdown table: one row per key of ``rows`` (named in the ``first`` column), one
    column per (key, heading, format spec); missing or non-finite values print as —."""
    lines = ["| " + " | ".join([first] + [h for _, h, _ in columns]) + " |",
             "|" + "---|" * (len(columns) + 1)]
    for name, row in rows.items():
        lines.append("| " + " | ".join([name] + [format_value(row.get(k, float("nan")), f)
                                                 for k, _, f in columns]) + " |")
    return "\n".join(lines)


def machine_line(machine: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.2f}" for x in machine["load_average"])
    return (f"{machine['cpu']}, {machine['cores']} cores, load average {load} "
            f"({machine['date_utc']}; torch {machine['torch']})")


def write_report(report: dict[str, Any], markdown: str, out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out / f"{stem}.md").write_text(markdown)
