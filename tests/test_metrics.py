"""train.metrics: FGD, beat consistency, ROC AUC, keypoint errors, lip sync, diversity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdk.skeleton import LIP_BOTTOM, LIP_TOP, MODEL_SKELETON
from train.metrics import (
    detector_frame_auc,
    diversity,
    fgd,
    frechet_distance,
    l1_error,
    lip_sync_correlation,
    pck,
    roc_auc,
)

J = MODEL_SKELETON.num_joints
FPS = 15


# ---- FGD ----
def test_fgd_of_identical_sets_is_zero() -> None:
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert fgd(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fgd_grows_with_the_squared_mean_shift() -> None:
    x = np.random.default_rng(1).normal(size=(400, 6))
    shifts = [0.5, 1.0, 2.0]
    values = [fgd(x, x + s) for s in shifts]  # same covariance: FGD = ||delta||^2 = 6 s^2
    np.testing.assert_allclose(values, [6 * s**2 for s in shifts], rtol=1e-6)


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians() -> None:
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + 2.0**2
    mu2 = np.array([2.0, 0.0, 0.0])
    assert frechet_distance(np.zeros(3), np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_frechet_distance_matches_the_sqrtm_formula() -> None:
    from scipy import linalg

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    reference = (np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2)
                 - 2 * np.trace(linalg.sqrtm(s1 @ s2).real))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-9)


def test_frechet_distance_survives_singular_covariances() -> None:
    sigma = np.zeros((4, 4))
    sigma[0, 0] = 1.0  # rank 1
    assert frechet_distance(np.zeros(4), sigma, np.ones(4), sigma) == pytest.approx(4.0, abs=1e-4)


# ---- ROC AUC ----
def test_roc_auc_known_cases() -> None:
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5  # ties count one half
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # sklearn's doc example
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0.1, 0.2], [1, 1])


def test_detector_frame_auc_pools_sequences() -> None:
    scores = [np.array([0.9, 0.1, 0.2]), np.array([0.7, 0.3])]
    truth = [np.array([1.0, 0.0, 0.0]), np.array([1.0, 0.0])]
    assert detector_frame_auc(scores, truth) == 1.0
    with pytest.raises(ValueError, match="sequence 1"):
        detector_frame_auc(scores, [truth[0], np.zeros(3)])


# ---- keypoints ----
def test_l1_and_pck_known_values() -> None:
    gt = np.zeros((2, 3, 2))
    gt[:, 1] = [10.0, 0.0]  # bounding box 10 wide: PCK radius 0.2 * 10 = 2
    pred = gt.copy()
    pred[:, 2, 0] += 3.0  # one joint of three off by 3 > 2
    assert l1_error(pred, gt) == pytest.approx(3.0 * 2 / (2 * 3 * 2))
    assert pck(pred, gt) == pytest.approx(2 / 3)
    assert pck(gt, gt) == 1.0


def test_lip_sync_correlation_follows_the_inner_lip_opening() -> None:
    t = np.arange(60)
    opening = 0.1 + 0.05 * np.sin(t / 3.0)
    gt = np.zeros((60, J, 2))
    gt[:, LIP_BOTTOM, 1] = opening
    pred = gt.copy()
    pred[:, LIP_BOTTOM, 1] = 2 * opening + 1  # same shape, other scale: r = 1
    assert lip_sync_correlation(pred, gt) == pytest.approx(1.0)
    pred[:, LIP_BOTTOM, 1] = opening[::-1]
    assert lip_sync_correlation(pred, gt) < 0.5
    assert LIP_TOP != LIP_BOTTOM


def test_diversity_is_zero_for_identical_features_and_seeded() -> None:
    assert diversity(np.ones((10, 4))) == 0.0
    x = np.random.default_rng(0).normal(size=(50, 4))
    assert diversity(x, seed=1) == diversity(x, seed=1) > 0


# ---- FGD feature extractor ----
def test_fgd_autoencoder_learns_and_encodes_windows() -> None:
    import torch

    from train.models.fgd import FGDConfig, PoseAutoencoder, fgd_features, pose_windows

    torch.manual_seed(0)
    config = FGDConfig(window_frames=16, channels=32, down_channels=(32, 16), latent_dim=8)
    model = PoseAutoencoder(config)
    t = np.arange(64)[:, None, None]
    phase = np.random.default_rng(0).uniform(0, 6, (1, J, 2))
    sequence = np.sin(t / 4.0 + phase).astype(np.float32)  # (64, J, 2) smooth motion
    windows = torch.from_numpy(pose_windows(sequence, 16, stride=4))  # (13, 16, J, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = (model(windows)[0] - windows).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    features = fgd_features(model, [sequence, sequence[:40]])
    assert features.shape == (4 + 2, 8)  # non-overlapping 16-frame windows: 4 + 2
    with pytest.raises(ValueError, match="window"):
        model.encode(torch.zeros(1, 15, J, 2))


def test_fgd_training_writes_a_checkpoint_and_sanity_fgds(tmp_path: Path) -> None:
    from train.checkpoint import load_model
    from train.config import RunConfig
    from train.data.synth import synthesize_corpus
    from train.fgd_training import CHECKPOINT_NAME, FGDTrainingConfig, load_fgd_data, train_fgd
    from train.models.fgd import FGDConfig, PoseAutoencoder

    synthesize_corpus(tmp_path / "corpus", speakers=1, minutes=0.8, seed=5)
    config = FGDTrainingConfig(
        model=FGDConfig(window_frames=16, channels=32, down_channels=(32, 16), latent_dim=8),
        run=RunConfig(steps=3, batch_size=8, log_every=1, eval_every=0, threads=1))
    data = load_fgd_data(tmp_path / "corpus", config)
    result = train_fgd(config, data, tmp_path / "run", device="cpu", show_progress=False)
    assert np.isfinite(result["loss"]) and result["val_fgd_heldout_vs_frozen"] >= 0
    assert isinstance(load_model(tmp_path / "run" / CHECKPOINT_NAME, "fgd"), PoseAutoencoder)


def test_psd_of_sequences_images_with_the_models_own_imaging() -> None:
    import torch

    from sdk.pose_image import ImagingConfig
    from train.metrics.psd import psd_of_sequences
    from train.models.posesync import PoseSyncConfig, PoseSyncNet

    torch.manual_seed(0)
    model = PoseSyncNet(PoseSyncConfig(audio_channels=(4, 4), pose_channels=(4, 4),
                                       hidden_dim=8, embedding_dim=4,
                                       imaging=ImagingConfig(height=20, width=28)))
    rng = np.random.default_rng(0)
    poses = [rng.uniform(-1, 1, (30, J, 2)).astype(np.float32) for _ in range(2)]
    mfccs = [rng.normal(size=(200, 13)).astype(np.float32) for _ in range(2)]
    summary = psd_of_sequences(model, mfccs, poses, max_offset=5)
    assert len(summary.sweeps) == 2 and summary.sweeps[0].offsets.tolist() == list(range(-5, 6))
    assert 0.0 <= summary.psd <= 2.0  # unit embeddings
    assert 0.0 <= summary.offset_accuracy <= 1.0
