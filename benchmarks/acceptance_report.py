"""What the reports judged by issue 17's criteria share (benchmarks.recorded_voice,
languages_never_heard, long_stream): a row's missed criteria and its Markdown cells, the
training range a bundle carries, and writing a report as JSON and Markdown.

A row is :func:`benchmarks.voices_acceptance.score_sequences`' dict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sdk.pose_range import PoseRange


def missed(row: dict[str, Any]) -> list[str]:
    """The criteria ``row`` misses, in the order it lists them."""
    return [k for k, ok in row["passed"].items() if not ok]


def all_met(rows: Iterable[dict[str, Any]]) -> bool:
    """Every row meets every criterion."""
    return all(not missed(row) for row in rows)


def sync_cells(row: dict[str, Any]) -> str:
    """Markdown cells "PSD | mean pose PSD | ratio | offsets | conf. | mouth r | mean abs z |
    farthest past the training range (SD)" of ``row``."""
    return (f"{row['psd']:.3f} | {row['mean_pose_psd']:.3f} | "
            f"{row['psd'] / row['mean_pose_psd']:.2f} | "
            f"{', '.join(f'{o:+d}' for o in row['best_offsets'])} | {row['confidence']:.3f} | "
            f"{row['mouth_energy_r']:.2f} | {row['mean_abs_z']:.2f} | "
            f"{row['largest_excursion']:.2f}")


def carried_range(generator: Any, bundle_dir: Path) -> PoseRange:
    """The training pose range the bundle carries; ValueError when it carries none."""
    pose_range = generator.manifest.pose_range
    if pose_range is None:
        raise ValueError(f"{bundle_dir}: the bundle carries no training pose range "
                         "(exported without --corpus)")
    return pose_range


def write_report(out: Path, name: str, report: dict[str, Any], text: str) -> None:
    """``report`` as ``out/name.json`` (sorted keys, non-ASCII kept) and ``text`` as
    ``out/name.md``; then print ``text``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(
        json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    (out / f"{name}.md").write_text(text)
    print(text)
