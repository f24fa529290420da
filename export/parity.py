"""Numerical validation of an export: ONNX Runtime against the PyTorch model it came from.

An export counts as done only when every case here agrees within ``tolerance`` (max abs,
default 1e-4 in fp32):

generator (``step``):
  * ``random_step``: one step of random features, noise and a random (non-zero) state,
    several streams and frames;
  * ``speech_step``: one step over the first frames of real speech features, zero state;
  * ``speech_streaming``: two streams of real speech run chunk by chunk with random chunk
    sizes, state carried, ONNX Runtime vs the PyTorch model run the same way, and vs one
    PyTorch step over the whole sequence (chunk invariance of the exported graph);
posesync (``forward``):
  * ``random_clips``: random MFCC clips and random images in [0, 1];
  * ``speech_clips``: real-speech MFCC clips with random images.

A failure raises :class:`ParityError` naming the case and the worst tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from train.models.generator import SalientPostureGenerator
from train.models.posesync import PoseSyncNet

DEFAULT_TOLERANCE = 1e-4  # max abs difference, fp32
Arrays = dict[str, np.ndarray]


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance."""


@dataclass
class ParityReport:
    """Max abs difference per (case, tensor) of one model."""

    model: str
    tolerance: float
    max_abs: dict[str, dict[str, float]] = field(default_factory=dict)  # case -> tensor -> d

    def record(self, case: str, reference: Arrays, candidate: Arrays) -> None:
        diffs = {}
        for name, ref in reference.items():
            got = candidate[name]
            if got.shape != ref.shape:
                raise ParityError(
                    f"{self.model} parity, case {case!r}: tensor {name!r} has shape "
                    f"{got.shape} in ONNX Runtime but {ref.shape} in PyTorch"
                )
            diffs[name] = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
        self.max_abs[case] = diffs

    @property
    def worst(self) -> tuple[str, str, float]:
        """(case, tensor, max abs) of the largest difference."""
        return max(((c, t, d) for c, ds in self.max_abs.items() for t, d in ds.items()),
                   key=lambda item: item[2])

    def check(self) -> ParityReport:
        """Raise ParityError when the worst difference exceeds the tolerance."""
        case, tensor, diff = self.worst
        if not diff <= self.tolerance:  # also catches NaN
            raise ParityError(
                f"{self.model} export failed numerical validation: tensor {tensor!r} in case "
                f"{case!r} differs by {diff:.3g} (max abs) between ONNX Runtime and PyTorch, "
                f"tolerance {self.tolerance:.0e}. The ONNX file does not compute what the "
                "model computes: check for ops the exporter changed and re-export."
            )
        return self

    def to_dict(self) -> dict[str, object]:
        case, tensor, diff = self.worst
        return {"tolerance": self.tolerance, "worst": {"case": case, "tensor": tensor,
                                                      "max_abs": diff},
                "max_abs": self.max_abs}


def _session_runner(onnx_path: Path) -> Callable[[Arrays], Arrays]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(feed: Arrays) -> Arrays:
        return dict(zip(names, session.run(None, feed), strict=True))

    return run


def _torch_step(generator: SalientPostureGenerator) -> Callable[[Arrays], Arrays]:
    def run(feed: Arrays) -> Arrays:
        with torch.no_grad():
            poses, saliency, state = generator.step(
                torch.from_numpy(feed["features"]), torch.from_numpy(feed["noise"]),
                torch.from_numpy(feed["state"]),
                torch.from_numpy(feed["style"]) if "style" in feed else None)
        return {"poses": poses.numpy(), "saliency": saliency.numpy(), "state_out": state.numpy()}

    return run


def random_chunks(total: int, rng: np.random.Generator, max_chunk: int = 7) -> list[int]:
    """Random chunk sizes in [1, max_chunk] summing to ``total``."""
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(min(int(rng.integers(1, max_chunk + 1)), total - sum(sizes)))
    return sizes


def _stream(step: Callable[[Arrays], Arrays], features: np.ndarray, noise: np.ndarray,
            state_size: int, chunks: list[int], styles: Arrays | None = None) -> Arrays:
    """Run (B, T, .) inputs chunk by chunk from a zero state; outputs joined along time.
    ``styles``: {"style": int32 (B,)} for a generator with styles, else None."""
    state = np.zeros((features.shape[0], state_size), np.float32)
    poses, saliency = [], []
    start = 0
    for size in chunks:
        out = step({"features": features[:, start:start + size],
                    "noise": noise[:, start:start + size], "state": state} | (styles or {}))
        poses.append(out["poses"])
        saliency.append(out["saliency"])
        state = out["state_out"]
        start += size
    return {"poses": np.concatenate(poses, 1), "saliency": np.concatenate(saliency, 1),
            "state_out": state}


def generator_parity(generator: SalientPostureGenerator, onnx_path: str | Path,
                     speech_features: np.ndarray, seed: int = 0,
                     tolerance: float = DEFAULT_TOLERANCE) -> ParityReport:
    """ORT vs PyTorch for ``generator.onnx``; raises ParityError beyond ``tolerance``.

    Args:
        generator: the exported model (eval mode is set here).
        onnx_path: its ``generator.onnx``.
        speech_features: (T, feature_dim) float32 raw feature frames of real speech, T >= 2.
        seed: seeds the random inputs and chunk sizes.
    A generator with styles is checked on every style (the random step) and on the
    default and one other style (the speech streams).
    Returns:
        The report (max abs per case and tensor).
    """
    generator.eval()
    rng = np.random.default_rng(seed)
    ort_step, torch_step = _session_runner(Path(onnx_path)), _torch_step(generator)
    config, size = generator.config, generator.state_size
    report = ParityReport("generator", tolerance)
    n_styles, default = len(config.styles), generator.default_style_index

    def styles(*index: int) -> Arrays:
        return {"style": np.array(index, np.int32)} if n_styles else {}

    rows = max(3, n_styles)
    feed = {"features": rng.normal(0, 10, (rows, 5, config.feature_dim)).astype(np.float32),
            "noise": rng.standard_normal((rows, 5, config.noise_dim)).astype(np.float32),
            "state": rng.standard_normal((rows, size)).astype(np.float32)
            } | styles(*(i % max(n_styles, 1) for i in range(rows)))
    report.record("random_step", torch_step(feed), ort_step(feed))

    speech = np.ascontiguousarray(speech_features, dtype=np.float32)
    frames = speech.shape[0]
    first = min(frames, 8)
    feed = {"features": speech[None, :first],
            "noise": rng.standard_normal((1, first, config.noise_dim)).astype(np.float32),
            "state": np.zeros((1, size), np.float32)} | styles(default)
    report.record("speech_step", torch_step(feed), ort_step(feed))

    # Two streams: the speech, and the speech shifted by a few frames with other noise
    # (and another style than the default, when there is one).
    shift = min(5, frames - 1)
    features = np.stack([speech, np.roll(speech, shift, axis=0)])
    noise = rng.standard_normal((2, frames, config.noise_dim)).astype(np.float32)
    chunks = random_chunks(frames, rng)
    two = styles(default, (default + 1) % max(n_styles, 1))
    reference = _stream(torch_step, features, noise, size, chunks, two)
    report.record("speech_streaming", reference,
                  _stream(ort_step, features, noise, size, chunks, two))
    report.record("speech_streaming_vs_one_step", _stream(torch_step, features, noise, size,
                                                          [frames], two),
                  _stream(ort_step, features, noise, size, chunks, two))
    return report.check()


def posesync_parity(posesync: PoseSyncNet, onnx_path: str | Path, speech_mfcc_clips: np.ndarray,
                    seed: int = 0, tolerance: float = DEFAULT_TOLERANCE) -> ParityReport:
    """ORT vs PyTorch for ``posesync.onnx``; raises ParityError beyond ``tolerance``.

    Args:
        speech_mfcc_clips: (N, n_mfcc, clip_mfcc_frames) float32 MFCC clips of real speech.
    """
    posesync.eval()
    rng = np.random.default_rng(seed)
    run_ort = _session_runner(Path(onnx_path))
    image_shape = (posesync.config.clip_frames, *posesync.image_shape)

    def run_torch(feed: Arrays) -> Arrays:
        with torch.no_grad():
            audio, pose = posesync(torch.from_numpy(feed["mfcc"]),
                                   torch.from_numpy(feed["pose_images"]))
        return {"audio_emb": audio.numpy(), "pose_emb": pose.numpy()}

    report = ParityReport("posesync", tolerance)
    feed = {"mfcc": rng.normal(0, 10, (3, *posesync.mfcc_shape)).astype(np.float32),
            "pose_images": rng.random((3, *image_shape), dtype=np.float32)}
    report.record("random_clips", run_torch(feed), run_ort(feed))
    clips = np.ascontiguousarray(speech_mfcc_clips, dtype=np.float32)
    feed = {"mfcc": clips,
            "pose_images": rng.random((clips.shape[0], *image_shape), dtype=np.float32)}
    report.record("speech_clips", run_torch(feed), run_ort(feed))
    return report.check()
