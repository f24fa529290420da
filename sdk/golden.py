"""A bundle's golden reference (``reference/``): what the trained model computed at export.

``gesturert export`` runs the TRAINED PyTorch models (fp32) on the bundle's reference
audio and stores their outputs here (export/golden.py writes them); ``gesturert
validate`` (:mod:`sdk.validate`) compares every backend of the deployment machine with
them, with numpy and the SDK alone. A backend is never compared with itself.

Files (both listed with a sha256 in the manifest, like every bundle file):

``reference/audio.flac``
    the reference audio, byte for byte the shipped speech sample
    (``sdk/data/samples/speech_en.flac``: 16 kHz mono 16-bit, lossless), read with
    :func:`sdk.audio.load_audio` at the model's rate.
``reference/golden.npz``
    ``mfcc``          (M, n_mfcc) float32 ``librosa.feature.mfcc`` of the audio with the
                      manifest's feature parameters (the spec; time-major);
    ``keypoints_px``  (T, J, 2) float32 pixels: the generator's one-step output from a zero
                      state with ``frame_noise(noise_seed, ...)``, first L frames dropped,
                      mapped to pixels through the CHECKPOINT's normalisation;
    ``canonical``     (T, J, 2) float32 the same poses in canonical units;
    ``saliency``      (T,) float32 saliency scores in [0, 1];
    ``audio_emb``     (n, E) float32 PoseSyncNet audio embeddings of the MFCC clips of
                      ``mfcc`` (every clip start that fits);
    ``pose_emb``      (n, E) float32 PoseSyncNet pose embeddings of the pose images of
                      ``canonical`` (the checkpoint's imaging config);
    ``mean_distance`` (2K+1,) float64 the offset sweep of those embeddings.
    ``style_keypoints_px`` (T, J, 2) float32, only when the manifest's reference names an
                      ``other_style``: ``keypoints_px`` in that gesture style instead of
                      the default (same audio, seed and run).

The scalars (PSD, offset, confidence, seed, threshold) and the tolerances live in the
manifest's ``reference`` record (:class:`sdk.manifest.ReferenceSpec`).

Tolerances: for each metric, export measures the deviation of ONNX Runtime CPU (fp32)
from the golden run on the same audio, and of the graph with weights rounded to float16
(fp16), and sets ``tolerance = max(factor x measured, floor)`` (:func:`derive_tolerances`,
factors and floors below). On the machine that exported it the pristine bundle therefore
clears every fp32 tolerance by ``TOLERANCE_FACTOR`` (or more, where the floor rules).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdk.bundle import Bundle, BundleError

REFERENCE_DIR = "reference"
GOLDEN_FILE = f"{REFERENCE_DIR}/golden.npz"
AUDIO_FILE = f"{REFERENCE_DIR}/audio.flac"
SALIENCY_THRESHOLD = 0.5  # a frame is salient when its score is >= this

# metric -> (unit, what it measures); every check of sdk.validate is one of these.
METRICS: dict[str, tuple[str, str]] = {
    "mfcc_max_abs": ("MFCC units", "max |Δ| of any coefficient of any frame vs librosa"),
    "keypoints_max_px": ("px", "max over frames and joints of the distance to the golden "
                               "keypoint"),
    "keypoints_p99_px": ("px", "99th percentile of the distances to the golden keypoints"),
    "saliency_max_abs": ("score", "max |Δ| of the saliency score"),
    "saliency_flips": ("frames", "frames whose salient/not decision differs from the golden "
                                 "one, among frames whose golden score is farther from the "
                                 "threshold than the saliency tolerance"),
    "embedding_max_abs": ("embedding units", "max |Δ| of a PoseSyncNet embedding on the "
                                             "golden clips"),
    "psd_rel": ("relative", "|PSD - golden PSD| / golden PSD"),
    "offset_frames": ("frames", "|best sync offset - golden offset| (a flat sweep agrees)"),
}
# A bundle's one-frame step models (manifest.step_models) against its generator.onnx, itself
# checked against the golden run; tolerances from each step model's record, not derived here.
STEP_METRICS: dict[str, tuple[str, str]] = {
    "step_keypoints_max_abs": ("shoulder widths", "max |Δ| of a canonical keypoint vs "
                                                  "generator.onnx"),
    "step_keypoints_mean_abs": ("shoulder widths", "mean |Δ| of the canonical keypoints vs "
                                                   "generator.onnx"),
    "step_saliency_max_abs": ("score", "max |Δ| of the saliency score vs generator.onnx"),
    "step_psd_relative": ("relative", "|PSD - PSD of generator.onnx| / PSD of generator.onnx"),
    "step_offset_frames": ("frames", "|best sync offset - that of generator.onnx|"),
}
TOLERANCE_FACTOR = {"fp32": 100.0, "fp16": 10.0}  # x the deviation measured at export
# Smallest tolerances: float32 resolution of the values compared (pixels near 1000 are
# resolved to 6e-5 px, MFCC c0 near -500 to 3e-5), so a bundle whose measured deviation
# happens to be 0 is not held to bit-exactness on another CPU.
TOLERANCE_FLOOR = {
    "mfcc_max_abs": 1e-3,
    "keypoints_max_px": 1e-3,
    "keypoints_p99_px": 1e-3,
    "saliency_max_abs": 1e-5,
    "saliency_flips": 0.0,
    "embedding_max_abs": 1e-5,
    "psd_rel": 1e-5,
    "offset_frames": 0.0,
}
EXACT_METRICS = ("saliency_flips", "offset_frames")  # tolerance stays 0: decisions agree


def derive_tolerances(measured: dict[str, float], precision: str,
                      floor: dict[str, float] | None = None) -> dict[str, float]:
    """``max(TOLERANCE_FACTOR[precision] x measured, floor)`` per metric; 0 for decisions.

    Args:
        measured: metric -> the worst deviation measured at export (keys of METRICS).
        precision: "fp32" | "fp16".
        floor: per-metric lower bounds (default TOLERANCE_FLOOR; fp16 passes the fp32
            tolerances, so fp16 is never stricter than fp32).
    """
    floors = TOLERANCE_FLOOR if floor is None else floor
    factor = TOLERANCE_FACTOR[precision]
    return {m: 0.0 if m in EXACT_METRICS else max(factor * measured.get(m, 0.0), floors[m])
            for m in METRICS}


def derivation_text() -> str:
    """The rule of :func:`derive_tolerances` as one sentence (recorded in the manifest)."""
    return (f"fp32: max({TOLERANCE_FACTOR['fp32']:g} x the deviation of onnxruntime-cpu from "
            f"the golden PyTorch run measured at export, floor); fp16: max("
            f"{TOLERANCE_FACTOR['fp16']:g} x the deviation of the graph with float16-rounded "
            f"weights (onnxruntime-cpu), the fp32 tolerance) -- activations in float16 were "
            f"not measured; saliency_flips and offset_frames: 0; floors "
            + ", ".join(f"{k} {v:g}" for k, v in TOLERANCE_FLOOR.items() if v))


@dataclass(frozen=True)
class GoldenArrays:
    """The arrays of ``reference/golden.npz`` (shapes and units in the module docstring)."""

    mfcc: np.ndarray
    keypoints_px: np.ndarray
    canonical: np.ndarray
    saliency: np.ndarray
    audio_emb: np.ndarray
    pose_emb: np.ndarray
    mean_distance: np.ndarray
    style_keypoints_px: np.ndarray | None = None

    def save(self, path: str) -> None:
        arrays: dict[str, np.ndarray] = {k: getattr(self, k) for k in GOLDEN_KEYS}
        if self.style_keypoints_px is not None:
            arrays[STYLE_KEY] = self.style_keypoints_px
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, bundle: Bundle) -> GoldenArrays:
        """The bundle's golden arrays, checked against each other and the manifest.

        Raises:
            BundleError: no reference, an array missing, or shapes that do not fit the
            manifest (joints, embedding size, frame counts).
        """
        spec = bundle.manifest.reference
        if spec is None:
            raise BundleError(
                f"{bundle.root}: the bundle has no golden reference (reference/), so nothing "
                "to validate against; re-export it with this version of gesturert export")
        path = bundle.path(spec.golden_file)
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in GOLDEN_KEYS if k not in data.files]
                if missing:
                    raise BundleError(f"{path}: arrays {missing} missing; re-export the bundle")
                if spec.other_style and STYLE_KEY not in data.files:
                    raise BundleError(f"{path}: {STYLE_KEY} missing although the manifest "
                                      f"names other_style {spec.other_style!r}; re-export")
                golden = cls(**{k: np.asarray(data[k]) for k in GOLDEN_KEYS},
                             style_keypoints_px=np.asarray(data[STYLE_KEY])
                             if spec.other_style else None)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: cannot read the golden reference ({exc})") from exc
        golden._check(bundle, str(path))
        return golden

    def _check(self, bundle: Bundle, where: str) -> None:
        manifest = bundle.manifest
        joints = manifest.normalization.num_joints
        frames = self.keypoints_px.shape[0]
        expected = {
            "mfcc": (None, manifest.features.n_mfcc),
            "keypoints_px": (frames, joints, 2), "canonical": (frames, joints, 2),
            "saliency": (frames,),
        }
        if self.style_keypoints_px is not None:
            expected[STYLE_KEY] = (frames, joints, 2)
        if manifest.posesync is not None:
            n, dim = self.audio_emb.shape[0], manifest.posesync.embedding_dim
            expected.update(audio_emb=(n, dim), pose_emb=(n, dim))
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if len(got) != len(shape) or any(s is not None and s != g
                                              for s, g in zip(shape, got, strict=True)):
                raise BundleError(f"{where}: {name} has shape {got}, the manifest implies "
                                  f"{shape}; the reference belongs to another model: re-export")


GOLDEN_KEYS = ("mfcc", "keypoints_px", "canonical", "saliency", "audio_emb", "pose_emb",
               "mean_distance")
STYLE_KEY = "style_keypoints_px"  # optional: the reference's other_style
