"""Generator losses on hand-made cases: top-k mean, reweighting, consistency, pose terms."""

from __future__ import annotations

import math

import pytest
import torch

from sdk.skeleton import MODEL_SKELETON
from train.losses import (
    GeneratorLossConfig,
    consistency_loss,
    detector_loss,
    generator_loss,
    joint_weights,
    saliency_weights,
    spread_error,
    topk_mean,
    velocity_error,
    weighted_pose_error,
)
from train.models.generator import GeneratorOutput

J = MODEL_SKELETON.num_joints


def test_topk_mean_averages_the_k_largest_scores() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.7, 0.0], [0.5, 0.5, 0.2, 0.2, 0.2]])
    assert torch.allclose(topk_mean(scores, 2), torch.tensor([0.8, 0.5]))
    assert torch.allclose(topk_mean(scores, 1), torch.tensor([0.9, 0.5]))
    # k beyond the sequence length is capped at T (the plain mean)
    assert torch.allclose(topk_mean(scores, 16), scores.mean(1))
    with pytest.raises(ValueError, match="k >= 1"):
        topk_mean(scores, 0)


def test_saliency_weights_emphasise_salient_frames_with_mean_one() -> None:
    scores = torch.tensor([[0.0, 1.0], [0.0, 1.0]], requires_grad=True)
    w = saliency_weights(scores, alpha=1.0)  # raw 1 and 2, mean 1.5
    assert torch.allclose(w, torch.tensor([[2 / 3, 4 / 3], [2 / 3, 4 / 3]]))
    assert not w.requires_grad
    assert torch.allclose(saliency_weights(scores, alpha=0.0), torch.ones(2, 2))


def test_consistency_is_one_minus_cosine_and_reweighted() -> None:
    a = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # (1, 2, 2)
    same = torch.tensor([[[2.0, 0.0], [3.0, 0.0]]])
    assert consistency_loss(a, same).abs() < 1e-6
    mixed = torch.tensor([[[-1.0, 0.0], [0.0, 5.0]]])  # dissimilarity 2 and 1
    assert math.isclose(float(consistency_loss(a, mixed)), 1.5, abs_tol=1e-6)
    weights = torch.tensor([[0.5, 1.5]])
    assert math.isclose(float(consistency_loss(a, mixed, weights)), (0.5 * 2 + 1.5 * 1) / 2,
                        abs_tol=1e-6)


def test_centering_removes_a_shared_offset() -> None:
    offset = torch.tensor([100.0, 0.0, 0.0])
    a = torch.tensor([[[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]]) + offset
    b = torch.tensor([[[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]]]) + offset  # anti-correlated
    assert float(consistency_loss(a, b)) < 1e-3
    assert math.isclose(float(consistency_loss(a, b, center=True)), 2.0, abs_tol=1e-5)


def test_reweighting_makes_the_salient_frame_dominate() -> None:
    a = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    b = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # frame 0 mismatched
    scores = torch.tensor([[1.0, 0.0]])
    plain = consistency_loss(a, b)
    weighted = consistency_loss(a, b, saliency_weights(scores, alpha=3.0))
    assert float(weighted) > float(plain)


def test_joint_weights_zero_root_and_lips_override_face() -> None:
    w = joint_weights(GeneratorLossConfig(face_weight=1.5, lips_weight=4.0, hands_weight=2.0))
    groups = MODEL_SKELETON.groups
    assert w[MODEL_SKELETON.root] == 0
    assert w[groups["lips"][0]] == 4.0
    assert w[groups["face"][0]] == 1.5
    assert w[groups["right_hand"][-1]] == 2.0


def test_weighted_pose_error_counts_joints_by_weight() -> None:
    target = torch.zeros(1, 3, J, 2)
    pred = target.clone()
    lip = MODEL_SKELETON.groups["lips"][0]
    pred[:, :, lip] = 1.0
    w = joint_weights(GeneratorLossConfig())
    assert torch.isclose(weighted_pose_error(pred, target, w, "l1"), w[lip] / w.sum())
    pred[:, :, MODEL_SKELETON.root] = 7.0  # the root carries no loss
    assert torch.isclose(weighted_pose_error(pred, target, w, "l2"), w[lip] / w.sum())


def test_velocity_error_ignores_a_constant_offset() -> None:
    target = torch.randn(2, 5, J, 2)
    w = joint_weights(GeneratorLossConfig())
    assert velocity_error(target + 0.3, target, w) < 1e-6
    moved = target.clone()
    moved[:, 2] += 1.0
    assert velocity_error(moved, target, w) > 0.1


def test_spread_error_asks_a_still_pose_for_the_motion_s_size_not_its_timing() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.randn(3, 16, J, 2, generator=g)
    w = joint_weights(GeneratorLossConfig())
    # an offset, or the same motion played backwards, has the target's spread: no loss
    assert spread_error(target + 0.5, target, w) < 1e-5
    assert spread_error(target.flip(1), target, w) < 1e-5
    # the mean pose (no motion) loses the whole spread; half the motion, half of it
    still = target.mean(dim=1, keepdim=True).expand_as(target).clone().requires_grad_(True)
    full = spread_error(still, target, w)
    assert full > 0.5
    half = target.mean(dim=1, keepdim=True) + 0.5 * (target - target.mean(dim=1, keepdim=True))
    assert torch.isclose(spread_error(half, target, w), full / 2, rtol=1e-3)
    full.backward()  # and its gradient exists at a still pose (eps in the sqrt)
    assert still.grad is not None and torch.isfinite(still.grad).all()


def test_spread_error_uses_observed_frames_only() -> None:
    target = torch.randn(1, 8, J, 2)
    mask = torch.ones(1, 8, J)
    lip = MODEL_SKELETON.groups["lips"][0]
    target[0, :4, lip] = float("nan")  # not observed: must not reach the loss
    mask[0, :4, lip] = 0
    w = joint_weights(GeneratorLossConfig())
    pred = target.clone()
    pred[0, :4, lip] = 100.0  # whatever the model says where nothing was observed
    assert torch.isfinite(spread_error(pred, target, w, mask))
    assert spread_error(pred, target, w, mask) < 1e-5
    pred[0, 4:, lip] *= 3.0  # a wrong spread on the observed frames is seen ...
    assert spread_error(pred, target, w, mask) > 1e-3
    mask[0, 5:, lip] = 0  # ... unless one frame is observed: no spread to compare
    assert spread_error(pred, target, w, mask) < 1e-5
    with pytest.raises(ValueError, match="shapes differ"):
        spread_error(pred[:, :4], target, w)


def test_detector_loss_is_bce_of_the_sequence_score() -> None:
    score = torch.tensor([0.8, 0.3])
    label = torch.tensor([1.0, 0.0])
    want = -(math.log(0.8) + math.log(0.7)) / 2
    assert math.isclose(float(detector_loss(score, label)), want, rel_tol=1e-5)


def test_generator_loss_total_is_the_weighted_sum_of_parts() -> None:
    g = torch.Generator().manual_seed(0)
    b, t, e, lookahead = 2, 6, 4, 2
    out = GeneratorOutput(
        poses=torch.randn(b, t + lookahead, J, 2, generator=g),
        saliency=torch.rand(b, t + lookahead, generator=g),
        audio_emb=torch.randn(b, t + lookahead, e, generator=g),
        seq_score=torch.tensor([0.6, 0.4]), lookahead=lookahead,
        pose_emb=torch.randn(b, t, e, generator=g),
        recon_poses=torch.randn(b, t, J, 2, generator=g))
    pose = torch.randn(b, t, J, 2, generator=g)
    config = GeneratorLossConfig(generation_weight=2.0, consistency_weight=0.25,
                                 detector_weight=3.0, velocity_weight=0.5,
                                 spread_weight=0.75)
    total, parts = generator_loss(out, pose, torch.tensor([1.0, 0.0]), config)
    want = (2.0 * parts["generation"] + parts["reconstruction"] + 0.5 * parts["velocity"]
            + 0.75 * parts["spread"]
            + 0.25 * parts["consistency"] + 3.0 * parts["detector"])
    assert torch.isclose(total, want)
    assert torch.isclose(parts["total"], total)
    with pytest.raises(ValueError, match="reconstruction path"):
        generator_loss(GeneratorOutput(out.poses, out.saliency, out.audio_emb, out.seq_score,
                                       lookahead), pose, torch.ones(2), config)
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        GeneratorLossConfig(kind="huber")
