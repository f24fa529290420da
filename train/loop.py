"""Shared training-loop utilities: device, seeds, RNG state, DDP, batches, logging (the
step loop every trainer runs on them: train/step_loop.py).

DDP: launch the same command under ``torchrun --nproc_per_node=N``; torchrun sets
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` and :func:`init_distributed` joins the process
group only when ``WORLD_SIZE > 1`` (NCCL on CUDA, gloo on CPU). Rank 0 writes logs and
checkpoints; every rank sees its own shard of each epoch (DistributedSampler order).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

from train.config import OptimConfig, RunConfig

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: rank among world_size processes, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def choose_device(requested: str | None) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or None/``auto`` (CUDA when available, else CPU)."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {requested!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {requested!r}")
    return device


def init_distributed(requested_device: str | None) -> DistributedContext:
    """Join the torchrun process group when WORLD_SIZE > 1; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = choose_device(requested_device)
    if world_size <= 1:
        return DistributedContext(0, 1, 0, device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, device)


def shutdown_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def run_in_one_process(device: str | None, what: str, train: Callable[[torch.device], T]) -> T:
    """``train(device)`` in a single process; a torchrun launch of several is refused.

    ``what`` names the model in the error ("FGD encoder", "PoseSyncNet").
    """
    context = init_distributed(device)
    try:
        if context.enabled:
            raise ValueError(f"{what} training runs in one process; launch it without "
                             "torchrun")
        return train(context.device)
    finally:
        shutdown_distributed(context)


def configure_process(run: RunConfig, rank: int = 0) -> None:
    """Apply ``run.threads`` (torch CPU threads; 0 keeps torch's default) and seed every
    global RNG with ``run.seed + rank``."""
    if run.threads > 0:
        torch.set_num_threads(run.threads)
    seed_everything(run.seed + rank)


def seed_everything(seed: int) -> None:
    """Seed python's random, numpy's global RNG and torch (CPU and CUDA).

    numpy's legacy global RNG is seeded (and checkpointed) because datasets and
    libraries may draw from it; gesturert's own code passes explicit generators.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, for checkpoints."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices, epoch after epoch, starting at any step.

    Each epoch's order is DistributedSampler's (shuffled with ``seed + epoch``, sharded
    over ranks); batches are consecutive slices of it, the last partial one dropped.
    Batch ``s`` depends only on (seed, rank, world_size, s), so a resumed run sees the
    batches the uninterrupted run would have seen.
    """

    def __init__(self, dataset_size: int, batch_size: int, seed: int, start_step: int = 0,
                 total_steps: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        per_rank = dataset_size // world_size
        if batch_size < 1 or per_rank < batch_size:
            raise ValueError(
                f"need at least batch_size={batch_size} training windows per process, have "
                f"{dataset_size} windows for {world_size} process(es); lower run.batch_size "
                f"or add data")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.rank = rank
        self.world_size = world_size
        self.batches_per_epoch = per_rank // batch_size

    def _epoch_indices(self, epoch: int) -> list[int]:
        indices: Any = range(self.dataset_size)  # a sequence of indices is all it reads
        sampler: DistributedSampler[int] = DistributedSampler(
            indices, num_replicas=self.world_size, rank=self.rank, shuffle=True,
            seed=self.seed, drop_last=True)
        sampler.set_epoch(epoch)
        return list(sampler)

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.total_steps is None or step < self.total_steps:
            epoch, offset = divmod(step, self.batches_per_epoch)
            order = self._epoch_indices(epoch)
            for b in range(offset, self.batches_per_epoch):
                if self.total_steps is not None and step >= self.total_steps:
                    return
                yield order[b * self.batch_size:(b + 1) * self.batch_size]
                step += 1

    def __len__(self) -> int:
        if self.total_steps is None:
            raise TypeError("an endless ResumableBatchSampler has no length")
        return max(0, self.total_steps - self.start_step)


def learning_rate(step: int, total_steps: int, config: OptimConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr``."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, total_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(parameters: Any, config: OptimConfig) -> torch.optim.AdamW:
    if len(config.betas) != 2:
        raise ValueError(f"optim.betas needs two values, got {list(config.betas)}")
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay,
                             betas=(config.betas[0], config.betas[1]))


class ScalarLogger:
    """TensorBoard scalars from rank 0 (a no-op elsewhere or when disabled)."""

    def __init__(self, log_dir: Path | None) -> None:
        self._writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, step: int, scalars: dict[str, float], prefix: str = "") -> None:
        if self._writer is None:
            return
        for name, value in scalars.items():
            self._writer.add_scalar(f"{prefix}{name}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    """A tqdm bar over optimizer steps (disabled off rank 0 or when asked)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc,
                dynamic_ncols=True, mininterval=1.0)


def reduce_mean(values: dict[str, float], context: DistributedContext) -> dict[str, float]:
    """Average scalars over ranks (identity without DDP)."""
    if not context.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], device=context.device, dtype=torch.float64)
    dist.all_reduce(tensor)
    return {k: float(v) / context.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}
