"""``gesturert ablate topk|modules|lookahead``: generators trained per variant, scored alike.

    gesturert ablate topk --k 4 8 16 32 --data DIR --posesync P.pt --fgd F.pt [--out DIR]
    gesturert ablate modules ...     # full / without detector / without separate branch
    gesturert ablate lookahead --frames 0 2 4 8 ...   # quality vs algorithmic latency + PNG
    gesturert ablate modules --train-seeds 0 1 2 3 4 --jobs 2 ...   # 5 trainings per variant
    gesturert ablate modules --train-seeds 0 1 2 3 4 --reuse-trained ...  # re-score them

Every variant is the default generator config (train/configs/generator.yaml, or
``--config``) with the shared overrides below, then ``--set`` items, then the variant's own
keys; all variants train on one corpus with one seed, and one PoseSyncNet and one FGD
encoder score them with ``train.evaluation`` on the held-out split.

The shared, reduced step budget (``ABLATION_STEPS``, change with ``--steps``) is what
lets a whole ablation (3-4 trainings + scoring) run in about 10 minutes on a shared
2-core CPU: the default config trains 4000 steps, so ablation models are less trained
than the shipped one and their absolute numbers are worse; the comparison between
variants is what the tables are for. Variants:

* topk: ``model.top_k = k`` (the supplement's Table 1);
* modules (the paper's Table 3): ``full``; ``without detector``: ``loss.detector_weight=0``
  and ``loss.saliency_alpha=0`` (no detector training, unweighted consistency);
  ``without separate branch``: ``model.separate_branches=false`` (one decoder, no face
  audio encoder);
* lookahead: ``model.lookahead_frames = L``; the latency axis is the algorithmic latency
  of a stream stepping one frame at a time (:func:`algorithmic_latency_ms`).

One training per variant differs from the next in its random initialisation and data
order as much as in its variant: a difference within that spread is noise. With
``--train-seeds S ...`` every variant trains once per seed (``run.seed = S``); its row is
the mean over seeds, ``per_seed`` holds each training's scores, and the Markdown adds the
per-seed values and the seed-paired differences against the default config's variant
(``train.ablation_report.reference_variant``: mean, std, and in how many seeds it is
ahead). ``--jobs N`` trains N of the
(variant, seed) runs at once in worker processes (each with ``run.threads`` threads);
scoring stays in this process, so results do not depend on N.

Outputs in ``--out`` (default benchmarks/results/ablations): ``ablation_<what>.json``,
``ablation_<what>.md`` (+ ``ablation_lookahead.png``); the checkpoints go under
``--runs`` (default ``runs/ablations``, git-ignored) as ``<what>/<variant>/generator.pt``
(``<what>/<variant>/seed<S>/generator.pt`` with ``--train-seeds``).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdk.features import DEFAULT_FEATURES, FeatureConfig

ABLATION_STEPS = 400  # optimizer steps per variant (the default config trains 2000)
SHARED_OVERRIDES = ("run.eval_every=0", "run.threads=1")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "ablations"
DEFAULT_RUNS = REPO / "runs" / "ablations"


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


@dataclass(frozen=True)
class TrainingJob:
    """One (variant, seed) training: what a worker process needs to run it."""

    variant: str
    seed: int | None  # None: the config's run.seed, checkpoint directly in the variant's dir
    overrides: tuple[str, ...]
    config_path: Path | None  # None: the dataclass defaults
    data_dir: Path
    run_dir: Path
    reuse: bool = False  # keep a finished training of this exact config found in run_dir


# windows per (corpus, lookahead, data config), kept for the next job of this process
# (a worker runs several): loading computes the MFCC of the whole corpus
_DATASETS: dict[tuple[Any, ...], Any] = {}


def finished_training(ckpt_path: Path, config: Any) -> dict[str, Any] | None:
    """The final losses (and training seconds) stored in ``ckpt_path`` when it holds the
    finished training of exactly ``config`` (every key equal, ``run.steps`` steps done);
    None when there is no such file or it holds another or an unfinished training.

    The checkpoint does not record its corpus: keep one ``--runs`` directory per corpus.
    """
    from train.checkpoint import load_checkpoint
    from train.config import config_to_dict

    if not ckpt_path.is_file():
        return None
    ckpt = load_checkpoint(ckpt_path, "generator", DEFAULT_FEATURES)
    final = ckpt.extra.get("final")
    wanted = config_to_dict(config)
    # the style table comes from the corpus (train.generator_training.with_styles), not
    # from the config: compare the rest
    table = {k: wanted["model"][k] for k in ("styles", "default_style")}
    stored = {**ckpt.config, "model": {**ckpt.model_config, **table}}
    if stored != wanted or ckpt.step != config.run.steps or not final:
        return None
    return dict(final)


def train_job(job: TrainingJob) -> dict[str, Any]:
    """Train one job (in this or a worker process); returns its losses and seconds
    (``reused``: True when ``job.reuse`` found the training already done)."""
    import torch

    from train.config import load_config
    from train.generator_training import (
        GeneratorTrainingConfig,
        load_generator_data,
        train_generator,
    )

    torch.set_num_threads(1)
    config = load_config(GeneratorTrainingConfig, job.config_path, list(job.overrides))
    final = finished_training(job.run_dir / "generator.pt", config) if job.reuse else None
    reused = final is not None
    if final is None:
        key = (job.data_dir, config.model.lookahead_frames, config.data)
        if key not in _DATASETS:
            _DATASETS[key] = load_generator_data(job.data_dir, config)
        final = train_generator(config, _DATASETS[key], job.run_dir, device="cpu",
                                show_progress=False)
    return {"seconds": float(final.get("seconds", float("nan"))),  # the loop's own clock
            "val_generation_l1": float(final.get("val_generation_l1", float("nan"))),
            "lookahead_frames": config.model.lookahead_frames, "reused": reused}


def training_jobs(what: str, variants: list[Variant], base: tuple[str, ...],
                  seeds: list[int] | None, config_path: Path | None, data_dir: Path,
                  runs: Path, reuse: bool = False) -> list[TrainingJob]:
    """Every (variant, seed) training, variant by variant."""
    jobs = []
    for variant in variants:
        variant_dir = runs / what / variant.name.replace(" ", "_").replace("=", "")
        for seed in (seeds if seeds is not None else [None]):
            seed_keys = () if seed is None else (f"run.seed={seed}",)
            jobs.append(TrainingJob(variant.name, seed, (*base, *seed_keys, *variant.overrides),
                                    config_path, data_dir,
                                    variant_dir if seed is None else variant_dir / f"seed{seed}",
                                    reuse))
    return jobs


def mean_row(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every numeric value (NaN-aware: a metric missing in every seed
    stays NaN); the other values from the first seed."""
    first = next(iter(per_seed.values()))
    row: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = np.array([float(r[key]) for r in per_seed.values()])
            row[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        else:
            row[key] = value
    return row


def run_ablation(what: str, variants: list[Variant], data_dir: Path, posesync_ckpt: Path,
                 fgd_ckpt: Path, runs: Path, steps: int = ABLATION_STEPS,
                 config_path: Path | None = None, extra_overrides: tuple[str, ...] = (),
                 seed: int = 0, show_progress: bool = False,
                 train_seeds: list[int] | None = None, jobs: int = 1,
                 reuse_trained: bool = False) -> dict[str, Any]:
    """Train every variant (once per training seed), score it on the held-out split;
    returns the JSON-able report. ``show_progress``: a bar over the trainings;
    ``reuse_trained``: score the finished trainings found under ``runs`` instead of training
    them again (:func:`finished_training`; rows record ``reused``)."""
    import torch

    from train.cli import default_config_path
    from train.evaluation import evaluate_generator_model as score
    from train.evaluation import (
        load_eval_models,
        load_generator_checkpoint,
        load_held_out,
        make_references,
        min_sequence_frames,
        posesync_separation,
    )
    from train.loop import progress_bar
    from train.results_report import machine_description

    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if not variants:
        raise ValueError("nothing to ablate: give at least one variant value")
    if train_seeds is not None and (not train_seeds or len(set(train_seeds)) != len(train_seeds)):
        raise ValueError(f"--train-seeds must be distinct seeds, got {train_seeds}")
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    torch.set_num_threads(1)
    models = load_eval_models(posesync_ckpt, fgd_ckpt)
    sequences = load_held_out(data_dir, min_sequence_frames(models))
    refs = make_references(sequences, models)
    base = (*SHARED_OVERRIDES, f"run.steps={steps}", f"run.checkpoint_every={steps}",
            *extra_overrides)
    todo = training_jobs(what, variants, base, train_seeds,
                         config_path or default_config_path("generator"), data_dir, runs,
                         reuse_trained)
    bar = progress_bar(len(todo), 0, show_progress, f"ablate {what}")
    if jobs == 1:
        trained = []
        for job in todo:
            trained.append(train_job(job))
            bar.update(1)
    else:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=jobs,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            trained = []
            for result in pool.map(train_job, todo):
                trained.append(result)
                bar.update(1)
    bar.close()
    per_seed: dict[str, dict[str, dict[str, Any]]] = {}
    for job, result in zip(todo, trained, strict=True):
        model, normalization = load_generator_checkpoint(job.run_dir / "generator.pt")
        row: dict[str, Any] = score(model, normalization, sequences, models, refs, seed,
                                    baselines=False)["generator"]
        row.update(train_seconds=result["seconds"],
                   lookahead_frames=result["lookahead_frames"],
                   latency_ms=algorithmic_latency_ms(result["lookahead_frames"]),
                   val_generation_l1=result["val_generation_l1"],
                   reused=result["reused"])
        per_seed.setdefault(job.variant, {})[str(job.seed)] = row
        print(f"[ablate {what}] {job.variant}" + ("" if job.seed is None else
                                                   f" (seed {job.seed})")
              + (": reused, trained" if result["reused"] else ": trained")
              + f" in {result['seconds']:.0f} s, FGD {row['fgd']:.3f}, "
              f"BC {row['bc']:.3f}, PSD {row['psd']:.3f}, lip-sync {row['lip_sync']:.3f}, "
              f"detector AUC {row['detector_auc']:.3f}", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    for variant in variants:
        rows[variant.name] = mean_row(per_seed[variant.name])
        rows[variant.name]["overrides"] = list(variant.overrides)
        if train_seeds is not None:
            rows[variant.name]["per_seed"] = per_seed[variant.name]
    return {"what": what, "data": str(data_dir), "steps": steps,
            "shared_overrides": list(base), "seed": seed, "train_seeds": train_seeds,
            "jobs": jobs, "reuse_trained": reuse_trained,
            "checkpoints": {"posesync": str(posesync_ckpt), "fgd": str(fgd_ckpt)},
            "sequences": len(sequences), "variants": rows,
            "variant_order": [v.name for v in variants],
            "posesync": posesync_separation(sequences, models, refs),
            "machine": machine_description()}


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
        p.add_argument("--train-seeds", type=int, nargs="+", default=None, metavar="S",
                       help="train every variant once per seed (run.seed=S); rows are means "
                            "and the report adds per-seed values and seed-paired differences "
                            "(default: one training with the config's seed)")
        p.add_argument("--jobs", type=int, default=1,
                       help="trainings run at once in worker processes (default 1)")
        p.add_argument("--reuse-trained", action="store_true",
                       help="score the finished trainings of the same configs already under "
                            "--runs instead of training them again (e.g. after a metric "
                            "changed); a missing or different one is trained")
        p.add_argument("--progress", action="store_true",
                       help="show a progress bar over the trainings")
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
    from train.ablation_report import ablation_markdown, plot_lookahead
    from train.results_report import write_report

    for name in ("posesync", "fgd"):
        if not getattr(args, name).is_file():
            print(f"gesturert ablate: --{name} {getattr(args, name)} is not a file; pass the "
                  f"checkpoint written by `gesturert train {name}`", file=sys.stderr)
            return 2
    try:
        report = run_ablation(args.ablation, _variants(args), args.data, args.posesync,
                              args.fgd, args.runs, args.steps, args.config,
                              tuple(args.overrides), args.seed, args.progress,
                              args.train_seeds, args.jobs, args.reuse_trained)
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
