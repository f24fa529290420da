"""PoseSyncNet: the contrastive loss, a few training steps, ONNX export."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sdk.pose_image import ImagingConfig
from train.models.posesync import PoseSyncConfig, PoseSyncNet, contrastive_loss

TINY = PoseSyncConfig(audio_channels=(8, 8), pose_channels=(8, 8), hidden_dim=32,
                      embedding_dim=16, imaging=ImagingConfig(height=32, width=32))
IMAGE = (TINY.imaging.height, TINY.imaging.width)


def test_contrastive_loss_matches_the_equation_on_hand_made_pairs() -> None:
    audio = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0], [1.0, 0.0]])
    pose = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])  # d = 0, 5, 5, 1; margin 6
    # 1/(2N) [1*0^2 + 1*5^2 + max(6-5,0)^2 + max(6-1,0)^2] = (0 + 25 + 1 + 25) / 8
    loss = contrastive_loss(audio, pose, labels, margin=6.0)
    assert loss.item() == pytest.approx(51.0 / 8.0)
    far = contrastive_loss(audio[1:3], pose[1:3], torch.tensor([0.0, 0.0]), margin=2.0)
    assert far.item() == 0.0  # negatives beyond the margin cost nothing


def test_contrastive_loss_gradient_is_finite_at_zero_distance() -> None:
    audio = torch.zeros(2, 3, requires_grad=True)
    contrastive_loss(audio, torch.zeros(2, 3), torch.tensor([1.0, 0.0]), 1.0).backward()
    assert audio.grad is not None and torch.isfinite(audio.grad).all()


def test_contrastive_loss_rejects_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="labels"):
        contrastive_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2), 1.0)


def test_embeddings_are_unit_length_with_contract_shapes() -> None:
    model = PoseSyncNet(TINY)
    audio, pose = model(torch.randn(5, 13, 60), torch.rand(5, 9, *IMAGE))
    assert audio.shape == pose.shape == (5, 16)
    torch.testing.assert_close(audio.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(pose.norm(dim=1), torch.ones(5))


def _toy_batch(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose images whose bright column follows an audio coefficient (so sync is learnable)."""
    signal = rng.uniform(0, 1, (n, 9))
    mfcc = np.repeat(signal[:, None, :], 60 // 9 + 1, axis=2)[:, :, :60].repeat(13, axis=1)
    images = np.zeros((n, 9, *IMAGE), np.float32)
    cols = (signal * (IMAGE[1] - 1)).astype(int)
    for b in range(n):
        images[b, np.arange(9), :, cols[b]] = 1.0
    return torch.from_numpy(mfcc.astype(np.float32)), torch.from_numpy(images)


def test_a_few_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = PoseSyncNet(TINY)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    mfcc, images = _toy_batch(rng, 32)
    shuffled = torch.roll(images, 1, dims=0)
    inputs = (torch.cat([mfcc, mfcc]), torch.cat([images, shuffled]))
    labels = torch.cat([torch.ones(32), torch.zeros(32)])
    losses = []
    for _ in range(20):
        audio_emb, pose_emb = model(*inputs)
        loss = contrastive_loss(audio_emb, pose_emb, labels, TINY.margin)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3])


@pytest.mark.slow
def test_onnx_export_with_dynamic_batch_matches_torch(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = tmp_path / "posesync.onnx"
    torch.manual_seed(1)
    model = PoseSyncNet(TINY).eval()
    model.set_mfcc_stats(torch.randn(13), torch.rand(13) + 0.5)
    batch = torch.export.Dim("batch", min=1, max=1024)
    example = (torch.randn(2, 13, 60), torch.rand(2, 9, *IMAGE))
    torch.onnx.export(model, example, str(path), dynamo=True,
                      input_names=["mfcc", "pose_images"], output_names=["audio_emb", "pose_emb"],
                      dynamic_shapes={"mfcc": {0: batch}, "pose_images": {0: batch}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        mfcc, images = torch.randn(n, 13, 60) * 20, torch.rand(n, 9, *IMAGE)
        got = session.run(None, {"mfcc": mfcc.numpy(), "pose_images": images.numpy()})
        with torch.no_grad():
            want = model(mfcc, images)
        for g, w in zip(got, want, strict=True):
            assert g.shape == (n, TINY.embedding_dim)
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4)


# ---- training on a tiny synthetic corpus ----
@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.data.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("synth")
    synthesize_corpus(root, speakers=1, minutes=0.8, seed=3)  # 11 clips: 2 held out
    return root


def _tiny_training_config(steps: int) -> Any:
    from train.config import RunConfig, config_from_dict
    from train.posesync_training import PoseSyncTrainingConfig

    config = config_from_dict(PoseSyncTrainingConfig, {
        "model": {"audio_channels": [8, 8], "pose_channels": [8, 8], "hidden_dim": 32,
                  "embedding_dim": 16, "imaging": {"height": 24, "width": 24}},
        "data": {"max_offset": 5},
    })
    run = RunConfig(steps=steps, batch_size=16, log_every=2, checkpoint_every=100,
                    eval_every=0, threads=1)
    return dataclasses.replace(config, run=run)


def test_training_writes_a_loadable_checkpoint_with_held_out_metrics(
        tiny_corpus: Path, tmp_path: Path) -> None:
    from train.checkpoint import load_model
    from train.posesync_data import load_sync_corpus
    from train.posesync_training import CHECKPOINT_NAME, train_posesync

    config = _tiny_training_config(steps=4)
    corpus = load_sync_corpus(tiny_corpus, config.model.imaging)
    assert corpus.held_out and corpus.num_clips > 100
    result = train_posesync(config, corpus, tmp_path, device="cpu", show_progress=False)
    assert np.isfinite(result["loss"])
    assert 0.0 <= result["val_auc"] <= 1.0 and 0.0 <= result["val_offset_accuracy"] <= 1.0
    model = load_model(tmp_path / CHECKPOINT_NAME, "posesync")
    assert isinstance(model, PoseSyncNet) and model.image_shape == (24, 24)
    mean, _ = corpus.mfcc_statistics()
    torch.testing.assert_close(model.mfcc_mean.reshape(-1), torch.from_numpy(mean))


def test_resumed_training_equals_uninterrupted_training(tiny_corpus: Path, tmp_path: Path
                                                        ) -> None:
    from train.checkpoint import load_checkpoint
    from train.posesync_data import load_sync_corpus
    from train.posesync_training import CHECKPOINT_NAME, train_posesync

    config = _tiny_training_config(steps=4)
    corpus = load_sync_corpus(tiny_corpus, config.model.imaging)
    train_posesync(config, corpus, tmp_path / "full", device="cpu", show_progress=False)
    train_posesync(config, corpus, tmp_path / "split", device="cpu", show_progress=False,
                   stop_after=2)
    train_posesync(config, corpus, tmp_path / "split", resume=True, device="cpu",
                   show_progress=False)
    full = load_checkpoint(tmp_path / "full" / CHECKPOINT_NAME).model
    split = load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME).model
    for name, value in full.items():
        torch.testing.assert_close(split[name], value, msg=name)


def test_shipped_config_builds_the_contract_model() -> None:
    from train.cli import CONFIG_DIR
    from train.config import load_config
    from train.posesync_training import PoseSyncTrainingConfig

    config = load_config(PoseSyncTrainingConfig, CONFIG_DIR / "posesync.yaml")
    model = PoseSyncNet(config.model)
    assert model.mfcc_shape == (13, 60)
    assert model.image_shape == (config.model.imaging.height, config.model.imaging.width)
    assert config.model.normalize and config.model.margin > 0


# ---- corrupted copies of the training audio (data.audio_augmentation_copies) ----
def test_corrupted_copies_are_the_generators_corruption_of_each_sequence(
        tiny_corpus: Path) -> None:
    from train.data.audio_augmentation import AudioAugmentation
    from train.posesync_data import SyncCorpus, load_corpus_sequences, sequence_mfcc
    from train.posesync_training import PoseSyncDataConfig

    augmentation = PoseSyncDataConfig(audio_augmentation_copies=2).augmentation()
    assert isinstance(augmentation, AudioAugmentation) and augmentation.gain_db == 0.0
    imaging = ImagingConfig(height=24, width=24)
    sequences = load_corpus_sequences(tiny_corpus)
    train = [s for s in sequences if not s.held_out]
    clean = SyncCorpus(train, [], imaging)
    noisy = SyncCorpus(train, [], imaging, augmentation=augmentation, copies=2, seed=5)
    assert (clean.num_variants, noisy.num_variants) == (1, 3)
    clips = np.array([0, 7, noisy.num_clips - 1])
    np.testing.assert_array_equal(noisy.audio_clips(clips, np.zeros(3, np.int64)),
                                  clean.audio_clips(clips))
    np.testing.assert_array_equal(noisy.audio_clips(clips), clean.audio_clips(clips))
    # the reference: copy 2 of the first sequence, corrupted and featurised by hand
    seq = train[0]
    rms = float(np.sqrt(np.mean(np.square(seq.audio, dtype=np.float64))))
    audio = augmentation.apply(seq.audio, rms, 16000, np.random.default_rng([5, 0, 1]))
    reference = sequence_mfcc(audio, seq.num_frames, clean.features, clean.clip)
    first = noisy.audio_clips(np.array([0, 7]), np.array([2, 2]))
    for row, k in zip(first, (0, 7), strict=True):
        start = int(clean.clip_mfcc[k])
        np.testing.assert_array_equal(row, reference[start:start + row.shape[1]].T)
    # a corrupted clip is not the clean one, and copies differ from each other
    one, two = (noisy.audio_clips(clips, np.full(3, v)) for v in (1, 2))
    assert np.abs(one - clean.audio_clips(clips)).max() > 1.0
    assert np.abs(one - two).max() > 1.0


def test_corrupted_copies_are_refused_without_a_corruption_or_below_zero(
        tiny_corpus: Path) -> None:
    from train.posesync_data import SyncCorpus, load_corpus_sequences
    from train.posesync_training import PoseSyncDataConfig

    with pytest.raises(ValueError, match="audio_augmentation_copies must be >= 0, got -1"):
        PoseSyncDataConfig(audio_augmentation_copies=-1)
    assert PoseSyncDataConfig().augmentation() is None
    train = [s for s in load_corpus_sequences(tiny_corpus) if not s.held_out]
    with pytest.raises(ValueError, match="need an augmentation, got 1"):
        SyncCorpus(train, [], ImagingConfig(height=24, width=24), copies=1)


def test_training_with_corrupted_copies_runs(tiny_corpus: Path, tmp_path: Path) -> None:
    from train.posesync_data import load_sync_corpus
    from train.posesync_training import train_posesync

    config = _tiny_training_config(steps=2)
    config = dataclasses.replace(config, data=dataclasses.replace(
        config.data, audio_augmentation_copies=1))
    corpus = load_sync_corpus(tiny_corpus, config.model.imaging,
                              augmentation=config.data.augmentation(), copies=1)
    result = train_posesync(config, corpus, tmp_path, device="cpu", show_progress=False)
    assert np.isfinite(result["loss"])
