"""Record a bundle's golden reference at the source, and derive its tolerances.

:func:`record_golden` runs the TRAINED PyTorch models (fp32, CPU) on the reference audio
and writes ``reference/audio.flac`` and ``reference/golden.npz`` (contents in
:mod:`sdk.golden`): ``librosa.feature.mfcc`` of the audio; the generator's feature frames
(``sdk.mfcc.extract_features`` with matrices computed by librosa here, as training made
them) through ``generator.step`` from a zero state with ``frame_noise(GOLDEN_SEED, ...)``,
the first L frames dropped; poses to pixels through the checkpoint's normalisation (the one
the export inputs carry, never a manifest's); PoseSyncNet's embeddings of the MFCC clips
and of the pose images (the checkpoint's imaging); the offset sweep (PSD, offset,
confidence). A generator with more than one gesture style runs in its default style, and
once more in the first other style (``other_style``, keypoints only).

:func:`derive_reference_tolerances` then measures how far the exported bundle lands from
it with the SDK's own validation (:func:`sdk.validate.run_checks` on onnxruntime-cpu), and
how far a copy whose weights are rounded to float16 lands, and turns both into the
manifest's tolerances (:func:`sdk.golden.derive_tolerances`).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from export.feature_matrices import compute_mfcc_matrices, librosa_mfcc
from sdk.audio import load_audio
from sdk.bundle import Manifest, ReferenceSpec, load_bundle, write_bundle_manifest
from sdk.features import FeatureConfig
from sdk.golden import (
    AUDIO_FILE,
    GOLDEN_FILE,
    SALIENCY_THRESHOLD,
    GoldenArrays,
    derivation_text,
    derive_tolerances,
)
from sdk.mfcc import extract_features
from sdk.noise import frame_noise
from sdk.normalization import PoseNormalization
from sdk.pose_image import ImagingConfig
from sdk.psd import (
    DEFAULT_MAX_OFFSET,
    PoseSyncClipConfig,
    audio_clips,
    pose_clips,
    sweep_embeddings,
)
from sdk.skeleton import MODEL_SKELETON
from sdk.validate import run_checks, worst_per_metric
from train.models.generator import SalientPostureGenerator
from train.models.posesync import PoseSyncNet

GOLDEN_SEED = 0  # noise seed of the golden run
REPO = Path(__file__).resolve().parents[1]


def _versions() -> dict[str, str]:
    out = {}
    for package in ("torch", "onnx", "onnxruntime", "librosa", "numpy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def code_revision() -> str:
    """Commit of the exporting code, ``+dirty`` with uncommitted edits to tracked files."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, text=True, capture_output=True, check=True,
                               timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty.strip() else "")


def record_golden(generator: SalientPostureGenerator, posesync: PoseSyncNet,
                  features: FeatureConfig, normalization: PoseNormalization,
                  imaging: ImagingConfig, audio_source: Path, out_dir: Path) -> ReferenceSpec:
    """Write ``reference/`` into ``out_dir`` from the trained models; returns its record
    (tolerances empty: :func:`derive_reference_tolerances` fills them).

    Args:
        generator, posesync: the trained models (eval mode is set here).
        features: the feature config both were trained on.
        normalization, imaging: the CHECKPOINTS' pose normalisation and imaging config.
        audio_source: the reference audio file (copied byte for byte).
    """
    generator.eval()
    posesync.eval()
    (out_dir / AUDIO_FILE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(audio_source, out_dir / AUDIO_FILE)
    audio = load_audio(out_dir / AUDIO_FILE, features.sample_rate)
    mfcc = librosa_mfcc(audio, features)  # (M, n_mfcc) the spec
    lookahead = generator.config.lookahead_frames
    frames = features.num_pose_frames(audio.size)
    inputs = extract_features(audio, features, compute_mfcc_matrices(features),
                              frames + lookahead)
    noise = frame_noise(GOLDEN_SEED, 0, inputs.shape[0], generator.config.noise_dim)
    with torch.no_grad():
        poses, saliency, _ = generator.step(torch.from_numpy(inputs[None]),
                                            torch.from_numpy(noise[None]),
                                            generator.init_state(1))
    canonical = normalization.destandardize(poses[0, lookahead:].numpy())  # (T, J, 2)
    keypoints_px = normalization.canonical_to_pixels(canonical)
    cfg = generator.config
    other_style = next((name for name in cfg.styles if name != cfg.default_style), "")
    style_px = None
    if other_style:
        with torch.no_grad():
            other, _, _ = generator.step(torch.from_numpy(inputs[None]),
                                         torch.from_numpy(noise[None]), generator.init_state(1),
                                         torch.tensor([cfg.styles.index(other_style)]))
        style_px = normalization.canonical_to_pixels(normalization.destandardize(
            other[0, lookahead:].numpy())).astype(np.float32)
    clip = PoseSyncClipConfig(posesync.config.clip_frames)
    n = clip.num_clips(frames, mfcc.shape[0], features)
    starts = np.arange(n)
    with torch.no_grad():
        audio_emb, pose_emb = posesync(
            torch.from_numpy(audio_clips(mfcc, starts, features, clip)),
            torch.from_numpy(pose_clips(canonical, starts, imaging, MODEL_SKELETON, clip)))
    max_offset = min(DEFAULT_MAX_OFFSET, (n - 1) // 2)
    sweep = sweep_embeddings(audio_emb.numpy(), pose_emb.numpy(), max_offset)
    GoldenArrays(mfcc=mfcc, keypoints_px=keypoints_px.astype(np.float32),
                 canonical=canonical.astype(np.float32),
                 saliency=saliency[0, lookahead:].numpy().astype(np.float32),
                 audio_emb=audio_emb.numpy().astype(np.float32),
                 pose_emb=pose_emb.numpy().astype(np.float32),
                 mean_distance=sweep.mean_distance,
                 style_keypoints_px=style_px).save(str(out_dir / GOLDEN_FILE))
    return ReferenceSpec(
        golden_file=GOLDEN_FILE, audio_file=AUDIO_FILE, noise_seed=GOLDEN_SEED,
        saliency_threshold=SALIENCY_THRESHOLD, psd=sweep.psd, offset=sweep.best_offset,
        confidence=sweep.confidence, max_offset=max_offset,
        provenance={"code_revision": code_revision(), "audio": audio_source.name,
                    "run": "PyTorch fp32 on the CPU, generator.step from a zero state; "
                           "librosa MFCC",
                    **_versions()},
        other_style=other_style)


def _round_weights_to_fp16(model_path: Path) -> None:
    """Every float32 initializer of the ONNX file rounded to float16 and back (in place)."""
    model = onnx.load(str(model_path))
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            rounded = numpy_helper.to_array(tensor).astype(np.float16).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(rounded, tensor.name))
    onnx.save(model, str(model_path))


def derive_reference_tolerances(out_dir: Path, manifest: Manifest) -> Manifest:
    """Measure the written bundle against its reference; returns ``manifest`` with the
    reference's ``measured`` deviations and ``tolerances`` (fp32, fp16) set.

    Writes ``manifest.json`` (without tolerances) to measure with the SDK; the caller
    writes the final one (and removes this one if anything fails).
    """
    assert manifest.reference is not None
    write_bundle_manifest(out_dir, manifest)
    checks, _ = run_checks(load_bundle(out_dir), ["onnxruntime-cpu"])
    measured32 = worst_per_metric(checks)
    with tempfile.TemporaryDirectory(prefix="gesturert-fp16-") as tmp:
        copy = Path(tmp) / "bundle"
        shutil.copytree(out_dir, copy)
        for spec in (manifest.generator.model, *(
                [manifest.posesync.model] if manifest.posesync else [])):
            _round_weights_to_fp16(copy / spec.file)
        write_bundle_manifest(copy, manifest)
        checks16, _ = run_checks(load_bundle(copy), ["onnxruntime-cpu"])
    measured16 = worst_per_metric(checks16)
    tolerance32 = derive_tolerances(measured32, "fp32")
    tolerances = {"fp32": tolerance32,
                  "fp16": derive_tolerances(measured16, "fp16", floor=tolerance32)}
    reference = dataclasses.replace(
        manifest.reference, tolerances=tolerances, derivation=derivation_text(),
        measured={"fp32": measured32, "fp16": measured16})
    return dataclasses.replace(manifest, reference=reference)
