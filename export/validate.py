"""``gesturert validate --generator CKPT``: the PyTorch comparison (an export-side extra).

The SDK's ``gesturert validate`` (sdk/validate.py) compares every backend with the golden
reference the bundle carries and needs no torch. Where torch is installed, ``--generator``
adds this module's comparison with the checkpoint itself, on any audio
(:func:`pytorch_comparison`):

For every audio file and every backend that can run here, the generator runs **offline**
(one pass) and **streaming** (the audio fed in random chunk sizes, stepping as it becomes
ready). Each output is scored with the bundle's PoseSyncNet: PSD and the offset sweep
(best offset in pose frames, confidence = median - min). Backends: ``torch`` (the PyTorch
checkpoint given with ``--generator``, run through ``model.step``; the reference when
given), ``onnxruntime`` (GPU provider when present, else CPU), ``onnxruntime-cpu``,
``onnxruntime-gpu``, ``tensorrt`` (a bundle engine for this GPU). One that cannot run
here is reported as skipped, with why. The checkpoint's model is the reference.

The shipped speech sample is always validated too, with the noise seed of the manifest's
``psd_reference`` (``export.bundle_writer.PSD_SEED``): its rows are compared with that
reference, measured at export the same way (ORT, one step, first L outputs dropped,
``sdk.psd``). ``--seed`` sets the noise seed of the runs on your own audio.

Checks (a row fails naming each one out of tolerance):

* keypoints: max abs difference from the reference run in canonical units (neck-relative,
  1 = the speaker's shoulder width; pixels / scale_px), <= 1e-4 (fp32) / 2e-2 (fp16
  engines); saliency the same. (Not pixels: float32 pixels near 640 are only resolved to
  6e-5 px. Not standardised units: going back from pixels divides by per-joint stds as
  small as 1e-3, which magnifies that rounding to ~1e-4.)
* PSD: relative difference from the reference (the manifest's on the sample, the
  reference run's on your audio) <= ``tolerance_fp32`` (0.5 %) / ``tolerance_fp16`` (2 %);
* offset: the same best offset as the reference (0 frames apart). When the sweep is flat
  (the distance at the reference offset is within the PSD tolerance of the minimum, as
  for an untrained model), the offsets count as agreeing and the table says "flat".

Writes ``validate.json`` and ``validate.md`` to ``OUT/pytorch``; prints the table. Exit
codes: 0 all within tolerance, 1 something out of tolerance (named on stderr), 2 unusable
input.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.validate_report import KEYPOINT_TOLERANCE, Row, format_table, write_report
from sdk.audio import AudioError, load_audio
from sdk.bundle import Bundle, BundleError, PsdReference, load_bundle
from sdk.bundle_psd import FramesPsd, frames_psd, posesync_embed_fn
from sdk.frames import PoseFrames
from sdk.mfcc import MfccMatrices, extract_features
from sdk.noise import frame_noise
from sdk.psd import EmbedFn
from sdk.runners.select import BackendConfig, BackendError, match_engine
from sdk.streaming import GeneratorConfig, StreamingGenerator

TORCH = "torch"
SDK_BACKENDS = ("onnxruntime", "onnxruntime-cpu", "onnxruntime-gpu", "tensorrt")
VALIDATE_BACKENDS = (TORCH, *SDK_BACKENDS)
DEFAULT_BACKENDS = "torch,onnxruntime,tensorrt"
POSESYNC_BACKENDS = ("onnxruntime-cpu", "onnxruntime-gpu", "tensorrt")
MAX_STREAM_CHUNK_SECONDS = 0.5  # random streaming chunks are 1 sample .. this long
MAX_STREAM_STEP_FRAMES = 8  # streaming runs step 2 .. this many frames at a time (random)
EXIT_OK, EXIT_OUT_OF_TOLERANCE, EXIT_UNUSABLE = 0, 1, 2

# (audio (N,) at the model rate, seed) -> canonical poses (T, J, 2), saliency (T,)
GenerateFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


class ValidateError(RuntimeError):
    """Validation cannot run (bad bundle, audio, checkpoint or backend list)."""


@dataclass
class _Output:
    canonical: np.ndarray  # (T, J, 2) float32, canonical units
    saliency: np.ndarray  # (T,)
    scores: FramesPsd


# ---------------------------------------------------------------- backends
def _sdk_backend(bundle: Bundle, name: str, chunk_frames: int | None = None
                 ) -> tuple[StreamingGenerator, str]:
    """The bundle on an sdk backend and its precision; BackendError when it cannot run."""
    generator = StreamingGenerator(GeneratorConfig(bundle.root, BackendConfig(name),
                                                   chunk_frames=chunk_frames))
    engine = generator.backend.engine
    return generator, engine.precision if engine is not None else "fp32"


def _sdk_runs(offline_gen: StreamingGenerator, streaming_gen: StreamingGenerator,
              rng: np.random.Generator) -> dict[str, GenerateFn]:
    """Offline (``generate``) runs, and streaming runs: audio in random chunk sizes into a
    generator stepping ``streaming_gen.chunk_frames`` frames at a time."""
    norm = offline_gen.manifest.normalization
    rate = offline_gen.manifest.features.sample_rate

    def canonical(frames: PoseFrames) -> tuple[np.ndarray, np.ndarray]:
        return norm.pixels_to_canonical(frames.keypoints), frames.saliency

    def offline(audio: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return canonical(offline_gen.generate(audio, rate, seed))

    def streaming(audio: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        longest = max(2, int(MAX_STREAM_CHUNK_SECONDS * rate))
        sizes = iter(lambda: int(np.exp(rng.uniform(0, np.log(longest)))), None)  # log-uniform
        return canonical(streaming_gen.generate(audio, rate, seed, chunk_samples=sizes))

    return {"offline": offline, f"streaming/{streaming_gen.chunk_frames}": streaming}


def _torch_runs(bundle: Bundle, checkpoint: Path, matrices: MfccMatrices,
                rng: np.random.Generator) -> dict[str, GenerateFn]:
    """model.step of the checkpoint on the bundle's features: one step, and random chunks."""
    import torch

    from export.bundle_writer import load_generator
    from export.parity import random_chunks

    manifest = bundle.manifest
    model, _ = load_generator(checkpoint)
    spec, config = manifest.generator, model.config
    if (config.lookahead_frames, config.noise_dim, model.state_size) != \
            (spec.lookahead_frames, spec.noise_dim, spec.state_size):
        raise ValidateError(
            f"--generator {checkpoint}: lookahead/noise/state sizes "
            f"{(config.lookahead_frames, config.noise_dim, model.state_size)} differ from the "
            f"bundle's {(spec.lookahead_frames, spec.noise_dim, spec.state_size)}; pass the "
            "checkpoint this bundle was exported from")
    lookahead, features = spec.lookahead_frames, manifest.features

    def run(audio: np.ndarray, seed: int, chunked: bool) -> tuple[np.ndarray, np.ndarray]:
        total = features.num_pose_frames(audio.size)
        inputs = extract_features(audio, features, matrices, total + lookahead)
        noise = frame_noise(seed, 0, inputs.shape[0], spec.noise_dim)
        chunks = random_chunks(inputs.shape[0], rng, 16) if chunked else [inputs.shape[0]]
        state = model.init_state(1)
        poses, saliency, first = [], [], 0
        with torch.no_grad():
            for size in chunks:
                p, s, state = model.step(torch.from_numpy(inputs[None, first:first + size]),
                                         torch.from_numpy(noise[None, first:first + size]), state)
                poses.append(p[0].numpy())
                saliency.append(s[0].numpy())
                first += size
        keep = slice(lookahead, lookahead + total)
        canonical = manifest.normalization.destandardize(np.concatenate(poses)[keep])
        return canonical, np.concatenate(saliency)[keep]

    return {"offline": lambda a, s: run(a, s, False),
            "streaming/random": lambda a, s: run(a, s, True)}


def _posesync_embed(bundle: Bundle, backend: str) -> tuple[EmbedFn, Any]:
    if backend == "onnxruntime-cpu":
        return posesync_embed_fn(bundle)
    spec = bundle.manifest.posesync
    if spec is None:
        raise ValidateError(f"{bundle.root}: the bundle has no posesync model; no PSD")
    if backend == "onnxruntime-gpu":
        from sdk.runners.onnxrt import (
            CPU_PROVIDER,
            CUDA_PROVIDER,
            OnnxRuntimeRunner,
            available_providers,
        )

        if CUDA_PROVIDER not in available_providers():
            raise ValidateError("--posesync-backend onnxruntime-gpu: onnxruntime has no "
                                f"{CUDA_PROVIDER} here (install onnxruntime-gpu)")
        return posesync_embed_fn(bundle, OnnxRuntimeRunner(
            bundle.path(spec.model.file), providers=(CUDA_PROVIDER, CPU_PROVIDER)))
    from sdk.runners.tensorrt import (
        RunnerError,
        TensorRTRunner,
        cuda_compute_capability,
        tensorrt_version,
    )

    try:
        engine, why = match_engine(bundle.manifest.engines, cuda_compute_capability(0),
                                   tensorrt_version(), model="posesync")
    except RunnerError as exc:
        raise ValidateError(f"--posesync-backend tensorrt cannot run here: {exc}") from exc
    if engine is None:
        raise ValidateError(f"--posesync-backend tensorrt: {why}")
    return posesync_embed_fn(bundle, TensorRTRunner(bundle.path(engine.file)))


# ---------------------------------------------------------------- comparison
def _compare(row: Row, out: _Output, ref: _Output | None, tol_psd: float, tol_kp: float
             ) -> None:
    """Fill ``row``'s differences from the reference run and name what is out of tolerance."""
    where = f"{row.backend} {row.mode} on {row.audio}"
    if ref is not None and not row.is_reference:
        if out.canonical.shape != ref.canonical.shape:
            row.failures.append(f"{where}: {out.canonical.shape[0]} frames, the reference "
                                f"has {ref.canonical.shape[0]}")
        else:
            diff = np.abs(out.canonical.astype(np.float64) - ref.canonical)
            row.keypoints_max_abs, row.keypoints_mean_abs = float(diff.max()), float(diff.mean())
            row.saliency_max_abs = float(np.max(np.abs(out.saliency - ref.saliency)))
            row.saliency_agreement = float(np.mean((out.saliency >= 0.5)
                                                   == (ref.saliency >= 0.5)))
            if not row.keypoints_max_abs <= tol_kp:  # NaN fails too
                row.failures.append(f"{where}: keypoints max abs {row.keypoints_max_abs:.3g} "
                                    f"> {tol_kp:.0e} (canonical units: shoulder widths)")
            if not row.saliency_max_abs <= tol_kp:
                row.failures.append(f"{where}: saliency max abs {row.saliency_max_abs:.3g} "
                                    f"> {tol_kp:.0e}")
    if not row.psd_rel_diff <= tol_psd:
        row.failures.append(f"{where}: PSD {row.psd:.5f} is {100 * row.psd_rel_diff:.3f}% from "
                            f"the reference {row.psd_reference:.5f} (tolerance "
                            f"{100 * tol_psd:.2g}%)")
    if row.offset != row.offset_reference and not row.offset_flat:
        row.failures.append(f"{where}: sync offset estimate {row.offset:+d} frames, the "
                            f"reference says {row.offset_reference:+d}")


def _row(audio: str, seed: int, backend: str, mode: str, precision: str, out: _Output,
         psd_ref: float, offset_ref: int, tol_psd: float) -> Row:
    sweep = out.scores.sweep
    at_ref = np.flatnonzero(sweep.offsets == offset_ref)
    flat = bool(at_ref.size and sweep.mean_distance[at_ref[0]] - sweep.min_distance
                <= tol_psd * sweep.min_distance)
    return Row(audio=audio, seed=seed, backend=backend, mode=mode, precision=precision,
               frames=int(out.canonical.shape[0]), psd=sweep.psd, psd_reference=psd_ref,
               psd_rel_diff=abs(sweep.psd - psd_ref) / abs(psd_ref) if psd_ref else np.inf,
               offset=sweep.best_offset, offset_reference=offset_ref,
               offset_flat=flat and sweep.best_offset != offset_ref,
               confidence=sweep.confidence)


# ---------------------------------------------------------------- the run
Runs = dict[str, tuple[dict[str, GenerateFn], str]]  # backend -> ({mode: run}, precision)


def _open_backends(bundle: Bundle, backends: list[str], generator_ckpt: Path | None,
                   matrices: MfccMatrices, rng: np.random.Generator, stack: ExitStack
                   ) -> tuple[Runs, dict[str, str]]:
    """Load every backend that can run here (closed by ``stack``); the rest, with why."""
    runs: Runs = {}
    skipped: dict[str, str] = {}
    for name in backends:
        if name == TORCH:
            if generator_ckpt is None:
                skipped[name] = "no --generator checkpoint given (the PyTorch reference)"
                continue
            try:
                runs[name] = (_torch_runs(bundle, generator_ckpt, matrices, rng), "fp32")
            except ImportError as exc:
                skipped[name] = f"torch is not installed ({exc}); pip install 'gesturert[train]'"
            continue
        try:
            generator, precision = _sdk_backend(bundle, name)
        except BackendError as exc:
            skipped[name] = str(exc)
            continue
        stack.enter_context(generator)
        if generator.backend_name in runs:
            skipped[name] = f"same as {generator.backend_name}, already run"
            continue
        frames_max = bundle.manifest.generator.frames_profile[2]  # TensorRT engines' limit
        chunk = int(rng.integers(2, max(3, min(MAX_STREAM_STEP_FRAMES, frames_max) + 1)))
        streaming = stack.enter_context(_sdk_backend(bundle, name, chunk_frames=chunk)[0])
        runs[generator.backend_name] = (_sdk_runs(generator, streaming, rng), precision)
    return runs, skipped


def _validate_audio(path: Path, seed: int, bundle: Bundle, matrices: MfccMatrices, runs: Runs,
                    embed: EmbedFn) -> list[Row]:
    """Rows of one audio file: every backend and mode, compared with the reference."""
    from export.bundle_writer import PSD_SEED, SPEECH_SAMPLE  # torch: not at CLI start

    manifest = bundle.manifest
    audio = load_audio(path, manifest.features.sample_rate)
    manifest_reference = manifest.psd_reference if (
        path.resolve() == SPEECH_SAMPLE.resolve() and seed == PSD_SEED) else None
    tolerances = manifest.psd_reference or PsdReference(value=float("nan"))  # defaults
    reference: _Output | None = None
    rows = []
    for backend, (modes, precision) in runs.items():
        for mode, generate in modes.items():
            canonical, saliency = generate(audio, seed)
            out = _Output(canonical, saliency,
                          frames_psd(manifest, matrices, embed, audio, canonical))
            reference = reference or out
            if manifest_reference is not None:
                psd_ref, offset_ref = manifest_reference.value, manifest_reference.offset
            else:
                psd_ref = reference.scores.sweep.psd
                offset_ref = reference.scores.sweep.best_offset
            tol_psd = float(getattr(tolerances, f"tolerance_{precision}"))
            row = _row(path.name, seed, backend, mode, precision, out, psd_ref, offset_ref,
                       tol_psd)
            row.is_reference = out is reference
            _compare(row, out, reference, tol_psd, KEYPOINT_TOLERANCE[precision])
            rows.append(row)
    return rows


def validate(bundle_path: Path, audio_paths: list[Path], backends: list[str],
             generator_ckpt: Path | None = None, posesync_backend: str = "onnxruntime-cpu",
             seed: int = 0) -> tuple[list[Row], dict[str, str]]:
    """Run the validation; returns the table rows and {backend: why skipped}.

    Raises:
        ValidateError / BundleError / AudioError: the inputs cannot be validated.
    """
    from export.bundle_writer import PSD_SEED, SPEECH_SAMPLE  # torch: not at CLI start

    bundle = load_bundle(bundle_path)
    manifest = bundle.manifest
    matrices = MfccMatrices.load(bundle.path(manifest.mfcc_matrices), manifest.features)
    rng = np.random.default_rng(seed)
    inputs = [(p, seed) for p in audio_paths]
    if manifest.psd_reference is not None and (SPEECH_SAMPLE.resolve(), PSD_SEED) not in \
            {(p.resolve(), s) for p, s in inputs}:  # the manifest's run, at its seed
        inputs.insert(0, (SPEECH_SAMPLE, PSD_SEED))
    with ExitStack() as stack:
        runs, skipped = _open_backends(bundle, backends, generator_ckpt, matrices, rng, stack)
        if not runs:
            raise ValidateError(f"no backend of {backends} can run here: {skipped}")
        embed, sync_runner = _posesync_embed(bundle, posesync_backend)
        stack.callback(sync_runner.deactivate)
        rows = [row for path, run_seed in inputs
                for row in _validate_audio(path, run_seed, bundle, matrices, runs, embed)]
    return rows, skipped


def pytorch_comparison(bundle: Path, audio: list[Path], generator_ckpt: Path,
                       backends: list[str] | None, seed: int, out: Path) -> int:
    """``gesturert validate --generator``: the rows of :func:`validate` with the checkpoint
    as the reference, printed and written to ``out``; returns the exit code (0, 1, 2)."""
    from train.checkpoint import CheckpointError

    names = [TORCH, *(backends or ["onnxruntime", "tensorrt"])]
    try:
        rows, skipped = validate(bundle, audio, names, generator_ckpt, seed=seed)
    except (ValidateError, BundleError, AudioError, CheckpointError, BackendError,
            ValueError) as exc:
        print(f"gesturert validate --generator: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print("PyTorch comparison (--generator):")
    print(format_table(rows))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    json_path, md_path = write_report(out, bundle, rows, skipped)
    print(f"wrote {json_path}, {md_path}")
    failures = [f for r in rows for f in r.failures]
    if failures:
        print(f"gesturert validate --generator: {len(failures)} check(s) out of tolerance:",
              file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return EXIT_OUT_OF_TOLERANCE
    return EXIT_OK
