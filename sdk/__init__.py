"""gesturert runtime SDK: speech audio in, 2D whole-body keypoints out, while people talk.

numpy-only at import time; onnxruntime / tensorrt / cuda-python are imported lazily by
the backends that need them. Never imports torch, librosa, ``export`` or ``train``.
"""

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.skeleton import MODEL_SKELETON, OPENPOSE_137, UPPER_BODY_122, Skeleton
from sdk.streaming import StreamingGenerator
from sdk.version import __version__

__all__ = [
    "DEFAULT_FEATURES",
    "MODEL_SKELETON",
    "OPENPOSE_137",
    "UPPER_BODY_122",
    "FeatureConfig",
    "Skeleton",
    "StreamingGenerator",
    "__version__",
]
