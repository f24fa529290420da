"""The ``gesturert evaluate`` report: issue 3's acceptance checks and the Markdown table.

Reads the JSON-able report of :func:`train.evaluation.run_evaluation`; computes nothing
from models or data. A committed report is rewritten from its JSON alone (after a change
of these rules; no retraining):

    python -m train.evaluation_report benchmarks/results/training/evaluation.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from train.results_report import machine_line, markdown_table, write_report

# The evaluation protocol (train/evaluation.py uses these; the report quotes them)
FGD_STRIDE = 8  # frames between FGD windows (4 windows per 32-frame span)
SHIFT_RANGE = (3, 15)  # |shift| of PoseSyncNet's held-out negatives, pose frames (training's)

# relative difference under which a comparison is a tie, not a win: the other-audio set is
# the generator's own outputs up to one-sample crops of the audio (FGDs 2e-6 apart)
TIE_TOLERANCE = 1e-3
# (key, heading, format, better): better "low"/"high"/"" (no direction)
COLUMNS = (
    ("fgd", "FGD ↓", ".3f", "low"), ("bc", "BC ↑", ".3f", "high"),
    ("bc_chance", "BC at chance", ".3f", ""), ("bc_all_joints", "BC all joints", ".3f", ""),
    ("psd", "PSD ↓", ".3f", "low"), ("offset_at_zero", "offset 0", ".0%", "high"),
    ("mean_abs_offset", "mean abs offset (frames)", ".2f", "low"),
    ("diversity", "diversity", ".2f", ""), ("l1", "L1 ↓", ".3f", "low"),
    ("pck", "PCK ↑", ".3f", "high"), ("lip_sync", "lip-sync r ↑", ".3f", "high"),
    ("detector_auc", "detector AUC ↑", ".3f", "high"),
)
# the baselines the generator must beat: (row, name in the checks)
BASELINES = (("mean_pose", "mean pose"), ("audio_shuffled", "the audio-shuffled model"),
             ("other_audio", "other audio"))
# (metric key, name, better) of the acceptance comparisons
COMPARED = (("fgd", "FGD", "low"), ("bc", "BC", "high"), ("psd", "PSD", "low"))
# (metric, row) pairs not compared, see acceptance_checks
NOT_COMPARED = (("fgd", "other_audio"), ("bc", "other_audio"))
# metric -> the key of its chance level in the same row: the metric of the same motion
# with its timing against the audio destroyed (BC: beats shifted against the audio)
CHANCE_LEVELS = {"bc": "bc_chance"}
PASSED, FAILED = "passed", "failed"
# the table's row order (a JSON report read back has its methods sorted by name)
METHOD_ORDER = ("generator", "audio_shuffled", "other_audio", "mean_pose", "ground_truth")


def beats(a: float, b: float, better: str) -> bool:
    """Whether ``a`` beats ``b`` by more than ``TIE_TOLERANCE`` (a tie is no win)."""
    margin = TIE_TOLERANCE * max(abs(a), abs(b))
    return a < b - margin if better == "low" else a > b + margin


def acceptance_checks(posesync: dict[str, float], rows: dict[str, dict[str, float]]
                      ) -> list[dict[str, Any]]:
    """Issue 3's acceptance criteria that this evaluation measures, each with pass/fail.

    The generator against each baseline on FGD, BC and PSD, except against ``other_audio``
    (the generator's own outputs re-paired with other audio) on FGD, a distance between sets
    that is equal by construction, and on BC, which does not see timing on this corpus: the
    ground truth's BC is no higher than its own chance level (``bc_chance``, the same beats
    shifted against the audio). PSD is the timing test against ``other_audio``. A missing
    ``audio_shuffled`` row gives failing "not measured" checks: the criterion is not shown.

    A comparison on a metric with a chance level (``CHANCE_LEVELS``) is *not informative*
    when the generator does not beat its own chance level on it (by more than
    ``TIE_TOLERANCE``): beating a baseline then says nothing about the audio. Its status is
    "not informative (chance X)" and ``passed`` is False. Each check: ``criterion``,
    ``value``, ``passed`` (bool), ``status`` ("passed", "failed" or "not informative ...").
    """
    gen = rows["generator"]
    checks: list[tuple[str, float, bool]] = [
        ("PoseSyncNet held-out ROC AUC >= 0.95", posesync["auc"], posesync["auc"] >= 0.95),
        ("offset sweep finds 0 on >= 90% of held-out sequences",
         rows["ground_truth"]["offset_at_zero"], rows["ground_truth"]["offset_at_zero"] >= 0.9),
    ]
    for key, metric, better in COMPARED:
        for row, name in BASELINES:
            if (key, row) in NOT_COMPARED:
                continue
            relation = "below" if better == "low" else "above"
            if row not in rows:
                checks.append((f"generator {metric} {relation} {name} (not measured: pass "
                               f"--shuffled-generator)", float("nan"), False))
                continue
            checks.append((f"generator {metric} {relation} {name}", gen[key],
                           beats(gen[key], rows[row][key], better)))
    checks.append(("detector frame AUC >= 0.85", gen["detector_auc"],
                   gen["detector_auc"] >= 0.85))
    chance = {key: gen[level] for key, level in CHANCE_LEVELS.items() if level in gen}
    out = []
    for criterion, value, passed in checks:
        status = PASSED if passed else FAILED
        compared = next((k for k, m, _ in COMPARED if criterion.startswith(f"generator {m} ")),
                        None)
        if compared in chance and not beats(gen[compared], chance[compared], "high"):
            status = f"not informative (chance {chance[compared]:.3f})"
        out.append({"criterion": criterion, "value": float(value),
                     "passed": status == PASSED, "status": status})
    return out


def metric_columns() -> list[tuple[str, str, str]]:
    """(key, heading, format) of ``COLUMNS`` for :func:`train.results_report.markdown_table`."""
    return [(k, h, f) for k, h, f, _ in COLUMNS]


def _in_table_order(methods: dict[str, Any]) -> dict[str, Any]:
    order = [m for m in METHOD_ORDER if m in methods] + sorted(set(methods) - set(METHOD_ORDER))
    return {m: methods[m] for m in order}


def _shown(check: dict[str, Any]) -> str:
    status = check.get("status", PASSED if check["passed"] else FAILED)  # older reports
    return {PASSED: "yes", FAILED: "NO"}.get(status, status)


def evaluation_markdown(report: dict[str, Any]) -> str:
    sync = report["posesync"]
    lines = [
        "# Held-out evaluation", "",
        f"Data: `{report['data']}`, {report['sequences']} held-out sequences "
        f"({report['frames']} frames). Machine: {machine_line(report['machine'])}.", "",
        markdown_table(_in_table_order(report["methods"]), metric_columns()), "",
        "Rows: `generator` driven by its own audio; `audio_shuffled`: a generator of the same "
        "config and step budget trained on audio-pose pairs shuffled across windows "
        "(`--set data.shuffle_audio_pairs=true`), driven by the sequence's audio; "
        "`other_audio`: the generator driven by another held-out sequence's audio, scored "
        "against this sequence; `mean_pose`: the training mean pose held still; "
        "`ground_truth`: the held-out poses (its FGD is 0 by construction: it is the "
        "reference set). FGD, diversity: FGD-autoencoder latents "
        f"of {FGD_STRIDE}-frame-hop windows; L1, PCK@0.2: canonical units (shoulder widths); "
        "offset 0: share of sequences whose PSD offset sweep (±15 frames) is best at 0.", "",
        f"PoseSyncNet on held-out ground truth: ROC AUC {sync['auc']:.3f} (aligned vs "
        f"shifted by {SHIFT_RANGE[0]}..{SHIFT_RANGE[1]} frames, {int(sync['clips'])} clips), "
        f"mean d aligned {sync['d_aligned']:.3f}, shifted {sync['d_shifted']:.3f}.", "",
        "| acceptance (issue 3) | value | passed |", "|---|---|---|",
    ]
    lines += [f"| {c['criterion']} | {c['value']:.3f} | {_shown(c)} |"
              for c in report["acceptance"]]
    truth = report["methods"]["ground_truth"]
    lines += ["", "Notes: `other_audio` re-pairs the generator's own outputs with other audio, "
              "so its FGD (a distance between sets) equals the generator's by construction; "
              "it is compared on PSD, the timing test. BC (HA2G/DiffGesture's formula on the "
              "arms' joint angles, DiffGesture's TED Gesture threshold 0.03) scores whether "
              "there are gesture-sized beats near the audio onsets; `BC at chance` is the same "
              "motion beats shifted against the audio. Ground truth scores "
              f"{truth['bc']:.3f} against {truth['bc_chance']:.3f} at chance: with dense "
              "onsets and beats, BC does not see timing on this corpus, so BC is not compared "
              "with `other_audio`. `BC all joints` is the TED Expressive formulation (fingers "
              "included, threshold 0.001): on 2D keypoints it mostly counts jitter (see "
              "train/metrics/beat.py)."]
    return "\n".join(lines) + "\n"


def rewrite_from_json(path: Path) -> None:
    """Recompute the acceptance checks of a committed ``evaluation.json`` with these rules
    and rewrite it and the ``evaluation.md`` beside it; the measurements are not touched."""
    report = json.loads(path.read_text())
    report["acceptance"] = acceptance_checks(report["posesync"], report["methods"])
    write_report(report, evaluation_markdown(report), path.parent, path.stem)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m train.evaluation_report PATH/evaluation.json")
    rewrite_from_json(Path(sys.argv[1]))
