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
  own values there, :attr:`sdk.pose_range.PoseRange.beyond_4sd`);
* with a :class:`sdk.pose_range.PoseRange` (the training poses' range, what a bundle
  carries) also ``outside_training_range``: share of body/hand values
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
from pathlib import Path
from typing import Any

import numpy as np

from sdk.audio import load_audio
from sdk.normalization import PoseNormalization
from sdk.pose_range import FAR_SD, PoseRange, range_joints, standardize_pixels
from sdk.skeleton import MODEL_SKELETON

BODY_HAND_JOINTS = range_joints(MODEL_SKELETON)
ARM_JOINTS = tuple(MODEL_SKELETON.joint_names.index(n) for n in (
    "right_elbow", "right_wrist", "left_elbow", "left_wrist"))
SALIENT = 0.5  # saliency score above which a frame counts as salient


def _check_poses(z: np.ndarray, min_frames: int) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 3 or z.shape[1:] != (MODEL_SKELETON.num_joints, 2) or z.shape[0] < min_frames:
        raise ValueError(f"z must be (T >= {min_frames}, {MODEL_SKELETON.num_joints}, 2), "
                         f"got {z.shape}")
    return z


def pose_robustness(z: np.ndarray, saliency: np.ndarray, normalization: PoseNormalization,
                    fps: int, training_range: PoseRange | None = None
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
        inside = training_range.measure(z)
        measures.update(outside_training_range=inside.outside_share,
                        largest_excursion=inside.largest_excursion)
    return measures


def _run_bundle(path: Path, audio_path: Path, seed: int
                ) -> tuple[np.ndarray, np.ndarray, PoseNormalization, int, None]:
    from sdk.streaming import StreamingGenerator

    with StreamingGenerator(str(path)) as generator:
        rate = generator.manifest.features.sample_rate
        frames = generator.generate(load_audio(audio_path, rate), rate, seed=seed)
        norm = generator.manifest.normalization
        z = standardize_pixels(frames.keypoints, norm)
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
                          ) -> PoseRange:
    """The :class:`sdk.pose_range.PoseRange` of a corpus's training sequences
    (:class:`train.posesync_data.CorpusSequence`, held-out ones skipped) in the standardised
    units of ``normalization`` (the model's). Raises ValueError when none is a training one."""
    poses = [normalization.standardize(q.canonical) for q in sequences if not q.held_out]
    if not poses:
        raise ValueError("the corpus has no training clips, and the training range is "
                         "measured on them (pass the corpus the model was trained on)")
    return PoseRange.from_poses(poses, MODEL_SKELETON)


def trained_pose_range(corpus: str | Path, normalization: PoseNormalization,
                       val_fraction: float) -> PoseRange:
    """The :class:`sdk.pose_range.PoseRange` a bundle carries: :func:`corpus_training_range`
    of ``corpus``, checked to be the corpus a generator with ``normalization`` was trained on
    (its pose statistics recomputed over the generator's training clips,
    :func:`train.data.sdt.generator_splits` with the training config's ``val_fraction``,
    must equal the checkpoint's). Raises ValueError naming the mismatch otherwise."""
    from train.data.sdt import compute_normalization, generator_splits
    from train.posesync_data import load_corpus_sequences

    train_clips, _ = generator_splits(Path(corpus), val_fraction)
    if not train_clips:
        raise ValueError(f"{corpus}: no clips of the 'train' split; pass the corpus the "
                         "generator was trained on")
    own = compute_normalization(train_clips, normalization.image_size)
    gaps = {key: float(np.max(np.abs(np.subtract(a, b)) / (1.0 + np.abs(b)))) for key, a, b in (
        ("anchor_px", own.anchor_px, normalization.anchor_px),
        ("scale_px", own.scale_px, normalization.scale_px),
        ("mean", own.mean, normalization.mean), ("std", own.std, normalization.std))}
    off = {k: v for k, v in gaps.items() if v > 1e-5}  # float32 in the checkpoint: rounding
    if off:
        raise ValueError(
            f"{corpus} is not the corpus this generator was trained on: its training clips' "
            f"pose statistics differ from the checkpoint's (largest relative differences: "
            + ", ".join(f"{k} {v:.3g}" for k, v in off.items())
            + "); pass the corpus given to `gesturert train generator --data`")
    return corpus_training_range(load_corpus_sequences(Path(corpus)), normalization)


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
