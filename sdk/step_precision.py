"""How far a bundle's one-frame step model is from its ``generator.onnx`` (SDK only).

A step model (``manifest.step_models``, export/gemm_step.py) replaces ``generator.onnx``
on onnxruntime-cpu when a stream steps one frame at a time; its fp32 version computes the
same function (differences ~1e-6), its int8 version (ONNX Runtime dynamic quantisation)
an approximation. :func:`measure_step_model` runs the same audio through the bundle's
:class:`~sdk.streaming.StreamingGenerator` twice -- the step model of one precision, and
``generator.onnx`` fp32 (the reference) -- and returns the deltas in the units
``gesturert validate`` uses:

* ``keypoints_max_abs`` / ``keypoints_mean_abs``: canonical units (neck-relative, 1 = the
  speaker's shoulder width, pixels / scale_px), over every frame and joint;
* ``saliency_max_abs``: saliency scores in [0, 1];
* ``psd`` / ``psd_reference`` / ``psd_relative``: PSD of each run (the bundle's
  PoseSyncNet, :func:`sdk.bundle_psd.frames_psd`) and their relative difference;
* ``offset`` / ``offset_reference``: the sync-offset estimates (pose frames).

:func:`check_step_model` compares such a measurement with the record's ``tolerances``
(the keys above, all "<=" limits; ``offset`` is checked as equal to the reference's
unless ``offset_frames`` gives a limit) and names each one exceeded. A validator calls
the two for every step model a bundle carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sdk.audio import load_audio
from sdk.bundle import Bundle, StepModelRecord, load_bundle
from sdk.bundle_psd import frames_psd, posesync_embed_fn
from sdk.mfcc import MfccMatrices
from sdk.runners.select import BackendConfig
from sdk.streaming import GeneratorConfig, StreamingGenerator

SPEECH_SAMPLE = Path(__file__).resolve().parent / "data" / "samples" / "speech_en.flac"
TOLERANCE_KEYS = ("keypoints_max_abs", "keypoints_mean_abs", "saliency_max_abs",
                  "psd_relative", "offset_frames")


def _run(bundle: Bundle, config: BackendConfig, audio: np.ndarray, seed: int,
         style: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Canonical poses (T, J, 2) float64, saliency (T,) and the backend's description, in
    gesture style ``style`` (None: the default)."""
    with StreamingGenerator(GeneratorConfig(bundle.root, config, chunk_frames=1,
                                            verify_bundle=False)) as gen:
        frames = gen.generate(audio, gen.manifest.features.sample_rate, seed, style=style)
        norm = gen.manifest.normalization
        return (norm.pixels_to_canonical(frames.keypoints).astype(np.float64),
                frames.saliency.astype(np.float64), gen.backend.describe())


def measure_step_model(bundle: str | Path | Bundle, precision: str,
                       audio: np.ndarray | None = None, seed: int = 0) -> dict[str, Any]:
    """Deltas of the bundle's ``precision`` step model from ``generator.onnx`` (see above).

    Args:
        bundle: a bundle (path or loaded); it must carry a step model of ``precision``.
        precision: "fp32" | "int8".
        audio: float32 (N,) mono at the bundle's rate; the shipped speech sample if None.
        seed: noise seed of both runs.
    Raises:
        BackendError: the bundle has no such step model, or onnxruntime is missing.
    """
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    manifest = loaded.manifest
    rate = manifest.features.sample_rate
    samples = load_audio(SPEECH_SAMPLE, rate) if audio is None else audio
    ref_kp, ref_sal, _ = _run(loaded, BackendConfig("onnxruntime-cpu", use_step_model=False),
                              samples, seed)
    kp, sal, backend = _run(loaded, BackendConfig("onnxruntime-cpu", precision=precision),
                            samples, seed)
    if precision not in backend:
        raise RuntimeError(f"expected the {precision} step model to run, got {backend}")
    diff = np.abs(kp - ref_kp)
    # every other gesture style too: a style row that differs between the models shows only
    # in that style's frames (the keypoints' max is over all styles, the mean the default's)
    others = [name for name in manifest.generator.styles
              if name != manifest.generator.default_style_name]
    by_style: dict[str, float] = {}
    for name in others:
        ref_other = _run(loaded, BackendConfig("onnxruntime-cpu", use_step_model=False),
                         samples, seed, name)[0]
        got_other = _run(loaded, BackendConfig("onnxruntime-cpu", precision=precision),
                         samples, seed, name)[0]
        by_style[name] = float(np.abs(got_other - ref_other).max())
    out: dict[str, Any] = {
        "precision": precision, "frames": int(kp.shape[0]), "seed": seed,
        "audio": "sdk/data/samples/speech_en.flac" if audio is None else "caller's audio",
        "keypoints_max_abs": max([float(diff.max()), *by_style.values()]),  # every style
        "keypoints_mean_abs": float(diff.mean()),
        "saliency_max_abs": float(np.abs(sal - ref_sal).max()),
    }
    if manifest.posesync is not None:
        matrices = MfccMatrices.load(loaded.path(manifest.mfcc_matrices), manifest.features)
        embed, runner = posesync_embed_fn(loaded)
        try:
            got = frames_psd(manifest, matrices, embed, samples, kp.astype(np.float32))
            ref = frames_psd(manifest, matrices, embed, samples, ref_kp.astype(np.float32))
        finally:
            runner.deactivate()
        out.update(psd=got.sweep.psd, psd_reference=ref.sweep.psd,
                   psd_relative=abs(got.sweep.psd - ref.sweep.psd) / abs(ref.sweep.psd),
                   offset=int(got.sweep.best_offset),
                   offset_reference=int(ref.sweep.best_offset))
    return out


def check_step_model(record: StepModelRecord, measured: dict[str, Any]) -> list[str]:
    """Each tolerance of ``record`` that ``measured`` exceeds, as a sentence ([] = within).

    A tolerance whose measurement is missing (PSD of a bundle without a PoseSyncNet) is
    skipped.
    """
    problems = []
    for key, limit in record.tolerances.items():
        if key == "offset_frames":
            if "offset" in measured and \
                    abs(measured["offset"] - measured["offset_reference"]) > limit:
                problems.append(f"{record.file}: sync offset {measured['offset']:+d} frames, "
                                f"the reference {measured['offset_reference']:+d} (tolerance "
                                f"{limit:g} frames)")
            continue
        if key not in measured:
            continue
        value = float(measured[key])
        if not value <= limit:  # NaN fails too
            problems.append(f"{record.file} ({record.precision}): {key} {value:.3g} > "
                            f"tolerance {limit:.3g}")
    return problems
