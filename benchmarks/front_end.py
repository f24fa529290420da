"""The generator fed other audio front ends than the bundle's 13 MFCCs (issue 17).

    python -m benchmarks.front_end     # prints the README's table

``benchmarks.lip_probe`` found that all 40 log-mel bands tell a features-only probe more
about the lips than the 13 MFCCs, most for the voices never heard. These runs ask whether
the generator gains the same: `make bundle`'s corpus and default configs, every model
(PoseSyncNet, FGD encoder, generator) trained on the other front end, the corpus's
held-out sequences evaluated (ratios to each run's own references), the lip-sync r split by
``benchmarks.speaker_breakdown``, beside the probe on the same features. The first row is
the shipped bundle. How each run was made: ``benchmarks/results/training/front_end/README.md``.
Files: :data:`RUNS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmarks.corpus_minutes import generator_cells, probe_cell, probe_row
from benchmarks.doc_sources import markdown_table
from benchmarks.recording_conditions import CONDITIONS as RECORDING_CONDITIONS
from benchmarks.voices_acceptance import split_engine_rows

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TRAINING = RESULTS / "training"
FRONT_END = TRAINING / "front_end"
PROBE = TRAINING / "lip_probe"
CONDITIONS = tuple(RECORDING_CONDITIONS)  # the voices column's order


@dataclass(frozen=True)
class FrontEndRun:
    """One row: a generator run's result files and the probe on its features."""

    values: str  # feature values per pose frame, e.g. "7 x 40"
    evaluation: Path  # gesturert evaluate's JSON
    breakdown: Path  # benchmarks.speaker_breakdown's JSON
    probe: Path  # benchmarks.lip_probe's JSON
    probe_kind: str  # the probe row on the run's features
    voices: Path  # directory of benchmarks.voices_acceptance's acceptance[_CONDITION].json

    @staticmethod
    def in_directory(directory: Path, values: str, probe: Path, kind: str) -> FrontEndRun:
        return FrontEndRun(values, directory / "evaluation.json",
                           directory / "speaker_breakdown.json", probe, kind,
                           directory / "voices")


BASELINE = "13 MFCCs (shipped before the random level)"
RUNS: dict[str, FrontEndRun] = {
    # the bundle shipped when these runs were made: the same recipe, no random level
    BASELINE: FrontEndRun.in_directory(TRAINING / "no_gain_augmentation", "7 x 13",
                                       PROBE / "minutes_4.json", "mfcc"),
    "40 MFCCs": FrontEndRun.in_directory(FRONT_END / "mfcc_40", "7 x 40",
                                         PROBE / "minutes_4_mfcc40.json", "mfcc40"),
    "40 log-mel bands": FrontEndRun.in_directory(FRONT_END / "logmel_40", "7 x 40",
                                                 PROBE / "minutes_4.json", "logmel"),
    **{f"40 log-mel bands, run.seed={seed}": FrontEndRun.in_directory(
        FRONT_END / f"logmel_40_seed_{seed}", "7 x 40", PROBE / "minutes_4.json", "logmel")
       for seed in (1, 2)},
    **{f"40 log-mel bands, loss.spread_weight=0.3, run.seed={seed}": FrontEndRun.in_directory(
        FRONT_END / f"logmel_40_spread_0.3_seed_{seed}", "7 x 40", PROBE / "minutes_4.json",
        "logmel") for seed in (0, 1)},
}


RANDOM_LEVEL_RUNS: dict[str, FrontEndRun] = {
    # the random-level recipe (shipped before hum and DC joined the augmentation), both
    # judged by today's criteria
    "13 MFCCs (random level, shipped before)": FrontEndRun.in_directory(
        TRAINING / "random_level", "7 x 13", PROBE / "minutes_4.json", "mfcc"),
    "40 log-mel bands": FrontEndRun.in_directory(
        FRONT_END / "logmel_40_random_level", "7 x 40", PROBE / "minutes_4.json", "logmel"),
}
"""The log-mel front end again on the random-level recipe, beside its 13-MFCC bundle."""

RANDOM_LEVEL_SEED_1_RUNS: dict[str, FrontEndRun] = {
    # both on generator seed 1, each reusing its seed-0 run's corpus, PoseSyncNet and FGD
    # encoder (so each is judged as its seed-0 row is)
    "13 MFCCs (random level), run.seed=1": FrontEndRun.in_directory(
        TRAINING / "random_level_seed_1", "7 x 13", PROBE / "minutes_4.json", "mfcc"),
    "40 log-mel bands, run.seed=1": FrontEndRun.in_directory(
        FRONT_END / "logmel_40_random_level_seed_1", "7 x 40", PROBE / "minutes_4.json",
        "logmel"),
}
"""The same two recipes on a second generator seed."""


def voices_cells(voices: Path) -> list[str]:
    """Two cells from ``benchmarks.voices_acceptance``'s results: the audios (held-out voices
    and the sample; not the engine never heard, which only the shipped bundle's report
    scores) meeting every criterion, per condition of :data:`CONDITIONS`, e.g. "4 /
    3 / 3 / 2 of 4"; and the criteria missed by any audio in any condition ("-" if none).
    Raises ValueError when a file is of another condition or the conditions scored
    different audios."""
    counts, audios, missed = [], set(), set()
    for condition in CONDITIONS:
        name = "acceptance.json" if condition == "clean" else f"acceptance_{condition}.json"
        result = json.loads((voices / name).read_text())
        if result["condition"] != condition:
            raise ValueError(f"{voices / name}: condition {result['condition']!r}, expected "
                             f"{condition!r}")
        rows = split_engine_rows(result["rows"])[0]  # the audios every run scored
        audios.add(tuple(sorted(rows)))
        counts.append(sum(all(r["passed"].values()) for r in rows.values()))
        missed |= {k for r in rows.values() for k, ok in r["passed"].items() if not ok}
    if len(audios) != 1:
        raise ValueError(f"{voices}: the conditions scored different audios: {sorted(audios)}")
    return [" / ".join(map(str, counts)) + f" of {len(audios.pop())}",
            ", ".join(sorted(missed)) or "-"]


def row(name: str, runs: dict[str, FrontEndRun] | None = None) -> list[str]:
    """One table row of ``runs`` (default :data:`RUNS`); raises ValueError when its files
    score different test sets."""
    run = (RUNS if runs is None else runs)[name]
    evaluation, breakdown, probe = (json.loads(p.read_text()) for p in
                                    (run.evaluation, run.breakdown, run.probe))
    groups = probe_row(probe, run.probe_kind)
    return [name, run.values,
            *generator_cells(evaluation, breakdown, [groups["all held-out"]["sequences"]],
                             name),
            probe_cell(groups), *voices_cells(run.voices)]


def passage(runs: dict[str, FrontEndRun] | None = None) -> str:
    """The README's table of ``runs`` (default :data:`RUNS`; Markdown)."""
    runs = RUNS if runs is None else runs
    header = ["generator's front end", "values per pose frame", "FGD / mean pose's ↓",
              "PSD / ground truth's", "diversity / ground truth's", "detector AUC ↑",
              "generator lip-sync r: all / training voices / held-out voices ↑",
              "probe on the same features",
              f"audios meeting issue 17's criteria: {' / '.join(CONDITIONS)} ↑",
              "criteria missed"]
    return markdown_table(header, [row(name, runs) for name in runs])


if __name__ == "__main__":
    print(passage())
