"""``gesturert validate``: every backend of this machine against the bundle's golden reference.

The bundle carries what the TRAINED PyTorch model computed at export (:mod:`sdk.golden`);
this module recomputes it with the SDK alone (numpy + the backends: no torch, no librosa)
and compares, stage by stage, so a difference is named where it starts:

``mfcc``
    the SDK's numpy MFCC (``sdk.mfcc`` with the bundle's ``mfcc_matrices.npz``) of the
    reference audio vs ``librosa.feature.mfcc`` recorded at export: ``mfcc_max_abs``.
``generator``
    on every generator backend present (onnxruntime-cpu, onnxruntime-gpu, each TensorRT
    engine precision that fits this GPU), offline (``generate``) and streaming (the audio in
    a fixed cycle of chunk sizes, ``STREAM_CHUNK_FRAMES`` frames a step): keypoints in
    pixels per skeleton group (body, hands, face, lips; ``keypoints_max_px`` and
    ``keypoints_p99_px``, distance per keypoint), ``saliency_max_abs`` and
    ``saliency_flips``.
``posesync``
    the bundle's PoseSyncNet on every backend present, fed the golden MFCC clips and the
    pose images of the golden poses: ``embedding_max_abs`` (audio and pose).
``psd``
    end to end, per generator backend (offline output, SDK MFCC, ONNX Runtime CPU
    PoseSyncNet): ``psd_rel`` and ``offset_frames`` vs the golden PSD and offset.

A check fails when its value exceeds the manifest's tolerance for the backend's precision
(``reference.tolerances``; NaN fails too). With ``tolerances=None`` the checks only measure
(export derives the tolerances from such a run). Exit codes of the command: 0 every check
within tolerance, 1 a mismatch, 2 validation cannot run (no reference, unreadable bundle,
a requested backend missing).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from sdk.audio import load_audio
from sdk.bundle import Bundle, BundleError
from sdk.bundle_psd import frames_psd, posesync_embed_fn
from sdk.frames import PoseFrames
from sdk.golden import METRICS, STEP_METRICS, GoldenArrays
from sdk.manifest import ReferenceSpec
from sdk.mfcc import MfccMatrices, mfcc_offline
from sdk.pose_image import ImagingConfig
from sdk.psd import EmbedFn, PoseSyncClipConfig, audio_clips, pose_clips
from sdk.runners.base import RunnerError
from sdk.runners.select import BackendError
from sdk.streaming import GeneratorConfig, StreamingGenerator
from sdk.validate_backends import (
    BACKENDS,
    BackendRun,
    ValidateUnavailable,
    generator_backends,
    posesync_backends,
    posesync_runner,
)

__all__ = ["BACKENDS", "BackendRun", "Check", "ValidateUnavailable", "run_checks",
           "worst_per_metric"]

STREAM_CHUNK_FRAMES = 4  # feature frames per step of the streaming run
STREAM_CHUNK_SAMPLES = (1, 157, 1600, 4099, 320)  # audio chunk sizes of the streaming run, cycled
OFFLINE = "offline"


@dataclass
class Check:
    """One compared quantity. ``tolerance`` None: measured only (export's noise run)."""

    stage: str  # "mfcc" | "generator" | "posesync" | "psd"
    backend: str  # "numpy", "onnxruntime-cpu", "tensorrt-fp16", ...
    mode: str  # "offline" | "streaming/4" | "clips"
    metric: str  # a key of sdk.golden.METRICS
    group: str  # "all" | "body" | "hands" | "face" | "lips" | "audio_emb" | "pose_emb"
    value: float
    precision: str = "fp32"
    tolerance: float | None = None
    worst_frame: int | None = None  # pose frame (MFCC frame for mfcc, clip start for posesync)
    flat: bool = False  # offset only: the sweep is flat within the PSD tolerance
    note: str = ""

    @property
    def unit(self) -> str:
        return (METRICS | STEP_METRICS)[self.metric][0]

    @property
    def passed(self) -> bool:
        return self.tolerance is None or self.flat or bool(self.value <= self.tolerance)

    @property
    def margin(self) -> float | None:
        """tolerance / value: how many times over the check is cleared (inf at value 0)."""
        if self.tolerance is None or not math.isfinite(self.value):
            return None
        return math.inf if self.value == 0 else self.tolerance / self.value

    def describe(self) -> str:
        where = f" at frame {self.worst_frame}" if self.worst_frame is not None else ""
        tol = "" if self.tolerance is None else \
            f" {'<=' if self.passed else '>'} tolerance {self.tolerance:.3g} {self.unit}"
        note = f" ({self.note})" if self.note else ""
        return (f"{self.stage} {self.metric} [{self.group}] on {self.backend} {self.mode}: "
                f"{self.value:.4g} {self.unit}{where}{tol}{note}")


# ---------------------------------------------------------------- runs
def generate(bundle: Bundle, run: BackendRun, audio: np.ndarray, seed: int, mode: str,
             style: str | None = None) -> PoseFrames:
    """Frames of ``audio`` on one backend: offline, or streamed in a fixed chunk cycle;
    in gesture style ``style`` (None: the bundle's default)."""
    assert run.config is not None
    rate = bundle.manifest.features.sample_rate
    chunk_frames = None if mode == OFFLINE else min(
        STREAM_CHUNK_FRAMES, bundle.manifest.generator.frames_profile[2])
    with StreamingGenerator(GeneratorConfig(bundle.root, run.config,
                                            chunk_frames=chunk_frames)) as gen:
        engine = gen.backend.engine
        runs = gen.backend_name + ("" if engine is None else f"-{engine.precision}")
        if runs != run.label:  # the label must say what computed the frames
            raise BackendError(f"asked for {run.label}, {runs} would run "
                               f"({gen.backend.describe()})")
        if mode == OFFLINE:
            return gen.generate(audio, rate, seed, style=style)
        return gen.generate(audio, rate, seed, chunk_samples=itertools.cycle(
            STREAM_CHUNK_SAMPLES), style=style)


def streaming_mode(bundle: Bundle) -> str:
    return f"streaming/{min(STREAM_CHUNK_FRAMES, bundle.manifest.generator.frames_profile[2])}"


# ---------------------------------------------------------------- comparisons
def keypoint_groups(bundle: Bundle) -> dict[str, np.ndarray]:
    """body, hands (both), face, lips (as the skeleton defines them) and any other group."""
    groups: dict[str, list[int]] = {}
    for name, index in bundle.manifest.skeleton.groups.items():
        key = "hands" if name.endswith("hand") else name
        groups.setdefault(key, []).extend(index)
    return {k: np.array(sorted(set(v))) for k, v in groups.items()}


def mfcc_checks(mfcc: np.ndarray, golden: GoldenArrays) -> list[Check]:
    """The SDK's MFCC (M, n_mfcc) vs the golden librosa MFCC."""
    if mfcc.shape != golden.mfcc.shape:
        return [Check("mfcc", "numpy", OFFLINE, "mfcc_max_abs", "all", math.inf,
                      note=f"shape {mfcc.shape}, golden {golden.mfcc.shape}")]
    diff = np.abs(mfcc.astype(np.float64) - golden.mfcc)
    return [Check("mfcc", "numpy", OFFLINE, "mfcc_max_abs", "all", float(diff.max()),
                  worst_frame=int(np.argmax(diff.max(axis=1))))]


def generator_checks(frames: PoseFrames, golden: GoldenArrays, groups: dict[str, np.ndarray],
                     spec: ReferenceSpec, backend: str, mode: str, precision: str,
                     saliency_margin: float) -> list[Check]:
    """Keypoints (px, per group) and saliency of one run vs the golden run."""
    def check(metric: str, group: str, value: float, frame: int | None = None,
              note: str = "") -> Check:
        return Check("generator", backend, mode, metric, group, value, precision,
                     worst_frame=frame, note=note)

    if frames.keypoints.shape != golden.keypoints_px.shape:
        note = f"{len(frames)} frames of {frames.keypoints.shape[1]} joints, golden " \
               f"{golden.keypoints_px.shape[0]} of {golden.keypoints_px.shape[1]}"
        return [check("keypoints_max_px", "all", math.inf, note=note)]
    distance = np.linalg.norm(frames.keypoints.astype(np.float64) - golden.keypoints_px,
                              axis=-1)  # (T, J) px
    checks = []
    for group, index in groups.items():
        d = distance[:, index]
        checks += [check("keypoints_max_px", group, float(d.max()),
                         int(np.argmax(d.max(axis=1)))),
                   check("keypoints_p99_px", group, float(np.percentile(d, 99)))]
    sal_diff = np.abs(frames.saliency.astype(np.float64) - golden.saliency)
    checks.append(check("saliency_max_abs", "all", float(sal_diff.max()),
                        int(np.argmax(sal_diff))))
    threshold = spec.saliency_threshold
    decided = np.abs(golden.saliency - threshold) > saliency_margin
    flips = np.flatnonzero(((frames.saliency >= threshold) != (golden.saliency >= threshold))
                           & decided)
    checks.append(check("saliency_flips", "all", float(flips.size),
                        int(flips[0]) if flips.size else None,
                        note=f"of {int(decided.sum())} decided frames"))
    return checks


def posesync_checks(bundle: Bundle, golden: GoldenArrays, embed: EmbedFn, backend: str,
                    precision: str) -> list[Check]:
    """The bundle's PoseSyncNet on the golden clips vs the golden embeddings."""
    manifest = bundle.manifest
    assert manifest.posesync is not None
    clip = PoseSyncClipConfig(manifest.posesync.clip_frames)
    starts = np.arange(golden.audio_emb.shape[0])
    audio_emb, pose_emb = embed(
        audio_clips(golden.mfcc, starts, manifest.features, clip),
        pose_clips(golden.canonical, starts, ImagingConfig.from_dict(manifest.imaging),
                   manifest.skeleton, clip))
    checks = []
    for group, ours, ref in (("audio_emb", audio_emb, golden.audio_emb),
                             ("pose_emb", pose_emb, golden.pose_emb)):
        diff = np.abs(np.asarray(ours, np.float64) - ref)
        checks.append(Check("posesync", backend, "clips", "embedding_max_abs", group,
                            float(diff.max()), precision,
                            worst_frame=int(np.argmax(diff.max(axis=1)))))
    return checks


def psd_checks(bundle: Bundle, matrices: MfccMatrices, embed: EmbedFn, audio: np.ndarray,
               frames: PoseFrames, spec: ReferenceSpec, backend: str, precision: str,
               psd_tolerance: float | None) -> list[Check]:
    """End to end: PSD and best offset of one run's poses vs the golden ones."""
    manifest = bundle.manifest
    canonical = manifest.normalization.pixels_to_canonical(frames.keypoints)
    sweep = frames_psd(manifest, matrices, embed, audio, canonical, spec.max_offset).sweep
    at_golden = np.flatnonzero(sweep.offsets == spec.offset)
    flat = bool(psd_tolerance is not None and at_golden.size and sweep.best_offset != spec.offset
                and sweep.mean_distance[at_golden[0]] - sweep.min_distance
                <= psd_tolerance * sweep.min_distance)
    rel = abs(sweep.psd - spec.psd) / abs(spec.psd) if spec.psd else math.inf
    return [Check("psd", backend, OFFLINE, "psd_rel", "all", rel, precision,
                  note=f"PSD {sweep.psd:.6f}, golden {spec.psd:.6f}"),
            Check("psd", backend, OFFLINE, "offset_frames", "all",
                  float(abs(sweep.best_offset - spec.offset)), precision, flat=flat,
                  note=f"offset {sweep.best_offset:+d}, golden {spec.offset:+d}"
                  + (" (sweep flat within the PSD tolerance)" if flat else ""))]


# ---------------------------------------------------------------- the run
def _tolerance(tolerances: dict[str, dict[str, float]] | None, precision: str, metric: str
               ) -> float | None:
    if tolerances is None:
        return None
    if precision not in tolerances or metric not in tolerances[precision]:
        raise ValidateUnavailable(f"the manifest has no {precision} tolerance for {metric} "
                                  f"(has {sorted(tolerances)}); re-export the bundle")
    return tolerances[precision][metric]


def run_checks(bundle: Bundle, requested: list[str] | None = None,
               tolerances: dict[str, dict[str, float]] | None = None
               ) -> tuple[list[Check], dict[str, str]]:
    """Every stage on every backend present of ``requested`` (default all of BACKENDS).

    Args:
        tolerances: precision -> metric -> tolerance (the manifest's when None is not
            wanted); None measures only (every check passes).
    Returns:
        The checks, and {backend: why it was not run}.
    Raises:
        ValidateUnavailable: a backend named in ``requested`` cannot run, none can, or the
        manifest lacks a tolerance. BundleError: the reference cannot be read.
    """
    manifest, spec = bundle.manifest, bundle.manifest.reference
    if spec is None or manifest.posesync is None:
        what = "golden reference (reference/)" if spec is None else "PoseSyncNet"
        raise ValidateUnavailable(f"{bundle.root}: the bundle has no {what}, so nothing to "
                                  "validate against; re-export it with this version of "
                                  "gesturert export (it records one)")
    golden = GoldenArrays.load(bundle)
    names = list(requested or BACKENDS)
    gen_runs, skipped = generator_backends(bundle, names)
    sync_runs, sync_skipped = posesync_backends(bundle, names)
    skipped.update(sync_skipped)
    if requested:
        missing = [n for n in requested if not any(r.label.startswith(n) for r in gen_runs)]
        if missing:
            raise ValidateUnavailable(f"requested backend(s) {missing} cannot run here: "
                                      f"{skipped}")
    if not gen_runs or not sync_runs:
        raise ValidateUnavailable(f"no backend can run here: {skipped}")
    audio = load_audio(bundle.path(spec.audio_file), manifest.features.sample_rate)
    try:
        matrices = MfccMatrices.load(bundle.path(manifest.mfcc_matrices), manifest.features)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle.path(manifest.mfcc_matrices)}: {exc}") from exc
    checks = mfcc_checks(mfcc_offline(audio, manifest.features, matrices), golden)
    skipped["mfcc on CUDA (sdk/cuda)"] = (
        "not compared by validate yet: the GPU preprocessing is checked against the numpy "
        "MFCC by tests/test_cuda_*.py (emulated on the CPU; on a GPU where one was found)")
    groups = keypoint_groups(bundle)
    with ExitStack() as stack:
        embed_cpu: EmbedFn | None = None
        for run in sync_runs:
            try:
                embed, runner = posesync_embed_fn(bundle, posesync_runner(bundle, run))
            except (RunnerError, BackendError) as exc:
                skipped[f"{run.label} (posesync)"] = str(exc)
                continue
            stack.callback(runner.deactivate)
            embed_cpu = embed_cpu or embed
            checks += posesync_checks(bundle, golden, embed, run.label, run.precision)
        if embed_cpu is None:
            raise ValidateUnavailable(f"PoseSyncNet cannot run here: {skipped}")
        for run in gen_runs:
            margin = _tolerance(tolerances, run.precision, "saliency_max_abs") or 0.0
            for mode in (OFFLINE, streaming_mode(bundle)):
                try:
                    frames = generate(bundle, run, audio, spec.noise_seed, mode)
                except (BackendError, RunnerError) as exc:
                    if requested:
                        raise ValidateUnavailable(f"{run.label} cannot run: {exc}") from exc
                    skipped[run.label] = str(exc)
                    break
                checks += generator_checks(frames, golden, groups, spec, run.label, mode,
                                           run.precision, margin)
                if mode == OFFLINE and frames.keypoints.shape == golden.keypoints_px.shape:
                    checks += psd_checks(bundle, matrices, embed_cpu, audio, frames, spec,
                                         run.label, run.precision,
                                         _tolerance(tolerances, run.precision, "psd_rel"))
                if mode == OFFLINE and golden.style_keypoints_px is not None:
                    # the other style's keypoints (its embedding row; saliency is style-free)
                    other = generate(bundle, run, audio, spec.noise_seed, mode,
                                     style=spec.other_style)
                    checks += generator_checks(
                        other, dataclasses.replace(golden, keypoints_px=golden.style_keypoints_px),
                        groups, spec, run.label, f"{mode}/style={spec.other_style}",
                        run.precision, margin)
    for check in checks:
        check.tolerance = _tolerance(tolerances, check.precision, check.metric)
    if tolerances is not None and "onnxruntime-cpu" in names:
        checks += step_model_checks(bundle, audio, spec.noise_seed)
    return checks, skipped


def step_model_checks(bundle: Bundle, audio: np.ndarray, seed: int) -> list[Check]:
    """Each one-frame step model of the bundle (``manifest.step_models``: fp32, int8) run
    on the reference audio against ``generator.onnx`` fp32, with the record's tolerances.

    The chain is golden -> the onnxruntime-cpu checks above (which step one frame at a time,
    so through the fp32 step model) and generator.onnx -> each step model here, so int8 is
    held to its own tolerances and generator.onnx (multi-frame chunks, engines) is checked
    too. Shapes: ``audio`` float32 (N,) at the bundle's rate.
    """
    from sdk.step_precision import measure_step_model  # the module imports StreamingGenerator

    checks = []
    for record in bundle.manifest.step_models:
        measured = measure_step_model(bundle, record.precision, audio=audio, seed=seed)
        keys = ("keypoints_max_abs", "keypoints_mean_abs", "saliency_max_abs", "psd_relative")
        values: dict[str, float] = {key: measured[key] for key in keys if key in measured}
        if "offset" in measured:
            values["offset_frames"] = abs(measured["offset"] - measured["offset_reference"])
        for key, value in values.items():
            limit = record.tolerances.get(key)
            if limit is None:
                continue
            checks.append(Check("step-model", f"onnxruntime-cpu {record.file}",
                                "vs generator.onnx", f"step_{key}", "all", float(value),
                                precision=record.precision, tolerance=float(limit)))
    return checks


def worst_per_metric(checks: list[Check]) -> dict[str, float]:
    """metric -> the largest value over every check of it (export's measured deviation)."""
    worst: dict[str, float] = {}
    for c in checks:
        worst[c.metric] = max(worst.get(c.metric, 0.0), c.value)
    return worst
