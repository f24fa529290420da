"""Torch models, one nn.Module per file, each built from its config dataclass.

* ``generator``: :class:`SalientPostureGenerator` (the paper's method; streaming step).
* ``posesync``: PoseSyncNet (audio clip / pose-image clip embeddings for PSD).
* ``fgd``: the pose-sequence autoencoder whose latent FGD compares.
* ``layers``: causal convolutions with explicit caches.
"""

from train.models.generator import GeneratorConfig, GeneratorOutput, SalientPostureGenerator

__all__ = ["GeneratorConfig", "GeneratorOutput", "SalientPostureGenerator"]
