"""Synthetic intervals too short to hold a salient posture (the last interval of a corpus)."""

from __future__ import annotations

import numpy as np

from train.data.sdt import SDT_CLIP_FRAMES
from train.data.synth import synthesize_interval
from train.data.synth_script import make_speaker_profile


def test_an_interval_without_posture_renders_idle_motion() -> None:
    # 30 minutes = 421 clips: the 31st interval (index 30) holds one clip, and for seed 0
    # its script triggers no posture; rendering it crashed with "need at least one array
    # to stack" before postures were applied only when some frame has one
    profile = make_speaker_profile(0, 0)
    rendered = synthesize_interval(profile, SDT_CLIP_FRAMES, seed=0, speaker=0, interval=30)
    motion = rendered.motion
    assert np.all(motion.posture == -1)
    assert not np.any(motion.saliency)
    assert motion.pose.shape[0] == SDT_CLIP_FRAMES
    assert np.all(np.isfinite(motion.pose))

