"""What ``gesturert`` costs to start, beside a bare ``import sdk`` (issue 15).

    python -m benchmarks.cli_start [--runs 10] [--out benchmarks/results/<machine-id>/]

Each case runs in a fresh interpreter, wall time measured by the parent (interpreter
start included), the cases interleaved ``runs`` times so that a change of machine load
hits them alike; medians reported. ``gesturert bench`` runs the same measurement
(``cli_start`` in bench.json); this entry writes it alone, as ``cli_start.json`` and
``cli_start.md``, with the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO_ROOT, load_average, machine_id, machine_info

#: case -> the Python code of a fresh process: the CLI with every command's register
#: module (--help), with one command's (stream --help), and the SDK alone.
CLI_START_CASES = {
    "import sdk": "import sdk",
    "gesturert --help": "from sdk.cli import main; main(['--help'])",
    "gesturert stream --help": "from sdk.cli import main; main(['stream', '--help'])",
}


def cli_start(runs: int = 5) -> dict[str, Any]:
    """Wall seconds of each of :data:`CLI_START_CASES` (fresh processes, ``runs`` rounds):
    ``{"runs", "wall_s": {case: [s, ...]}, "wall_s_median": {case: s}}``."""
    walls: dict[str, list[float]] = {case: [] for case in CLI_START_CASES}
    for _ in range(runs):
        for case, code in CLI_START_CASES.items():
            begin = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                  text=True, cwd=REPO_ROOT, check=False, timeout=300)
            walls[case].append(time.perf_counter() - begin)
            if done.returncode != 0:
                raise RuntimeError(f"`{case}` failed ({done.returncode}): "
                                   f"{done.stderr.strip()[-2000:]}")
    return {"runs": runs, "wall_s": walls,
            "wall_s_median": {case: float(np.median(w)) for case, w in walls.items()}}


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    load = ", ".join(f"{x:.2f}" for x in report["load_average_start"] or ())
    lines = ["# CLI start", "",
             f"{machine['cpu_model']}, {machine['cpu_cores']} cores, git "
             f"{(machine['git_sha'] or '?')[:7]}, {machine['timestamp']}; load average "
             f"(1/5/15 min) at the start {load}. Fresh processes, wall time from the parent, "
             f"median of {report['runs']}.", "",
             "| case | median s | min s | max s |", "|---|---|---|---|"]
    for case, walls in report["wall_s"].items():
        lines.append(f"| `{case}` | {np.median(walls):.3f} | {min(walls):.3f} | "
                     f"{max(walls):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_start",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="rounds of every case")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory (default benchmarks/results/<machine-id>/)")
    args = parser.parse_args(argv)
    machine = machine_info()
    start_load = load_average()
    report = {"machine": machine, "load_average_start": start_load, **cli_start(args.runs),
              "load_average_end": load_average()}
    out = args.out or REPO_ROOT / "benchmarks" / "results" / machine_id(machine)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cli_start.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    (out / "cli_start.md").write_text(markdown(report))
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
