"""Missing joints are data: masks from the loader into losses, metrics and statistics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.skeleton import UPPER_BODY_122
from train.data.sdt import compute_normalization, load_speaker
from train.data.sequences import joint_mask
from train.data.synth import synthesize_corpus
from train.data.windows import WindowDataset
from train.fgd_training import reconstruction_loss
from train.losses import GeneratorLossConfig, joint_weights, velocity_error, weighted_pose_error
from train.metrics.keypoints import l1_error, lip_sync_correlation, pck

J = UPPER_BODY_122.num_joints
WRIST = UPPER_BODY_122.joint_names.index("right_wrist")


def test_masked_joints_carry_no_pose_loss() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 5, J, 2, generator=g), torch.randn(2, 5, J, 2, generator=g)
    weights = joint_weights(GeneratorLossConfig())
    ones = torch.ones(2, 5, J)
    assert torch.allclose(weighted_pose_error(pred, target, weights, "l1", ones),
                          weighted_pose_error(pred, target, weights, "l1"))
    mask = ones.clone()
    mask[0, 2, WRIST] = 0
    broken = target.clone()
    broken[0, 2, WRIST] = float("nan")  # whatever a missing joint holds
    masked = weighted_pose_error(pred, broken, weights, "l2", mask)
    assert torch.isfinite(masked)
    broken[0, 2, WRIST] = 1e6
    assert torch.allclose(weighted_pose_error(pred, broken, weights, "l2", mask), masked)
    assert weighted_pose_error(pred, broken, weights, "l2") > 1e3 * masked  # unmasked: blows up
    # a velocity needs the joint in both frames: frames 1-2 and 2-3 drop out
    assert torch.allclose(velocity_error(pred, broken, weights, "l1", mask),
                          velocity_error(pred, target, weights, "l1", mask))
    assert torch.isfinite(reconstruction_loss(pred, torch.nan_to_num(broken, 0.0), 1.0, mask))


def test_fgd_reconstruction_loss_skips_masked_joints() -> None:
    pred = torch.zeros(1, 4, J, 2)
    target = torch.zeros(1, 4, J, 2)
    target[0, 1, WRIST] = 50.0
    mask = torch.ones(1, 4, J)
    assert reconstruction_loss(pred, target, 1.0) > 0
    mask[0, 1, WRIST] = 0
    assert reconstruction_loss(pred, target, 1.0, mask) == 0


def test_metrics_skip_unobserved_ground_truth() -> None:
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(30, J, 2))
    pred = gt + 0.01
    broken = pred.copy()
    broken[3, WRIST] = 100.0  # wrong only where the truth is unknown
    unknown = gt.copy()
    unknown[3, WRIST] = np.nan
    assert l1_error(broken, unknown) == pytest.approx(l1_error(pred, gt))
    assert pck(broken, unknown) == 1.0 and pck(broken, gt) < 1.0
    assert np.isfinite(lip_sync_correlation(broken, unknown))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list:  # type: ignore[type-arg]
    root: Path = tmp_path_factory.mktemp("mask")
    synthesize_corpus(root, speakers=1, minutes=0.6, seed=2)  # 8 train clips
    return [c for c in load_speaker(root, "synth_00") if c.split == "train"]


def test_windows_carry_the_mask_and_drop_windows_missing_too_much(clips: list) -> None:  # type: ignore[type-arg]
    broken = clips[0].confidence.copy()
    broken[:, 95:] = 0.0  # no hands in clip 0: 42 of 121 joints
    broken[10:20, 1] = 0.0  # no neck in 10 frames: nothing usable there
    clips = [dataclasses.replace(clips[0], confidence=broken)] + clips[1:]
    norm = compute_normalization(clips)
    full = WindowDataset(clips, norm, 64, 0, 16)
    item = full[0]
    assert item["mask"].shape == (64, J) and item["mask"].dtype == np.float32
    assert np.all(item["mask"][10:20] == 0) and np.all(item["mask"][:10, 80:] == 0)
    assert np.all(item["pose"][item["mask"] == 0] == 0.0)  # the mean pose, not (0, 0) px
    assert np.all(np.isnan(item["canonical"][item["mask"] == 0]))
    strict = WindowDataset(clips, norm, 64, 0, 16, max_missing_fraction=0.3)
    assert strict.dropped_windows > 0 and len(strict) + strict.dropped_windows == len(full)
    assert np.array_equal(joint_mask(broken)[:64], item["mask"] > 0)


def test_normalisation_ignores_unobserved_joints(clips: list) -> None:  # type: ignore[type-arg]
    reference = compute_normalization(clips)
    moved = clips[0].pose_px.copy()
    conf = clips[0].confidence.copy()
    moved[:5, 4] = 0.0  # OpenPose's undetected right wrist: (0, 0) with confidence 0
    conf[:5, 4] = 0.0
    patched = [dataclasses.replace(clips[0], pose_px=moved, confidence=conf)]
    stats = compute_normalization(patched + clips[1:])
    assert np.allclose(stats.mean, reference.mean, atol=0.02)
    assert np.allclose(stats.std, reference.std, atol=0.02)
