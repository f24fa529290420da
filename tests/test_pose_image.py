"""Pose imaging reference: the per-pixel formula, anti-aliasing, shifts, batching, NaN, config."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

import sdk.pose_image as pose_image
from sdk.pose_image import (
    ImagingConfig,
    bone_groups,
    bone_half_widths,
    canonical_to_image_pixels,
    pose_images,
    rasterize_segments,
)
from sdk.skeleton import MODEL_SKELETON, Skeleton

SEGMENT = Skeleton("segment", ("a", "b"), {"body": (0, 1)}, ((0, 1),), None, root=0)


def upper_body_pose(rng: np.random.Generator, jitter: float = 0.02) -> np.ndarray:
    """(122, 2) float32 plausible canonical pose: arms down, face ring, fanned fingers."""
    pose = np.zeros((MODEL_SKELETON.num_joints, 2), np.float32)
    pose[:10] = [(0, 0), (0, -0.6), (-0.5, 0), (-0.7, 0.8), (-0.6, 1.5),
                 (0.5, 0), (0.7, 0.8), (0.6, 1.5), (-0.08, -0.7), (0.08, -0.7)]
    angle = np.linspace(0, 2 * np.pi, 70, endpoint=False)
    pose[10:80] = np.stack([0.25 * np.cos(angle), -0.6 + 0.3 * np.sin(angle)], axis=1)
    fingers = np.linspace(-0.6, 0.6, 5)
    hand = np.concatenate([[(0.0, 0.0)]] + [
        [(0.08 * k * np.sin(f), 0.08 * k * np.cos(f)) for k in range(1, 5)] for f in fingers])
    pose[80:101] = pose[7] + hand
    pose[101:122] = pose[4] + hand
    return pose + rng.normal(scale=jitter, size=pose.shape).astype(np.float32)


def segment_distance_f64(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> Any:
    """Distance from points to segment ab in float64, as min(endpoints, perpendicular)."""
    to_a = np.hypot(px - a[0], py - a[1])
    to_b = np.hypot(px - b[0], py - b[1])
    d = b - a
    length = np.hypot(*d)
    along = ((px - a[0]) * d[0] + (py - a[1]) * d[1]) / length
    perpendicular = np.abs((px - a[0]) * d[1] - (py - a[1]) * d[0]) / length
    inside = (along >= 0) & (along <= length)
    return np.where(inside, np.minimum(perpendicular, np.minimum(to_a, to_b)),
                    np.minimum(to_a, to_b))


def formula_by_loops(points: np.ndarray, skeleton: Skeleton, cfg: ImagingConfig) -> np.ndarray:
    """The module docstring's per-pixel loop, literally, in float32 scalars: (F, H, W)."""
    f32 = np.float32
    widths = bone_half_widths(skeleton, cfg.half_width, cfg.detail_half_width)
    out = np.zeros((points.shape[0], cfg.height, cfg.width), np.float32)
    for f in range(points.shape[0]):
        for r in range(cfg.height):
            for c in range(cfg.width):
                best = f32(0)
                for k, (ia, ib) in enumerate(skeleton.bones):
                    ua, va = points[f, ia]
                    ub, vb = points[f, ib]
                    if not np.isfinite([ua, va, ub, vb]).all():
                        continue
                    dx, dy, qx, qy = ub - ua, vb - va, f32(c) - ua, f32(r) - va
                    len2 = dx * dx + dy * dy
                    t = f32(0) if len2 == 0 else min(max((qx * dx + qy * dy) / len2, f32(0)),
                                                     f32(1))
                    ex, ey = qx - t * dx, qy - t * dy
                    d = np.sqrt(ex * ex + ey * ey)
                    best = max(best, min(max((widths[k] + f32(0.5)) - d, f32(0)), f32(1)))
                out[f, r, c] = best
    return out


def test_vectorised_images_equal_the_documented_per_pixel_loop(rng: np.random.Generator) -> None:
    cfg = ImagingConfig(height=14, width=12, detail_half_width=0.7)
    canonical = np.stack([upper_body_pose(rng, 0.1), upper_body_pose(rng, 0.3)])
    canonical[1, 3] = np.nan
    points = canonical_to_image_pixels(canonical, cfg)
    expected = formula_by_loops(points, MODEL_SKELETON, cfg)
    np.testing.assert_array_equal(pose_images(canonical, MODEL_SKELETON, cfg), expected)


def test_canonical_to_image_pixels_maps_window_edges_to_pixel_edges() -> None:
    cfg = ImagingConfig(height=40, width=20, x_min=-1, x_max=1, y_min=0, y_max=2)
    corners = np.array([[-1, 0], [1, 2], [0, 1]], np.float32)
    np.testing.assert_allclose(canonical_to_image_pixels(corners, cfg),
                               [[-0.5, -0.5], [19.5, 39.5], [9.5, 19.5]])


def test_pixels_near_the_centre_line_are_fully_bright(rng: np.random.Generator) -> None:
    cfg = ImagingConfig(height=40, width=40, x_min=0, x_max=40, y_min=0, y_max=40)
    row, col = np.mgrid[0:40, 0:40].astype(np.float64)
    for _ in range(20):
        seg = rng.uniform(5, 35, size=(2, 2)).astype(np.float32)
        image = pose_images(seg[None], SEGMENT, cfg)[0]
        a, b = canonical_to_image_pixels(seg, cfg).astype(np.float64)
        d = segment_distance_f64(col, row, a, b)
        assert np.all(image[d <= cfg.half_width - 0.5 + 1e-4] == 1.0)
        assert np.all(image[d <= 0.5] >= 0.99)
        assert np.all(image[d >= cfg.half_width + 0.5 + 1e-4] == 0.0)
        np.testing.assert_allclose(image, np.clip(cfg.half_width + 0.5 - d, 0, 1), atol=2e-5)


def test_pixels_far_from_every_limb_are_exactly_zero(rng: np.random.Generator) -> None:
    cfg = ImagingConfig()
    canonical = upper_body_pose(rng)
    image = pose_images(canonical[None], MODEL_SKELETON, cfg)[0]
    points = canonical_to_image_pixels(canonical, cfg).astype(np.float64)
    row, col = np.mgrid[0:cfg.height, 0:cfg.width].astype(np.float64)
    nearest = np.full(image.shape, np.inf)
    for a, b in MODEL_SKELETON.bones:
        if np.allclose(points[a], points[b]):
            d = np.hypot(col - points[a, 0], row - points[a, 1])
        else:
            d = segment_distance_f64(col, row, points[a], points[b])
        nearest = np.minimum(nearest, d)
    far = nearest >= cfg.half_width + 0.5 + 1e-4
    assert far.mean() > 0.5
    assert np.all(image[far] == 0.0)
    assert image.max() == 1.0


def test_anti_aliased_edge_falls_off_monotonically_with_distance() -> None:
    cfg = ImagingConfig(height=24, width=32, x_min=0, x_max=32, y_min=0, y_max=24,
                        half_width=1.5)
    seg = np.array([[4.5, 10.8], [27.5, 10.8]], np.float32)  # image row 10.3, horizontal
    column = pose_images(seg[None], SEGMENT, cfg)[0, :, 16]
    distance = np.abs(np.arange(24) - 10.3)
    order = np.argsort(distance)
    assert np.all(np.diff(column[order]) <= 0), "intensity must not grow with distance"
    edge = column[(column > 0) & (column < 1)]
    assert edge.size >= 2
    np.testing.assert_allclose(column, np.clip(2.0 - distance, 0, 1), atol=1e-5)


def test_zero_length_bone_draws_a_round_dot() -> None:
    cfg = ImagingConfig(height=16, width=16, x_min=0, x_max=16, y_min=0, y_max=16)
    dot = np.array([[8.5, 8.5], [8.5, 8.5]], np.float32)  # image (8, 8)
    image = pose_images(dot[None], SEGMENT, cfg)[0]
    row, col = np.mgrid[0:16, 0:16]
    np.testing.assert_allclose(image, np.clip(1.5 - np.hypot(row - 8, col - 8), 0, 1),
                               atol=1e-6)


def test_integer_pixel_shift_shifts_the_image(rng: np.random.Generator) -> None:
    cfg = ImagingConfig(height=64, width=64)  # 16 pixels per unit: exact float steps
    sx, sy = cfg.pixels_per_unit
    canonical = upper_body_pose(rng) * np.float32(0.7)
    base = pose_images(canonical[None], MODEL_SKELETON, cfg)[0]
    assert base[:4].max() == 0 and base[-4:].max() == 0  # the pose stays off the borders
    assert base[:, :4].max() == 0 and base[:, -4:].max() == 0
    for dc, dr in [(3, 0), (0, -2), (-4, 3)]:
        moved = canonical + np.array([dc / sx, dr / sy], np.float32)
        shifted = pose_images(moved[None], MODEL_SKELETON, cfg)[0]
        np.testing.assert_allclose(shifted, np.roll(base, (dr, dc), axis=(0, 1)), atol=1e-5)


def test_shapes_and_dtype_follow_leading_axes(rng: np.random.Generator) -> None:
    cfg = ImagingConfig(height=32, width=40)
    clip = np.stack([upper_body_pose(rng) for _ in range(9)]).astype(np.float64)
    out = pose_images(clip, MODEL_SKELETON, cfg)
    assert out.shape == (9, 32, 40) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    batch = np.broadcast_to(clip, (2, 3, 9, 122, 2))
    assert pose_images(batch, MODEL_SKELETON, cfg).shape == (2, 3, 9, 32, 40)
    assert pose_images(clip[:0], MODEL_SKELETON, cfg).shape == (0, 32, 40)


def test_batched_clips_equal_clips_imaged_one_by_one(rng: np.random.Generator) -> None:
    cfg = ImagingConfig()
    clips = np.stack([[upper_body_pose(rng, 0.1) for _ in range(9)] for _ in range(5)])
    batched = pose_images(clips, MODEL_SKELETON, cfg)
    for i, clip in enumerate(clips):
        np.testing.assert_array_equal(batched[i], pose_images(clip, MODEL_SKELETON, cfg))


def test_small_chunks_give_the_same_images(rng: np.random.Generator,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ImagingConfig(height=64, width=64)
    clip = np.stack([upper_body_pose(rng, 0.1) for _ in range(3)])
    whole = pose_images(clip, MODEL_SKELETON, cfg)
    monkeypatch.setattr(pose_image, "_CHUNK_PAIRS", 37)
    np.testing.assert_array_equal(pose_images(clip, MODEL_SKELETON, cfg), whole)


def test_missing_joints_draw_none_of_their_bones(rng: np.random.Generator) -> None:
    cfg = ImagingConfig()
    canonical = upper_body_pose(rng)
    missing = [3, 90, 40]  # right elbow, a left-hand joint, a jaw point
    canonical[missing] = np.nan
    kept = tuple(b for b in MODEL_SKELETON.bones if not set(b) & set(missing))
    without = dataclasses.replace(MODEL_SKELETON, bones=kept)
    expected = pose_images(np.nan_to_num(canonical)[None], without, cfg)
    np.testing.assert_array_equal(pose_images(canonical[None], MODEL_SKELETON, cfg), expected)
    empty = np.full((2, 122, 2), np.nan, np.float32)
    assert not pose_images(empty, MODEL_SKELETON, cfg).any()


def test_joints_far_outside_the_window_draw_nothing_and_do_not_fail() -> None:
    cfg = ImagingConfig()
    far = np.array([[[1e30, -1e30], [1e30, 5e29]], [[-50, 0], [-60, 1]]], np.float32)
    assert not pose_images(far, SEGMENT, cfg).any()
    crossing = np.array([[[-50, 0.5], [50, 0.5]]], np.float32)  # clipped, not dropped
    assert pose_images(crossing, SEGMENT, cfg).max() == 1.0


def test_hands_and_face_get_the_detail_half_width() -> None:
    widths = bone_half_widths(MODEL_SKELETON, 1.0, 0.5)
    groups = bone_groups(MODEL_SKELETON)
    assert widths.shape == (len(MODEL_SKELETON.bones),) and widths.dtype == np.float32
    for (_, b), group, width in zip(MODEL_SKELETON.bones, groups, widths, strict=True):
        if b < 10:
            assert group == "body" and width == 1.0
        else:
            assert group in ("face", "lips", "left_hand", "right_hand") and width == 0.5
    assert groups[MODEL_SKELETON.bones.index((7, 80))] == "left_hand"


def test_wrong_pose_shape_is_rejected_with_the_expected_shape() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 122, 2\)"):
        pose_images(np.zeros((122, 2)), MODEL_SKELETON, ImagingConfig())
    with pytest.raises(ValueError, match="137"):
        pose_images(np.zeros((9, 137, 2)), MODEL_SKELETON, ImagingConfig())


def test_imaging_config_round_trips_through_json() -> None:
    cfg = ImagingConfig(height=32, width=64, x_min=-3.0, half_width=0.75)
    assert ImagingConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert ImagingConfig.from_dict(ImagingConfig().to_dict()) == ImagingConfig()


@pytest.mark.parametrize("changes", [
    {"height": 0}, {"width": 4.5}, {"height": True}, {"x_min": 2.0}, {"y_max": -1.5},
    {"half_width": 0.0}, {"detail_half_width": -1.0}, {"x_max": float("nan")},
    {"y_min": "0"},
])
def test_invalid_imaging_config_raises(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="ImagingConfig"):
        ImagingConfig(**changes)


@pytest.mark.parametrize("data", [
    {**ImagingConfig().to_dict(), "depth": 3},
    {k: v for k, v in ImagingConfig().to_dict().items() if k != "height"},
    [48, 48],
])
def test_malformed_imaging_dict_raises(data: Any) -> None:
    with pytest.raises(ValueError, match="ImagingConfig"):
        ImagingConfig.from_dict(data)


def test_rasterize_segments_checks_bones_against_widths() -> None:
    with pytest.raises(ValueError, match="half widths"):
        rasterize_segments(np.zeros((1, 2, 2)), np.array([[0, 1]]), np.ones(2), 8, 8)
