"""The bundle manifest's schema: what export writes into manifest.json and serving reads.

Frozen dataclasses, each with ``to_dict`` / ``from_dict`` (JSON-able dicts). The manifest is
the single source of every value training used and serving needs; :mod:`sdk.bundle` writes
and verifies it on disk.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sdk.features import FeatureConfig
from sdk.normalization import PoseNormalization
from sdk.pose_range import PoseRange
from sdk.skeleton import Skeleton

FORMAT_VERSION = 1
IMPLICIT_STYLE = "default"
"""The one style of a bundle without styles (its model has no ``style`` input)."""
MANIFEST_NAME = "manifest.json"
MANIFEST_HASH_KEY = "manifest_sha256"
"""Key of the manifest's own checksum: :func:`manifest_digest` of the other keys."""


class BundleError(RuntimeError):
    """A bundle cannot be used: names the file and what to do."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. ``shape`` holds ints or axis names ("batch", "frames")."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), str(d["dtype"]), tuple(d["shape"]))


@dataclass(frozen=True)
class ModelSpec:
    """An ONNX model in the bundle and its I/O."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "opset": self.opset,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(
            str(d["file"]),
            tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            int(d["opset"]),
        )


@dataclass(frozen=True)
class GeneratorSpec:
    """The streaming step model (see docs/architecture.md, "The generator step contract").

    lookahead_frames: output delay L in pose frames (algorithmic latency ~ L + 1 frames).
    noise_dim: values of frame_noise per feature frame.
    state_size: S, floats of state per stream.
    chunk_frames: feature frames per step the runtime uses by default.
    batch_profile: (min, opt, max) streams per step that engines are built for.
    frames_profile: (min, opt, max) feature frames per step (Tc) that engines are built
        for; a TensorRT engine refuses a step with more than max frames.
    styles: gesture-style names the model was trained with (sorted; index i = the model's
        ``style`` input value i). () = a bundle from before styles: no ``style`` input,
        one implicit style named :data:`IMPLICIT_STYLE`.
    default_style: the style of a stream that names none ("" without styles).
    """

    model: ModelSpec
    lookahead_frames: int
    noise_dim: int
    state_size: int
    chunk_frames: int = 1
    batch_profile: tuple[int, int, int] = (1, 16, 256)
    frames_profile: tuple[int, int, int] = (1, 1, 64)
    styles: tuple[str, ...] = ()
    default_style: str = ""

    def __post_init__(self) -> None:
        if list(self.styles) != sorted(set(self.styles)) or not all(self.styles):
            raise ValueError(f"generator styles must be distinct non-empty names, sorted; "
                             f"got {list(self.styles)}")
        if (self.default_style not in self.styles) if self.styles else self.default_style:
            raise ValueError(f"generator default_style {self.default_style!r} is not one of "
                             f"the styles {list(self.styles)}")

    @property
    def style_names(self) -> tuple[str, ...]:
        """The styles a stream may ask for: ``styles``, or (IMPLICIT_STYLE,) without."""
        return self.styles or (IMPLICIT_STYLE,)

    @property
    def default_style_name(self) -> str:
        """The style of a stream that names none."""
        return self.default_style or IMPLICIT_STYLE

    def style_index(self, style: str | None) -> int:
        """The model's ``style`` input value for style ``style`` (None: the default).

        Raises ValueError naming the unknown style and listing the bundle's styles.
        """
        name = self.default_style_name if style is None else style
        if not isinstance(name, str) or name not in self.style_names:
            raise ValueError(f"unknown style {name!r}; this bundle's styles are "
                             f"{list(self.style_names)} (default {self.default_style_name!r})")
        return self.style_names.index(name)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["batch_profile"] = list(self.batch_profile)
        d["frames_profile"] = list(self.frames_profile)
        if self.styles:
            d["styles"] = list(self.styles)
        else:  # a style-less bundle's manifest stays as it was before styles
            del d["styles"], d["default_style"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeneratorSpec:
        return cls(
            ModelSpec.from_dict(d["model"]),
            int(d["lookahead_frames"]),
            int(d["noise_dim"]),
            int(d["state_size"]),
            int(d.get("chunk_frames", 1)),
            tuple(int(v) for v in d.get("batch_profile", (1, 16, 256))),  # type: ignore[arg-type]
            tuple(int(v) for v in d.get("frames_profile", (1, 1, 64))),  # type: ignore[arg-type]
            tuple(str(v) for v in d.get("styles", ())),
            str(d.get("default_style", "")),
        )


@dataclass(frozen=True)
class PoseSyncSpec:
    """PoseSyncNet: clip_frames pose frames <-> clip_mfcc_frames MFCC frames."""

    model: ModelSpec
    clip_frames: int
    clip_mfcc_frames: int
    embedding_dim: int

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PoseSyncSpec:
        return cls(
            ModelSpec.from_dict(d["model"]),
            int(d["clip_frames"]),
            int(d["clip_mfcc_frames"]),
            int(d["embedding_dim"]),
        )


@dataclass(frozen=True)
class PsdReference:
    """PSD the exported model reached at export time, and allowed relative deviations."""

    value: float
    offset: int = 0
    confidence: float = 0.0
    tolerance_fp32: float = 0.005  # relative: 0.5 %
    tolerance_fp16: float = 0.02  # relative: 2 %
    audio: str = ""  # what audio it was measured on

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PsdReference:
        return cls(**d)


@dataclass(frozen=True)
class ReferenceSpec:
    """The golden reference of a bundle: what the TRAINED PyTorch model computed at export.

    The arrays live in ``golden_file`` (an ``.npz`` listed with a checksum like every file;
    :mod:`sdk.golden` reads it); this record holds the scalars, the tolerances ``gesturert
    validate`` applies and how they were derived.

    Attributes:
        golden_file: bundle-relative path of the arrays (``reference/golden.npz``).
        audio_file: bundle-relative path of the reference audio (``reference/audio.flac``).
        noise_seed: seed of ``sdk.noise.frame_noise`` of the golden run.
        saliency_threshold: a frame is salient when its score is >= this.
        psd, offset, confidence: PoseSyncNet's verdict on the golden keypoints (PyTorch
            PoseSyncNet, librosa MFCC), offset in pose frames, sweep over ±``max_offset``.
        tolerances: precision ("fp32" | "fp16") -> metric -> largest allowed value (see
            :data:`sdk.golden.METRICS` for names and units).
        measured: precision -> metric -> the deviation measured at export that the
            tolerance was derived from (``derivation`` says how).
        derivation: one sentence: the rule that turned ``measured`` into ``tolerances``.
        provenance: code revision and library versions of the golden run.
        other_style: a gesture style other than the default whose offline keypoints the
            golden arrays also hold (``style_keypoints_px``), so validate checks a style
            row the default never reads; "" = none (one style, or from before styles).
    """

    golden_file: str
    audio_file: str
    noise_seed: int
    saliency_threshold: float
    psd: float
    offset: int
    confidence: float
    max_offset: int
    tolerances: dict[str, dict[str, float]] = field(default_factory=dict)
    measured: dict[str, dict[str, float]] = field(default_factory=dict)
    derivation: str = ""
    provenance: dict[str, str] = field(default_factory=dict)
    other_style: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not self.other_style:  # a style-less bundle's record stays as it was
            del d["other_style"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceSpec:
        return cls(
            golden_file=str(d["golden_file"]), audio_file=str(d["audio_file"]),
            noise_seed=int(d["noise_seed"]), saliency_threshold=float(d["saliency_threshold"]),
            psd=float(d["psd"]), offset=int(d["offset"]), confidence=float(d["confidence"]),
            max_offset=int(d["max_offset"]),
            tolerances={str(p): {str(k): float(v) for k, v in m.items()}
                        for p, m in d.get("tolerances", {}).items()},
            measured={str(p): {str(k): float(v) for k, v in m.items()}
                      for p, m in d.get("measured", {}).items()},
            derivation=str(d.get("derivation", "")),
            provenance={str(k): str(v) for k, v in d.get("provenance", {}).items()},
            other_style=str(d.get("other_style", "")),
        )


@dataclass(frozen=True)
class EngineRecord:
    """A TensorRT engine built for one GPU architecture and TensorRT version."""

    model: str  # "generator" | "posesync"
    file: str
    compute_capability: str  # e.g. "9.0"
    tensorrt_version: str
    precision: str  # "fp32" | "fp16"
    batch_profile: tuple[int, int, int]
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["batch_profile"] = list(self.batch_profile)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineRecord:
        d = dict(d)
        d["batch_profile"] = tuple(d["batch_profile"])
        return cls(**d)


STEP_PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class StepModelRecord:
    """A one-frame step model of the generator (``export/gemm_step.py``): the step contract
    with ``frames`` fixed to 1, each causal conv one matrix product. ONNX Runtime runs it
    in place of ``generator.model`` when a stream steps one frame at a time.

    file: the .onnx in the bundle. precision: "fp32" | "int8" (chosen like engine
    precisions: ``BackendConfig.precision``). state_layout: the layout of its (B, S) state
    (not the one of ``generator.model``: a state is only read by the model that wrote it).
    quantization: how an int8 model was made ("" for fp32). tolerances: what validation
    allows against the fp32 reference (keys as in ``measured``). measured: its deltas from
    the PyTorch / fp32 reference measured at export (keypoints in pixels, saliency, PSD).
    """

    file: str
    precision: str
    state_layout: str
    quantization: str = ""
    tolerances: dict[str, float] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in STEP_PRECISIONS:
            raise ValueError(f"step model {self.file}: precision must be one of "
                             f"{STEP_PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepModelRecord:
        return cls(str(d["file"]), str(d["precision"]), str(d["state_layout"]),
                   str(d.get("quantization", "")),
                   {str(k): float(v) for k, v in d.get("tolerances", {}).items()},
                   dict(d.get("measured", {})))


@dataclass(frozen=True)
class Manifest:
    """Everything serving needs to know, written once by export."""

    features: FeatureConfig
    skeleton: Skeleton
    normalization: PoseNormalization
    imaging: dict[str, Any]  # sdk.pose_image.ImagingConfig.to_dict()
    generator: GeneratorSpec
    posesync: PoseSyncSpec | None
    mfcc_matrices: str
    psd_reference: PsdReference | None = None
    reference: ReferenceSpec | None = None  # the golden reference (reference/), validate's
    engines: tuple[EngineRecord, ...] = ()
    step_models: tuple[StepModelRecord, ...] = ()  # optional one-frame step models
    pose_range: PoseRange | None = None  # the training poses' range (sdk.pose_range)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    training: dict[str, Any] = field(default_factory=dict)  # provenance, free-form
    format_version: int = FORMAT_VERSION
    sdk_version: str = ""
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        optional: dict[str, Any] = {}
        if self.step_models:
            optional["step_models"] = [m.to_dict() for m in self.step_models]
        if self.pose_range is not None:
            optional["pose_range"] = self.pose_range.to_dict()
        return {
            "format_version": self.format_version,
            "sdk_version": self.sdk_version,
            "created_at": self.created_at,
            "features": self.features.to_dict(),
            "feature_hash": self.features.config_hash(),
            "skeleton": self.skeleton.to_dict(),
            "normalization": self.normalization.to_dict(),
            "imaging": dict(self.imaging),
            "generator": self.generator.to_dict(),
            "posesync": None if self.posesync is None else self.posesync.to_dict(),
            "mfcc_matrices": self.mfcc_matrices,
            "psd_reference": None if self.psd_reference is None else self.psd_reference.to_dict(),
            "reference": None if self.reference is None else self.reference.to_dict(),
            "engines": [e.to_dict() for e in self.engines],
            "files": dict(sorted(self.files.items())),
            "training": self.training,
        } | optional  # keys absent when empty: older manifests stay as they were

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = MANIFEST_NAME) -> Manifest:
        version = d.get("format_version")
        if not isinstance(version, int):
            raise BundleError(f"{source}: no integer format_version; this is not a bundle manifest")
        if version > FORMAT_VERSION:
            raise BundleError(
                f"{source}: bundle format {version} is newer than this sdk understands "
                f"({FORMAT_VERSION}); upgrade gesturert or re-export the bundle with this version"
            )
        try:
            features = FeatureConfig.from_dict(d["features"])
            if d.get("feature_hash") not in (None, features.config_hash()):
                raise BundleError(
                    f"{source}: feature_hash {d['feature_hash']} does not match the feature "
                    f"config ({features.config_hash()}); the manifest was edited: re-export"
                )
            skeleton = Skeleton.from_dict(d["skeleton"])
            return cls(
                features=features,
                skeleton=skeleton,
                normalization=PoseNormalization.from_dict(d["normalization"]),
                imaging=dict(d["imaging"]),
                generator=GeneratorSpec.from_dict(d["generator"]),
                posesync=None if d.get("posesync") is None
                else PoseSyncSpec.from_dict(d["posesync"]),
                mfcc_matrices=str(d["mfcc_matrices"]),
                psd_reference=None if d.get("psd_reference") is None
                else PsdReference.from_dict(d["psd_reference"]),
                reference=None if d.get("reference") is None
                else ReferenceSpec.from_dict(d["reference"]),
                engines=tuple(EngineRecord.from_dict(e) for e in d.get("engines", [])),
                step_models=tuple(StepModelRecord.from_dict(m)
                                  for m in d.get("step_models", [])),
                pose_range=None if d.get("pose_range") is None
                else PoseRange.from_dict(d["pose_range"], skeleton),
                files=dict(d.get("files", {})),
                training=dict(d.get("training", {})),
                format_version=version,
                sdk_version=str(d.get("sdk_version", "")),
                created_at=str(d.get("created_at", "")),
            )
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{source}: malformed manifest ({exc!r}); re-export") from exc
