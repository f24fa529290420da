"""The bundle: the one artifact that travels from export to the runtime.

A directory (or a ``.tar`` of one) holding ``manifest.json``, the ONNX models, the MFCC
matrices and optional TensorRT engines. The manifest is the single source of every value
training used and serving needs; :func:`load_bundle` checks its format version and the
sha256 of every file it lists, and fails with a message naming the file and the mismatch.

``export`` builds a :class:`Manifest` and calls :func:`write_bundle_manifest`; the runtime
calls :func:`load_bundle`. The manifest's schema lives in :mod:`sdk.manifest`; its names
are importable from here too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdk.manifest import (
    FORMAT_VERSION,
    MANIFEST_HASH_KEY,
    MANIFEST_NAME,
    BundleError,
    EngineRecord,
    GeneratorSpec,
    Manifest,
    ModelSpec,
    PoseSyncSpec,
    PsdReference,
    ReferenceSpec,
    StepModelRecord,
    TensorSpec,
)
from sdk.version import __version__

__all__ = [
    "FORMAT_VERSION", "MANIFEST_HASH_KEY", "MANIFEST_NAME", "Bundle", "BundleError",
    "EngineRecord", "GeneratorSpec", "Manifest", "ModelSpec", "PoseSyncSpec", "PsdReference",
    "ReferenceSpec", "StepModelRecord", "TensorSpec", "load_bundle", "manifest_digest",
    "sha256_file",
    "write_bundle_manifest",
]


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
    if manifest.reference is not None:  # validation must not trust an unverified reference
        required.update((manifest.reference.golden_file, manifest.reference.audio_file))
    required.update(step.file for step in manifest.step_models)
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
