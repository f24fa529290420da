"""The docs' passages on real voices (issue 17): the acceptance per voice, the training
voices and their licences, the generator before and after the voiced corpus, the sweep.

Each function returns Markdown (or a phrase) from the results files of
:data:`benchmarks.doc_sources.SOURCES`; :data:`benchmarks.doc_passages.REGIONS` names them.
"""

from __future__ import annotations

import json
import shlex
from itertools import pairwise
from typing import Any

from benchmarks.acceptance_report import missed
from benchmarks.corpus_minutes import probe_row
from benchmarks.doc_sources import RESULTS, SOURCES, load, markdown_table


def missed_criteria(rows: dict[str, Any]) -> list[str]:
    """"audio: criterion, ..." for every acceptance row (of a voices_acceptance report)
    missing a criterion, in the rows' order."""
    return [f"{name.replace('sample:', 'sample ')}: " + ", ".join(
        k for k, ok in row["passed"].items() if not ok)
        for name, row in rows.items() if not all(row["passed"].values())]


def excursion(rows: dict[str, Any]) -> str:
    """The farthest any row's poses go past the training range (SD), or, for a report made
    before that was measured, what judged its training range then."""
    if not all("largest_excursion" in r for r in rows.values()):
        return "not measured (judged by the 4-SD share then)"
    return f"{max(r['largest_excursion'] for r in rows.values()):.2f}"


def voices_acceptance(source: str) -> str:
    rows = []
    for name, r in load(source)["rows"].items():
        failed = [k for k, ok in r["passed"].items() if not ok]
        rows.append([name.replace("sample:", "sample "), f"{r['psd']:.3f}",
                     f"{r['mean_pose_psd']:.3f}",
                     ", ".join(f"{o:+d}" for o in r["best_offsets"]),
                     f"{r['confidence']:.2f}", f"{r['mouth_energy_r']:.2f}",
                     f"{r['mean_abs_z']:.2f}", f"{r['beyond_4sd']:.3%}",
                     excursion({name: r}),
                     "all met" if not failed else "missed: " + ", ".join(failed)])
    return markdown_table(["audio", "PSD ↓", "mean pose PSD", "best offsets", "confidence",
                           "mouth r", "mean abs z", "beyond 4 SD",
                           "farthest past the training range (SD)", "criteria"], rows)


def recorded_voice() -> str:
    """The acceptance on alsa-utils' recorded prompts (:mod:`benchmarks.recorded_voice`), one
    row per condition and level (its styles together): styles meeting every criterion, the
    largest PSD and PSD / mean pose's, the smallest confidence and mouth r, the farthest
    past the training range; then one row per control, what it missed."""
    report = load("voices_recorded")
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in report["rows"]:
        groups.setdefault((r["condition"], r["gain_db"]), []).append(r)
    rows = []
    for (condition, gain_db), group in groups.items():
        failing = missed_criteria({r["style"] or "default": r for r in group})
        rows.append([condition, f"{gain_db:+g} dB",
                     f"{len(group) - len(failing)} of {len(group)}",
                     f"{max(r['psd'] for r in group):.3f}",
                     f"{max(r['psd'] / r['mean_pose_psd'] for r in group):.2f}",
                     ", ".join(sorted({f"{o:+d}" for r in group for o in r["best_offsets"]})),
                     f"{min(r['confidence'] for r in group):.2f}",
                     f"{min(r['mouth_energy_r'] for r in group):.2f}",
                     f"{max(r['largest_excursion'] for r in group):.2f}",
                     "; ".join(failing) or "-"])
    for name, c in report["controls"].items():
        refused = ", ".join(missed(c))
        rows.append([f"control: {name}", "+0 dB", "caught" if c["caught"] else "NOT caught",
                     f"{c['psd']:.3f}", f"{c['psd'] / c['mean_pose_psd']:.2f}",
                     ", ".join(f"{o:+d}" for o in c["best_offsets"]),
                     f"{c['confidence']:.2f}", f"{c['mouth_energy_r']:.2f}",
                     f"{c['largest_excursion']:.2f}", refused or "-"])
    return markdown_table(["condition", "level", "styles meeting every criterion", "largest PSD ↓",
                           "largest PSD / mean pose's", "best offsets", "smallest confidence",
                           "smallest mouth r", "farthest past the training range (SD)",
                           "missed"], rows)


def recorded_faults() -> str:
    """The faults of :mod:`benchmarks.recording_faults` on the recorded voice: per fault its
    PSD, PSD / mean pose's, confidence, mouth r, farthest past the training range and what
    it misses (or why it did not run)."""
    report = load("voices_recorded")
    other = report["other_speech_deviation_z"]
    rows = []
    for r in report["faults"]:
        if "unavailable" in r:
            rows.append([r["fault"], *["-"] * 6, f"not run: {r['unavailable']}"])
            continue
        rows.append([r["fault"], f"{r['psd']:.3f}", f"{r['psd'] / r['mean_pose_psd']:.2f}",
                     f"{r['confidence']:.2f}", f"{r['mouth_energy_r']:.2f}",
                     f"{r['largest_excursion']:.2f}", f"{r['deviation_z'] / other:.2f}",
                     ", ".join(missed(r)) or "-"])
    return markdown_table(["fault", "PSD ↓", "PSD / mean pose's", "confidence", "mouth r",
                           "farthest past the training range (SD)",
                           "poses moved / by other speech", "missed"], rows)


def languages_never_heard() -> str:
    """The acceptance per language outside the corpus (:mod:`benchmarks.languages_never_heard`)."""
    rows = []
    for code, r in load("voices_languages")["rows"].items():
        refused = missed(r)
        rows.append([f"{r['language']} ({code})", f"{r['psd']:.3f}", f"{r['mean_pose_psd']:.3f}",
                     ", ".join(f"{o:+d}" for o in r["best_offsets"]), f"{r['confidence']:.2f}",
                     f"{r['mouth_energy_r']:.2f}", f"{r['largest_excursion']:.2f}",
                     "all met" if not refused else "missed: " + ", ".join(refused)])
    return markdown_table(["language", "PSD ↓", "mean pose PSD", "best offset", "confidence",
                           "mouth r", "farthest past the training range (SD)", "criteria"],
                          rows)


def long_stream() -> str:
    """Ten minutes through one stream (:mod:`benchmarks.long_stream`): the minutes meeting
    every criterion, the range of PSD, PSD / mean pose's and confidence over the minutes,
    the body's speed in the silence against while talking, streamed against offline."""
    report = load("voices_long_stream")
    minutes, rest = report["minutes"], report["at_rest"]
    met = sum(not missed(r) for r in minutes)

    def spread(values: list[float], fmt: str) -> str:
        return f"{min(values):{fmt}}-{max(values):{fmt}}"

    return markdown_table(
        ["minutes meeting every criterion", "PSD ↓", "PSD / mean pose's", "confidence",
         "body speed in the silence / while talking", "streamed vs offline (px)"],
        [[f"{met} of {len(minutes)}", spread([r["psd"] for r in minutes], ".3f"),
          spread([r["psd"] / r["mean_pose_psd"] for r in minutes], ".2f"),
          spread([r["confidence"] for r in minutes], ".2f"), f"{rest['ratio']:.3f}",
          f"{report['max_px_vs_offline']:.2g}"]])


LINE_NOISE_ROWS = (("random level only (shipped before)", "evaluation_random_level",
                    "recorded_random_level", "voices_random_level", "languages_random_level"),
                   ("shipped: hum and DC in the augmentation too", "evaluation",
                    "voices_recorded", "voices_acceptance", "voices_languages"))
"""The line-noise table's bundles and their results (:data:`SOURCES` keys): evaluation,
recorded voice, acceptance on the corpus's held-out voices, languages never heard."""


def line_noise() -> str:
    """Per bundle of :data:`LINE_NOISE_ROWS`: how far DC offset and hum on gated audio move
    the poses (against other speech), the audios meeting every criterion (recorded voice
    rows, its faults, held-out voices and the sample, languages), and the test split's
    ratios (:func:`_judged_ratios`)."""
    rows = []
    for label, evaluation, recorded, acceptance, languages in LINE_NOISE_ROWS:
        rec = load(recorded)
        faults = {f["fault"]: f for f in rec["faults"] if "unavailable" not in f}
        other = rec["other_speech_deviation_z"]

        def met(items: list[dict[str, Any]]) -> str:
            return f"{sum(not missed(r) for r in items)} of {len(items)}"

        rows.append([label, *(f"{faults[k]['deviation_z'] / other:.2f}"
                              for k in ("dc_offset", "mains_hum")),
                     met(list(faults.values())), met(rec["rows"]),
                     met(list(load(acceptance)["rows"].values())),
                     met(list(load(languages)["rows"].values())),
                     *_judged_ratios(load(evaluation))])
    return markdown_table(["bundle", "DC offset: poses moved / by other speech",
                           "hum: poses moved / by other speech", "faults meeting every criterion",
                           "recorded voice rows", "held-out voices and sample", "languages",
                           "FGD / mean pose's ↓", "PSD / ground truth's", "lip-sync r ↑",
                           "detector AUC ↑", "diversity / ground truth's"], rows)


def training_poses(source: str) -> str:
    """The corpus's own poses, the references of the training-range criterion."""
    report = load(source)
    own, held = report["training_poses"], report["held_out_poses"]
    return (f"mean |z| {own['mean_abs_z']:.2f}, {own['beyond_4sd']:.1%} of their values "
            f"beyond 4 SD; the held-out ground truth, poses never trained on, goes at most "
            f"{held['largest_excursion']:.2f} SD past the training range")


LEVEL_ROWS = (("shipped (random level, hum and DC in training)", (
    "voices_acceptance_quieter", "voices_acceptance", "voices_acceptance_louder")),
              ("random level only (shipped before)", ("voices_random_level_quieter",
                                                      "voices_random_level",
                                                      "voices_random_level_louder")),
              ("random level only, generator seed 1", ("voices_seed_1_quieter",
                                                       "voices_seed_1",
                                                       "voices_seed_1_louder")),
              ("before (no random level)", ("voices_no_gain_quieter", "voices_no_gain",
                                            "voices_no_gain_louder")))
"""The level table's bundles and their acceptance reports (:data:`SOURCES` keys), 6 dB
quieter, as recorded, 6 dB louder."""


def voices_level() -> str:
    """The clean acceptance at the recorded level and 6 dB quieter and louder (every audio
    scaled, clipped at +-1), per bundle of :data:`LEVEL_ROWS`: audios meeting every
    criterion, the largest PSD, mean |z|, share beyond 4 SD and excursion past the training
    range, what is missed. Raises
    ValueError when the reports scored other audios or another condition."""
    rows, audios = [], set()
    for bundle, sources in LEVEL_ROWS:
        for source in sources:
            report = load(source)
            if report["condition"] != "clean":
                raise ValueError(f"{SOURCES[source]}: condition {report['condition']!r}, "
                                 f"not clean")
            audios.add(tuple(sorted(report["rows"])))
            r = report["rows"]
            missed = missed_criteria(r)
            rows.append([bundle, f"{report.get('gain_db', 0.0):+g} dB",
                         f"{len(r) - len(missed)} of {len(r)}",
                         f"{max(row['psd'] for row in r.values()):.3f}",
                         f"{max(row['mean_abs_z'] for row in r.values()):.2f}",
                         f"{max(row['beyond_4sd'] for row in r.values()):.3%}",
                         excursion(r), "; ".join(missed) or "-"])
    if len(audios) != 1:
        raise ValueError(f"the level reports scored different audios: {sorted(audios)}")
    return markdown_table(["bundle", "level", "all criteria met", "largest PSD",
                           "largest mean abs z", "largest share beyond 4 SD",
                           "farthest past the training range (SD)", "missed"], rows)


def _judged_ratios(ev: dict[str, Any]) -> list[str]:
    """An evaluation's generator against its own judges and references: FGD / mean pose's,
    PSD / ground truth's, lip-sync r, detector AUC, diversity / ground truth's."""
    m = ev["methods"]
    gen, mean, truth = m["generator"], m["mean_pose"], m["ground_truth"]
    return [f"{gen['fgd'] / mean['fgd']:.3f}", f"{gen['psd'] / truth['psd']:.2f}",
            f"{gen['lip_sync']:.3f}", f"{gen['detector_auc']:.3f}",
            f"{gen['diversity'] / truth['diversity']:.2f}"]


def _probe_lip_sync(source: str, sequences: int) -> float:
    """The held-out lip-sync r of a :mod:`benchmarks.lip_probe` results file's probe on the
    generator's own features (``mfcc``, not the audio-shuffled control), refused unless it
    was scored on ``sequences`` held-out sequences (the evaluation's test set)."""
    held_out = probe_row(load(source), "mfcc")["all held-out"]
    if held_out["sequences"] != sequences:
        raise ValueError(f"{SOURCES[source]}: probe scored on {held_out['sequences']} "
                         f"held-out sequences, the evaluation on {sequences}: not the same "
                         f"test set")
    return float(held_out["lip_sync"])


def eval_before_after() -> str:
    """The generator against its own test set's references, before and after the voiced
    corpus: ratios, since FGD encoder, judge and test set differ between the two. The lip
    row also against the features-only probe on the same test set (what the 13 MFCCs
    carry about the lips there)."""
    rows = []
    for label, source, ceiling_source, probe_source in (
            ("synthetic voice (previous)", "evaluation_before", "lip_ceiling_before",
             "lip_probe_before"),
            ("voiced corpus, no random level in training (shipped before)",
             "evaluation_no_gain", "lip_ceiling", "lip_probe"),
            ("voiced corpus, random level only (shipped before)", "evaluation_random_level",
             "lip_ceiling", "lip_probe"),
            ("voiced corpus (shipped)", "evaluation", "lip_ceiling", "lip_probe")):
        ev, ceiling = load(source), load(ceiling_source)
        if ceiling["sequences"] != ev["sequences"]:
            raise ValueError(f"{SOURCES[ceiling_source]}: {ceiling['sequences']} sequences, "
                             f"{SOURCES[source]}: {ev['sequences']}: not the same test set")
        probe = _probe_lip_sync(probe_source, ev["sequences"])
        gen, mean = ev["methods"]["generator"], ev["methods"]["mean_pose"]
        fgd_ratio, psd_truth, lip, auc, diversity = _judged_ratios(ev)
        rows.append([label, str(ev["sequences"]), fgd_ratio, f"{gen['psd'] / mean['psd']:.3f}",
                     psd_truth, lip, f"{ceiling['lip_sync_ceiling']:.3f}",
                     f"{gen['lip_sync'] / ceiling['lip_sync_ceiling']:.3f}", f"{probe:.3f}",
                     f"{gen['lip_sync'] / probe:.3f}", auc, diversity])
    return markdown_table(["generator, test set", "sequences", "FGD / mean pose's ↓",
                   "PSD / mean pose's ↓", "PSD / ground truth's", "lip-sync r ↑",
                   "lip-sync r ceiling", "lip-sync r / ceiling ↑", "probe's lip-sync r",
                   "lip-sync r / probe's ↑", "detector AUC ↑", "diversity / ground truth's"],
                  rows)


CROSS_ROWS = (("synthetic-voice corpus", (
    ("synthetic-voice recipe (trained on it)", "cross_synthetic_recipe_on_synthetic"),
    ("random level only, shipped before (never heard its voice)",
     "cross_shipped_on_synthetic"),
    ("its recipe on both corpora", "cross_both_on_synthetic"))),
    ("voiced corpus", (
        ("synthetic-voice recipe (never heard these voices)",
         "cross_synthetic_recipe_on_voiced"),
        ("random level only, shipped before (trained on it)", "evaluation_random_level"),
        ("its recipe on both corpora", "cross_both_on_voiced"))))
"""The cross table: per test set, its two generators' evaluations (:data:`SOURCES` keys)."""


def eval_cross_test_sets() -> str:
    """The generators on both test sets, each test set judged by its own PoseSyncNet and
    FGD encoder. Raises ValueError when a test set's evaluations differ in sequences or
    in the ground truth's PSD or diversity, which only the test set and the judges set (then
    they are not one comparison)."""
    rows = []
    for test_set, generators in CROSS_ROWS:
        evaluations = [load(source) for _, source in generators]
        for what in ("sequences", "psd", "diversity"):
            seen = {ev["sequences"] if what == "sequences" else
                    round(ev["methods"]["ground_truth"][what], 9) for ev in evaluations}
            if len(seen) != 1:
                raise ValueError(f"{test_set}: the evaluations differ in {what} "
                                 f"{sorted(seen)}: other test sets or judges")
        for (label, _), ev in zip(generators, evaluations, strict=True):
            gen = ev["methods"]["generator"]
            fgd_ratio, psd_truth, lip, auc, diversity = _judged_ratios(ev)
            rows.append([test_set, str(ev["sequences"]), label, fgd_ratio, f"{gen['psd']:.3f}",
                         psd_truth, lip, auc, diversity])
    return markdown_table(["test set", "sequences", "generator", "FGD / mean pose's ↓", "PSD ↓",
                           "PSD / ground truth's", "lip-sync r ↑", "detector AUC ↑",
                           "diversity / ground truth's"], rows)


STEPS_SWEEP = RESULTS / "training" / "generator_steps"
"""The generator sweep, one corpus, PoseSyncNet and FGD encoder for every run: one directory
per run (steps_N[_what_changed]) with its evaluation.json and default_training.json (whose
recorded command names the changes)."""


def _generator_changes(command: str) -> str:
    """The ``--set generator:KEY=VALUE`` overrides of a run's command but the step count
    (each sweep row's other changes from the default config), or "-"."""
    words = shlex.split(command)
    changes = [w.split(":", 1)[1] for previous, w in pairwise(words)
               if previous == "--set" and w.startswith("generator:")
               and not w.startswith("generator:run.steps=")]
    return ", ".join(changes) or "-"


def eval_steps() -> str:
    """The generator sweep (step count and other changes): every run against the same
    judges, as ratios and raw."""
    rows = []
    runs = sorted((int(p.parent.name.split("_")[1]), p.parent.name, p.parent)
                  for p in STEPS_SWEEP.glob("steps_*/evaluation.json"))
    for steps, _, run in runs:
        ev = json.loads((run / "evaluation.json").read_text())
        gen = ev["methods"]["generator"]
        fgd_ratio, psd_truth, lip, auc, diversity = _judged_ratios(ev)
        command = json.loads((run / "default_training.json").read_text())["command"]
        rows.append([str(steps), _generator_changes(command),
                     f"{gen['fgd']:.1f}", fgd_ratio, f"{gen['psd']:.3f}", psd_truth, lip, auc,
                     diversity, f"{gen['l1']:.3f}", f"{gen['bc']:.3f} / {gen['bc_chance']:.3f}"])
    return markdown_table(["steps", "other changes", "FGD ↓", "FGD / mean pose's ↓", "PSD ↓",
                   "PSD / ground truth's", "lip-sync r ↑", "detector AUC ↑",
                   "diversity / ground truth's", "L1 ↓", "BC / at chance"], rows)


def voices_criteria() -> str:
    """Issue 17's criteria, from the constants benchmarks/voices_acceptance.py applies."""
    from benchmarks import voices_acceptance as va

    return (f"PSD <= {va.PSD_MAX} and <= {va.MEAN_POSE_RATIO_MAX} x the mean pose's on the "
            f"same audio, best offset within ±{va.OFFSET_MAX_FRAMES} frame with confidence >= "
            f"{va.CONFIDENCE_MIN}, mouth opening vs audio energy r >= {va.MOUTH_R_MIN}, body "
            f"and hands inside the training poses (mean |z| <= {va.MEAN_ABS_Z_MAX}, no value "
            f"more than {va.EXCURSION_MAX_SD} SD past their range per joint and axis)")


def training_voices() -> str:
    voices = load("training_voices")
    trained = [v for v in voices.values() if not v["held_out"]]
    held = sorted(name for name, v in voices.items() if v["held_out"])
    engines = sorted({v["engine"] for v in trained})
    licences = sorted({v["licence"] for v in trained})
    languages = sorted({v["language"] for v in trained})
    return (f"{len(trained)} voices ({', '.join(engines)}; {len(languages)} languages: "
            f"{', '.join(languages)}; "
            f"{sum(v['gender'] == 'female' for v in trained)} female, "
            f"{sum(v['gender'] == 'male' for v in trained)} male), held out: "
            f"{', '.join(held)}. Licences: {'; '.join(licences)}; every trained voice "
            + ("allows distributing a model trained on its output"
               if all(v["model_distributable"] for v in trained) else
               "does NOT allow distributing a model trained on its output"))
