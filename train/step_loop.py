"""The step loop every trainer runs: resume, learning-rate schedule, logging, evaluation
and checkpoint cadence (:class:`StepLoop`), on the utilities of train/loop.py.

A trainer builds its model, calls :meth:`StepLoop.start` (optimizer, resume, schedule,
outputs), and runs :meth:`StepLoop.train` over :meth:`StepLoop.batches` with a
``train_step(batch) -> {loss name: value}`` that does its forward and backward pass
(:func:`optimizer_step`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from sdk.features import FeatureConfig
from sdk.normalization import PoseNormalization
from train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from train.config import OptimConfig, RunConfig, config_to_dict
from train.loop import (
    DistributedContext,
    ResumableBatchSampler,
    ScalarLogger,
    learning_rate,
    make_optimizer,
    progress_bar,
    reduce_mean,
    rng_state,
    set_rng_state,
)

B = TypeVar("B")


class TrainingConfig(Protocol):
    """What the step loop reads of a trainer's config (a dataclass with a ``model``)."""

    @property
    def optim(self) -> OptimConfig: ...

    @property
    def run(self) -> RunConfig: ...


def resume_from_checkpoint(path: Path, kind: str, features: FeatureConfig,
                           model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                           model_config: dict[str, Any], restore_rng: bool = True) -> int:
    """Load the checkpoint at ``path`` into ``model`` and ``optimizer`` (and, with
    ``restore_rng``, the global RNGs); returns the optimizer steps it had done.

    Raises:
        CheckpointError: missing or unreadable, of another kind or features, or saved with
            a model config other than ``model_config``.
    """
    ckpt = load_checkpoint(path, kind, features)
    if ckpt.model_config != model_config:
        raise CheckpointError(
            f"--resume: the model config differs from the one in {path}; resume with "
            f"the same model settings or start a new --out directory")
    model.load_state_dict(ckpt.model)
    if ckpt.optimizer is not None:
        optimizer.load_state_dict(ckpt.optimizer)
    if ckpt.rng is not None and restore_rng:
        set_rng_state(ckpt.rng)
    return ckpt.step


@dataclass
class CheckpointWriter:
    """Writes ``path`` (with the global RNG states of the moment) when called; a no-op
    unless ``enabled`` (rank 0 writes, the other DDP ranks do not)."""

    path: Path
    kind: str
    config: dict[str, Any]
    model: torch.nn.Module
    features: FeatureConfig
    optimizer: torch.optim.Optimizer
    normalization: PoseNormalization | None = None
    enabled: bool = True

    def __call__(self, step: int, extra: dict[str, Any] | None = None) -> None:
        if self.enabled:
            save_checkpoint(self.path, kind=self.kind, config=self.config, model=self.model,
                            features=self.features, normalization=self.normalization,
                            optimizer=self.optimizer, step=step, rng=rng_state(), extra=extra)


def stop_step(run: RunConfig, start_step: int, stop_after: int | None) -> int:
    """The step this invocation ends at: ``run.steps``, or ``stop_after`` steps past
    ``start_step`` when that comes first (a time-boxed job)."""
    return run.steps if stop_after is None else min(run.steps, start_step + stop_after)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   model: torch.nn.Module, grad_clip: float) -> None:
    """Backpropagate ``loss``, clip the gradient norm of ``model`` at ``grad_clip``
    (0 = no clipping) and step ``optimizer``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


@dataclass
class StepLoop:
    """The step loop every trainer shares.

    Each step sets the scheduled learning rate (:func:`learning_rate`) on ``optimizer``
    and calls ``train_step(batch)``, which does the forward and backward pass and returns
    its scalar losses. Every ``run.log_every`` steps (and at ``stop``) their means since the
    last log (averaged over ranks with ``context``) go to TensorBoard under ``train/``
    and to the progress bar; every ``run.eval_every`` steps ``evaluate()`` goes under
    ``val/``; every ``run.checkpoint_every`` steps ``checkpoint`` writes. At the end:
    a last evaluation and a checkpoint with ``extra={"final": result}``.

    Attributes:
        postfix: progress-bar label -> logged loss name shown there.
        log_dir: TensorBoard directory (None: no TensorBoard, e.g. off rank 0).
    """

    run: RunConfig
    optim: OptimConfig
    optimizer: torch.optim.Optimizer
    start_step: int
    stop: int
    checkpoint: Callable[..., None]
    log_dir: Path | None
    desc: str
    show_progress: bool = True
    evaluate: Callable[[], dict[str, float]] | None = None
    context: DistributedContext | None = None
    postfix: Mapping[str, str] = field(default_factory=lambda: {"loss": "loss"})

    @classmethod
    def start(cls, model: torch.nn.Module, config: TrainingConfig, kind: str,
              features: FeatureConfig, out_dir: Path, checkpoint_name: str, *, resume: bool,
              stop_after: int | None, show_progress: bool,
              evaluate: Callable[[], dict[str, float]] | None = None,
              normalization: PoseNormalization | None = None,
              context: DistributedContext | None = None,
              postfix: Mapping[str, str] | None = None) -> StepLoop:
        """One invocation's loop: an AdamW optimizer over ``model`` (``config.optim``),
        resumed from ``out_dir/checkpoint_name`` when ``resume`` (global RNGs restored on
        rank 0 only), checkpoints of ``kind`` written there and TensorBoard to
        ``out_dir/tb`` by rank 0. ``context`` None: a single process; ``postfix`` None:
        the progress bar shows ``loss``."""
        is_main = context is None or context.is_main
        optimizer = make_optimizer(model.parameters(), config.optim)
        config_dict = config_to_dict(config)
        path = out_dir / checkpoint_name
        start_step = 0
        if resume:
            start_step = resume_from_checkpoint(path, kind, features, model, optimizer,
                                                config_dict["model"], restore_rng=is_main)
        return cls(config.run, config.optim, optimizer, start_step,
                   stop_step(config.run, start_step, stop_after),
                   CheckpointWriter(path, kind, config_dict, model, features, optimizer,
                                    normalization, enabled=is_main),
                   log_dir=out_dir / "tb" if is_main else None, desc=kind,
                   show_progress=show_progress and is_main, evaluate=evaluate,
                   context=context, postfix=postfix or {"loss": "loss"})

    def batches(self, dataset_size: int) -> ResumableBatchSampler:
        """Index batches of steps ``start_step .. stop - 1`` over ``dataset_size`` items
        (this rank's shard under DDP)."""
        rank, world = (0, 1) if self.context is None else (self.context.rank,
                                                          self.context.world_size)
        return ResumableBatchSampler(dataset_size, self.run.batch_size, self.run.seed,
                                     self.start_step, self.stop, rank, world)

    def train(self, batches: Iterable[B], train_step: Callable[[B], Mapping[str, float]]
              ) -> dict[str, float]:
        """Run the steps; returns the last logged losses, ``seconds`` of the loop and the
        final held-out metrics as ``val_<name>``."""
        run = self.run
        logger = ScalarLogger(self.log_dir)
        bar = progress_bar(run.steps, self.start_step, self.show_progress, self.desc)
        sums: dict[str, float] = {}
        summed = 0
        last: dict[str, float] = {}
        step = self.start_step
        started = time.perf_counter()
        for batch in batches:
            lr = learning_rate(step, run.steps, self.optim)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            for k, v in train_step(batch).items():
                sums[k] = sums.get(k, 0.0) + v
            summed += 1
            step += 1
            bar.update(1)
            if step % run.log_every == 0 or step == self.stop:
                last = {k: v / summed for k, v in sums.items()}
                if self.context is not None:
                    last = reduce_mean(last, self.context)
                sums, summed = {}, 0
                logger.log(step, {**last, "lr": lr}, "train/")
                bar.set_postfix(**{label: f"{last[name]:.4f}"
                                   for label, name in self.postfix.items()})
            if self.evaluate is not None and run.eval_every > 0 \
                    and step % run.eval_every == 0 and step < self.stop:
                logger.log(step, self.evaluate(), "val/")
            if step % run.checkpoint_every == 0 and step < self.stop:
                self.checkpoint(step)
        bar.close()
        result = {**last, "seconds": time.perf_counter() - started}
        if self.evaluate is not None:
            val = self.evaluate()
            logger.log(step, val, "val/")
            result.update({f"val_{k}": v for k, v in val.items()})
        self.checkpoint(step, extra={"final": result})
        logger.close()
        return result
