"""``gesturert export``: trained checkpoints -> a validated bundle directory.

Steps (docs/architecture.md, "The bundle"):

1. load both checkpoints (kind and feature config checked; both must share the features);
2. export ``generator.onnx`` (the streaming step) and ``posesync.onnx``, each through
   ``onnx.checker`` with full shape inference;
3. write ``mfcc_matrices.npz`` for the feature config (the runtime needs no librosa);
4. validate numerically (export/parity.py): ONNX Runtime vs PyTorch on random inputs and
   on the shipped speech sample, single step and streaming, max abs <= 1e-4;
5. measure the PSD reference on the shipped speech sample with the *exported* models;
6. record the golden reference under ``reference/`` with the *trained PyTorch* models
   (export/golden.py, contents in sdk/golden.py) and derive validation tolerances from
   how far onnxruntime-cpu lands from it;
7. write ``manifest.json`` **last**: an export that fails anywhere leaves no manifest, so
   a half-written directory is never mistaken for a bundle.

No machine paths go into a bundle: a checkpoint is recorded by file name, sha256 and step.

The PSD reference (what ``gesturert validate`` compares a backend against): features of
``sdk/data/samples/speech_en.flac`` via ``sdk.mfcc.extract_features`` for
``num_pose_frames(N) + L`` frames, noise ``frame_noise(PSD_SEED, 0, T, noise_dim)``, one
generator step from a zero state in ONNX Runtime, the first L outputs dropped, poses
destandardised to canonical units, then ``sdk.psd.offset_sweep`` with the ORT PoseSyncNet.
"""

from __future__ import annotations

import json
import shutil
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from export.feature_matrices import compute_mfcc_matrices
from export.gemm_step import STEP_FILE, STEP_INT8_FILE
from export.golden import derive_reference_tolerances, record_golden
from export.onnx_export import DEFAULT_OPSET, export_generator, export_posesync
from export.parity import generator_parity, posesync_parity
from export.trt_ops import check_model
from sdk.bundle import (
    MANIFEST_NAME,
    GeneratorSpec,
    Manifest,
    PoseSyncSpec,
    PsdReference,
    sha256_file,
    write_bundle_manifest,
)
from sdk.features import FeatureConfig
from sdk.golden import REFERENCE_DIR
from sdk.normalization import PoseNormalization
from sdk.pose_image import ImagingConfig
from sdk.pose_range import PoseRange
from sdk.runners.base import MFCC_CLIPS, POSE_IMAGES
from sdk.skeleton import MODEL_SKELETON
from train.checkpoint import (
    Checkpoint,
    CheckpointError,
    build_model,
    load_checkpoint,
    load_weights,
)
from train.config import config_from_dict
from train.models.generator import SalientPostureGenerator
from train.models.posesync import PoseSyncConfig, PoseSyncNet

GENERATOR_FILE = "generator.onnx"
POSESYNC_FILE = "posesync.onnx"
MFCC_FILE = "mfcc_matrices.npz"
ENGINES_DIR = "engines"
BUNDLE_ENTRIES = (MANIFEST_NAME, GENERATOR_FILE, POSESYNC_FILE, MFCC_FILE, ENGINES_DIR,
                  REFERENCE_DIR, STEP_FILE, STEP_INT8_FILE)
SPEECH_SAMPLE = Path(__file__).resolve().parents[1] / "sdk" / "data" / "samples" / "speech_en.flac"
PSD_SEED = 0  # noise seed of the PSD reference run
MAX_STEP_FRAMES = 64  # frames per step TensorRT engines accept (4.3 s of catch-up at 15 fps)
PARITY_SEED = 0


class ExportError(RuntimeError):
    """The bundle could not be written; says what to change."""


@dataclass(frozen=True)
class ExportInputs:
    """Everything the bundle is made from, loaded and cross-checked."""

    generator: SalientPostureGenerator
    posesync: PoseSyncNet
    features: FeatureConfig
    normalization: PoseNormalization
    imaging: ImagingConfig
    provenance: dict[str, Any]
    pose_range: PoseRange | None = None  # the training poses' range (export --corpus)


def _provenance(checkpoint: Checkpoint) -> dict[str, Any]:
    """What a model came from, as plain JSON (odd values in ``extra`` become strings): the
    checkpoint's file name and sha256, never its path on the exporting machine."""
    extra = json.loads(json.dumps(checkpoint.extra, default=str))
    path = Path(checkpoint.path)
    return {"file": path.name, "sha256": sha256_file(path), "step": checkpoint.step,
            "extra": extra}


def load_generator(path: str | Path) -> tuple[SalientPostureGenerator, Checkpoint]:
    """The generator of a ``generator`` checkpoint, eval mode (CheckpointError otherwise)."""
    checkpoint = load_checkpoint(path, "generator")
    model = build_model("generator", checkpoint.model_config)
    if not isinstance(model, SalientPostureGenerator):
        raise CheckpointError(f"{path}: expected a SalientPostureGenerator, got {type(model)}")
    load_weights(model, checkpoint, path, "the generator")
    return model.eval(), checkpoint


def load_posesync(path: str | Path, features: FeatureConfig
                  ) -> tuple[PoseSyncNet, ImagingConfig, Checkpoint]:
    """PoseSyncNet of a ``posesync`` checkpoint trained on ``features``, and its imaging."""
    checkpoint = load_checkpoint(path, "posesync", expected_features=features)
    try:
        config = config_from_dict(PoseSyncConfig, checkpoint.model_config, "model")
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    model = PoseSyncNet(config, checkpoint.features)
    load_weights(model, checkpoint, path, "the PoseSyncNet")
    return model.eval(), config.imaging, checkpoint


def load_export_inputs(generator_ckpt: str | Path, posesync_ckpt: str | Path,
                       corpus: str | Path | None = None) -> ExportInputs:
    """Load both checkpoints; CheckpointError for a missing file, wrong kind or features.
    With ``corpus`` (the one the generator was trained on) also the training poses' range
    (:func:`train.robustness.trained_pose_range`); ExportError for another corpus."""
    generator, gen_ckpt = load_generator(generator_ckpt)
    if gen_ckpt.normalization is None:
        raise CheckpointError(f"checkpoint {generator_ckpt}: no pose normalisation stored; "
                              "the runtime cannot turn standardised poses into pixels")
    posesync, imaging, sync_ckpt = load_posesync(posesync_ckpt, gen_ckpt.features)
    pose_range = None
    if corpus is not None:
        from train.robustness import trained_pose_range

        try:
            pose_range = trained_pose_range(corpus, gen_ckpt.normalization,
                                            float(gen_ckpt.config["data"]["val_fraction"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ExportError(f"--corpus: {exc}") from exc
    return ExportInputs(generator, posesync, gen_ckpt.features, gen_ckpt.normalization, imaging,
                        {"generator": _provenance(gen_ckpt), "posesync": _provenance(sync_ckpt)},
                        pose_range)


def _prepare_directory(out_dir: Path, overwrite: bool) -> None:
    """Create ``out_dir``; an existing bundle is removed (manifest first) only if allowed."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a directory; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    present = sorted(p.name for p in out_dir.iterdir())
    if not present:
        return
    foreign = [name for name in present if name not in BUNDLE_ENTRIES]
    if not overwrite or foreign:
        what = f"holds files that are not bundle files: {foreign}" if foreign else "is not empty"
        raise ExportError(f"{out_dir} {what}; export into a new or empty directory"
                          + ("" if foreign else " or pass --overwrite to replace the bundle"))
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # no longer a bundle from here on
    for name in present:
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def speech_inputs(features: FeatureConfig, extra_frames: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped speech sample as model inputs.

    Returns:
        mfcc (M, n_mfcc) float32 time-major, feature frames (K + extra_frames, feature_dim)
        float32 where K = num_pose_frames(N), and the MFCC clips (n, n_mfcc, clip) of
        PoseSyncNet for every clip start that fits.
    """
    from sdk.audio import load_audio
    from sdk.mfcc import extract_features, mfcc_offline
    from sdk.psd import DEFAULT_CLIP, audio_clips

    matrices = compute_mfcc_matrices(features)
    audio = load_audio(SPEECH_SAMPLE, features.sample_rate)
    frames = features.num_pose_frames(len(audio)) + extra_frames
    feature_frames = extract_features(audio, features, matrices, frames)
    mfcc = mfcc_offline(audio, features, matrices)
    clips = audio_clips(mfcc, range(DEFAULT_CLIP.num_clips(frames, mfcc.shape[0], features)),
                        features)
    return mfcc, feature_frames, clips


def measure_psd_reference(generator_onnx: Path, posesync_onnx: Path, inputs: ExportInputs,
                          lookahead: int) -> PsdReference:
    """PSD of the exported models on the speech sample (see the module docstring)."""
    import onnxruntime as ort

    from sdk.noise import frame_noise
    from sdk.psd import offset_sweep

    config = inputs.generator.config
    mfcc, features, _ = speech_inputs(inputs.features, lookahead)
    generator = ort.InferenceSession(str(generator_onnx), providers=["CPUExecutionProvider"])
    style = np.array([inputs.generator.default_style_index], np.int32)  # the default style
    poses, _, _ = generator.run(None, {
        "features": features[None],
        "noise": frame_noise(PSD_SEED, 0, features.shape[0], config.noise_dim)[None],
        "state": np.zeros((1, inputs.generator.state_size), np.float32)}
        | ({"style": style} if config.styles else {}))
    canonical = inputs.normalization.destandardize(poses[0, lookahead:])
    posesync = ort.InferenceSession(str(posesync_onnx), providers=["CPUExecutionProvider"])

    def embed(mfcc_clips: np.ndarray, pose_clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        audio_emb, pose_emb = posesync.run(None, {MFCC_CLIPS: mfcc_clips, POSE_IMAGES: pose_clips})
        return audio_emb, pose_emb

    sweep = offset_sweep(embed, mfcc, canonical, features=inputs.features,
                         imaging=inputs.imaging)
    return PsdReference(value=sweep.psd, offset=sweep.best_offset, confidence=sweep.confidence,
                        audio=f"sdk/data/samples/{SPEECH_SAMPLE.name}, noise seed {PSD_SEED}, "
                        "onnxruntime CPU")


def write_bundle(inputs: ExportInputs, out_dir: str | Path, lookahead_frames: int | None = None,
                 opset: int = DEFAULT_OPSET, chunk_frames: int = 1,
                 batch_profile: tuple[int, int, int] = (1, 16, 256), overwrite: bool = False,
                 progress: bool = True) -> Manifest:
    """Export, validate and write a bundle from loaded models; returns the manifest written.

    Raises:
        ExportError: bad arguments or directory; OnnxExportError, ParityError from the steps
        (no manifest is written then).
    """
    trained = inputs.generator.config.lookahead_frames
    if lookahead_frames is not None and lookahead_frames != trained:
        raise ExportError(
            f"--lookahead-frames {lookahead_frames} differs from the generator's trained "
            f"lookahead ({trained} frames). The output delay is learned, not a runtime knob: "
            f"omit the option or pass {trained}, or train a model with the lookahead you need."
        )
    if chunk_frames < 1:
        raise ExportError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if not 1 <= batch_profile[0] <= batch_profile[1] <= batch_profile[2]:
        raise ExportError(f"batch profile must be 1 <= min <= opt <= max, got {batch_profile}")
    out = Path(out_dir)
    _prepare_directory(out, overwrite)
    with tqdm(total=6, desc="export", unit="step", disable=not progress) as steps:
        steps.set_postfix_str("generator.onnx")
        generator_spec = export_generator(inputs.generator, out / GENERATOR_FILE, opset)
        steps.update()
        steps.set_postfix_str("posesync.onnx")
        posesync_spec = export_posesync(inputs.posesync, out / POSESYNC_FILE, opset)
        compute_mfcc_matrices(inputs.features).save(out / MFCC_FILE)
        steps.update()
        steps.set_postfix_str("parity")
        _, speech_features, speech_clips = speech_inputs(inputs.features, trained)
        gen_parity = generator_parity(inputs.generator, out / GENERATOR_FILE, speech_features,
                                      seed=PARITY_SEED)
        sync_parity = posesync_parity(inputs.posesync, out / POSESYNC_FILE, speech_clips,
                                      seed=PARITY_SEED)
        steps.update()
        steps.set_postfix_str("PSD reference")
        psd_reference = measure_psd_reference(out / GENERATOR_FILE, out / POSESYNC_FILE,
                                              inputs, trained)
        steps.update()
        steps.set_postfix_str("golden reference")
        reference = record_golden(inputs.generator, inputs.posesync, inputs.features,
                                  inputs.normalization, inputs.imaging, SPEECH_SAMPLE, out)
        steps.update()
        trt = [check_model(out / f, name=f) for f in (GENERATOR_FILE, POSESYNC_FILE)]
        config = inputs.generator.config
        manifest = Manifest(
            features=inputs.features,
            skeleton=MODEL_SKELETON,
            normalization=inputs.normalization,
            imaging=inputs.imaging.to_dict(),
            generator=GeneratorSpec(generator_spec, trained, config.noise_dim,
                                    inputs.generator.state_size, chunk_frames, batch_profile,
                                    (1, chunk_frames, max(MAX_STEP_FRAMES, chunk_frames)),
                                    config.styles, config.default_style),
            posesync=PoseSyncSpec(posesync_spec, inputs.posesync.config.clip_frames,
                                  inputs.posesync.mfcc_shape[1],
                                  inputs.posesync.config.embedding_dim),
            mfcc_matrices=MFCC_FILE,
            psd_reference=psd_reference,
            reference=reference,
            pose_range=inputs.pose_range,
            training={
                "checkpoints": inputs.provenance,
                "parity": {"generator": gen_parity.to_dict(),
                           "posesync": sync_parity.to_dict()},
                "tensorrt_check": {r.model: [str(i) for i in r.issues] for r in trt},
            },
        )
        steps.set_postfix_str("tolerances")
        try:
            manifest = derive_reference_tolerances(out, manifest)
            written = write_bundle_manifest(out, manifest)
        except BaseException:
            with suppress(OSError):  # the measuring manifest must not outlive a failure
                (out / MANIFEST_NAME).unlink()
            raise
        steps.update()
    return written


def export_bundle(generator_ckpt: str | Path, posesync_ckpt: str | Path, out_dir: str | Path,
                  lookahead_frames: int | None = None, opset: int = DEFAULT_OPSET,
                  corpus: str | Path | None = None, **options: Any) -> Manifest:
    """Checkpoints -> bundle (see :func:`write_bundle` for ``options``); with ``corpus``
    (the generator's training corpus) the bundle carries its training poses' range."""
    inputs = load_export_inputs(generator_ckpt, posesync_ckpt, corpus)
    return write_bundle(inputs, out_dir, lookahead_frames, opset, **options)
