"""Training infrastructure: configs, checkpoints, batch order, resume, the train command."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.normalization import PoseNormalization
from sdk.skeleton import MODEL_SKELETON
from train import cli
from train.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from train.config import OptimConfig, RunConfig, config_to_dict, load_config
from train.generator_training import (
    GeneratorData,
    GeneratorDataConfig,
    GeneratorTrainingConfig,
    mismatch_audio,
    train_generator,
)
from train.loop import ResumableBatchSampler, learning_rate
from train.models.generator import GeneratorConfig, SalientPostureGenerator

J = MODEL_SKELETON.num_joints
TINY_MODEL = GeneratorConfig(
    lookahead_frames=1, noise_dim=2, face_hidden=8, face_dilations=(1,), body_hidden=16,
    body_dilations=(1, 2), embedding_dim=8, pose_hidden=16, pose_dilations=(1,),
    decoder_hidden=16, decoder_dilations=(1,), detector_hidden=4, top_k=4)


class LearnableWindows(Dataset[dict[str, Any]]):
    """Windows whose poses are a fixed low-rank function of the features (learnable)."""

    def __init__(self, count: int, frames: int, lookahead: int, seed: int = 0) -> None:
        dim = DEFAULT_FEATURES.feature_dim
        fixed = np.random.default_rng(0)  # one mapping for every split
        mixing = (fixed.standard_normal((dim, 3)) @ fixed.standard_normal((3, J * 2))
                  ).astype(np.float32) / np.sqrt(dim)  # rank 3: fits the tiny latent
        rng = np.random.default_rng(seed)
        self.features = (rng.standard_normal((count, frames + lookahead, dim)) * 4 + 2
                         ).astype(np.float32)
        pose = np.tanh(self.features[:, lookahead:] @ mixing / 4).reshape(count, frames, J, 2)
        pose[:, :, MODEL_SKELETON.root] = 0
        self.pose = pose.astype(np.float32)
        energy = self.features[:, lookahead:, 0]
        self.seq_label = (energy.max(1) > np.median(energy.max(1))).astype(np.float32)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"features": self.features[i], "pose": self.pose[i],
                "seq_label": self.seq_label[i]}


def _normalization() -> PoseNormalization:
    return PoseNormalization(anchor_px=(320.0, 200.0), scale_px=100.0,
                             mean=np.zeros((J, 2)), std=np.ones((J, 2)), image_size=(640, 480))


def _tiny_training(steps: int, lr: float = 3e-3, **run: Any
                   ) -> tuple[GeneratorTrainingConfig, GeneratorData]:
    config = GeneratorTrainingConfig(
        model=TINY_MODEL,
        optim=OptimConfig(lr=lr, warmup_steps=2),
        run=RunConfig(steps=steps, batch_size=8, log_every=5, checkpoint_every=1000,
                      eval_every=0, threads=1, **run),
        data=GeneratorDataConfig(window_frames=12))
    data = GeneratorData(train=LearnableWindows(48, 12, 1), val=LearnableWindows(8, 12, 1, 9),
                         features=DEFAULT_FEATURES, normalization=_normalization())
    return config, data


# ---- configs ----
def test_default_yaml_matches_the_dataclass_defaults() -> None:
    from_yaml = load_config(GeneratorTrainingConfig, cli.default_config_path("generator"))
    assert from_yaml == GeneratorTrainingConfig()


def test_yaml_and_overrides_build_typed_config(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("model:\n  top_k: 8\nrun:\n  steps: 10\n")
    config = load_config(GeneratorTrainingConfig, path,
                         ["run.steps=20", "model.body_dilations=[1, 3]", "optim.lr=1"])
    assert config.model.top_k == 8 and config.run.steps == 20
    assert config.model.body_dilations == (1, 3)
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config_to_dict(config)["model"]["body_dilations"] == [1, 3]


@pytest.mark.parametrize(("override", "message"), [
    ("model.topk=3", "unknown config key"),
    ("run.steps=many", "must be an integer"),
    ("model.separate_branches=1", "true or false"),
    ("run.steps", "key=value"),
    ("loss.kind=huber", "'l1' or 'l2'"),
])
def test_bad_overrides_fail_clearly(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(GeneratorTrainingConfig, None, [override])


# ---- checkpoints ----
def _save(path: Path, kind: str = "generator", features: FeatureConfig = DEFAULT_FEATURES
          ) -> SalientPostureGenerator:
    model = SalientPostureGenerator(TINY_MODEL)
    model.set_feature_normalization(torch.arange(91.0), torch.full((91,), 2.0))
    config = config_to_dict(GeneratorTrainingConfig(model=TINY_MODEL))
    save_checkpoint(path, kind=kind, config=config, model=model, features=features,
                    normalization=_normalization(), step=7)
    return model


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path: Path) -> None:
    path = tmp_path / "gen.pt"
    model = _save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["gen.pt"]  # no temp file left
    ckpt = load_checkpoint(path, "generator", DEFAULT_FEATURES)
    assert ckpt.step == 7 and ckpt.normalization is not None
    loaded = load_model(path, "generator")
    assert isinstance(loaded, SalientPostureGenerator) and not loaded.training
    assert loaded.config == TINY_MODEL
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_checkpoint_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt", "generator")
    path = tmp_path / "gen.pt"
    _save(path)
    with pytest.raises(CheckpointError, match="holds a 'generator' model, expected 'fgd'"):
        load_model(path, "fgd")
    other = dataclasses.replace(DEFAULT_FEATURES, n_mfcc=12)
    with pytest.raises(CheckpointError, match="trained with features"):
        load_checkpoint(path, "generator", other)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(tmp_path / "junk.pt")


# ---- loop pieces ----
def test_batch_sampler_resumes_mid_epoch_with_the_same_batches() -> None:
    full = list(ResumableBatchSampler(23, 4, seed=3, total_steps=12))
    tail = list(ResumableBatchSampler(23, 4, seed=3, start_step=7, total_steps=12))
    assert tail == full[7:]
    assert sorted(i for b in full[:5] for i in b) == sorted(set(i for b in full[:5] for i in b))
    shards = [list(ResumableBatchSampler(23, 4, 3, total_steps=2, rank=r, world_size=2))
              for r in range(2)]
    seen = [{i for batch in shard for i in batch} for shard in shards]
    assert not seen[0] & seen[1]
    with pytest.raises(ValueError, match="batch_size"):
        ResumableBatchSampler(3, 4, seed=0)


def test_learning_rate_warms_up_then_decays() -> None:
    config = OptimConfig(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    rates = [learning_rate(s, 20, config) for s in range(20)]
    assert rates[0] == 0.25 and rates[3] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(rates[3:]))
    assert abs(learning_rate(20, 20, config) - 0.1) < 1e-9


# ---- training ----
def test_a_few_steps_lower_the_loss(tmp_path: Path) -> None:
    config, data = _tiny_training(steps=60, lr=1e-2)
    first = train_generator(config, data, tmp_path / "a", show_progress=False, stop_after=5)
    last = train_generator(config, data, tmp_path / "a", resume=True, show_progress=False)
    assert last["generation"] < 0.8 * first["generation"]
    assert last["val_generation"] < first["val_generation"]
    assert (tmp_path / "a" / "generator.pt").is_file()
    assert any((tmp_path / "a" / "tb").iterdir())


def test_mismatch_audio_gives_every_window_another_windows_audio() -> None:
    features = torch.arange(5.0)[:, None, None].expand(5, 3, 2)
    moved = mismatch_audio(features)
    assert sorted(moved[:, 0, 0].tolist()) == list(range(5))  # a permutation ...
    assert all(moved[b, 0, 0] != b for b in range(5))  # ... with no window kept
    assert torch.equal(mismatch_audio(torch.tensor([1.0, 0.0])), torch.tensor([0.0, 1.0]))


def test_audio_shuffled_baseline_cannot_learn_the_audio_pose_mapping(tmp_path: Path) -> None:
    config, data = _tiny_training(steps=60, lr=1e-2)
    paired = train_generator(config, data, tmp_path / "paired", show_progress=False)
    baseline = dataclasses.replace(config, data=dataclasses.replace(
        config.data, shuffle_audio_pairs=True))
    shuffled = train_generator(baseline, data, tmp_path / "shuffled", show_progress=False)
    # scored on true pairs: the paired model learned the mapping, the baseline cannot
    assert paired["val_generation_l1"] < 0.7 * shuffled["val_generation_l1"], (paired, shuffled)


def test_audio_shuffled_baseline_needs_two_windows_per_batch(tmp_path: Path) -> None:
    config, data = _tiny_training(steps=2)
    config = dataclasses.replace(
        config, run=dataclasses.replace(config.run, batch_size=1),
        data=dataclasses.replace(config.data, shuffle_audio_pairs=True))
    with pytest.raises(ValueError, match="batch_size >= 2"):
        train_generator(config, data, tmp_path, show_progress=False)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path: Path) -> None:
    config, data = _tiny_training(steps=10)
    train_generator(config, data, tmp_path / "full", show_progress=False)
    train_generator(config, data, tmp_path / "split", show_progress=False, stop_after=5)
    assert load_checkpoint(tmp_path / "split" / "generator.pt").step == 5
    train_generator(config, data, tmp_path / "split", resume=True, show_progress=False)
    full = load_checkpoint(tmp_path / "full" / "generator.pt")
    split = load_checkpoint(tmp_path / "split" / "generator.pt")
    assert split.step == full.step == 10
    for key, value in full.model.items():
        assert torch.allclose(split.model[key], value, atol=1e-6, rtol=0), key


def test_resume_refuses_a_different_model(tmp_path: Path) -> None:
    config, data = _tiny_training(steps=2)
    train_generator(config, data, tmp_path, show_progress=False)
    changed = dataclasses.replace(
        config, model=dataclasses.replace(TINY_MODEL, embedding_dim=4))
    with pytest.raises(CheckpointError, match="model config differs"):
        train_generator(changed, data, tmp_path, resume=True, show_progress=False)


# ---- command line ----
def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register_train(parser.add_subparsers())
    return parser.parse_args(argv)


def test_train_command_parses_and_reports_a_missing_trainer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse(["train", "fgd", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                   "--set", "run.steps=3", "--set", "model.top_k=2", "--device", "cpu"])
    assert args.overrides == ["run.steps=3", "model.top_k=2"] and args.device == "cpu"
    monkeypatch.setitem(cli.TRAINERS, "fgd", ("train.no_such_trainer", "main"))
    assert args.func(args) == 2
    assert "not part of this installation" in capsys.readouterr().err


def test_train_generator_command_rejects_a_bad_override(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["train", "generator", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                   "--set", "model.no_such_key=1"])
    assert args.func(args) == 2
    assert "unknown config key" in capsys.readouterr().err


def _ddp_worker(rank: int, out_dir: str, port: int) -> None:
    import os

    os.environ.update({"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    config, data = _tiny_training(steps=4)
    train_generator(config, data, out_dir, device="cpu", show_progress=False)


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_trains_and_rank0_checkpoints(tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(str(tmp_path), port), nprocs=2, join=True)
    ckpt = load_checkpoint(tmp_path / "generator.pt", "generator")
    assert ckpt.step == 4
