"""sdk.pose_range: the training poses' range a bundle carries, and outputs measured against it."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from sdk.normalization import PoseNormalization
from sdk.pose_range import (
    FAR_SD,
    PoseRange,
    PoseRangeMonitor,
    RangeLimits,
    range_joints,
    standardize_pixels,
    update_monitors,
)
from sdk.skeleton import MODEL_SKELETON

J = MODEL_SKELETON.num_joints
BODY_HAND = range_joints(MODEL_SKELETON)
RIGHT_WRIST = MODEL_SKELETON.joint_names.index("right_wrist")


def _training_poses(seed: int = 0) -> list[np.ndarray]:
    """Two 'sequences' of standardised poses: a tenth of the frames salient, three times as
    large as the rest, as salient postures make them."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, J, 2)) * np.where(rng.random((n, 1, 1)) < 0.1, 3.0, 1.0)
            for n in (400, 300)]


def test_the_range_covers_body_and_hands_without_the_root() -> None:
    names = {MODEL_SKELETON.joint_names[j] for j in BODY_HAND}
    assert MODEL_SKELETON.root not in BODY_HAND and len(set(BODY_HAND)) == len(BODY_HAND)
    assert {"right_wrist", "left_elbow"} <= names
    assert not set(BODY_HAND) & set(MODEL_SKELETON.groups["face"])


def test_the_range_is_the_training_poses_own_range() -> None:
    poses = _training_poses()
    poses[1][5, 0] = np.nan  # an undetected joint is left out, not a bound
    rng = PoseRange.from_poses(poses, MODEL_SKELETON)
    body = np.concatenate(poses)[:, list(BODY_HAND)]
    assert rng.frames == 700 and rng.low.shape == (len(BODY_HAND), 2)
    assert np.array_equal(rng.low, np.nanmin(body, axis=0))
    assert np.array_equal(rng.high, np.nanmax(body, axis=0))
    # such poses put far more than "almost none" beyond 4 SD: the share is measured, not assumed
    assert rng.beyond_4sd == pytest.approx(np.mean(np.abs(body[np.isfinite(body)]) > FAR_SD))
    assert rng.beyond_4sd > 0.01
    inside = rng.measure(poses[0])  # the training poses are inside by definition
    assert (inside.outside_share, inside.largest_excursion, inside.frames_outside) == (0, 0, 0)
    assert inside.worst_joint == "" and inside.frames == 400
    assert not rng.frame_excursion(poses[0]).any()


def test_the_range_catches_poses_past_it() -> None:
    poses = _training_poses()
    rng = PoseRange.from_poses(poses, MODEL_SKELETON)
    near = rng.measure(_training_poses(seed=1)[0])  # other poses of the same distribution
    assert near.outside_share < 0.005
    exaggerated = rng.measure(2.0 * poses[0])  # every gesture twice as large
    assert exaggerated.outside_share > 0.01 and exaggerated.largest_excursion > 1
    assert not exaggerated.within
    one_wrist = poses[0].copy()  # one wrist 1 SD past the highest x in training, one frame
    row = BODY_HAND.index(RIGHT_WRIST)
    one_wrist[7, RIGHT_WRIST, 0] = rng.high[row, 0] + 1.0
    out = rng.measure(one_wrist)
    assert out.largest_excursion == pytest.approx(1.0) and out.worst_joint == "right_wrist"
    assert out.outside_share == pytest.approx(1 / one_wrist[:, BODY_HAND].size)
    assert out.frames_outside == 1 and not out.within  # 1 SD > the 0.5 SD limit
    per_frame = rng.frame_excursion(one_wrist)
    assert per_frame.shape == (400,) and per_frame[7] == pytest.approx(1.0)
    assert np.count_nonzero(per_frame) == 1
    below = poses[0].copy()  # past the lowest value counts the same
    below[3, RIGHT_WRIST, 1] = rng.low[row, 1] - 0.25
    assert rng.measure(below).largest_excursion == pytest.approx(0.25)
    assert rng.measure(below).within  # 0.25 SD past: within the 0.5 SD limit


def test_the_limits_decide_within() -> None:
    poses = _training_poses()
    strict = PoseRange.from_poses(poses, MODEL_SKELETON, RangeLimits(excursion_max_sd=0.1))
    below = poses[0].copy()
    below[3, RIGHT_WRIST, 1] = strict.low[BODY_HAND.index(RIGHT_WRIST), 1] - 0.25
    assert not strict.measure(below).within
    still_big = PoseRange.from_poses(poses, MODEL_SKELETON, RangeLimits(mean_abs_z_max=0.2))
    assert not still_big.measure(poses[0]).within  # inside the range, but larger on average


def test_the_measure_in_pixels_is_the_measure_of_the_standardised_poses() -> None:
    rng = np.random.default_rng(0)
    norm = PoseNormalization(anchor_px=(320.0, 200.0), scale_px=80.0,
                             mean=rng.normal(size=(J, 2)), std=0.5 + rng.random((J, 2)),
                             image_size=(640, 480))
    poses = _training_poses()
    training = PoseRange.from_poses(poses, MODEL_SKELETON)
    z = 1.5 * poses[0].astype(np.float32)
    z[:, MODEL_SKELETON.root] = -norm.mean[MODEL_SKELETON.root] / norm.std[MODEL_SKELETON.root]
    pixels = norm.canonical_to_pixels(norm.destandardize(z))
    assert np.allclose(standardize_pixels(pixels, norm)[:, list(BODY_HAND)],
                       z[:, list(BODY_HAND)], atol=1e-4)
    in_pixels = training.measure_pixels(pixels, norm)
    direct = training.measure(z)
    assert in_pixels.largest_excursion == pytest.approx(direct.largest_excursion, abs=1e-3)
    assert in_pixels.frames_outside == direct.frames_outside > 0


def test_the_range_round_trips_through_json_by_joint_name() -> None:
    rng = PoseRange.from_poses(_training_poses(), MODEL_SKELETON, RangeLimits(0.9, 0.4))
    back = PoseRange.from_dict(json.loads(json.dumps(rng.to_dict())), MODEL_SKELETON)
    assert back.joints == rng.joints and back.joint_names == rng.joint_names
    assert np.array_equal(back.low, rng.low) and np.array_equal(back.high, rng.high)
    assert back.limits == RangeLimits(0.9, 0.4) and back.frames == rng.frames
    assert back.summary() == rng.summary()


def test_a_malformed_range_is_refused_naming_the_problem() -> None:
    good = PoseRange.from_poses(_training_poses(), MODEL_SKELETON).to_dict()
    with pytest.raises(ValueError, match="does not have"):
        PoseRange.from_dict(good | {"joints": ["tail"] + good["joints"][1:]}, MODEL_SKELETON)
    with pytest.raises(ValueError, match="expected"):
        PoseRange.from_dict(good | {"low": good["low"][:-1]}, MODEL_SKELETON)
    with pytest.raises(ValueError, match="low <= high"):
        PoseRange.from_dict(good | {"low": good["high"], "high": good["low"]}, MODEL_SKELETON)
    with pytest.raises(ValueError, match="malformed pose range"):
        PoseRange.from_dict({k: v for k, v in good.items() if k != "limits"}, MODEL_SKELETON)
    with pytest.raises(ValueError, match="excursion_max_sd >= 0"):
        PoseRange.from_dict(good | {"limits": {"mean_abs_z_max": 1.0, "excursion_max_sd": -1}},
                            MODEL_SKELETON)


def test_the_range_refuses_what_it_cannot_measure() -> None:
    poses = _training_poses()
    poses[0][:, BODY_HAND[3]] = np.nan
    poses[1][:, BODY_HAND[3]] = np.nan
    with pytest.raises(ValueError, match="never show some body/hand joint"):
        PoseRange.from_poses(poses, MODEL_SKELETON)
    with pytest.raises(ValueError, match="poses must be"):
        PoseRange.from_poses([np.zeros((5, J - 1, 2))], MODEL_SKELETON)
    rng = PoseRange.from_poses(_training_poses(), MODEL_SKELETON)
    with pytest.raises(ValueError, match="no body/hand value"):
        rng.measure(np.full((3, J, 2), np.nan))
    with pytest.raises(ValueError, match="poses must be"):
        rng.measure(np.zeros((3, J)))
    assert rng.frame_excursion(np.zeros((0, J, 2))).shape == (0,)


def test_the_monitor_over_any_split_equals_one_measure_over_all_frames() -> None:
    rng = np.random.default_rng(3)
    norm = PoseNormalization(anchor_px=(320.0, 200.0), scale_px=80.0,
                             mean=rng.normal(size=(J, 2)), std=0.5 + rng.random((J, 2)),
                             image_size=(640, 480))
    training = PoseRange.from_poses(_training_poses(), MODEL_SKELETON)
    z = 1.3 * _training_poses(seed=2)[0].astype(np.float32)  # some frames go past the range
    z[:, MODEL_SKELETON.root] = -norm.mean[MODEL_SKELETON.root] / norm.std[MODEL_SKELETON.root]
    pixels = norm.canonical_to_pixels(norm.destandardize(z))
    whole = training.measure_pixels(pixels, norm)
    assert whole.frames_outside > 0 and not whole.within
    monitor = PoseRangeMonitor(training, norm)
    assert monitor.result() is None  # nothing seen yet
    cuts = np.unique(np.r_[0, rng.integers(0, len(z), 12), len(z)])
    per_frame = [monitor.update(pixels[a:b]) for a, b in itertools.pairwise(cuts)]
    assert monitor.update(pixels[:0]).shape == (0,)  # an empty pop changes nothing
    got = monitor.result()
    assert got is not None
    assert (got.frames, got.frames_outside, got.worst_joint, got.within) == (
        whole.frames, whole.frames_outside, whole.worst_joint, whole.within)
    for name in ("mean_abs_z", "outside_share", "largest_excursion"):
        assert getattr(got, name) == pytest.approx(getattr(whole, name), rel=1e-9)
    np.testing.assert_allclose(np.concatenate(per_frame),
                               training.frame_excursion(standardize_pixels(pixels, norm)))


def test_many_monitors_in_one_pass_equal_each_on_its_own() -> None:
    """The live server updates every stream's monitor after a batched step in one call."""
    norm = PoseNormalization(anchor_px=(320.0, 200.0), scale_px=80.0, mean=np.zeros((J, 2)),
                             std=np.ones((J, 2)), image_size=(640, 480))
    training = PoseRange.from_poses(_training_poses(), MODEL_SKELETON)
    rng = np.random.default_rng(5)
    runs = [norm.canonical_to_pixels(scale * rng.normal(size=(n, J, 2)))
            for n, scale in ((3, 1.0), (0, 1.0), (1, 4.0), (7, 2.0))]
    runs[3][2, RIGHT_WRIST] = np.nan  # an undetected joint is left out
    together = [PoseRangeMonitor(training, norm) for _ in runs]
    alone = [PoseRangeMonitor(training, norm) for _ in runs]
    for _ in range(2):  # twice: the running maxima and sums carry over
        per_frame = update_monitors(list(zip(together, runs, strict=True)))
        for monitor, run, got in zip(alone, runs, per_frame, strict=True):
            np.testing.assert_array_equal(got, monitor.update(run))
    for a, b in zip(together, alone, strict=True):
        measured, want = a.result(), b.result()
        if want is None:
            assert measured is None
            continue
        assert measured is not None
        for name in ("frames", "frames_outside", "worst_joint", "within"):
            assert getattr(measured, name) == getattr(want, name)
        for name in ("mean_abs_z", "outside_share", "largest_excursion"):  # sums reordered
            assert getattr(measured, name) == pytest.approx(getattr(want, name), rel=1e-12)
    far = together[2].result()
    assert together[1].result() is None and far is not None and far.largest_excursion > 1
    other = PoseRangeMonitor(PoseRange.from_poses(_training_poses(1), MODEL_SKELETON), norm)
    with pytest.raises(ValueError, match="share one pose range"):
        update_monitors([(together[0], runs[0]), (other, runs[0])])
    assert update_monitors([]) == []
