"""The ``gesturert ablate`` report: Markdown tables (means, per-seed values, seed-paired
differences) and the lookahead plot. Reads the JSON-able report of
:func:`train.ablation.run_ablation`; computes nothing from models or data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from train.evaluation_report import COLUMNS, metric_columns
from train.generator_training import GeneratorTrainingConfig
from train.results_report import format_value, machine_line, markdown_table

# metrics whose per-seed values and seed-paired differences the Markdown shows, with the
# format of those tables (finer than the main table's where seeds differ in the 4th digit)
SEED_METRICS = {"lip_sync": ".4f", "fgd": ".2f", "psd": ".4f", "bc": ".3f",
                "detector_auc": ".3f"}
LOOKAHEAD_PLOT = (("fgd", "FGD (lower is better)"), ("bc", "BC (higher is better)"),
                  ("psd", "PSD (lower is better)"), ("detector_auc", "detector frame AUC"))
TITLES = {"topk": "top-k of the salient-posture detector",
          "modules": "modules (full / without detector / without separate branch)",
          "lookahead": "lookahead vs quality"}
_COLUMN = {key: (heading, fmt, better) for key, heading, fmt, better in COLUMNS}


def _natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key reading digit runs as numbers: k=4 < k=8 < k=16."""
    import re

    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", name) if part)


def ordered_variants(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The variants in the order they were given (``variant_order``; JSON files sort their
    keys), else in natural order of their names."""
    variants = report["variants"]
    order = report.get("variant_order") or sorted(variants, key=_natural_key)
    return {name: variants[name] for name in order}


def reference_variant(report: dict[str, Any]) -> str:
    """The variant the others are compared with: the default config's (``full``, the
    default k, the default lookahead) when the report has it, else the first."""
    model = GeneratorTrainingConfig().model
    wanted = {"modules": "full", "topk": f"k={model.top_k}",
              "lookahead": f"L={model.lookahead_frames}"}.get(report["what"], "")
    return wanted if wanted in report["variants"] else next(iter(report["variants"]))


def paired_differences(report: dict[str, Any], key: str, variant: str, reference: str
                       ) -> dict[str, float]:
    """``variant - reference`` of metric ``key`` per training seed: mean, std (ddof 1; 0
    for one seed), and the seeds in which ``reference`` is better (direction of ``key``)."""
    ref = report["variants"][reference]["per_seed"]
    other = report["variants"][variant]["per_seed"]
    diffs = np.array([float(other[s][key]) - float(ref[s][key]) for s in ref])
    better = _COLUMN[key][2]
    ahead = int(np.sum(diffs > 0 if better == "low" else diffs < 0))
    return {"mean": float(diffs.mean()),
            "std": float(diffs.std(ddof=1)) if diffs.size > 1 else 0.0,
            "reference_ahead": ahead, "seeds": int(diffs.size)}


def _seed_sections(report: dict[str, Any]) -> list[str]:
    variants, seeds = ordered_variants(report), [str(s) for s in report["train_seeds"]]
    reference = reference_variant(report)
    lines = ["## Per training seed", ""]
    for key, fmt in SEED_METRICS.items():
        heading = _COLUMN[key][0]
        lines += [f"{heading}:", "", "| variant | " + " | ".join(f"seed {s}" for s in seeds)
                  + " | mean | std |", "|" + "---|" * (len(seeds) + 3)]
        for name, row in variants.items():
            values = [float(row["per_seed"][s][key]) for s in seeds]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            lines.append(f"| {name} | " + " | ".join(format_value(v, fmt) for v in values)
                         + f" | {format_value(float(np.mean(values)), fmt)} | "
                         f"{format_value(std, fmt)} |")
        lines.append("")
    lines += [f"## Seed-paired differences against `{reference}`", "",
              f"variant - {reference}, the same training seed on both sides: mean (std); "
              f"'{reference} ahead' counts the seeds in which {reference} is better.", "",
              "| variant | " + " | ".join(f"{_COLUMN[k][0]} diff | {reference} ahead"
                                          for k in SEED_METRICS) + " |",
              "|" + "---|" * (2 * len(SEED_METRICS) + 1)]
    for name in variants:
        if name == reference:
            continue
        cells = []
        for key, fmt in SEED_METRICS.items():
            d = paired_differences(report, key, name, reference)
            cells += [f"{format_value(d['mean'], '+' + fmt)} ({format_value(d['std'], fmt)})",
                      f"{d['reference_ahead']}/{d['seeds']}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def face_branch_verdict(report: dict[str, Any]) -> str:
    """One sentence: does the separate face branch improve lip sync? With several training
    seeds "improves" needs the full model ahead in every seed (a one-sided sign test at
    p = 0.5**n) and says so; with one training it compares the two numbers."""
    variants = report["variants"]
    full, single = variants["full"]["lip_sync"], variants["without separate branch"]["lip_sync"]
    if not report.get("train_seeds") or len(report["train_seeds"]) < 2:
        verdict = "improves" if full > single else "does NOT improve"
        return (f"The separate face branch {verdict} lip-sync correlation: {full:.3f} (full) vs "
                f"{single:.3f} (without separate branch), one training each.")
    d = paired_differences(report, "lip_sync", "without separate branch", "full")
    n, ahead = d["seeds"], d["reference_ahead"]
    verdict = "improves" if ahead == n else "does NOT consistently improve"
    return (f"The separate face branch {verdict} lip-sync correlation: {full:.4f} (full) vs "
            f"{single:.4f} (without separate branch), means over {n} training seeds; full is "
            f"ahead in {ahead} of {n} seeds (seed-paired difference {-d['mean']:+.4f}, std "
            f"{d['std']:.4f}; sign test p = {0.5 ** n:.3f} if every seed agrees).")


def reused_trainings(report: dict[str, Any]) -> int:
    """How many of the report's trainings were reused (``--reuse-trained``), not run."""
    rows = [r for v in report["variants"].values()
            for r in (v.get("per_seed") or {"": v}).values()]
    return sum(bool(r.get("reused")) for r in rows)


def ablation_markdown(report: dict[str, Any]) -> str:
    what, seeds = report["what"], report.get("train_seeds")
    extra = [("latency_ms", "latency (ms)", ".0f")] if what == "lookahead" else []
    extra.append(("train_seconds", "train (s)", ".0f"))
    trained = (f"trained once per training seed {', '.join(map(str, seeds))} (the row is the "
               f"mean of {len(seeds)} trainings)" if seeds else "trained once (the config's seed)")
    lines = [f"# Ablation: {TITLES[what]}", "",
             f"Each row: a generator {trained}, {report['steps']} steps (default config + "
             f"`{' '.join(report['shared_overrides'])}` + the variant's keys), noise seed "
             f"{report['seed']} when scoring, {report['sequences']} held-out sequences of "
             f"`{report['data']}`. Machine: {machine_line(report['machine'])}.", "",
             markdown_table(ordered_variants(report), extra + metric_columns(), "variant"), ""]
    reused = reused_trainings(report)
    if reused:
        lines += [f"{reused} of the trainings were reused from earlier runs of the same "
                  "configs (`--reuse-trained`): they were scored again, not trained again; "
                  "their train times are from those runs.", ""]
    if seeds:
        lines += _seed_sections(report)
    if what == "modules" and {"full", "without separate branch"} <= set(report["variants"]):
        lines += [face_branch_verdict(report), ""]
    return "\n".join(lines)


def plot_lookahead(report: dict[str, Any], path: Path) -> None:
    """Four panels (FGD, BC, PSD, detector AUC) against algorithmic latency in ms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report["variants"].values(), key=lambda r: r["latency_ms"])
    latency = [r["latency_ms"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    seeds = len(report.get("train_seeds") or [])
    for ax, (key, label) in zip(axes.ravel(), LOOKAHEAD_PLOT, strict=True):
        if seeds > 1:  # mean over training seeds, error bar: their std
            spread = [float(np.std([float(v[key]) for v in r["per_seed"].values()], ddof=1))
                      for r in rows]
            ax.errorbar(latency, [r[key] for r in rows], yerr=spread, fmt="o-", capsize=3)
        else:
            ax.plot(latency, [r[key] for r in rows], "o-")
        for r in rows:
            ax.annotate(f"L={r['lookahead_frames']}", (r["latency_ms"], r[key]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("algorithmic latency (ms)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    trainings = f"mean ± std of {seeds} training seeds, " if seeds > 1 else ""
    fig.suptitle(f"Generator quality vs lookahead ({trainings}{report['steps']} training "
                 f"steps each, {report['sequences']} held-out sequences)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
