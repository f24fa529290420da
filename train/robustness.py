"""How far a generator's output on some audio strays from the poses it was trained on.

    python -m train.robustness BUNDLE_DIR_OR_GENERATOR_PT AUDIO [AUDIO ...] [--json OUT] \\
        [--corpus THE_CORPUS_IT_WAS_TRAINED_ON]

A model trained on the synthetic corpus can behave on held-out synthetic clips and still
produce an odd skeleton on recorded speech. The numbers here say how odd, per clip, with
the model's own pose statistics as the reference (the generator outputs *standardised*
poses: z = (canonical - training mean) / training std, per joint and axis):

* ``salient_fraction``: share of frames with saliency > 0.5 (the synthetic corpus is
  salient a minority of the time; ~1 throughout means the detector is saturated);
* ``mean_abs_z``: mean |z| over the body and hand joints (root excluded), frames, axes;
  ``arm_mean_abs_z``: the same over elbows and wrists only;
* ``beyond_4sd``: share of body/hand (frame, joint, axis) values with |z| > 4 (not a
  limit by itself: salient postures are large, and the training poses put a share of their
  own values there, :attr:`TrainingRange.beyond_4sd`);
* with a :class:`TrainingRange` also ``outside_training_range``: share of body/hand values
  outside the training poses' own range (per joint and axis, lowest to highest value seen
  in training), and ``largest_excursion``: how far the farthest one lies past it, in SD;
* ``motion``: mean speed of the body/hand joints, canonical units (shoulder widths) per
  second (0 = a frozen skeleton);
* with a checkpoint also ``feature_mean_abs_z`` / ``feature_beyond_4sd``: the input
  features standardised by the model's feature buffers.

A bundle runs through the SDK (``StreamingGenerator.generate``, what ``gesturert demo``
streams); a checkpoint runs the torch model's ``forward`` on the same features (equal to
streaming by the chunk-invariance contract).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdk.audio import load_audio
from sdk.normalization import PoseNormalization
from sdk.skeleton import MODEL_SKELETON

_ROOT = MODEL_SKELETON.root
BODY_HAND_JOINTS = tuple(j for j in MODEL_SKELETON.groups["body"] + MODEL_SKELETON.groups[
    "left_hand"] + MODEL_SKELETON.groups["right_hand"] if j != _ROOT)
ARM_JOINTS = tuple(MODEL_SKELETON.joint_names.index(n) for n in (
    "right_elbow", "right_wrist", "left_elbow", "left_wrist"))
SALIENT = 0.5  # saliency score above which a frame counts as salient
FAR_SD = 4.0  # |z| beyond which a value counts as far outside the training poses


def _check_poses(z: np.ndarray, min_frames: int) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 3 or z.shape[1:] != (MODEL_SKELETON.num_joints, 2) or z.shape[0] < min_frames:
        raise ValueError(f"z must be (T >= {min_frames}, {MODEL_SKELETON.num_joints}, 2), "
                         f"got {z.shape}")
    return z


@dataclass(frozen=True)
class TrainingRange:
    """The range of the poses a model was trained on, in its standardised units.

    Attributes:
        low, high: float64 (len(BODY_HAND_JOINTS), 2) lowest and highest z seen per body/hand
            joint and axis (undetected joints left out).
        frames: number of training frames they come from.
        mean_abs_z, beyond_4sd: the training poses' own mean |z| and share beyond 4 SD
            (what :func:`pose_robustness` reports for an output, measured on the data).
    """

    low: np.ndarray
    high: np.ndarray
    frames: int
    mean_abs_z: float
    beyond_4sd: float

    @classmethod
    def from_poses(cls, poses: Iterable[np.ndarray]) -> TrainingRange:
        """From standardised training poses, each float (T, J, 2); NaN = not detected."""
        body = np.concatenate([_check_poses(z, 1)[:, list(BODY_HAND_JOINTS)] for z in poses])
        if not np.isfinite(body).any(axis=0).all():
            raise ValueError("the training poses never show some body/hand joint")
        seen = np.abs(body[np.isfinite(body)])
        return cls(np.nanmin(body, axis=0), np.nanmax(body, axis=0), int(body.shape[0]),
                   float(seen.mean()), float(np.mean(seen > FAR_SD)))

    def outside(self, z: np.ndarray) -> dict[str, float]:
        """``outside_training_range`` and ``largest_excursion`` (SD) of float (T, J, 2)
        standardised poses (see the module docstring); NaN values (undetected) left out."""
        body = _check_poses(z, 1)[:, list(BODY_HAND_JOINTS)]
        past = np.maximum(self.low - body, body - self.high)  # > 0 outside
        past = past[np.isfinite(past)]  # undetected joints (ground truth) left out
        if not past.size:
            raise ValueError("no body/hand value to compare with the training range")
        return {"outside_training_range": float(np.mean(past > 0)),
                "largest_excursion": float(max(past.max(), 0.0))}

    def to_dict(self) -> dict[str, float]:
        """The summary a report records (not the per-joint bounds)."""
        return {"frames": float(self.frames), "mean_abs_z": self.mean_abs_z,
                "beyond_4sd": self.beyond_4sd}


def pose_robustness(z: np.ndarray, saliency: np.ndarray, normalization: PoseNormalization,
                    fps: int, training_range: TrainingRange | None = None
                    ) -> dict[str, float]:
    """The pose measures of the module docstring.

    Args:
        z: float (T, J, 2) standardised poses (model output units), T >= 2.
        saliency: float (T,) scores in [0, 1].
        normalization: the model's pose statistics (to get canonical units for motion).
        fps: pose frames per second.
        training_range: the training poses' range; adds the measures outside it.
    """
    z = _check_poses(z, 2)
    body = np.abs(z[:, list(BODY_HAND_JOINTS)])
    canonical = normalization.destandardize(z.astype(np.float32))[:, list(BODY_HAND_JOINTS)]
    speed = np.linalg.norm(np.diff(canonical.astype(np.float64), axis=0), axis=-1) * fps
    measures = {
        "frames": float(z.shape[0]),
        "salient_fraction": float(np.mean(np.asarray(saliency) > SALIENT)),
        "mean_saliency": float(np.mean(saliency)),
        "mean_abs_z": float(body.mean()),
        "arm_mean_abs_z": float(np.abs(z[:, list(ARM_JOINTS)]).mean()),
        "beyond_4sd": float(np.mean(body > FAR_SD)),
        "motion": float(speed.mean()),
    }
    if training_range is not None:
        measures.update(training_range.outside(z))
    return measures


def _run_bundle(path: Path, audio_path: Path, seed: int
                ) -> tuple[np.ndarray, np.ndarray, PoseNormalization, int, None]:
    from sdk.streaming import StreamingGenerator

    with StreamingGenerator(str(path)) as generator:
        rate = generator.manifest.features.sample_rate
        frames = generator.generate(load_audio(audio_path, rate), rate, seed=seed)
        norm = generator.manifest.normalization
        z = norm.standardize(norm.pixels_to_canonical(frames.keypoints))
        return z, frames.saliency, norm, generator.fps, None


def _run_checkpoint(path: Path, audio_path: Path, seed: int
                    ) -> tuple[np.ndarray, np.ndarray, PoseNormalization, int, np.ndarray]:
    import torch

    from sdk.mfcc import MfccMatrices, extract_features
    from sdk.noise import frame_noise
    from train.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(path, "generator")
    if ckpt.normalization is None:
        raise ValueError(f"{path}: the checkpoint stores no pose normalization")
    features_config = ckpt.features
    audio = load_audio(audio_path, features_config.sample_rate)
    model: Any = build_model("generator", ckpt.config["model"])
    model.load_state_dict(ckpt.model)
    model.eval()
    lookahead = model.config.lookahead_frames
    frames = features_config.num_pose_frames(len(audio))
    feats = extract_features(audio, features_config, MfccMatrices.default(), frames + lookahead)
    noise = frame_noise(seed, 0, frames + lookahead, model.config.noise_dim)
    with torch.no_grad():
        out = model(torch.from_numpy(feats)[None], torch.from_numpy(noise)[None])
    feature_z = (feats - model.feature_mean.numpy()) / model.feature_std.numpy()
    return (out.aligned_poses[0].numpy(), out.aligned_output_saliency[0].numpy(),
            ckpt.normalization, features_config.fps, feature_z)


def corpus_training_range(sequences: Iterable[Any], normalization: PoseNormalization
                          ) -> TrainingRange:
    """The :class:`TrainingRange` of a corpus's training sequences
    (:class:`train.posesync_data.CorpusSequence`, held-out ones skipped) in the standardised
    units of ``normalization`` (the model's). Raises ValueError when none is a training one."""
    poses = [normalization.standardize(q.canonical) for q in sequences if not q.held_out]
    if not poses:
        raise ValueError("the corpus has no training clips, and the training range is "
                         "measured on them (pass the corpus the model was trained on)")
    return TrainingRange.from_poses(poses)


def measure(model_path: str | Path, audio_path: str | Path, seed: int = 0,
            training_sequences: Iterable[Any] | None = None) -> dict[str, float]:
    """Robustness measures of one model (bundle directory or generator ``.pt``) on one
    audio file (any rate; resampled to the model's); with the sequences of the corpus the
    model was trained on (:func:`train.posesync_data.load_corpus_sequences`) also the
    measures outside its training range."""
    model_path = Path(model_path)
    if model_path.is_dir():
        runner: Any = _run_bundle
    elif model_path.is_file():
        runner = _run_checkpoint
    else:
        raise FileNotFoundError(f"{model_path}: expected a bundle directory or a generator "
                                f"checkpoint (.pt)")
    z, saliency, norm, fps, feature_z = runner(model_path, Path(audio_path), seed)
    training_range = (None if training_sequences is None
                      else corpus_training_range(training_sequences, norm))
    result = pose_robustness(z, saliency, norm, fps, training_range)
    if feature_z is not None:
        result["feature_mean_abs_z"] = float(np.abs(feature_z).mean())
        result["feature_beyond_4sd"] = float(np.mean(np.abs(feature_z) > FAR_SD))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="bundle directory or generator checkpoint")
    parser.add_argument("audio", type=Path, nargs="+", help="audio files")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="the corpus the model was trained on: adds the share of values "
                        "outside its training poses' range and the farthest past it (SD)")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    try:
        sequences = None
        if args.corpus is not None:
            from train.posesync_data import load_corpus_sequences

            sequences = load_corpus_sequences(args.corpus)
        for path in args.audio:
            results[str(path)] = measure(args.model, path, args.seed, sequences)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"robustness: {exc}", file=sys.stderr)
        return 2
    keys = list(next(iter(results.values())))
    print("| audio | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for path, row in results.items():
        print(f"| {Path(path).name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")
    if len(results) > 1:
        print("| mean | " + " | ".join(
            f"{np.mean([r[k] for r in results.values()]):.3f}" for k in keys) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"model": str(args.model), "results": results,
             "corpus": None if args.corpus is None else str(args.corpus)},
            indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
