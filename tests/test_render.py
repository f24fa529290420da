"""RGB previews: colours per group, shared anti-aliasing, saliency bar, fitting to a canvas."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.pose_image import bone_half_widths, rasterize_segments
from sdk.render import (
    BACKGROUND,
    GROUP_COLORS,
    SALIENCY_HIGH,
    SALIENCY_LOW,
    SALIENCY_TRACK,
    fit_to_canvas,
    render_frame,
    render_video_frames,
)
from sdk.skeleton import MODEL_SKELETON, Skeleton

SIZE = (96, 80)  # (width, height)


def canvas_pose() -> np.ndarray:
    """(122, 2) float32 pose in canvas pixels, every joint on an integer pixel centre.

    Body bones are long axis-aligned lines; each hand is a horizontal comb; the face is
    a 10 x 7 grid of points in the top left, so lips and other face bones are separate.
    """
    pose = np.zeros((MODEL_SKELETON.num_joints, 2), np.float32)
    pose[:10] = [(48, 30), (48, 16), (30, 30), (30, 48), (30, 64),
                 (66, 30), (66, 48), (66, 64), (44, 12), (52, 12)]
    face = np.stack(np.meshgrid(np.arange(10), np.arange(7)), axis=-1).reshape(-1, 2)
    pose[10:80] = face[:70] * 2 + np.array([4, 4])
    hand = np.array([(0, 0)] + [(dx, 0) for dx in range(1, 21)])
    pose[80:101] = np.array([66, 64]) + hand * np.array([1, 0]) + np.array([0, 6])
    pose[101:122] = np.array([10, 70]) + hand
    pose[80] = pose[7]  # the wrist links have length zero, as in real data
    pose[101] = pose[4]
    return pose


def test_shapes_and_dtype() -> None:
    frames = np.stack([canvas_pose()] * 3)
    video = render_video_frames(frames, MODEL_SKELETON, SIZE)
    assert video.shape == (3, 80, 96, 3) and video.dtype == np.uint8
    frame = render_frame(frames[0], MODEL_SKELETON, SIZE)
    assert frame.shape == (80, 96, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, video[1])


def test_limbs_take_their_group_colour_and_the_rest_is_background() -> None:
    frame = render_frame(canvas_pose(), MODEL_SKELETON, SIZE)
    assert tuple(frame[40, 30]) == GROUP_COLORS["body"]  # right upper arm, x = 30
    assert tuple(frame[30, 40]) == GROUP_COLORS["body"]  # shoulder line, y = 30
    assert tuple(frame[70, 15]) == GROUP_COLORS["right_hand"]
    assert tuple(frame[78, 5]) == tuple(BACKGROUND)
    assert tuple(frame[5, 90]) == tuple(BACKGROUND)
    lips = [MODEL_SKELETON.bones.index(b) for b in MODEL_SKELETON.bones
            if b[0] in MODEL_SKELETON.groups["lips"]]
    assert lips  # find a lip-bone midpoint on a pixel centre and check its colour
    pose = canvas_pose()
    a, b = MODEL_SKELETON.bones[lips[0]]
    x, y = ((pose[a] + pose[b]) / 2).astype(int)
    assert tuple(frame[y, x]) == GROUP_COLORS["lips"]


def test_hands_are_drawn_over_the_body() -> None:
    pose = canvas_pose()
    pose[101:122] = pose[4] + np.array([(0, k) for k in range(21)])  # along the right forearm
    pose[4] = pose[3] + np.array([0, 30])
    frame = render_frame(pose, MODEL_SKELETON, SIZE)
    assert tuple(frame[int(pose[110, 1]), 30]) == GROUP_COLORS["right_hand"]


def test_colours_can_be_overridden_per_group() -> None:
    frame = render_frame(canvas_pose(), MODEL_SKELETON, SIZE,
                         colors={"body": (1, 2, 3)}, background=(200, 0, 0))
    assert tuple(frame[40, 30]) == (1, 2, 3)
    assert tuple(frame[78, 5]) == (200, 0, 0)
    assert tuple(frame[70, 15]) == GROUP_COLORS["right_hand"]


def test_edges_blend_with_the_same_coverage_as_pose_imaging() -> None:
    segment = Skeleton("segment", ("a", "b"), {"body": (0, 1)}, ((0, 1),), None, root=0)
    points = np.array([[[10.3, 20.7], [80.2, 55.1]]], np.float32)
    colour, background = np.array([250, 100, 0]), np.array([10, 20, 30])
    frame = render_video_frames(points, segment, SIZE, half_width=2.0,
                                colors={"body": (250, 100, 0)}, background=(10, 20, 30))[0]
    cover = rasterize_segments(points, segment.bone_array(),
                               bone_half_widths(segment, 2.0, 0.75), 80, 96)[0]
    expected = np.rint(background + (colour - background) * cover[..., None])
    np.testing.assert_allclose(frame, expected, atol=1)
    red = frame[..., 0]
    assert np.any((red > background[0]) & (red < colour[0]))  # anti-aliased edge


def test_missing_joints_draw_nothing() -> None:
    empty = np.full((2, 122, 2), np.nan, np.float32)
    video = render_video_frames(empty, MODEL_SKELETON, SIZE)
    assert np.all(video == np.array(BACKGROUND, np.uint8))


@pytest.mark.parametrize("score", [0.0, 0.5, 1.0])
def test_saliency_bar_length_and_colour_follow_the_score(score: float) -> None:
    frame = render_frame(canvas_pose(), MODEL_SKELETON, SIZE, saliency=score)
    bar = frame[-1]  # bottom row, (W, 3)
    filled = round(score * SIZE[0])
    colour = np.rint(np.array(SALIENCY_LOW) + (np.array(SALIENCY_HIGH) -
                                               np.array(SALIENCY_LOW)) * score)
    assert np.all(bar[:filled] == colour)
    assert np.all(bar[filled:] == np.array(SALIENCY_TRACK))
    no_bar = render_frame(canvas_pose(), MODEL_SKELETON, SIZE)
    np.testing.assert_array_equal(frame[:-3], no_bar[:-3])


@pytest.mark.parametrize("saliency", [[0.5], [0.1, float("nan")], [-0.1, 0.5], [0.5, 1.5]])
def test_bad_saliency_is_rejected(saliency: list[float]) -> None:
    with pytest.raises(ValueError, match="saliency"):
        render_video_frames(np.stack([canvas_pose()] * 2), MODEL_SKELETON, SIZE,
                            saliency=saliency)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="122"):
        render_video_frames(np.zeros((2, 137, 2)), MODEL_SKELETON, SIZE)
    with pytest.raises(ValueError, match="size"):
        render_frame(canvas_pose(), MODEL_SKELETON, (0, 10))
    with pytest.raises(ValueError, match="R, G, B"):
        render_frame(canvas_pose(), MODEL_SKELETON, SIZE, colors={"body": (300, 0, 0)})


def test_fit_to_canvas_keeps_aspect_and_centres_the_sequence(rng: np.random.Generator) -> None:
    poses = rng.normal(size=(5, 122, 2)).astype(np.float32) * np.array([3.0, 1.0], np.float32)
    poses[2, 7] = np.nan
    fitted = fit_to_canvas(poses, (200, 100), margin=0.1)
    assert fitted.shape == poses.shape and fitted.dtype == np.float32
    assert np.isnan(fitted[2, 7]).all()
    finite = np.isfinite(poses).all(axis=-1)
    ratio = (fitted[finite] - fitted[finite].mean(0)) / (poses[finite] - poses[finite].mean(0))
    np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-3)  # one uniform scale
    lo, hi = np.nanmin(fitted.reshape(-1, 2), 0), np.nanmax(fitted.reshape(-1, 2), 0)
    assert np.all(lo >= 0.1 * np.array([199, 99]) - 1e-3)
    assert np.all(hi <= 0.9 * np.array([199, 99]) + 1e-3)
    np.testing.assert_allclose((lo + hi) / 2, [99.5, 49.5], atol=1e-3)
    assert np.isclose(hi - lo, 0.8 * np.array([199, 99]), atol=1e-3).any()  # fills one side


def test_fit_to_canvas_handles_degenerate_sequences() -> None:
    point = np.ones((3, 4, 2), np.float32)
    np.testing.assert_allclose(fit_to_canvas(point, (11, 21)), np.full((3, 4, 2), [5, 10]))
    assert np.isnan(fit_to_canvas(np.full((2, 3, 2), np.nan), (10, 10))).all()
    with pytest.raises(ValueError, match="margin"):
        fit_to_canvas(point, (10, 10), margin=0.5)
