"""Architecture of the salient-posture generator: :class:`GeneratorConfig`.

Its own module so that the model module (train/models/generator.py, which re-exports it)
stays readable; the checkpoint stores it as the training config's ``model`` section.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sdk.features import DEFAULT_FEATURES
from sdk.skeleton import MODEL_SKELETON


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of :class:`SalientPostureGenerator`. Lengths are in pose frames (15 fps).

    Attributes:
        feature_dim: values per feature frame (sdk FeatureConfig.feature_dim, 91).
        num_joints: joints of MODEL_SKELETON (122).
        lookahead_frames: L, output delay in frames (future audio each pose frame sees).
        noise_dim: noise values per frame fed to the body decoder.
        separate_branches: face encoder + face decoder (the paper); False = ablation.
        face_hidden / face_kernel / face_dilations: face-audio encoder (short context).
        body_hidden / body_kernel / body_dilations: body-audio encoder (long context).
        embedding_dim: joint audio-pose manifold width.
        pose_hidden / pose_kernel / pose_dilations: pose encoder (training only).
        decoder_hidden / decoder_kernel / decoder_dilations: both decoders.
        detector_hidden: hidden width of the per-frame saliency head.
        top_k: frames averaged into the sequence-level saliency prediction (paper: 16).
        saliency_hold_frames: h >= 0; the saliency a step returns is the running maximum
            of the detector's score over the current and the h previous frames (causal:
            no delay; h raw scores join the streaming state). Trained with top_k of a
            window, the detector fires on about top_k frames of a longer posture; the
            hold carries its score over the posture's last frames. Training (the top-k
            loss, the consistency weights) uses the raw score. 0 = off (checkpoints from
            before the option).
        dropout: on every residual block while training (identity in eval / export):
            with a 2 s audio context the model otherwise memorises the corpus's
            unpredictable idle motion (train L1 0.26 vs held-out 0.47 without it).
        feature_clip: c > 0 soft-clips every standardised input feature to (-c, c) with
            ``c * tanh(x / c)`` (identity near 0): frame-wise, so chunk invariant, and
            out-of-corpus audio (real speech on a synthetic-corpus model) cannot drive
            the encoders arbitrarily far from what training saw. 0 = off (checkpoints
            from before the option).
        styles: gesture-style names, sorted (the training data's style table; index i
            is row i of the style embedding). () = no style input (older checkpoints).
        default_style: the style of a stream that names none; one of ``styles`` ("" when
            there are none).
    """

    feature_dim: int = DEFAULT_FEATURES.feature_dim
    num_joints: int = MODEL_SKELETON.num_joints
    lookahead_frames: int = 2
    noise_dim: int = 4
    separate_branches: bool = True
    face_hidden: int = 64
    face_kernel: int = 3
    face_dilations: tuple[int, ...] = (1, 1)
    body_hidden: int = 128
    body_kernel: int = 3
    body_dilations: tuple[int, ...] = (1, 2, 4, 8)
    embedding_dim: int = 64
    pose_hidden: int = 128
    pose_kernel: int = 3
    pose_dilations: tuple[int, ...] = (1, 2)
    decoder_hidden: int = 128
    decoder_kernel: int = 3
    decoder_dilations: tuple[int, ...] = (1, 2)
    detector_hidden: int = 32
    top_k: int = 16
    saliency_hold_frames: int = 0
    dropout: float = 0.1
    feature_clip: float = 0.0
    styles: tuple[str, ...] = ()
    default_style: str = ""

    def __post_init__(self) -> None:
        styles = tuple(str(s) for s in self.styles)
        object.__setattr__(self, "styles", styles)
        if list(styles) != sorted(set(styles)) or any(not s for s in styles):
            raise ValueError(f"GeneratorConfig.styles must be distinct non-empty names, "
                             f"sorted; got {list(styles)}")
        if (self.default_style not in styles) if styles else self.default_style:
            raise ValueError(f"GeneratorConfig.default_style must be one of styles "
                             f"{list(styles)} ('' without styles), got {self.default_style!r}")
        if self.num_joints != MODEL_SKELETON.num_joints:
            raise ValueError(
                f"GeneratorConfig.num_joints must be {MODEL_SKELETON.num_joints} "
                f"({MODEL_SKELETON.name}), got {self.num_joints}"
            )
        for name in ("feature_dim", "face_hidden", "body_hidden", "embedding_dim",
                     "pose_hidden", "decoder_hidden", "detector_hidden", "top_k",
                     "face_kernel", "body_kernel", "pose_kernel", "decoder_kernel"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GeneratorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GeneratorConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.feature_clip >= 0.0:
            raise ValueError(f"GeneratorConfig.feature_clip must be >= 0 (0 = off), got "
                             f"{self.feature_clip}")
        for name in ("lookahead_frames", "noise_dim", "saliency_hold_frames"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"GeneratorConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("face_dilations", "body_dilations", "pose_dilations", "decoder_dilations"):
            value = tuple(int(d) for d in getattr(self, name))
            if any(d < 1 for d in value):
                raise ValueError(f"GeneratorConfig.{name} must hold ints >= 1, got {value}")
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown GeneratorConfig fields: {sorted(unknown)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in data.items()}
        return cls(**values)
