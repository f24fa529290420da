"""``gesturert trtexec``: the trtexec commands that build and benchmark a bundle's models.

For each model two commands, both with shapes from the manifest (every input, ``state``
included):

* **build**: ``--onnx`` + ``--minShapes/--optShapes/--maxShapes`` (the batch profile and,
  for the generator, the frames profile), ``--stronglyTyped`` (fp32 graph, or the fp16
  graph with fp32 I/O that ``build-engine --fp16`` also uses; ``legacy_fp16`` gives
  TensorRT 10's weakly typed ``--fp16`` instead), ``--noTF32`` (fp32 layers stay IEEE fp32,
  as ``build-engine`` builds them), ``--timingCacheFile``,
  ``--saveEngine``, ``--skipInference``;
* **benchmark**: ``--loadEngine`` + ``--shapes`` at the optimum (opt batch, chunk_frames),
  ``--useCudaGraph``, ``--noDataTransfers``, ``--exportTimes``, warm-up and duration.

:func:`parse_performance_summary` turns trtexec's ``=== Performance summary ===`` block
(``Throughput: X qps``, ``Latency: min = .. ms, max = .., mean = .., median = ..,
percentile(90%) = .., ...``, ``GPU Compute Time: ...``, ``Total Host Walltime: X s``)
into a flat JSON-ready dict.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.tensorrt_build import (
    BATCH_AXIS,
    ENGINES_DIR,
    FRAMES_AXIS,
    MODELS,
    ProfileShapes,
    Shape,
    convert_to_fp16,
    model_profiles,
)
from sdk.bundle import Bundle, load_bundle

WARMUP_MS = 500
DURATION_S = 10


class TrtexecError(RuntimeError):
    """trtexec is missing, failed, or printed no performance summary."""


@dataclass(frozen=True)
class TrtexecPlan:
    """The two commands for one model (argv lists, ready for subprocess)."""

    model: str
    precision: str
    build: list[str]
    benchmark: list[str]
    times_file: Path
    benchmark_shapes: dict[str, Shape]

    def format(self) -> str:
        return (f"# {self.model} ({self.precision}): build\n{shlex.join(self.build)}\n"
                f"# {self.model} ({self.precision}): benchmark\n{shlex.join(self.benchmark)}")


def _shape_text(shapes: dict[str, Shape]) -> str:
    """{'features': (1, 1, 91)} -> 'features:1x1x91' (trtexec's shape syntax)."""
    return ",".join(f"{name}:{'x'.join(str(d) for d in shape)}" for name, shape in shapes.items())


def _pick(shapes: ProfileShapes, which: int) -> dict[str, Shape]:
    return {name: bounds[which] for name, bounds in shapes.items()}


def plan_commands(bundle: Bundle, out_dir: Path, fp16: bool = False,
                  legacy_fp16: bool = False, trtexec: str = "trtexec",
                  models: tuple[str, ...] = MODELS) -> list[TrtexecPlan]:
    """Build and benchmark commands for every model of ``bundle``.

    Args:
        out_dir: where engines, timing cache and exported times go (created; with ``fp16``
            and no ``engines/<model>-fp16.onnx`` in the bundle, the fp16 graph is written here).
        fp16: benchmark fp16 engines.
        legacy_fp16: with ``fp16``, use trtexec ``--fp16`` on the fp32 graph (TensorRT 10
            only) instead of the fp16 graph with ``--stronglyTyped``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    precision = "fp16" if fp16 else "fp32"
    plans = []
    for model in models:
        if model == "posesync" and bundle.manifest.posesync is None:
            continue
        spec, shapes = model_profiles(bundle, model)
        onnx_path = bundle.path(spec.file)
        typing_flags = ["--stronglyTyped"]
        if fp16 and legacy_fp16:
            typing_flags = ["--fp16"]
        elif fp16:
            onnx_path = bundle.path(f"{ENGINES_DIR}/{model}-fp16.onnx")
            if not onnx_path.is_file():
                onnx_path = convert_to_fp16(bundle.path(spec.file),
                                            out_dir / f"{model}-fp16.onnx")
        engine = out_dir / f"{model}-{precision}.trtexec.plan"
        build = [trtexec, f"--onnx={onnx_path}",
                 f"--minShapes={_shape_text(_pick(shapes, 0))}",
                 f"--optShapes={_shape_text(_pick(shapes, 1))}",
                 f"--maxShapes={_shape_text(_pick(shapes, 2))}",
                 *typing_flags, "--noTF32", f"--timingCacheFile={out_dir / 'timing.cache'}",
                 f"--saveEngine={engine}", "--skipInference"]
        bench_shapes = _benchmark_shapes(bundle, spec.inputs, shapes)
        times = out_dir / f"{model}-{precision}.times.json"
        benchmark = [trtexec, f"--loadEngine={engine}", f"--shapes={_shape_text(bench_shapes)}",
                     "--useCudaGraph", "--noDataTransfers", f"--exportTimes={times}",
                     f"--warmUp={WARMUP_MS}", f"--duration={DURATION_S}"]
        plans.append(TrtexecPlan(model, precision, build, benchmark, times, bench_shapes))
    return plans


def _benchmark_shapes(bundle: Bundle, inputs: Any, shapes: ProfileShapes) -> dict[str, Shape]:
    """Opt batch and ``chunk_frames`` frames: the shape the runtime steps with."""
    generator = bundle.manifest.generator
    axes = {BATCH_AXIS: generator.batch_profile[1], FRAMES_AXIS: generator.chunk_frames}
    return {t.name: tuple(d if isinstance(d, int) else axes[d] for d in t.shape) for t in inputs}


_METRIC_LINE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9 ]*?):\s*(?P<body>min = .*)$")
_STAT = re.compile(r"(?P<key>min|max|mean|median|percentile\((?P<p>[\d.]+)%\))\s*=\s*"
                   r"(?P<value>[-+\d.eE]+)\s*(?P<unit>ms|s|us)")
_SCALAR = re.compile(r"^(?P<name>Throughput|Total Host Walltime|Total GPU Compute Time):\s*"
                     r"(?P<value>[-+\d.eE]+)\s*(?P<unit>qps|s|ms)")
_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")  # "[11/24/2025-10:00:00] [I] " and the like


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def parse_performance_summary(text: str) -> dict[str, Any]:
    """trtexec output -> {"throughput_qps", "latency_ms": {...}, "gpu_compute_time_ms": ...}.

    Every ``Name: min = .. ms, ...`` line of the summary becomes ``<name>_ms`` with keys
    min, max, mean, median and p<N> for ``percentile(N%)``; ``Throughput`` becomes
    ``throughput_qps``; ``Total Host Walltime``/``Total GPU Compute Time`` become
    ``total_host_walltime_s``/``total_gpu_compute_time_s``. Times are converted to the
    unit in the key. Raises TrtexecError when there is no summary.
    """
    lines = [_PREFIX.sub("", line).strip() for line in text.splitlines()]
    try:
        start = next(i for i, line in enumerate(lines) if "=== Performance summary ===" in line)
    except StopIteration:
        raise TrtexecError("no '=== Performance summary ===' in the trtexec output; did the "
                           "benchmark run (no --skipInference) and finish?") from None
    scale = {"ms": 1.0, "s": 1000.0, "us": 1e-3}
    result: dict[str, Any] = {}
    for line in lines[start + 1:]:
        if line.startswith("===") and "Performance summary" not in line:
            break  # the next section
        scalar = _SCALAR.match(line)
        if scalar:
            value, unit = float(scalar["value"]), scalar["unit"]
            if scalar["name"] == "Throughput":
                result["throughput_qps"] = value
            else:
                result[f"{_key(scalar['name'])}_s"] = value / 1000.0 if unit == "ms" else value
            continue
        metric = _METRIC_LINE.match(line)
        if metric:
            stats = {}
            for stat in _STAT.finditer(metric["body"]):
                percent = stat["p"] or ""
                if "." in percent:
                    percent = percent.rstrip("0").rstrip(".")
                key = f"p{percent}" if percent else stat["key"]
                stats[key] = float(stat["value"]) * scale[stat["unit"]]
            result[f"{_key(metric['name'])}_ms"] = stats
    if "throughput_qps" not in result or "latency_ms" not in result:
        raise TrtexecError("the trtexec performance summary has no Throughput or Latency line")
    return result


def run_plans(plans: list[TrtexecPlan]) -> list[dict[str, Any]]:
    """Run every build and benchmark command; one benchmark record per model."""
    if shutil.which(plans[0].build[0] if plans else "trtexec") is None:
        raise TrtexecError("trtexec is not on PATH; it ships with TensorRT (bin/trtexec). "
                           "Run without --run to print the commands instead.")
    records = []
    for plan in plans:
        for argv in (plan.build, plan.benchmark):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
                raise TrtexecError(f"{shlex.join(argv)} failed with code {done.returncode}:\n"
                                   f"{tail}")
        summary = parse_performance_summary(done.stdout)
        records.append({"tool": "trtexec", "model": plan.model, "precision": plan.precision,
                        "shapes": {k: list(v) for k, v in plan.benchmark_shapes.items()},
                        "command": shlex.join(plan.benchmark),
                        "times_file": str(plan.times_file), **summary})
    return records


def plans_for_bundle(bundle_dir: str | Path, out_dir: str | Path, **options: Any
                     ) -> list[TrtexecPlan]:
    """Load (and verify) a bundle and plan its commands (see :func:`plan_commands`)."""
    return plan_commands(load_bundle(bundle_dir), Path(out_dir), **options)
