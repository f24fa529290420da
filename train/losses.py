"""Losses of the salient-posture generator, on standardised poses.

* generation: L1 (or L2) between generated and ground-truth poses, joints weighted by
  group (face, lips, hands, body; the root carries no loss, it is exactly 0); joints the
  data did not observe (the windows' ``mask``, train/data/sequences.py) carry none either;
* reconstruction: the same on the reconstruction path (pose encoder -> decoders);
* velocity: the same on frame-to-frame differences (keeps motion from being smoothed);
* spread: |std_t(generated) - std_t(ground truth)| per window, joint and coordinate, joints
  weighted and masked as above: how far each joint moves within the window, whatever the
  timing. An L1 regressor that cannot tell where a gesture goes makes it smaller
  (regression to the mean pose); this term asks for the motion's size back (off by
  default: benchmarks/results/training/generator_steps);
* consistency: 1 - cos(audio_emb, pose_emb) per frame, reweighted by the detector's
  frame scores: ``w = 1 + alpha * score`` (score detached, so the reweighting does not
  train the detector to lower the weights), normalised to mean 1 over the batch so alpha
  changes the emphasis, not the loss scale (the paper: salient postures count more);
* detector: BCE between the mean of the top-k frame scores and the sequence label.

Ablation "without the salient posture detector": ``saliency_alpha = 0`` and
``detector_weight = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sdk.skeleton import MODEL_SKELETON
from train.models.generator import GeneratorOutput


@dataclass(frozen=True)
class GeneratorLossConfig:
    """Loss weights (dimensionless). Paper silent on all values: chosen on the synthetic
    corpus so that no term dominates at the start of training.

    Attributes:
        kind: "l1" or "l2" for the pose terms.
        generation_weight / reconstruction_weight / velocity_weight / spread_weight:
            pose terms.
        consistency_weight: the joint-manifold consistency term.
        saliency_alpha: reweighting strength, w = 1 + alpha * score (0 = no reweighting).
        detector_weight: top-k BCE of the detector.
        center_embeddings: compare batch-centred embeddings (see :func:`consistency_loss`).
        body_weight / face_weight / lips_weight / hands_weight: per-group joint weights
            (lips are part of face; the lips weight wins there).
    """

    kind: str = "l1"
    generation_weight: float = 1.0
    reconstruction_weight: float = 1.0
    velocity_weight: float = 1.0
    spread_weight: float = 0.0
    consistency_weight: float = 0.5
    saliency_alpha: float = 2.0
    detector_weight: float = 0.5
    center_embeddings: bool = True
    body_weight: float = 1.0
    face_weight: float = 1.0
    lips_weight: float = 2.0
    hands_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("l1", "l2"):
            raise ValueError(f"loss kind must be 'l1' or 'l2', got {self.kind!r}")
        for name, value in self.__dict__.items():
            if name not in ("kind", "center_embeddings") and not float(value) >= 0:
                raise ValueError(f"GeneratorLossConfig.{name} must be >= 0, got {value}")


def joint_weights(config: GeneratorLossConfig) -> torch.Tensor:
    """(J,) float32 weight per joint of MODEL_SKELETON; the root's is 0."""
    w = torch.zeros(MODEL_SKELETON.num_joints)
    groups = MODEL_SKELETON.groups
    w[list(groups["body"])] = config.body_weight
    w[list(groups["face"])] = config.face_weight
    w[list(groups["lips"])] = config.lips_weight
    w[list(groups["left_hand"]) + list(groups["right_hand"])] = config.hands_weight
    w[MODEL_SKELETON.root] = 0.0
    return w


def weighted_pose_error(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                        kind: str = "l1", mask: torch.Tensor | None = None) -> torch.Tensor:
    """Joint-weighted mean error, scalar.

    Args:
        pred, target: (B, T, J, 2) standardised poses.
        weights: (J,) joint weights (not all zero).
        kind: "l1" (mean |d|) or "l2" (mean d²).
        mask: (B, T, J) 1 where the target joint was observed, 0 where it was not (left
            out, whatever ``target`` holds there); None: all observed.
    Returns:
        sum_{b,t,j} w_j m_btj mean_xy err_btj / sum_{b,t,j} w_j m_btj; without a mask that
        is sum_j w_j * mean_{b,t,xy} err_j / sum_j w_j. 0 when no weighted joint is observed.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs "
                         f"{tuple(target.shape)}")
    diff = pred - target
    err = diff.abs() if kind == "l1" else diff.square()
    if mask is not None:
        if mask.shape != pred.shape[:3]:
            raise ValueError(f"mask shape {tuple(mask.shape)} is not (B, T, J) = "
                             f"{tuple(pred.shape[:3])}")
        m = mask.to(err) * weights.to(err)  # (B, T, J)
        # where() rather than a product: a NaN/Inf left in a masked target stays out
        per = torch.where(m > 0, err.mean(dim=3), torch.zeros_like(m))
        return (per * m).sum() / m.sum().clamp_min(1e-12)
    per_joint = err.mean(dim=(0, 1, 3))  # (J,)
    w = weights.to(per_joint)
    return (per_joint * w).sum() / w.sum()


def velocity_error(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                   kind: str = "l1", mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`weighted_pose_error` of frame differences (B, T-1, J, 2); 0 when T < 2.
    A difference counts where ``mask`` (B, T, J) has the joint in both frames."""
    if pred.shape[1] < 2:
        return pred.new_zeros(())
    both = None if mask is None else mask[:, 1:] * mask[:, :-1]
    return weighted_pose_error(pred.diff(dim=1), target.diff(dim=1), weights, kind, both)


def spread_error(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Joint-weighted mean |std over time of pred - std over time of target|, scalar.

    Args:
        pred, target: (B, T, J, 2) standardised poses.
        weights: (J,) joint weights.
        mask: (B, T, J) observed joints (None = all); a window's std of a joint uses its
            observed frames only, and a joint observed in fewer than 2 frames of a window
            carries no weight there.
    Returns:
        sum_{b,j} w_j v_bj mean_xy |s_pred - s_target|_bj / sum_{b,j} w_j v_bj, v = 1 where
        the joint has >= 2 observed frames; 0 when T < 2 or nothing is observed.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs "
                         f"{tuple(target.shape)}")
    if pred.shape[1] < 2:
        return pred.new_zeros(())
    m = (torch.ones(pred.shape[:3], dtype=pred.dtype, device=pred.device) if mask is None
         else mask.to(pred)).unsqueeze(-1)  # (B, T, J, 1)
    count = m.sum(dim=1)  # (B, J, 1)
    # where() keeps a NaN/Inf left in an unobserved target out of the sums
    pred = torch.where(m > 0, pred, torch.zeros_like(pred))
    target = torch.where(m > 0, target, torch.zeros_like(target))

    def std(x: torch.Tensor) -> torch.Tensor:  # (B, J, 2)
        mean = (x * m).sum(dim=1) / count.clamp_min(1.0)
        var = ((x - mean.unsqueeze(1)).square() * m).sum(dim=1) / count.clamp_min(1.0)
        return (var + 1e-8).sqrt()

    err = (std(pred) - std(target)).abs().mean(dim=-1)  # (B, J)
    valid = (count[..., 0] >= 2).to(err) * weights.to(err)  # (B, J)
    return (err * valid).sum() / valid.sum().clamp_min(1e-12)


def topk_mean(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the k largest frame scores per sequence: (B, T) -> (B,); k capped at T."""
    if k < 1:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    return scores.topk(min(k, scores.shape[1]), dim=1).values.mean(dim=1)


def detector_loss(seq_score: torch.Tensor, seq_label: torch.Tensor,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """BCE between sequence predictions (B,) in [0, 1] and labels (B,) in {0, 1};
    ``weights`` (B,) >= 0 weight the windows (weighted mean; 0 when all are 0)."""
    if weights is None:
        return F.binary_cross_entropy(seq_score.float(), seq_label.to(seq_score).float())
    each = F.binary_cross_entropy(seq_score.float(), seq_label.to(seq_score).float(),
                                  reduction="none")
    w = weights.to(each)
    return (each * w).sum() / w.sum().clamp_min(1e-12)


def saliency_weights(scores: torch.Tensor, alpha: float) -> torch.Tensor:
    """Consistency weights (B, T) = (1 + alpha * score) / mean(1 + alpha * score).

    ``scores`` (B, T) in [0, 1] are detached: weights carry no gradient.
    """
    w = 1.0 + alpha * scores.detach()
    return w / w.mean()


def consistency_loss(audio_emb: torch.Tensor, pose_emb: torch.Tensor,
                     weights: torch.Tensor | None = None, center: bool = False) -> torch.Tensor:
    """Weighted mean over frames of 1 - cos(audio_emb, pose_emb).

    Args:
        audio_emb, pose_emb: (B, T, E) matched embeddings.
        weights: (B, T) frame weights (mean 1), or None for a plain mean.
        center: subtract each embedding's batch mean (over B and T) first. Without it a
            large shared offset vector in both embeddings makes every cosine ~1 and the
            loss stops comparing what varies; the mean is a training-batch statistic of
            the loss only, the model itself stays streaming.
    """
    if audio_emb.shape != pose_emb.shape:
        raise ValueError(f"embedding shapes differ: {tuple(audio_emb.shape)} vs "
                         f"{tuple(pose_emb.shape)}")
    if center:
        audio_emb = audio_emb - audio_emb.mean(dim=(0, 1), keepdim=True)
        pose_emb = pose_emb - pose_emb.mean(dim=(0, 1), keepdim=True)
    dissimilarity = 1.0 - F.cosine_similarity(audio_emb, pose_emb, dim=-1, eps=1e-6)  # (B, T)
    if weights is None:
        return dissimilarity.mean()
    return (dissimilarity * weights).mean()


def generator_loss(out: GeneratorOutput, pose: torch.Tensor, seq_label: torch.Tensor,
                   config: GeneratorLossConfig, detector_weights: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total training loss of one batch and its parts (detached, for logging).

    Args:
        out: forward output with ``pose`` given (pose_emb and recon_poses set).
        pose: (B, T, J, 2) ground-truth standardised poses.
        seq_label: (B,) sequence saliency labels in {0, 1}.
        detector_weights: (B,) per-window weights of the detector loss (None = all 1).
        mask: (B, T, J) observed joints of ``pose`` (None = all); the pose terms skip the
            others.
    """
    if out.pose_emb is None or out.recon_poses is None:
        raise ValueError("generator_loss needs the reconstruction path: call the model with pose")
    w_joint = joint_weights(config).to(pose.device)
    generated = out.aligned_poses
    parts = {
        "generation": weighted_pose_error(generated, pose, w_joint, config.kind, mask),
        "reconstruction": weighted_pose_error(out.recon_poses, pose, w_joint, config.kind,
                                              mask),
        "velocity": velocity_error(generated, pose, w_joint, config.kind, mask)
        + velocity_error(out.recon_poses, pose, w_joint, config.kind, mask),
        "spread": spread_error(generated, pose, w_joint, mask),
        "consistency": consistency_loss(
            out.aligned_audio_emb, out.pose_emb,
            saliency_weights(out.aligned_saliency, config.saliency_alpha),
            center=config.center_embeddings),
        "detector": detector_loss(out.seq_score, seq_label, detector_weights),
    }
    total = (config.generation_weight * parts["generation"]
             + config.reconstruction_weight * parts["reconstruction"]
             + config.velocity_weight * parts["velocity"]
             + config.spread_weight * parts["spread"]
             + config.consistency_weight * parts["consistency"]
             + config.detector_weight * parts["detector"])
    logged = {k: v.detach() for k, v in parts.items()}
    logged["total"] = total.detach()
    return total, logged
