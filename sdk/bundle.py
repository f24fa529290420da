"""The bundle: the one artifact that travels from export to the runtime.

A directory (or a ``.tar`` of one) holding ``manifest.json``, the ONNX models, the MFCC
matrices and optional TensorRT engines. The manifest is the single source of every value
training used and serving needs; :func:`load_bundle` checks its format version and the
sha256 of every file it lists, and fails with a message naming the file and the mismatch.

``export`` builds a :class:`Manifest` and calls :func:`write_bundle_manifest`; the runtime
calls :func:`load_bundle`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdk.features import FeatureConfig
from sdk.normalization import PoseNormalization
from sdk.skeleton import Skeleton

FORMAT_VERSION = 1
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
    """

    model: ModelSpec
    lookahead_frames: int
    noise_dim: int
    state_size: int
    chunk_frames: int = 1
    batch_profile: tuple[int, int, int] = (1, 16, 256)
    frames_profile: tuple[int, int, int] = (1, 1, 64)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["batch_profile"] = list(self.batch_profile)
        d["frames_profile"] = list(self.frames_profile)
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
    engines: tuple[EngineRecord, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    training: dict[str, Any] = field(default_factory=dict)  # provenance, free-form
    format_version: int = FORMAT_VERSION
    sdk_version: str = ""
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
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
            "engines": [e.to_dict() for e in self.engines],
            "files": dict(sorted(self.files.items())),
            "training": self.training,
        }

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
            return cls(
                features=features,
                skeleton=Skeleton.from_dict(d["skeleton"]),
                normalization=PoseNormalization.from_dict(d["normalization"]),
                imaging=dict(d["imaging"]),
                generator=GeneratorSpec.from_dict(d["generator"]),
                posesync=None if d.get("posesync") is None
                else PoseSyncSpec.from_dict(d["posesync"]),
                mfcc_matrices=str(d["mfcc_matrices"]),
                psd_reference=None if d.get("psd_reference") is None
                else PsdReference.from_dict(d["psd_reference"]),
                engines=tuple(EngineRecord.from_dict(e) for e in d.get("engines", [])),
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


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_digest(data: dict[str, Any]) -> str:
    """Hex sha256 of a manifest dict without its ``manifest_sha256``: the canonical JSON
    (sorted keys, no whitespace), so it survives re-indenting but not an edited value."""
    body = {k: v for k, v in data.items() if k != MANIFEST_HASH_KEY}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def write_bundle_manifest(root: Path, manifest: Manifest) -> Manifest:
    """Hash every file under ``root`` (but the manifest) and write manifest.json atomically,
    with its own checksum under ``manifest_sha256`` (checked by :func:`load_bundle`).

    Returns the manifest as written (with ``files``, ``created_at`` and ``sdk_version`` set).
    """
    from sdk import __version__

    root = Path(root)
    files = {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
    manifest = dataclasses.replace(
        manifest,
        files=files,
        sdk_version=__version__,
        created_at=manifest.created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    data = manifest.to_dict()
    data[MANIFEST_HASH_KEY] = manifest_digest(data)
    text = json.dumps(data, indent=1)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, root / MANIFEST_NAME)
    return manifest


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk. ``root`` is the directory (a tar is unpacked first).

    ``unpacked_dir``: the temporary directory a ``.tar`` was unpacked into (None for a
    directory bundle). Whoever holds the Bundle removes it when done (a
    :class:`~sdk.streaming.StreamingGenerator` does when it is garbage-collected).
    """

    root: Path
    manifest: Manifest
    unpacked_dir: Path | None = None

    def path(self, relative: str) -> Path:
        return self.root / relative


def _unpack_tar(path: Path, target: Path) -> Path:
    """Unpack the tar at ``path`` into ``target``; returns the directory of its manifest."""
    try:
        with tarfile.open(path) as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{path}: cannot unpack the bundle tar ({exc})") from exc
    manifests = list(target.rglob(MANIFEST_NAME))
    if len(manifests) != 1:
        raise BundleError(
            f"{path}: expected one {MANIFEST_NAME} in the tar, found {len(manifests)}"
        )
    return manifests[0].parent


def load_bundle(path: str | os.PathLike[str], verify: bool = True) -> Bundle:
    """Open a bundle directory or .tar, check its format version and every file's sha256.

    A .tar is unpacked into a new temporary directory, ``Bundle.unpacked_dir``; the caller
    removes it when done (it is removed here when the bundle is refused).

    Raises:
        BundleError naming the file: missing manifest or listed file, checksum mismatch
        (of a listed file, or of the manifest itself when it carries ``manifest_sha256``),
        newer format, malformed manifest.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle (expected a directory or .tar)")
    if path.is_dir():
        return _load_directory(path, verify)
    unpacked = Path(tempfile.mkdtemp(prefix="gesturert-bundle-"))
    try:
        bundle = _load_directory(_unpack_tar(path, unpacked), verify)
    except BaseException:
        shutil.rmtree(unpacked, ignore_errors=True)  # a refused tar leaves nothing behind
        raise
    return dataclasses.replace(bundle, unpacked_dir=unpacked)


def _load_directory(root: Path, verify: bool) -> Bundle:
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{root}: no {MANIFEST_NAME}; this is not a gesturert bundle")
    try:
        data = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc}); re-export the bundle") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{manifest_path}: holds JSON {type(data).__name__}, not a manifest "
                          f"object; re-export the bundle")
    version = data.get("format_version")
    newer = isinstance(version, int) and version > FORMAT_VERSION  # from_dict says so
    if verify and not newer and MANIFEST_HASH_KEY in data \
            and data[MANIFEST_HASH_KEY] != manifest_digest(data):
        raise BundleError(
            f"{manifest_path}: its contents do not match its {MANIFEST_HASH_KEY}; the manifest "
            f"was edited after export (values in it would not match the models): re-export "
            f"the bundle, or rebuild engines with gesturert build-engine, which rewrites it"
        )
    manifest = Manifest.from_dict(data, source=str(manifest_path))
    required = {manifest.generator.model.file, manifest.mfcc_matrices}
    if manifest.posesync is not None:
        required.add(manifest.posesync.model.file)
    required.update(engine.file for engine in manifest.engines)  # an engine runs unverified else
    unlisted = sorted(required - set(manifest.files))
    if unlisted:
        raise BundleError(f"{manifest_path}: files {unlisted} are not listed with a checksum")
    if verify:
        for rel, expected in manifest.files.items():
            file = root / rel
            if not file.is_file():
                raise BundleError(f"{file}: listed in the manifest but missing; re-export")
            actual = sha256_file(file)
            if actual != expected:
                raise BundleError(
                    f"{file}: sha256 {actual[:12]}… does not match the manifest "
                    f"({expected[:12]}…); the file was changed or corrupted: re-export the bundle"
                )
    return Bundle(root=root, manifest=manifest)
