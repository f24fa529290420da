"""Training loop of the salient-posture generator (``gesturert train generator``).

Batches are dicts of windows (train/data/windows.py): ``features`` (B, T+L, feature_dim)
raw, ``pose`` (B, T, J, 2) standardised, ``seq_label`` (B,) in {0, 1}. Noise per window
is ``sdk.noise.frame_noise`` with a seed drawn from torch's global RNG, so training
sees the distribution serving uses and a resumed run draws what the uninterrupted one
did. The feature statistics are measured on the training windows before step 0 and
stored in the model's buffers.

Outputs in ``--out``: ``generator.pt`` (the checkpoint; resume reads it) and ``tb/``
(TensorBoard scalars: train/* every ``run.log_every`` steps, val/* every ``run.eval_every``).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sdk.noise import frame_noise
from train.config import OptimConfig, RunConfig
from train.data.generator_data import GeneratorData, sampled_feature_statistics
from train.loop import (
    DistributedContext,
    init_distributed,
    seed_everything,
    shutdown_distributed,
)
from train.losses import GeneratorLossConfig, generator_loss, joint_weights, weighted_pose_error
from train.models.generator import GeneratorConfig, SalientPostureGenerator
from train.step_loop import StepLoop, optimizer_step

CHECKPOINT_NAME = "generator.pt"


@dataclass(frozen=True)
class GeneratorDataConfig:
    """How windows are cut from the corpus.

    Attributes:
        window_frames: T, supervised pose frames per window (the input has T + L).
        stride_frames: frames between consecutive window starts.
        val_fraction: fraction of clips held out when the corpus has no dev split.
        feature_noise: std of Gaussian noise added to the training features, in units of
            each feature's std (augmentation against memorising the corpus; 0 = off).
        audio_augmentation: corrupt each training window's audio before its MFCC
            (train.data.audio_augmentation.AudioAugmentation: gain, tilt, resonance,
            noise) so the model holds up on recorded speech (noise, rooms:
            benchmarks/results/training/generator_steps/README.md).
        augment_probability: share of training windows corrupted (the rest stay clean).
        augment_gain_db: gain range +- dB; augment_snr_db: [low, high] SNR of the noise.
        augment_warp: [low, high] vocal-tract-length warp factor of a corrupted window's
            mel filterbank (train.data.audio_augmentation.warped_filterbank; [1, 1] off).
        augment_reverb_probability: share of corrupted windows also put through a random
            room (RT60 0.2-0.9 s, DRR -3..12 dB; train.data.audio_augmentation; 0 = off).
        augment_hum_probability, augment_dc_probability: share of corrupted windows that
            also get mains hum / a DC offset (train.data.audio_augmentation; 0 = off, as
            every bundle before the one shipped on 2026-12-04 fifth session trained).
        clean_detector: the detector loss counts only windows left clean (the bundles
            before issue 17's fix; on the voiced corpus, training it on the corrupted
            windows too halved its false alarms: detector_window_labels/README.md).
        shuffle_audio_pairs: the *audio-shuffled baseline*, not a model to ship: every
            training window gets the features of another window of its batch (a fresh
            random pairing each step; its pose and label stay), so the model cannot learn
            which motion goes with which audio, only the corpus's motion in general.
            Scored next to the real generator by ``gesturert evaluate --shuffled-generator``.
        max_missing_fraction: windows with a larger share of their joints unobserved
            (OpenPose confidence 0) are dropped and counted (train/data/sequences.py).
        detector_label: the window label of the detector with frame ground truth
            (train/data/windows.py): "complete" (1 = a posture starts in the window with
            top_k of its frames in it, 0 = no salient frame, any other window left out of
            the detector loss; the default) or "any" (1 = any salient frame; the bundles
            before issue 17's fix).
    """

    window_frames: int = 64
    stride_frames: int = 3
    val_fraction: float = 0.1
    feature_noise: float = 0.2
    audio_augmentation: bool = True
    augment_probability: float = 0.5
    clean_detector: bool = False
    augment_gain_db: float = 6.0
    augment_snr_db: tuple[float, ...] = (20.0, 45.0)
    augment_warp: tuple[float, ...] = (1.0, 1.0)
    augment_reverb_probability: float = 0.0
    augment_hum_probability: float = 0.3
    augment_dc_probability: float = 0.3
    shuffle_audio_pairs: bool = False
    max_missing_fraction: float = 0.5
    detector_label: str = "complete"


@dataclass(frozen=True)
class GeneratorTrainingConfig:
    """Everything ``gesturert train generator`` reads (train/configs/generator.yaml)."""

    # soft input clip and saliency hold on for new runs; GeneratorConfig's defaults (off)
    # keep checkpoints from before the options as they were
    model: GeneratorConfig = field(default_factory=lambda: GeneratorConfig(
        feature_clip=3.0, saliency_hold_frames=4))
    loss: GeneratorLossConfig = field(default_factory=GeneratorLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # one torch thread: on the shared 2-core CPU two OpenMP threads ran a step 15x slower
    # (2.3 s vs 0.15 s, measured under load); raise run.threads on a dedicated machine
    run: RunConfig = field(default_factory=lambda: RunConfig(
        steps=4000, checkpoint_every=250, eval_every=250, threads=1))
    data: GeneratorDataConfig = field(default_factory=GeneratorDataConfig)


def draw_noise(batch: int, frames: int, dim: int, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """(batch, frames, dim) float32 ``frame_noise`` rows, one random stream seed per window."""
    seeds = torch.randint(0, 2**62, (batch,), generator=generator).tolist()
    return torch.from_numpy(np.stack([frame_noise(int(s), 0, frames, dim) for s in seeds]))


_BATCH_KEYS = ("features", "pose", "seq_label", "label_weight", "augmented", "mask", "style")


def collate_windows(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack the keys training reads (windows carry more: audio, mfcc, ...)."""
    return {k: torch.as_tensor(np.stack([np.asarray(item[k]) for item in items]))
            for k in _BATCH_KEYS if k in items[0]}


def mismatch_audio(values: torch.Tensor) -> torch.Tensor:
    """(B, ...) per-window audio values (features (B, T, F), augmentation flags (B,)) rolled
    by one window along the batch: window b gets window b - 1's. A derangement for B >= 2;
    batches are random windows, so a pose and the audio it now sees come from unrelated
    places of the corpus."""
    return torch.roll(values, shifts=1, dims=0)


def _batch_style(batch: dict[str, Any], device: torch.device) -> torch.Tensor | None:
    """(B,) int64 style indices of a batch, or None for windows without styles."""
    style = batch.get("style")
    return None if style is None else torch.as_tensor(style, dtype=torch.long).to(device)


def _label_weights(batch: dict[str, Any], label: torch.Tensor) -> torch.Tensor | None:
    """(B,) detector-loss weights of a batch's labels (0 = ambiguous window), or None."""
    weight = batch.get("label_weight")
    return None if weight is None else torch.as_tensor(weight).reshape(-1).to(label)


def _batch_to(batch: dict[str, Any], device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """features, pose, seq_label and the joint mask (B, T, J) or None (all observed)."""
    features = torch.as_tensor(batch["features"], dtype=torch.float32).to(device)
    pose = torch.as_tensor(batch["pose"], dtype=torch.float32).to(device)
    label = torch.as_tensor(batch["seq_label"], dtype=torch.float32).reshape(-1).to(device)
    mask = batch.get("mask")
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.float32).to(device)
    return features, pose, label, mask


@torch.no_grad()
def evaluate_generator(model: SalientPostureGenerator, dataset: Dataset[dict[str, Any]],
                       config: GeneratorTrainingConfig, device: torch.device,
                       max_batches: int = 16) -> dict[str, float]:
    """Held-out losses; noise from a fixed generator so evaluation leaves the global RNG
    (and so training) untouched."""
    was_training = model.training
    model.eval()
    # DataLoader draws its worker base seed from the global RNG unless given a generator
    loader = DataLoader(dataset, batch_size=config.run.batch_size, shuffle=False,
                        collate_fn=collate_windows, generator=torch.Generator())
    generator = torch.Generator().manual_seed(12345)
    weights = joint_weights(config.loss)
    sums: dict[str, float] = {}
    count = 0
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        features, pose, label, mask = _batch_to(batch, device)
        noise = draw_noise(features.shape[0], features.shape[1], config.model.noise_dim,
                           generator).to(device)
        out = model(features, noise, pose, _batch_style(batch, device))
        _, parts = generator_loss(out, pose, label, config.loss, _label_weights(batch, label),
                                  mask=mask)
        parts["generation_l1"] = weighted_pose_error(out.aligned_poses, pose, weights, "l1",
                                                     mask)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        count += 1
    model.train(was_training)
    return {k: v / max(count, 1) for k, v in sums.items()}


def train_generator(config: GeneratorTrainingConfig, data: GeneratorData, out_dir: str | Path,
                    resume: bool = False, device: str | None = None,
                    show_progress: bool = True, stop_after: int | None = None
                    ) -> dict[str, float]:
    """Train (or resume) the generator; writes ``out_dir/generator.pt``.

    ``stop_after`` ends this invocation after that many steps (a time-boxed job) with a
    checkpoint; ``resume=True`` later continues on the same schedule (``run.steps``).

    Returns the last logged training losses and the final held-out losses (``val_*``).
    """
    out_dir = Path(out_dir)
    context = init_distributed(device)
    try:
        return _train(config, data, out_dir, resume, context, show_progress, stop_after)
    finally:
        shutdown_distributed(context)


def _train(config: GeneratorTrainingConfig, data: GeneratorData, out_dir: Path, resume: bool,
           context: DistributedContext, show_progress: bool, stop_after: int | None
           ) -> dict[str, float]:
    run = config.run
    if config.data.shuffle_audio_pairs and run.batch_size < 2:
        raise ValueError("data.shuffle_audio_pairs pairs each window with another window of "
                         f"its batch: it needs run.batch_size >= 2, got {run.batch_size}")
    if run.threads > 0:
        torch.set_num_threads(run.threads)
    config = with_styles(config, data)
    seed_everything(run.seed + context.rank)
    model = SalientPostureGenerator(config.model).to(context.device)
    val = data.val
    evaluate = (None if val is None or not context.is_main
                else lambda: evaluate_generator(model, val, config, context.device))
    loop = StepLoop.start(model, config, "generator", data.features, out_dir, CHECKPOINT_NAME,
                          resume=resume, stop_after=stop_after, show_progress=show_progress,
                          evaluate=evaluate, normalization=data.normalization,
                          context=context, postfix={"loss": "total", "gen": "generation"})
    if not resume:
        exact = getattr(data.train, "feature_statistics", None)  # WindowDataset: every frame
        mean, std = exact() if callable(exact) else sampled_feature_statistics(data.train)
        model.set_feature_normalization(mean, std)
    net: torch.nn.Module = model
    if context.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[context.device.index] if context.device.type == "cuda" else None)
    # a private generator: creating the iterator must not advance the global RNG, or a
    # resumed run would draw other noise than the uninterrupted one
    loader = DataLoader(data.train, batch_sampler=loop.batches(len(data.train)),  # type: ignore[arg-type]
                        num_workers=run.num_workers, collate_fn=collate_windows,
                        pin_memory=context.device.type == "cuda",
                        generator=torch.Generator().manual_seed(run.seed + loop.start_step))

    def train_step(batch: dict[str, Any]) -> dict[str, float]:
        features, pose, label, mask = _batch_to(batch, context.device)
        augmented = batch.get("augmented")
        if config.data.shuffle_audio_pairs:
            features = mismatch_audio(features)
            augmented = None if augmented is None else mismatch_audio(
                torch.as_tensor(augmented))
        noise = draw_noise(features.shape[0], features.shape[1],
                           config.model.noise_dim).to(context.device)
        if config.data.feature_noise > 0:
            jitter = torch.randn(features.shape).to(context.device)
            features = features + config.data.feature_noise * model.feature_std * jitter
        out = net(features, noise, pose, _batch_style(batch, context.device))
        detector_weights = _label_weights(batch, label)
        if config.data.clean_detector and augmented is not None:
            clean = 1.0 - torch.as_tensor(augmented).to(label)
            detector_weights = clean if detector_weights is None else detector_weights * clean
        loss, parts = generator_loss(out, pose, label, config.loss, detector_weights, mask)
        optimizer_step(loop.optimizer, loss, model, config.optim.grad_clip)
        return {k: float(v) for k, v in parts.items()}

    net.train()
    return loop.train(loader, train_step)


def with_styles(config: GeneratorTrainingConfig, data: GeneratorData
                ) -> GeneratorTrainingConfig:
    """``config`` with the data's style table in ``model.styles``/``default_style`` (so
    the checkpoint carries it). A config that already names styles must name the data's."""
    model = config.model
    if not data.styles:
        if model.styles:
            raise ValueError(f"model.styles is {list(model.styles)} but the windows carry no "
                             "style; drop model.styles")
        return config
    if model.styles and (model.styles, model.default_style) != (data.styles,
                                                               data.default_style):
        raise ValueError(f"model.styles {list(model.styles)} (default {model.default_style!r})"
                         f" differ from the corpus's {list(data.styles)} (default "
                         f"{data.default_style!r}); drop them from the config")
    return dataclasses.replace(config, model=dataclasses.replace(
        model, styles=data.styles, default_style=data.default_style))


def load_generator_data(data_dir: str | Path, config: GeneratorTrainingConfig) -> GeneratorData:
    """Windows of the corpus at ``data_dir`` (train/data/windows.py) and its statistics."""
    from train.data.windows import generator_data

    data: GeneratorData = generator_data(Path(data_dir), config)
    return data


def train_generator_main(args: Any) -> int:
    """``gesturert train generator``: returns 0 on success, 2 on bad input."""
    from train.config import load_config
    from train.data.check import require_trainable

    try:
        config = load_config(GeneratorTrainingConfig, args.config, args.overrides)
        require_trainable(Path(args.data), config.data.window_frames,
                          config.data.stride_frames, config.data.max_missing_fraction)
        data = load_generator_data(args.data, config)
        dropped = getattr(data.train, "dropped_windows", 0)
        if dropped:
            print(f"gesturert train generator: {len(data.train)} training windows, "  # type: ignore[arg-type]
                  f"{dropped} dropped for more than "
                  f"{100 * config.data.max_missing_fraction:.0f}% missing joints",
                  file=sys.stderr)
        result = train_generator(config, data, args.out, resume=args.resume, device=args.device,
                                 show_progress=not getattr(args, "no_progress", False))
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError is a ValueError
        print(f"gesturert train generator: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.items()))
    print(f"generator trained: {Path(args.out) / CHECKPOINT_NAME} ({summary})")
    return 0
