"""Training windows: shapes, alignment with the feature rules, sequence labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sdk.features import DEFAULT_FEATURES as CFG
from sdk.mfcc import MfccMatrices, extract_features, mfcc_offline
from train.data.sdt import SdtClip, compute_normalization, load_speaker, speaker_scales
from train.data.synth import synthesize_corpus
from train.data.windows import (
    WindowDataset,
    complete_posture_label,
    feature_statistics,
    generator_data,
    join_clips,
    otsu_threshold,
)

T, L, STRIDE = 64, 2, 16


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("windows")
    synthesize_corpus(root, speakers=2, minutes=1.0, seed=7)  # 14 clips each
    return root


@pytest.fixture(scope="module")
def train_set(corpus: Path) -> WindowDataset:
    clips = [c for s in ("synth_00", "synth_01") for c in load_speaker(corpus, s)
             if c.split == "train"]
    return WindowDataset(clips, compute_normalization(clips), T, L, STRIDE,
                         scales=speaker_scales(clips))


def test_windows_have_the_documented_shapes(train_set: WindowDataset) -> None:
    item = train_set[len(train_set) // 2]
    expected = {
        "features": ((T + L, CFG.feature_dim), np.float32),
        "pose": ((T, 122, 2), np.float32),
        "canonical": ((T, 122, 2), np.float32),
        "saliency": ((T,), np.float32),
        "posture": ((T,), np.int64),
        "seq_label": ((), np.float32),
        "label_weight": ((), np.float32),
        "audio": ((68267,), np.float32),
        "mfcc": ((426, CFG.n_mfcc), np.float32),
    }
    for key, (shape, dtype) in expected.items():
        assert item[key].shape == shape and item[key].dtype == dtype, key
    assert np.all(item["pose"][:, 0] == 0.0) and np.all(item["canonical"][:, 0] == 0.0)


def test_clips_of_an_interval_are_joined_into_sequences(train_set: WindowDataset) -> None:
    # per speaker: train clips 0-7 and 10-13 of one interval (8 is dev, 9 is val)
    assert [s.num_frames for s in train_set.sequences] == [8 * 64, 4 * 64] * 2
    starts = [s for _, s in train_set.windows]
    assert all(s % 3 == 0 for s in starts)  # 3 frames = 20 MFCC hops
    for i, s in train_set.windows:
        assert s + T <= train_set.sequences[i].num_frames


def test_window_features_and_mfcc_follow_the_sdk_feature_rules(train_set: WindowDataset
                                                               ) -> None:
    matrices = MfccMatrices.default()
    seq = train_set.sequences[0]
    full = extract_features(seq.audio, CFG, matrices, seq.num_frames + L)
    mfcc = mfcc_offline(seq.audio, CFG, matrices)
    for index in (0, 1, 5):
        i, s = train_set.windows[index]
        assert i == 0
        item = train_set[index]
        np.testing.assert_array_equal(item["features"], full[s:s + T + L])
        m0 = CFG.mfcc_start(s)
        np.testing.assert_array_equal(item["mfcc"], mfcc[m0:m0 + CFG.mfcc_start(T)])
        a = -(-s * CFG.sample_rate // CFG.fps)
        np.testing.assert_array_equal(item["audio"], seq.audio[a:a + item["audio"].size])
    # the last window's lookahead runs past the sequence end: features of silence
    last = train_set.sequences[1]
    index = max(k for k, (i, _) in enumerate(train_set.windows) if i == 1)
    tail = extract_features(last.audio, CFG, matrices, last.num_frames + L)
    np.testing.assert_array_equal(train_set[index]["features"][-L:], tail[-L:])


def test_sequence_labels_agree_with_frame_saliency(train_set: WindowDataset) -> None:
    labels = []
    for k in range(len(train_set)):
        item = train_set[k]
        assert set(np.unique(item["saliency"])) <= {0.0, 1.0}
        assert item["seq_label"] == float(item["saliency"].max() == 1.0)
        np.testing.assert_array_equal(item["posture"] >= 0, item["saliency"] == 1.0)
        labels.append(item["seq_label"])
    assert 0.2 < np.mean(labels) < 0.9  # both kinds of window exist


def test_complete_posture_label_needs_the_posture_start_and_k_frames() -> None:
    saliency = np.zeros(200, np.float32)
    saliency[50:72] = 1.0  # a 22-frame posture
    saliency[150:160] = 1.0  # a 10-frame posture (shorter than k)
    k = 16
    assert complete_posture_label(saliency, 0, 64, k) == (0.0, 0.0)  # 14 frames in: too few
    assert complete_posture_label(saliency, 40, 64, k) == (1.0, 1.0)  # start and all 22 in
    assert complete_posture_label(saliency, 50, 64, k) == (1.0, 1.0)  # starts at the window
    assert complete_posture_label(saliency, 51, 64, k) == (0.0, 0.0)  # cue before the window
    assert complete_posture_label(saliency, 60, 64, k) == (0.0, 0.0)
    assert complete_posture_label(saliency, 80, 64, k) == (0.0, 1.0)  # nothing salient
    assert complete_posture_label(saliency, 100, 64, k) == (1.0, 1.0)  # all 10 of a short one
    assert complete_posture_label(saliency, 90, 64, k) == (0.0, 0.0)  # 4 of its 10 frames
    with pytest.raises(ValueError, match="label_frames"):
        complete_posture_label(saliency, 0, 64, 0)


def _train_clips(corpus: Path) -> list[SdtClip]:
    """The training clips of the two speakers."""
    return [c for s in ("synth_00", "synth_01") for c in load_speaker(corpus, s)
            if c.split == "train"]


def _windows(clips: list[SdtClip], train_set: WindowDataset, label: str) -> WindowDataset:
    return WindowDataset(clips, train_set.normalization, T, L, STRIDE,
                         scales=speaker_scales(clips), detector_label=label)


def test_complete_labels_leave_ambiguous_windows_out(corpus: Path,
                                                     train_set: WindowDataset) -> None:
    clips = _train_clips(corpus)
    complete = _windows(clips, train_set, "complete")
    weights = np.array([complete[k]["label_weight"] for k in range(len(complete))])
    for k in range(len(complete)):
        item, before = complete[k], train_set[k]
        assert before["label_weight"] == 1.0
        if item["label_weight"] == 1.0:  # decided windows keep the "any" label
            assert item["seq_label"] == before["seq_label"]
        else:  # left out: a posture is there, but not one the window can score
            assert before["seq_label"] == 1.0 and item["seq_label"] == 0.0
    assert 0.0 < np.mean(weights == 0.0) < 0.5
    with pytest.raises(ValueError, match="detector_label"):
        _windows(clips, train_set, "some")


def test_motion_range_labels_without_ground_truth(corpus: Path,
                                                  train_set: WindowDataset) -> None:
    clips = [dataclasses.replace(c, saliency=None, posture=None)
             for s in ("synth_00", "synth_01") for c in load_speaker(corpus, s)
             if c.split == "train"]
    blind = WindowDataset(clips, train_set.normalization, T, L, STRIDE,
                          scales=speaker_scales(clips))
    assert blind.windows == train_set.windows
    assert blind.motion_threshold == pytest.approx(
        np.exp(otsu_threshold(np.log(blind.motion_ranges))))
    truth = np.array([train_set[k]["seq_label"] for k in range(len(train_set))])
    proxy = np.array([blind[k]["seq_label"] for k in range(len(blind))])
    assert np.all(np.isnan(blind[0]["saliency"])) and np.all(blind[0]["posture"] == -1)
    assert np.mean(truth == proxy) >= 0.9


def test_otsu_threshold_splits_two_clusters() -> None:
    values = np.concatenate([np.full(30, 0.1), np.full(10, 1.5)])
    assert otsu_threshold(values) == pytest.approx(0.8)
    assert otsu_threshold(np.ones(4)) == np.inf


def test_feature_statistics_cover_each_frame_once(train_set: WindowDataset) -> None:
    mean, std = feature_statistics(train_set)
    frames = np.concatenate([f[:s.num_frames] for f, s in
                             zip(train_set.features, train_set.sequences, strict=True)])
    assert mean.shape == std.shape == (CFG.feature_dim,) and np.all(std >= 1e-3)
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-4, atol=1e-4)


def test_bad_window_arguments_are_rejected(train_set: WindowDataset) -> None:
    with pytest.raises(ValueError, match="window_frames >= 1"):
        WindowDataset([], train_set.normalization, window_frames=0)
    with pytest.raises(IndexError):
        train_set[len(train_set)]
    clips = join_clips([])
    assert clips == []


def test_generator_data_uses_dev_split_for_validation(corpus: Path) -> None:
    config = SimpleNamespace(
        data=SimpleNamespace(window_frames=32, stride_frames=16, val_fraction=0.1),
        model=SimpleNamespace(lookahead_frames=3),
    )
    data = generator_data(corpus, config)
    # one 64-frame dev clip per speaker: windows at 0, 16 -> 15, 32 -> 30
    assert data.val is not None and len(data.val) == 2 * 3
    assert data.val.motion_threshold == data.train.motion_threshold
    assert data.train[0]["features"].shape == (35, CFG.feature_dim)
    assert data.normalization.mean.shape == (122, 2)


def test_the_detector_loss_leaves_ambiguous_windows_out(corpus: Path,
                                                        train_set: WindowDataset) -> None:
    import torch

    from train.generator_training import _label_weights, collate_windows
    from train.losses import detector_loss

    clips = _train_clips(corpus)
    complete = _windows(clips, train_set, "complete")
    batch = collate_windows([complete[k] for k in range(len(complete))])
    label = batch["seq_label"].float()
    weights = _label_weights(batch, label)
    assert weights is not None and 0 < int((weights == 0).sum()) < weights.numel()
    scores = torch.rand(label.shape[0])
    kept = weights > 0
    ambiguous_ignored = detector_loss(scores, label, weights)
    assert torch.isclose(ambiguous_ignored, detector_loss(scores[kept], label[kept]))
    scores[~kept] = 1e-3  # what ambiguous windows score cannot change the loss
    assert torch.isclose(detector_loss(scores, label, weights), ambiguous_ignored)
