"""``gesturert ablate topk|modules|lookahead``: generators trained per variant, scored alike.

    gesturert ablate topk --k 4 8 16 32 --data DIR --posesync P.pt --fgd F.pt [--out DIR]
    gesturert ablate modules ...     # full / without detector / without separate branch
    gesturert ablate lookahead --frames 0 2 4 8 ...   # quality vs algorithmic latency + PNG

Every variant is the default generator config (train/configs/generator.yaml, or
``--config``) with the shared overrides below, then ``--set`` items, then the variant's own
keys; all variants train on one corpus with one seed, and one PoseSyncNet and one FGD
encoder score them with ``train.evaluation`` on the held-out split.

The shared, reduced step budget (``ABLATION_STEPS``, change with ``--steps``) is what
lets a whole ablation (3-4 trainings + scoring) run in about 10 minutes on a shared
2-core CPU: the default config trains 1500 steps, so ablation models are less trained
than the shipped one and their absolute numbers are worse; the comparison between
variants is what the tables are for. Variants:

* topk: ``model.top_k = k`` (the supplement's Table 1);
* modules (the paper's Table 3): ``full``; ``without detector``: ``loss.detector_weight=0``
  and ``loss.saliency_alpha=0`` (no detector training, unweighted consistency);
  ``without separate branch``: ``model.separate_branches=false`` (one decoder, no face
  audio encoder);
* lookahead: ``model.lookahead_frames = L``; the latency axis is the algorithmic latency
  of a stream stepping one frame at a time (:func:`algorithmic_latency_ms`).

Outputs in ``--out`` (default benchmarks/results/ablations): ``ablation_<what>.json``,
``ablation_<what>.md`` (+ ``ablation_lookahead.png``); the checkpoints go under
``--runs`` (default ``runs/ablations``, git-ignored) as ``<what>/<variant>/generator.pt``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdk.features import DEFAULT_FEATURES, FeatureConfig

ABLATION_STEPS = 400  # optimizer steps per variant (the default config trains 1500)
SHARED_OVERRIDES = ("run.eval_every=0", "run.threads=1")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "ablations"
DEFAULT_RUNS = REPO / "runs" / "ablations"
LOOKAHEAD_PLOT = (("fgd", "FGD (lower is better)"), ("bc", "BC (higher is better)"),
                  ("psd", "PSD (lower is better)"), ("detector_auc", "detector frame AUC"))


@dataclass(frozen=True)
class Variant:
    """One trained generator of an ablation: a name and its config overrides."""

    name: str
    overrides: tuple[str, ...]


def topk_variants(ks: list[int]) -> list[Variant]:
    return [Variant(f"k={k}", (f"model.top_k={k}",)) for k in ks]


def module_variants() -> list[Variant]:
    return [Variant("full", ()),
            Variant("without detector", ("loss.detector_weight=0", "loss.saliency_alpha=0")),
            Variant("without separate branch", ("model.separate_branches=false",))]


def lookahead_variants(frames: list[int]) -> list[Variant]:
    return [Variant(f"L={n}", (f"model.lookahead_frames={n}",)) for n in frames]


def algorithmic_latency_ms(lookahead_frames: int, features: FeatureConfig = DEFAULT_FEATURES,
                           chunk_frames: int = 1) -> float:
    """Algorithmic latency in ms: ``FeatureConfig.algorithmic_latency_seconds`` (lookahead,
    MFCC window reach and chunk wait; compute excluded)."""
    return 1e3 * features.algorithmic_latency_seconds(lookahead_frames, chunk_frames)


def run_ablation(what: str, variants: list[Variant], data_dir: Path, posesync_ckpt: Path,
                 fgd_ckpt: Path, runs: Path, steps: int = ABLATION_STEPS,
                 config_path: Path | None = None, extra_overrides: tuple[str, ...] = (),
                 seed: int = 0, show_progress: bool = False) -> dict[str, Any]:
    """Train every variant, score it on the held-out split; returns the JSON-able report."""
    import torch

    from train.cli import default_config_path
    from train.config import load_config
    from train.evaluation import evaluate_generator_model as score
    from train.evaluation import (
        load_eval_models,
        load_generator_checkpoint,
        load_held_out,
        make_references,
        min_sequence_frames,
        posesync_separation,
    )
    from train.generator_training import (
        GeneratorData,
        GeneratorTrainingConfig,
        load_generator_data,
        train_generator,
    )
    from train.results_report import machine_description

    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if not variants:
        raise ValueError("nothing to ablate: give at least one variant value")
    torch.set_num_threads(1)
    models = load_eval_models(posesync_ckpt, fgd_ckpt)
    sequences = load_held_out(data_dir, min_sequence_frames(models))
    refs = make_references(sequences, models)
    base = (*SHARED_OVERRIDES, f"run.steps={steps}", f"run.checkpoint_every={steps}",
            *extra_overrides)
    config_path = config_path or default_config_path("generator")
    datasets: dict[tuple[Any, ...], GeneratorData] = {}
    rows: dict[str, dict[str, Any]] = {}
    for variant in variants:
        config = load_config(GeneratorTrainingConfig, config_path, [*base, *variant.overrides])
        key = (config.model.lookahead_frames, config.data)
        if key not in datasets:
            datasets[key] = load_generator_data(data_dir, config)
        run_dir = runs / what / variant.name.replace(" ", "_").replace("=", "")
        started = time.perf_counter()
        losses = train_generator(config, datasets[key], run_dir, device="cpu",
                                 show_progress=show_progress)
        seconds = time.perf_counter() - started
        model, normalization = load_generator_checkpoint(run_dir / "generator.pt")
        row: dict[str, Any] = score(model, normalization, sequences, models, refs, seed,
                                    baselines=False)["generator"]
        row.update(train_seconds=seconds, overrides=list(variant.overrides),
                   lookahead_frames=config.model.lookahead_frames,
                   latency_ms=algorithmic_latency_ms(config.model.lookahead_frames),
                   val_generation_l1=losses.get("val_generation_l1", float("nan")))
        rows[variant.name] = row
        print(f"[ablate {what}] {variant.name}: trained in {seconds:.0f} s, FGD {row['fgd']:.3f}, "
              f"BC {row['bc']:.3f}, PSD {row['psd']:.3f}, lip-sync {row['lip_sync']:.3f}, "
              f"detector AUC {row['detector_auc']:.3f}", flush=True)
    return {"what": what, "data": str(data_dir), "steps": steps,
            "shared_overrides": list(base), "seed": seed,
            "checkpoints": {"posesync": str(posesync_ckpt), "fgd": str(fgd_ckpt)},
            "sequences": len(sequences), "variants": rows,
            "posesync": posesync_separation(sequences, models, refs),
            "machine": machine_description()}


def ablation_markdown(report: dict[str, Any]) -> str:
    from train.evaluation import metric_columns
    from train.results_report import machine_line, markdown_table

    what = report["what"]
    extra = [("latency_ms", "latency (ms)", ".0f")] if what == "lookahead" else []
    extra.append(("train_seconds", "train (s)", ".0f"))
    title = {"topk": "top-k of the salient-posture detector",
             "modules": "modules (full / without detector / without separate branch)",
             "lookahead": "lookahead vs quality"}[what]
    lines = [f"# Ablation: {title}", "",
             f"Each row: a generator trained {report['steps']} steps (default config + "
             f"`{' '.join(report['shared_overrides'])}` + the variant's keys), seed "
             f"{report['seed']}, scored on {report['sequences']} held-out sequences of "
             f"`{report['data']}`. Machine: {machine_line(report['machine'])}.", "",
             markdown_table(report["variants"], extra + metric_columns(), "variant"), ""]
    if what == "modules" and {"full", "without separate branch"} <= set(report["variants"]):
        full = report["variants"]["full"]["lip_sync"]
        single = report["variants"]["without separate branch"]["lip_sync"]
        verdict = "improves" if full > single else "does NOT improve"
        lines += [f"The separate face branch {verdict} lip-sync correlation: {full:.3f} (full) "
                  f"vs {single:.3f} (without separate branch).", ""]
    return "\n".join(lines)


def plot_lookahead(report: dict[str, Any], path: Path) -> None:
    """Four panels (FGD, BC, PSD, detector AUC) against algorithmic latency in ms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report["variants"].values(), key=lambda r: r["latency_ms"])
    latency = [r["latency_ms"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    for ax, (key, label) in zip(axes.ravel(), LOOKAHEAD_PLOT, strict=True):
        ax.plot(latency, [r[key] for r in rows], "o-")
        for r in rows:
            ax.annotate(f"L={r['lookahead_frames']}", (r["latency_ms"], r[key]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("algorithmic latency (ms)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Generator quality vs lookahead ({report['steps']} training steps each, "
                 f"{report['sequences']} held-out sequences)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def register_ablate(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "ablate", help="train and score generator variants (top-k, modules, lookahead)",
        description="Train one generator per variant with a shared reduced step budget and "
                    "score each on the held-out split; Markdown + JSON (+ PNG for lookahead).")
    sub = parser.add_subparsers(dest="ablation", metavar="WHAT", required=True)
    commands = {
        "topk": "detector top-k (supplement Table 1)",
        "modules": "full / without detector / without separate branch (paper Table 3)",
        "lookahead": "quality vs algorithmic latency at several lookaheads",
    }
    for name, help_text in commands.items():
        p = sub.add_parser(name, help=help_text)
        if name == "topk":
            p.add_argument("--k", type=int, nargs="+", default=[4, 8, 16, 32],
                           help="top-k values (default 4 8 16 32)")
        if name == "lookahead":
            p.add_argument("--frames", type=int, nargs="+", default=[0, 2, 4, 8],
                           help="lookaheads in pose frames (default 0 2 4 8)")
        p.add_argument("--data", required=True, type=Path, help="corpus directory (SDT layout)")
        p.add_argument("--posesync", required=True, type=Path, help="posesync.pt checkpoint")
        p.add_argument("--fgd", required=True, type=Path, help="fgd.pt checkpoint")
        p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                       help="results directory (default benchmarks/results/ablations)")
        p.add_argument("--runs", type=Path, default=DEFAULT_RUNS,
                       help="where the variants' checkpoints go (default runs/ablations)")
        p.add_argument("--steps", type=int, default=ABLATION_STEPS,
                       help=f"training steps per variant (default {ABLATION_STEPS})")
        p.add_argument("--config", type=Path, default=None,
                       help="generator YAML config (default train/configs/generator.yaml)")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override a generator config key for all "
                       "variants (repeatable)")
        p.add_argument("--seed", type=int, default=0, help="noise seed of the scoring")
        p.add_argument("--progress", action="store_true", help="show training progress bars")
        p.set_defaults(func=_run_ablate)


def _variants(args: argparse.Namespace) -> list[Variant]:
    if args.ablation == "topk":
        if any(k < 1 for k in args.k):
            raise ValueError(f"--k values must be >= 1, got {args.k}")
        return topk_variants(args.k)
    if args.ablation == "lookahead":
        if any(n < 0 for n in args.frames):
            raise ValueError(f"--frames values must be >= 0, got {args.frames}")
        return lookahead_variants(args.frames)
    return module_variants()


def _run_ablate(args: argparse.Namespace) -> int:
    from train.results_report import write_report

    for name in ("posesync", "fgd"):
        if not getattr(args, name).is_file():
            print(f"gesturert ablate: --{name} {getattr(args, name)} is not a file; pass the "
                  f"checkpoint written by `gesturert train {name}`", file=sys.stderr)
            return 2
    try:
        report = run_ablation(args.ablation, _variants(args), args.data, args.posesync,
                              args.fgd, args.runs, args.steps, args.config,
                              tuple(args.overrides), args.seed, args.progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gesturert ablate: {exc}", file=sys.stderr)
        return 2
    markdown = ablation_markdown(report)
    stem = f"ablation_{args.ablation}"
    write_report(report, markdown, args.out, stem)
    written = [args.out / f"{stem}.md", args.out / f"{stem}.json"]
    if args.ablation == "lookahead":
        plot_lookahead(report, args.out / f"{stem}.png")
        written.append(args.out / f"{stem}.png")
    print(markdown)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
