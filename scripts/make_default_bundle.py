"""Reproduce the default bundle shipped in ``sdk/data/default_bundle/``, end to end.

    .venv/bin/python scripts/make_default_bundle.py [--minutes 20] [--work runs/default_bundle]
    .venv/bin/python scripts/make_default_bundle.py --export-only --work DIR_WITH_CHECKPOINTS

Stages, each one of the project's own commands run in a subprocess and timed:

1. ``gesturert data synth --out WORK/corpus --speakers 1 --minutes 20 --seed 0``, or with
   ``--voices SPEC [--held-out-voices SPEC] [--styles N]`` the voiced corpus (real
   synthesizer voices; ``--minutes`` per voice) — what ``make bundle`` ships; its
   ``voices.json`` (every voice, engine, licence, held out or not) is copied to
   ``RESULTS/training_voices.json``;
2. ``gesturert train posesync``, ``gesturert train fgd``, ``gesturert train generator``
   with the default configs (train/configs/*.yaml) on that corpus, each with
   ``--set run.threads=1`` (a machine setting, not a model one: on the shared 2-core CPU
   two OpenMP threads per process ran several times slower; ``--threads 0`` = torch's
   default);
3. ``gesturert export`` of the generator and PoseSyncNet into ``WORK/bundle`` (with
   ``--corpus WORK/corpus``: the bundle carries the training poses' range), then
   ``gesturert export-step`` (the GEMM-shaped one-frame step models, fp32 and int8);
4. the bundle replaces ``--dest`` (default ``sdk/data/default_bundle/``); the report says
   which of its files are byte-identical to those of the bundle it replaced (the manifest
   aside: it records the time of export), so a rebuild shows whether it reproduced it;
   then ``gesturert validate`` of the new bundle against its golden reference writes
   ``--validation-results`` (default ``benchmarks/results/validation/``: the numbers
   docs/validation.md quotes);
5. with ``--shuffled-baseline``: the audio-shuffled baseline, ``gesturert train
   generator`` with the same config and ``--set data.shuffle_audio_pairs=true`` (not part
   of the bundle; timed apart from the three models);
6. with ``--evaluate``: ``gesturert evaluate`` on the corpus's held-out split into
   ``--results`` (with ``--shuffled-generator`` when the baseline was trained).

With ``--reuse EARLIER_WORK``, the corpus, PoseSyncNet and FGD autoencoder of an earlier
run are copied into ``--work`` instead of stages 1 and the posesync/fgd trainings (for a
change that only touches the generator); their times in the report are those of the
earlier run's report (``RESULTS/default_training.json`` when it names the same work
directory), marked as reused.

With ``--export-only``, stages 1-2 are skipped: the checkpoints already in ``--work``
(``generator/generator.pt``, ``posesync/posesync.pt``; the range from ``corpus/``) are
exported (into a temporary directory: ``--work`` is only read), then stage 4; no timing
report is written.

Prints the time of every stage and writes them, with the machine (CPU model, cores, load
average), to ``RESULTS/default_training.json`` and ``.md``. The training of the three
models is deterministic for a seed on one machine; ONNX files differ between runs only
where floating-point results of the CPU differ.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEST = REPO / "sdk" / "data" / "default_bundle"
DEFAULT_WORK = REPO / "runs" / "default_bundle"  # make bundle's work directory (no --work)
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "training"
DEFAULT_VALIDATION = REPO / "benchmarks" / "results" / "validation"
TRAINING_STAGES = ("posesync", "fgd", "generator")
REUSED_STAGES = ("synth", "train posesync", "train fgd")  # what --reuse copies instead


def run_stage(name: str, args: list[str], timings: dict[str, float], quiet: bool) -> None:
    """Run ``gesturert ARGS`` in this Python; record its wall time; stop on failure."""
    command = [sys.executable, "-m", "sdk.cli", *args]
    print(f"[{name}] gesturert {' '.join(args)}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE if quiet else None,
                            stderr=subprocess.STDOUT if quiet else None, text=True)
    timings[name] = time.perf_counter() - started
    if result.returncode != 0:
        if quiet and result.stdout:
            print(result.stdout[-4000:], file=sys.stderr)
        raise SystemExit(f"[{name}] failed with exit code {result.returncode}")
    print(f"[{name}] done in {timings[name]:.1f} s", flush=True)


def run_lanes(lanes: list[list[str]], commands: dict[str, list[str]],
              timings: dict[str, float], quiet: bool) -> None:
    """Run the lanes at once, each lane's stages in turn (``run_stage`` each); stop on the
    first failure once every lane has ended."""
    from concurrent.futures import ThreadPoolExecutor

    def lane(names: list[str]) -> None:
        for name in names:
            run_stage(name, commands[name], timings, quiet)

    with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
        futures = [pool.submit(lane, names) for names in lanes if names]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


def replace_bundle(bundle: Path, dest: Path) -> None:
    """Copy ``bundle`` over ``dest`` (a directory holding only a bundle, or absent)."""
    if dest.exists():
        if not (dest / "manifest.json").is_file() and any(dest.iterdir()):
            raise SystemExit(f"{dest} exists and is not a bundle; refusing to replace it")
        shutil.rmtree(dest)
    shutil.copytree(bundle, dest)


def compare_bundles(old: Path, new: Path) -> dict[str, str] | None:
    """Per file of either bundle but ``manifest.json``: "identical", "differs" (sha256),
    "added" (only in ``new``) or "removed" (only in ``old``); None when ``old`` holds no
    bundle."""
    from sdk.bundle import MANIFEST_NAME, sha256_file

    if not (old / MANIFEST_NAME).is_file():
        return None

    def digests(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
                if p.is_file() and p.name != MANIFEST_NAME}

    before, after = digests(old), digests(new)
    return {name: ("added" if name not in before else "removed" if name not in after
                   else "identical" if before[name] == after[name] else "differs")
            for name in sorted(set(before) | set(after))}


def source_revision() -> str:
    """``git describe``-like commit of the code that trained, ``+dirty`` with local edits."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty.strip() else "")


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def corpus_line(report: dict[str, Any]) -> str:
    """The corpus of a timing report in words (synthetic speakers or synthesizer voices)."""
    if not report.get("voices"):
        return f"{report['speakers']} synthetic speaker(s) x {report['minutes']} min"
    held = report.get("held_out_voices") or "none"
    styles = report.get("styles")
    return (f"voices {report['voices']!r} x {report['minutes']} min each (held out: {held}"
            + (f"; {styles} gesture styles" if styles else "") + ")")


def timing_markdown(report: dict[str, Any]) -> str:
    from train.results_report import machine_line

    reused = report.get("reused") or {}
    lines = ["# Default models: training time", "",
             f"Command: `{report['command']}` (code at {report['revision']})", "",
             f"Machine: {machine_line(report['machine'])}.", "",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f}" + (" (reused: measured in the earlier run)" if k in
                                    reused.get("stages", ()) else "") + " |"
              for k, v in report["seconds"].items()]
    extra = (sum(report["seconds"].values()) - report["total_seconds"]  # baseline, evaluate
             if report.get("jobs", 1) == 1 else
             report.get("wall_seconds", report["total_seconds"]) - report["total_seconds"])
    jobs = report.get("jobs", 1)
    lines += ["", f"Training (posesync + fgd + generator): "
              f"{report['training_seconds'] / 60:.1f} min"
              + (f" of stage time, {report['training_wall_seconds'] / 60:.1f} min wall with "
                 f"{jobs} trainings at once (the baseline included"
                 + ("; this run's trainings only" if reused else "") + ")"
                 if jobs > 1 else "")
              + "; synth to bundle "
              f"{report['total_seconds'] / 60:.1f} min"
              + (f", {(report['total_seconds'] + extra) / 60:.1f} min with the stages after "
                 "the bundle (baseline, evaluation)" if extra > 0.05 else "")
              + f". Corpus: {corpus_line(report)}, seed {report['seed']}. Bundle: "
              f"{report['bundle_bytes'] / 1e6:.2f} MB "
              f"({', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in report['files'].items())})."]
    if reused:
        lines += ["", f"Stages {', '.join(reused['stages'])} reused from `{reused['from']}` "
                  "(copied; their times are the earlier run's, counted in the totals)."]
    replaced = report.get("compared_with_replaced")
    if replaced is not None:
        other = {k: v for k, v in replaced.items() if v != "identical"}
        lines += ["", "Against the bundle it replaced (sha256 of every file but the manifest): "
                  + ("all identical." if not other else
                     ", ".join(f"{k} {v}" for k, v in other.items()) + "; the rest identical.")]
    return "\n".join(lines) + "\n"


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (no machine paths in reports)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def export_and_validate(generator: Path, posesync: Path, corpus: Path, dest: Path,
                        validation: Path, timings: dict[str, float], quiet: bool
                        ) -> dict[str, str] | None:
    """Export the checkpoints (into a temporary directory; the bundle carries the training
    pose range of ``corpus``, the generator's), replace ``dest`` with the bundle, validate it
    into ``validation``; returns the comparison with the old bundle."""
    for checkpoint in (generator, posesync):
        if not checkpoint.is_file():
            raise SystemExit(f"{checkpoint}: no such checkpoint")
    if not corpus.is_dir():
        raise SystemExit(f"{corpus}: no corpus (the generator's, for the pose range)")
    with tempfile.TemporaryDirectory(prefix="gesturert-bundle-") as tmp:
        bundle = Path(tmp) / "bundle"
        run_stage("export", ["export", "--generator", str(generator), "--posesync",
                             str(posesync), "--corpus", str(corpus), "--out", str(bundle),
                             "--quiet"], timings, quiet)
        run_stage("export-step", ["export-step", str(bundle), "--generator", str(generator)],
                  timings, quiet)
        replaced = compare_bundles(dest, bundle)
        replace_bundle(bundle, dest)
    run_stage("validate", ["validate", _repo_relative(dest), "--out",
                           _repo_relative(validation)], timings, quiet)
    return replaced


def earlier_seconds(earlier_work: Path, results: Path) -> dict[str, float]:
    """Seconds of the stages ``--reuse`` skips, from the report in ``results`` of the run
    whose work directory was ``earlier_work``; raises SystemExit when there is none."""
    report_path = results / "default_training.json"
    try:
        report = json.loads(report_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"--reuse: no readable earlier report {report_path} ({exc})") from exc
    command = str(report.get("command", ""))
    seconds = report.get("seconds", {})
    named = f"--work {earlier_work}" in command
    implied = "--work " not in command and earlier_work == DEFAULT_WORK.resolve()
    if not (named or implied) or any(k not in seconds for k in REUSED_STAGES):
        raise SystemExit(f"--reuse: {report_path} is not the report of the run in "
                         f"{earlier_work} (its command: {command!r}) or lacks the times of "
                         f"{list(REUSED_STAGES)}")
    return {k: float(seconds[k]) for k in REUSED_STAGES}


def copy_reused(earlier_work: Path, work: Path) -> None:
    """Copy the corpus, posesync and fgd of ``earlier_work`` into ``work``."""
    needed = [earlier_work / "corpus", earlier_work / "posesync" / "posesync.pt",
              earlier_work / "fgd" / "fgd.pt"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise SystemExit(f"--reuse {earlier_work}: missing {missing}")
    for name in ("corpus", "posesync", "fgd"):
        shutil.copytree(earlier_work / name, work / name)
    print(f"[reuse] corpus, posesync, fgd copied from {earlier_work}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="minutes of synthetic talk (default 20)")
    parser.add_argument("--speakers", type=int, default=1, help="synthetic speakers (default 1)")
    parser.add_argument("--voices", default=None, metavar="SPEC",
                        help="speak with real synthesizer voices (gesturert data synth "
                             "--voices; --speakers is then ignored)")
    parser.add_argument("--held-out-voices", default="", metavar="SPEC",
                        help="with --voices: voices never trained on (test split)")
    parser.add_argument("--styles", type=int, default=None, metavar="N",
                        help="with --voices: gesture styles shared round-robin by the voices")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each training (default 1; 0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="work directory: corpus, runs, bundle (default runs/default_bundle)")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help="where the finished bundle goes (default sdk/data/default_bundle)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="where the timing (and evaluation) reports go")
    parser.add_argument("--evaluate", action="store_true",
                        help="also run gesturert evaluate on the held-out split")
    parser.add_argument("--shuffled-baseline", action="store_true",
                        help="also train the audio-shuffled baseline generator (same config, "
                             "shuffled audio-pose pairs) for the evaluation's baseline row")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="MODEL:KEY=VALUE",
                        help="config override for one model, e.g. generator:run.steps=100 "
                             "(tests; the shipped bundle uses none)")
    parser.add_argument("--validation-results", type=Path, default=DEFAULT_VALIDATION,
                        help="where gesturert validate of the new bundle writes its report "
                             "(default benchmarks/results/validation)")
    parser.add_argument("--export-only", action="store_true",
                        help="no synth or training: export the checkpoints in --work "
                             "(generator/generator.pt, posesync/posesync.pt), replace --dest, "
                             "validate; --work is only read")
    parser.add_argument("--jobs", type=int, default=1, choices=(1, 2),
                        help="trainings at once (default 1; 2: the generator beside posesync, "
                             "fgd and the baseline, one thread each, for a 2-core machine)")
    parser.add_argument("--reuse", type=Path, default=None, metavar="EARLIER_WORK",
                        help="copy the corpus, posesync and fgd of an earlier --work instead "
                             "of synthesizing and training them (their times: the earlier "
                             "run's report in --results)")
    parser.add_argument("--quiet", action="store_true", help="hide the commands' output")
    args = parser.parse_args(argv)
    if args.export_only:
        timings: dict[str, float] = {}
        work = args.work.resolve()
        replaced = export_and_validate(work / "generator" / "generator.pt",
                                       work / "posesync" / "posesync.pt", work / "corpus",
                                       args.dest.resolve(), args.validation_results, timings,
                                       args.quiet)
        print("against the bundle it replaced: " + ("no bundle there" if replaced is None else
              ", ".join(f"{k} {v}" for k, v in replaced.items())))
        return 0
    if not args.minutes > 0 or args.speakers < 1 or args.threads < 0:
        parser.error(f"need --minutes > 0, --speakers >= 1, --threads >= 0; got "
                     f"{args.minutes}, {args.speakers}, {args.threads}")
    overrides = {k: ["--set", f"run.threads={args.threads}"] for k in TRAINING_STAGES}
    for item in args.overrides:
        model, sep, setting = item.partition(":")
        if not sep or model not in overrides or "=" not in setting:
            parser.error(f"--set expects MODEL:KEY=VALUE with MODEL in {TRAINING_STAGES}, "
                         f"got {item!r}")
        overrides[model] += ["--set", setting]

    work = args.work.resolve()
    corpus = work / "corpus"
    reused_seconds = None if args.reuse is None else earlier_seconds(args.reuse.resolve(),
                                                                      args.results)
    if args.reuse is not None and args.reuse.resolve() == work:
        parser.error("--reuse must name another directory than --work (--work is replaced)")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    timings = {}
    revision = source_revision()
    started = time.perf_counter()
    voiced = [] if args.voices is None else (
        ["--voices", args.voices, "--held-out-voices", args.held_out_voices]
        + ([] if args.styles is None else ["--styles", str(args.styles)]))
    if args.reuse is not None:
        copy_reused(args.reuse.resolve(), work)
    else:
        run_stage("synth", ["data", "synth", "--out", str(corpus), "--minutes",
                            str(args.minutes), "--speakers", str(args.speakers), "--seed",
                            str(args.seed), "--no-progress", *voiced], timings, args.quiet)
    if args.voices is not None:  # which voices the bundle learnt from, with their licences
        args.results.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / "voices.json", args.results / "training_voices.json")
    shuffled = work / "generator_shuffled" / "generator.pt"
    trainings = {f"train {model}": ["train", model, "--data", str(corpus), "--out",
                                    str(work / model), "--no-progress", *overrides[model]]
                 for model in TRAINING_STAGES
                 if args.reuse is None or f"train {model}" not in REUSED_STAGES}
    if args.shuffled_baseline:
        trainings["train shuffled baseline"] = [
            "train", "generator", "--data", str(corpus), "--out", str(shuffled.parent),
            "--no-progress", *overrides["generator"], "--set", "data.shuffle_audio_pairs=true"]
    lanes_started = time.perf_counter()
    if args.jobs == 1:  # the bundle first, the baseline after it (as before --jobs)
        for name in [n for n in trainings if n != "train shuffled baseline"]:
            run_stage(name, trainings[name], timings, args.quiet)
    else:  # the generator alone; posesync, fgd and the baseline in turn beside it
        run_lanes([["train generator"], [n for n in trainings if n != "train generator"]],
                  trainings, timings, args.quiet)
    training_wall = time.perf_counter() - lanes_started
    replaced = export_and_validate(work / "generator" / "generator.pt",
                                   work / "posesync" / "posesync.pt", corpus,
                                   args.dest.resolve(), args.validation_results, timings,
                                   args.quiet)
    total = time.perf_counter() - started
    if args.shuffled_baseline and args.jobs == 1:
        run_stage("train shuffled baseline", trainings["train shuffled baseline"], timings,
                  args.quiet)
    if args.evaluate:
        baseline = ["--shuffled-generator", str(shuffled)] if args.shuffled_baseline else []
        run_stage("evaluate", ["evaluate", "--generator", str(work / "generator" / "generator.pt"),
                               "--posesync", str(work / "posesync" / "posesync.pt"),
                               "--fgd", str(work / "fgd" / "fgd.pt"), "--data", str(corpus),
                               "--out", str(args.results), *baseline], timings, args.quiet)

    from train.results_report import machine_description

    if reused_seconds is not None:
        timings = reused_seconds | timings
    dest = args.dest.resolve()
    report = {
        "command": "python scripts/make_default_bundle.py " + shlex.join(
            argv if argv is not None else sys.argv[1:]),
        "revision": revision, "wall_seconds": round(
            time.perf_counter() - started + sum((reused_seconds or {}).values()), 1),
        "minutes": args.minutes, "speakers": args.speakers, "seed": args.seed,
        "voices": args.voices, "held_out_voices": args.held_out_voices, "styles": args.styles,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "training_seconds": round(sum(timings[f"train {m}"] for m in TRAINING_STAGES), 1),
        "total_seconds": round(total + sum((reused_seconds or {}).values()), 1),
        "reused": None if args.reuse is None else {"from": str(args.reuse),
                                                   "stages": list(REUSED_STAGES)},
        "jobs": args.jobs, "training_wall_seconds": round(training_wall, 1),
        "bundle_bytes": directory_bytes(dest),
        "compared_with_replaced": replaced,
        "files": {p.name: p.stat().st_size for p in sorted(dest.rglob("*")) if p.is_file()},
        "machine": machine_description(),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "default_training.json").write_text(
        json.dumps(report, indent=2, sort_keys=True) + "\n")
    markdown = timing_markdown(report)
    (args.results / "default_training.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
