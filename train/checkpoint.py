"""Checkpoints: one ``torch.save`` dict per file, written atomically.

A checkpoint holds everything export and resume need, and nothing they must re-derive::

    format_version  int
    kind            "generator" | "posesync" | "fgd"
    config          the full training config as plain data (model config under "model")
    model           state dict (weights and buffers, incl. feature normalisation)
    optimizer       optimizer state dict, or None
    step            optimizer steps done
    rng             RNG states (torch, cuda, numpy, python), or None
    features        sdk FeatureConfig dict
    features_hash   FeatureConfig.config_hash()
    normalization   sdk PoseNormalization dict, or None
    extra           free-form plain data (e.g. final metrics)

Files are written to a temporary file in the same directory and moved into place with
``os.replace``, so a crash mid-write never leaves a truncated checkpoint behind. A process
killed mid-write leaves its partial temporary file (``.NAME.*.tmp``); the next successful
save of the same checkpoint removes it (one writer per checkpoint path, as with DDP rank 0).
"""

from __future__ import annotations

import importlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdk.features import FeatureConfig
from sdk.normalization import PoseNormalization
from train.config import config_from_dict

CHECKPOINT_FORMAT = 1

#: kind -> (module, model class, model-config class). Imported lazily by load_model.
MODEL_KINDS: dict[str, tuple[str, str, str]] = {
    "generator": ("train.models.generator", "SalientPostureGenerator", "GeneratorConfig"),
    "posesync": ("train.models.posesync", "PoseSyncNet", "PoseSyncConfig"),
    "fgd": ("train.models.fgd", "PoseAutoencoder", "FGDConfig"),
}


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of the wrong kind or built for other features."""


@dataclass
class Checkpoint:
    """A loaded checkpoint (see the module docstring for the fields)."""

    path: Path
    kind: str
    config: dict[str, Any]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    step: int
    rng: dict[str, Any] | None
    features: FeatureConfig
    normalization: PoseNormalization | None
    extra: dict[str, Any]

    @property
    def model_config(self) -> dict[str, Any]:
        """The ``model`` section of the training config."""
        section = self.config.get("model", {})
        return section if isinstance(section, dict) else {}


def save_checkpoint(path: str | Path, *, kind: str, config: dict[str, Any],
                    model: nn.Module, features: FeatureConfig,
                    normalization: PoseNormalization | None = None,
                    optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                    rng: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically; returns its path.

    ``model`` may be wrapped in DistributedDataParallel: the inner module's weights are
    stored, so the checkpoint loads without DDP.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    payload = {
        "format_version": CHECKPOINT_FORMAT,
        "kind": kind,
        "config": config,
        "model": {k: v.detach().cpu() for k, v in inner.state_dict().items()},
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "step": int(step),
        "rng": rng,
        "features": features.to_dict(),
        "features_hash": features.config_hash(),
        "normalization": None if normalization is None else normalization.to_dict(),
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by writers killed mid-write
        stale.unlink(missing_ok=True)
    return path


def _damaged_member(path: Path) -> str | None:
    """The first member of a zip-format checkpoint whose CRC-32 does not match, else None.

    torch.load does not check the CRCs torch.save writes, so a flipped bit in a weight
    would load silently; this reads the file once more to check them.
    """
    if not zipfile.is_zipfile(path):
        return None  # torch.load reports what is wrong with it
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # zlib/zip structure errors
        return f"its zip structure ({exc})"


def load_checkpoint(path: str | Path, expected_kind: str | None = None,
                    expected_features: FeatureConfig | None = None) -> Checkpoint:
    """Read a checkpoint onto the CPU and check it.

    Args:
        path: checkpoint file.
        expected_kind: fail unless the checkpoint is of this kind.
        expected_features: fail unless the checkpoint was trained on these features.
    Raises:
        CheckpointError: missing, unreadable or corrupt file (zip CRC mismatch), wrong
            kind, feature mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with "
                              f"`gesturert train {expected_kind or '<kind>'} --out DIR`")
    damaged = _damaged_member(path)
    if damaged is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: {damaged} fails its CRC check "
                              f"(a disk or copy error); use an earlier copy or retrain")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} could not be read ({exc})") from exc
    if not isinstance(data, dict) or "kind" not in data or "format_version" not in data:
        raise CheckpointError(f"{path} is not a gesturert checkpoint (no kind/format_version)")
    if data["format_version"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {data['format_version']}, this "
                              f"version reads format {CHECKPOINT_FORMAT}")
    if expected_kind is not None and data["kind"] != expected_kind:
        raise CheckpointError(f"checkpoint {path} holds a {data['kind']!r} model, expected "
                              f"{expected_kind!r}")
    try:
        features = FeatureConfig.from_dict(data["features"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has a malformed feature config: {exc}") from exc
    if features.config_hash() != data.get("features_hash"):
        raise CheckpointError(f"checkpoint {path}: stored feature hash {data.get('features_hash')}"
                              f" does not match its feature config ({features.config_hash()})")
    if expected_features is not None and expected_features.config_hash() != features.config_hash():
        raise CheckpointError(
            f"checkpoint {path} was trained with features {features.config_hash()} "
            f"({features.to_dict()}), but {expected_features.config_hash()} "
            f"({expected_features.to_dict()}) were expected; retrain or use matching features")
    normalization = None
    if data.get("normalization") is not None:
        normalization = PoseNormalization.from_dict(data["normalization"])
    return Checkpoint(path=path, kind=data["kind"], config=data["config"], model=data["model"],
                      optimizer=data.get("optimizer"), step=int(data["step"]),
                      rng=data.get("rng"), features=features, normalization=normalization,
                      extra=data.get("extra") or {})


def build_model(kind: str, model_config: dict[str, Any]) -> nn.Module:
    """A fresh model of ``kind`` from the plain-data ``model`` config section."""
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    module_name, model_name, config_name = MODEL_KINDS[kind]
    module = importlib.import_module(module_name)
    config = config_from_dict(getattr(module, config_name), model_config, "model")
    model: nn.Module = getattr(module, model_name)(config)
    return model


def load_model(path: str | Path, kind: str,
               expected_features: FeatureConfig | None = None) -> nn.Module:
    """The trained model of ``kind`` in eval mode on the CPU, rebuilt from its checkpoint."""
    checkpoint = load_checkpoint(path, kind, expected_features)
    model = build_model(kind, checkpoint.model_config)
    load_weights(model, checkpoint, path, f"the {kind} model")
    return model.eval()


def load_weights(model: nn.Module, checkpoint: Checkpoint, path: str | Path, what: str
                 ) -> None:
    """Load ``checkpoint``'s weights into ``model`` (``what``, e.g. "the PoseSyncNet", names
    it in the error). Raises CheckpointError when they do not fit."""
    try:
        model.load_state_dict(checkpoint.model)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit {what} its config "
                              f"describes ({exc})") from exc
