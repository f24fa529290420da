"""The salient-posture generator (Liu et al., ACM MM 2024), built streaming from the start.

What the paper fixes and how it appears here (see ../shared/PAPER.md):

* **Two audio encoders**: ``face_encoder`` (short receptive field, 5 frames = 333 ms:
  articulation) drives the face/lips branch; ``body_encoder`` (dilated, 31 frames = 2 s:
  semantics) drives the body/hands branch, the joint manifold and the detector.
* **Joint audio-pose manifold**: ``audio_proj`` maps body-audio features and
  ``pose_encoder`` (training only) maps the ground-truth standardised pose into one
  ``embedding_dim`` space, frame by frame; the consistency loss (train/losses.py) is
  1 - cosine similarity of matched frames.
* **Dual path sharing the decoders**: reconstruction (pose encoder -> latent -> decoders)
  and generation (audio -> latent -> decoders).
* **Weakly supervised salient-posture detector**: a per-frame sigmoid score from the
  body-audio features; the mean of the top-k scores of a window is its sequence-level
  prediction (``seq_score``), trained against the window's saliency label.
* **Separate synthesis**: the body/hands decoder writes joints 1..9 and 80..121 of
  UPPER_BODY_122, the face/lips decoder joints 10..79; the root (joint 0) is exactly 0.

Choices the paper leaves open (all in :class:`GeneratorConfig`):

* Layers are residual causal Conv1d stacks with LeakyReLU, no normalisation layer:
  BatchNorm over time is a whole-sequence statistic, and per-frame LayerNorm was not
  needed at this size.
* The face decoder reads ``cat(latent, face-audio features)``: lips need articulation
  features the semantic latent does not carry. In the reconstruction path the latent is
  the pose embedding and the face-audio features are the same, so the decoders are shared.
* The body decoder reads ``cat(latent, noise)``; noise is ``sdk.noise.frame_noise`` per
  input frame, so a stream is reproducible from its seed whatever the chunking.
* The detector sees audio only (poses are unknown at run time), so ``saliency`` is
  available to the runtime.
* Lookahead ``L`` is an output delay: the model is causal in its input index and the
  output at input index t is pose frame t - L, so every pose frame sees L frames of
  future audio (L = 2: 133 ms).
* ``separate_branches=False`` (the ablation) drops the face encoder and face decoder: one
  decoder on ``cat(latent, noise)`` writes all 121 joints.
* **Gesture styles** (``GeneratorConfig.styles``, one per corpus speaker style): a learned
  ``embedding_dim`` vector per style is added to the latent the body/hands decoder reads,
  in both paths; the face/lips branch does not see it (a style is gesture behaviour, the
  lips follow the audio). The style index (B,) int32 is a per-stream input of ``step``,
  not state. No styles (checkpoints from before them): no embedding, no style input.

Streaming: caches of every causal conv, flattened in the order face encoder, body encoder,
body decoder, face decoder, form the (B, S) ``state``. ``forward`` runs the same layers
from a zero state, so forward over a sequence == repeated ``step`` over any chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sdk.skeleton import MODEL_SKELETON
from train.models.generator_config import GeneratorConfig
from train.models.layers import CausalConvStack

__all__ = ["GeneratorConfig", "GeneratorOutput", "GeneratorStep", "SalientPostureGenerator"]

_ROOT = MODEL_SKELETON.root
_BODY = tuple(j for j in MODEL_SKELETON.groups["body"] if j != _ROOT)  # 1..9
_FACE = MODEL_SKELETON.groups["face"]  # 10..79
_HANDS = MODEL_SKELETON.groups["left_hand"] + MODEL_SKELETON.groups["right_hand"]  # 80..121
if (_ROOT,) + _BODY + _FACE + _HANDS != tuple(range(MODEL_SKELETON.num_joints)):
    raise RuntimeError("generator assumes MODEL_SKELETON = root, body, face, hands in order")


@dataclass
class GeneratorOutput:
    """What :meth:`SalientPostureGenerator.forward` returns (all float32).

    Input-index time (T_in = input frames; index t is pose frame t - lookahead):
        poses: (B, T_in, J, 2) generated standardised poses (root exactly 0).
        saliency: (B, T_in) per-frame salient-posture scores in [0, 1], raw (the losses).
        held_saliency: (B, T_in) the same held over ``saliency_hold_frames`` (what a
            step returns; see ``output_saliency``).
        audio_emb: (B, T_in, E) audio embedding in the joint manifold.
    Pose-frame time (T = T_in - lookahead; frame p is input index p + lookahead):
        seq_score: (B,) mean of the top-k aligned saliency scores (k = min(top_k, T)).
        pose_emb: (B, T, E) pose embedding, or None without ground-truth pose.
        recon_poses: (B, T, J, 2) reconstruction-path poses, or None.
    """

    poses: torch.Tensor
    saliency: torch.Tensor
    audio_emb: torch.Tensor
    seq_score: torch.Tensor
    lookahead: int
    pose_emb: torch.Tensor | None = None
    recon_poses: torch.Tensor | None = None
    held_saliency: torch.Tensor | None = None

    @property
    def output_saliency(self) -> torch.Tensor:
        """(B, T_in) the saliency :meth:`SalientPostureGenerator.step` returns: ``saliency``
        held over ``saliency_hold_frames`` (``saliency`` itself without a hold)."""
        return self.saliency if self.held_saliency is None else self.held_saliency

    @property
    def aligned_output_saliency(self) -> torch.Tensor:
        """(B, T) output saliency of pose frames 0..T-1 (what evaluation scores)."""
        return self.output_saliency[:, self.lookahead:]

    @property
    def aligned_poses(self) -> torch.Tensor:
        """(B, T, J, 2) generated poses of pose frames 0..T-1."""
        return self.poses[:, self.lookahead:]

    @property
    def aligned_saliency(self) -> torch.Tensor:
        """(B, T) saliency of pose frames 0..T-1."""
        return self.saliency[:, self.lookahead:]

    @property
    def aligned_audio_emb(self) -> torch.Tensor:
        """(B, T, E) audio embedding matched to pose frames 0..T-1."""
        return self.audio_emb[:, self.lookahead:]


class SalientPostureGenerator(nn.Module):
    """Speech features -> standardised upper-body poses + saliency, causal and stateful.

    Buffers ``feature_mean``/``feature_std`` (feature_dim,) normalise the raw features
    inside the model; set them from the training data with
    :meth:`set_feature_normalization` before training (they live in the state dict).
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("feature_mean", torch.zeros(c.feature_dim))
        self.register_buffer("feature_std", torch.ones(c.feature_dim))
        self.body_encoder = CausalConvStack(c.feature_dim, c.body_hidden, c.body_kernel,
                                            c.body_dilations, dropout=c.dropout)
        self.audio_proj = nn.Conv1d(c.body_hidden, c.embedding_dim, 1)
        self.detector = nn.Sequential(
            nn.Conv1d(c.body_hidden, c.detector_hidden, 1), nn.LeakyReLU(0.2),
            nn.Conv1d(c.detector_hidden, 1, 1),
        )
        self.pose_encoder = CausalConvStack(c.num_joints * 2, c.pose_hidden, c.pose_kernel,
                                            c.pose_dilations, dropout=c.dropout)
        self.pose_proj = nn.Conv1d(c.pose_hidden, c.embedding_dim, 1)
        body_joints = len(_BODY) + len(_HANDS) if c.separate_branches else c.num_joints - 1
        self.body_decoder = CausalConvStack(c.embedding_dim + c.noise_dim, c.decoder_hidden,
                                            c.decoder_kernel, c.decoder_dilations,
                                            dropout=c.dropout)
        self.body_head = nn.Conv1d(c.decoder_hidden, body_joints * 2, 1)
        self.face_encoder: CausalConvStack | None = None
        self.face_decoder: CausalConvStack | None = None
        self.face_head: nn.Conv1d | None = None
        if c.separate_branches:
            self.face_encoder = CausalConvStack(c.feature_dim, c.face_hidden, c.face_kernel,
                                                c.face_dilations, dropout=c.dropout)
            self.face_decoder = CausalConvStack(c.embedding_dim + c.face_hidden,
                                                c.decoder_hidden, c.decoder_kernel,
                                                c.decoder_dilations, dropout=c.dropout)
            self.face_head = nn.Conv1d(c.decoder_hidden, len(_FACE) * 2, 1)
        self.style_embedding: nn.Embedding | None = (
            nn.Embedding(len(c.styles), c.embedding_dim) if c.styles else None)

    @property
    def default_style_index(self) -> int:
        """Row of the default style in the style embedding (0 without styles)."""
        c = self.config
        return c.styles.index(c.default_style) if c.styles else 0

    def _style_vector(self, style: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """(B, E) style embedding rows of ``style`` (B,) int32/int64, the default style's when
        None; None for a generator without styles."""
        if self.style_embedding is None:
            if style is not None:
                raise ValueError("this generator has no styles; pass style=None")
            return None
        if style is None:
            style = torch.full((batch,), self.default_style_index, dtype=torch.long,
                               device=self.feature_mean.device)
        if style.dim() != 1:
            raise ValueError(f"style must be (B,) integer style indices, got {tuple(style.shape)}")
        return self.style_embedding(style)

    # ---- state layout ----
    def _streaming_stacks(self) -> list[CausalConvStack]:
        """Stacks holding streaming state, in state order."""
        stacks = [self.face_encoder, self.body_encoder, self.body_decoder, self.face_decoder]
        return [s for s in stacks if s is not None]

    @property
    def state_size(self) -> int:
        """S: floats of streaming state per stream (the stacks' caches, then the
        ``saliency_hold_frames`` last raw detector scores, oldest first)."""
        return sum(s.state_size for s in self._streaming_stacks()) \
            + self.config.saliency_hold_frames

    def init_state(self, batch: int) -> torch.Tensor:
        """Zeros (batch, S) on the model's device: the state at stream start."""
        return self.feature_mean.new_zeros(batch, self.state_size)

    def set_feature_normalization(self, mean: Any, std: Any) -> None:
        """Set the input feature statistics, (feature_dim,) each; std must be > 0."""
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        dim = self.config.feature_dim
        if mean_t.numel() != dim or std_t.numel() != dim:
            raise ValueError(
                f"feature mean/std must have {dim} values each, got {mean_t.numel()} and "
                f"{std_t.numel()}"
            )
        if not bool(torch.all(torch.isfinite(std_t) & (std_t > 0))):
            raise ValueError("feature std must be finite and > 0 (a constant feature? add eps)")
        self.feature_mean.copy_(mean_t)
        self.feature_std.copy_(std_t)

    # ---- the streaming path ----
    def _generate(self, features: torch.Tensor, noise: torch.Tensor, state: torch.Tensor,
                  style: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                             torch.Tensor, torch.Tensor | None]:
        """Shared by step and forward. Returns poses (B,Tc,J,2), the raw saliency (B,Tc),
        the held saliency (B,Tc) (== raw without a hold), audio_emb (B,E,Tc), new state
        (B,S), face-audio features (B,Hf,Tc) or None.
        ``style``: (B,) int32/int64 style indices, None = the default style."""
        x = (features - self.feature_mean) / self.feature_std
        clip = self.config.feature_clip
        if clip > 0:
            x = clip * torch.tanh(x / clip)
        x = x.transpose(1, 2)  # (B, F, Tc)
        sizes = [s.state_size for s in self._streaming_stacks()]
        caches = sum(sizes)
        hold = self.config.saliency_hold_frames
        held_before = state[:, caches:]  # (B, hold) raw scores, oldest first
        parts = list(torch.split(state[:, :caches], sizes, dim=1)) if sizes else []
        new_parts: list[torch.Tensor] = []
        face_feat = None
        if self.face_encoder is not None:
            face_feat, s = self.face_encoder(x, parts.pop(0))
            new_parts.append(s)
        body_feat, s = self.body_encoder(x, parts.pop(0))  # (B, Hb, Tc)
        new_parts.append(s)
        audio_emb = self.audio_proj(body_feat)  # (B, E, Tc)
        saliency = torch.sigmoid(self.detector(body_feat)[:, 0])  # (B, Tc) raw
        poses, decoder_parts = self._decode(audio_emb, noise, face_feat, parts,
                                            self._style_vector(style, features.shape[0]))
        new_parts.extend(decoder_parts)
        held = saliency
        if hold:
            scores = torch.cat([held_before, saliency], dim=1)  # (B, hold + Tc)
            tc = saliency.shape[1]
            for k in range(1, hold + 1):  # frame t: max of raw t-hold .. t
                held = torch.maximum(held, scores[:, hold - k:hold - k + tc])
            new_parts.append(scores[:, tc:])
        return poses, saliency, held, audio_emb, torch.cat(new_parts, dim=1), face_feat

    def _decode(self, latent: torch.Tensor, noise: torch.Tensor, face_feat: torch.Tensor | None,
                parts: list[torch.Tensor], style_vec: torch.Tensor | None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """latent (B,E,Tc), noise (B,Tc,N), face_feat (B,Hf,Tc) | None, decoder states
        [body, face], style_vec (B,E) | None (added to the body decoder's latent only).
        Returns poses (B, Tc, J, 2) and the new decoder states."""
        body_latent = latent if style_vec is None else latent + style_vec[:, :, None]
        body_h, body_s = self.body_decoder(torch.cat([body_latent, noise.transpose(1, 2)], 1),
                                           parts[0])
        body = self.body_head(body_h).transpose(1, 2)  # (B, Tc, 2*joints)
        root = torch.zeros_like(body[:, :, :2])
        if self.face_decoder is None or self.face_head is None or face_feat is None:
            out = torch.cat([root, body], dim=2)
            return out.unflatten(2, (-1, 2)), [body_s]
        face_h, face_s = self.face_decoder(torch.cat([latent, face_feat], 1), parts[1])
        face = self.face_head(face_h).transpose(1, 2)  # (B, Tc, 2*70)
        n_body = 2 * len(_BODY)
        out = torch.cat([root, body[:, :, :n_body], face, body[:, :, n_body:]], dim=2)
        return out.unflatten(2, (-1, 2)), [body_s, face_s]

    def step(self, features: torch.Tensor, noise: torch.Tensor, state: torch.Tensor,
             style: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One streaming step (the ONNX ``generator.onnx`` graph).

        Args:
            features: (B, Tc, feature_dim) raw feature frames t .. t+Tc-1.
            noise: (B, Tc, noise_dim) ``frame_noise(seed, t, Tc, noise_dim)``.
            state: (B, S) state after frame t-1 (``init_state`` at stream start).
            style: (B,) int32 style index per stream (row of ``config.styles``); None =
                the default style. A generator without styles takes None only.
        Returns:
            poses (B, Tc, J, 2) standardised poses of pose frames t-L .. t-L+Tc-1,
            saliency (B, Tc) of the same frames (held over ``saliency_hold_frames``),
            state_out (B, S).
        """
        self._check_inputs(features, noise)
        poses, _, held, _, state_out, _ = self._generate(features, noise, state, style)
        return poses, held, state_out

    # ---- training ----
    def forward(self, features: torch.Tensor, noise: torch.Tensor,
                pose: torch.Tensor | None = None, style: torch.Tensor | None = None
                ) -> GeneratorOutput:
        """Whole windows from a zero state, both paths when ``pose`` is given.

        Args:
            features: (B, T_in, feature_dim) raw features, T_in = T + lookahead.
            noise: (B, T_in, noise_dim).
            pose: (B, T, J, 2) ground-truth standardised poses of pose frames 0..T-1.
            style: (B,) int32/int64 style indices (None: the default style), both paths.
        """
        self._check_inputs(features, noise)
        batch, t_in = features.shape[0], features.shape[1]
        lookahead = self.config.lookahead_frames
        if t_in <= lookahead:
            raise ValueError(
                f"need more than lookahead_frames={lookahead} input frames, got {t_in}")
        poses, saliency, held, audio_emb, _, face_feat = self._generate(
            features, noise, self.init_state(batch), style)
        aligned = saliency[:, lookahead:]
        k = min(self.config.top_k, aligned.shape[1])
        seq_score = aligned.topk(k, dim=1).values.mean(dim=1)
        out = GeneratorOutput(poses=poses, saliency=saliency, audio_emb=audio_emb.transpose(1, 2),
                              seq_score=seq_score, lookahead=lookahead, held_saliency=held)
        if pose is None:
            return out
        expected = (batch, t_in - lookahead, self.config.num_joints, 2)
        if tuple(pose.shape) != expected:
            raise ValueError(f"pose must be {expected} (B, T_in - lookahead, J, 2), got "
                             f"{tuple(pose.shape)}")
        pose_seq = pose.flatten(2).transpose(1, 2)  # (B, 2J, T)
        zeros = pose.new_zeros(batch, self.pose_encoder.state_size)
        pose_h, _ = self.pose_encoder(pose_seq, zeros)
        pose_emb = self.pose_proj(pose_h)  # (B, E, T)
        sizes = [s.state_size for s in (self.body_decoder, self.face_decoder) if s is not None]
        decoder_zeros = list(pose.new_zeros(batch, sum(sizes)).split(sizes, dim=1))
        recon, _ = self._decode(
            pose_emb, noise[:, lookahead:],
            None if face_feat is None else face_feat[:, :, lookahead:], decoder_zeros,
            self._style_vector(style, batch))
        out.pose_emb = pose_emb.transpose(1, 2)
        out.recon_poses = recon
        return out

    def _check_inputs(self, features: torch.Tensor, noise: torch.Tensor) -> None:
        c = self.config
        if features.dim() != 3 or features.shape[2] != c.feature_dim:
            raise ValueError(f"features must be (B, T, {c.feature_dim}), got "
                             f"{tuple(features.shape)}")
        if noise.dim() != 3 or noise.shape[2] != c.noise_dim:
            raise ValueError(f"noise must be (B, T, {c.noise_dim}), got {tuple(noise.shape)}")


class GeneratorStep(nn.Module):
    """Adapter whose ``forward`` is ``generator.step``: what ONNX export traces (with
    ``style`` for a generator with styles)."""

    def __init__(self, generator: SalientPostureGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, features: torch.Tensor, noise: torch.Tensor, state: torch.Tensor,
                style: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.generator.step(features, noise, state, style)
