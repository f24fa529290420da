"""sdk.psd: clip extraction per the PoseSyncNet contract, PSD and the offset sweep."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.features import DEFAULT_FEATURES
from sdk.pose_image import ImagingConfig
from sdk.psd import (
    DEFAULT_CLIP,
    PoseSyncClipConfig,
    audio_clips,
    clip_distances,
    offset_sweep,
    pose_clips,
    psd,
)
from sdk.skeleton import MODEL_SKELETON

J = MODEL_SKELETON.num_joints


def test_clip_mfcc_frames_is_nine_pose_frames_of_mfcc() -> None:
    assert DEFAULT_CLIP.clip_mfcc_frames(DEFAULT_FEATURES) == 60
    assert PoseSyncClipConfig(3).clip_mfcc_frames(DEFAULT_FEATURES) == 20


def test_audio_clips_take_the_contract_window_coefficient_major() -> None:
    mfcc = np.arange(200 * 13, dtype=np.float32).reshape(200, 13)
    clips = audio_clips(mfcc, [0, 4, 7])
    assert clips.shape == (3, 13, 60) and clips.dtype == np.float32
    for k, start in enumerate([0, 4, 7]):
        first = DEFAULT_FEATURES.mfcc_start(start)  # 0, 26, 46
        np.testing.assert_array_equal(clips[k], mfcc[first : first + 60].T)


def test_audio_clip_past_the_end_is_a_clear_error() -> None:
    mfcc = np.zeros((100, 13), np.float32)
    n = DEFAULT_CLIP.num_clips(100, 100)
    audio_clips(mfcc, [n - 1])
    with pytest.raises(ValueError, match="num_clips"):
        audio_clips(mfcc, [n])


def test_pose_clips_stack_nine_frame_images() -> None:
    rng = np.random.default_rng(0)
    poses = rng.uniform(-0.8, 0.8, (20, J, 2)).astype(np.float32)
    clips = pose_clips(poses, [0, 5])
    config = ImagingConfig()
    assert clips.shape == (2, 9, config.height, config.width) and clips.dtype == np.float32
    np.testing.assert_array_equal(clips[1, 0], clips[0, 5])  # frame 5 is imaged once
    assert 0.0 <= clips.min() and clips.max() <= 1.0 and clips.max() > 0.5


def test_psd_is_the_mean_distance() -> None:
    a = np.array([[0.0, 0.0], [3.0, 4.0]])
    p = np.zeros((2, 2))
    np.testing.assert_allclose(clip_distances(a, p), [0.0, 5.0])
    assert psd(clip_distances(a, p)) == 2.5
    with pytest.raises(ValueError):
        psd(np.zeros(0))


def _planted_sequence(lag: int, frames: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Poses translated by a random signal s; audio carrying s ``lag`` frames earlier."""
    rng = np.random.default_rng(7)
    signal = rng.uniform(-0.4, 0.4, frames + 40)  # s[k + 20] is the value of frame k
    body = rng.uniform(-0.6, 0.6, (J, 2)).astype(np.float32)
    poses = np.repeat(body[None], frames, axis=0)
    poses[:, :, 0] += signal[20 : 20 + frames, None]
    n_mfcc = DEFAULT_FEATURES.mfcc_start(frames) + 1
    frame_of_mfcc = np.arange(n_mfcc) * DEFAULT_FEATURES.fps * DEFAULT_FEATURES.hop_length // (
        DEFAULT_FEATURES.sample_rate
    )
    mfcc = np.zeros((n_mfcc, 13), np.float32)
    mfcc[:, 0] = signal[20 + frame_of_mfcc + lag]  # poses at k show the audio of k - lag
    return mfcc, poses.astype(np.float32)


def _toy_embed(mfcc: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Audio: coefficient 0 mid-way through each pose frame; pose: image x-centroid per frame."""
    mid = ((np.arange(9) + 0.5) * 20 / 3).astype(int)
    audio = mfcc[:, 0, mid]
    cols = np.arange(images.shape[-1], dtype=np.float64)
    pose = (images.sum(axis=2) * cols).sum(axis=2) / images.sum(axis=(2, 3))

    def unit(x: np.ndarray) -> np.ndarray:
        x = x - x.mean(axis=1, keepdims=True)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return unit(audio), unit(pose)


@pytest.mark.parametrize("lag", [0, 2, -3])
def test_offset_sweep_finds_the_planted_lag(lag: int) -> None:
    mfcc, poses = _planted_sequence(lag)
    sweep = offset_sweep(_toy_embed, mfcc, poses, max_offset=15)
    assert sweep.best_offset == lag  # + = poses lag the audio
    assert sweep.offsets.shape == sweep.mean_distance.shape == (31,)
    assert sweep.confidence > 0.5  # unit vectors: aligned ~0, unrelated ~sqrt(2)
    assert sweep.min_distance < 0.2
    assert sweep.num_clips == 72
    if lag == 0:
        assert sweep.psd < 0.2


def test_offset_sweep_rejects_a_too_short_sequence() -> None:
    mfcc, poses = _planted_sequence(0, frames=30)
    with pytest.raises(ValueError, match="needs at least 31 clips"):
        offset_sweep(_toy_embed, mfcc, poses, max_offset=15)
