"""Datasets: the SDT on-disk layout, a synthetic speaker corpus, and training windows.

* :mod:`train.data.sdt`: read/write ``ROOT/<speaker>/processed_137.csv`` + clip npz files,
  pose normalisation statistics (numpy only).
* :mod:`train.data.synth`: the synthetic corpus (speech-like audio, OpenPose-137 motion
  driven by it, frame-level saliency ground truth), ``gesturert data synth`` (numpy only).
* :mod:`train.data.windows`: torch ``Dataset`` of training windows (imports torch).
"""

from train.data.sdt import (
    SdtClip,
    compute_normalization,
    list_speakers,
    load_clip,
    load_speaker,
    read_index,
)
from train.data.synth import synthesize_corpus, synthesize_interval

__all__ = [
    "SdtClip",
    "compute_normalization",
    "list_speakers",
    "load_clip",
    "load_speaker",
    "read_index",
    "synthesize_corpus",
    "synthesize_interval",
]
