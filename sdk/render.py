"""RGB previews of poses: one colour per group on a dark background, numpy only.

Limbs are drawn by :func:`sdk.pose_image.rasterize_segments`, the same anti-aliased
segment math as the PoseSyncNet pose images: each group's bones give one coverage image
``I`` in [0, 1], and groups are composited in :data:`DRAW_ORDER` (later on top) as
``rgb = rgb + (colour - rgb) * I``. A bone takes the colour of its group
(:func:`sdk.pose_image.bone_groups`), so lips are drawn over the face and hands over the body.

Input coordinates are canvas pixels (x = column, y = row, pixel centres at integers).
Get them from any pose sequence with :func:`fit_to_canvas` (one scale for the whole
sequence, aspect kept), or from canonical poses with a fixed window through
``canonical_to_image_pixels(canonical, dataclasses.replace(imaging, width=W, height=H))``.

An optional saliency score in [0, 1] per frame is shown as a bar along the bottom edge:
its filled length is ``round(score * W)`` pixels and its colour goes from
:data:`SALIENCY_LOW` (score 0) to :data:`SALIENCY_HIGH` (score 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sdk.pose_image import bone_groups, bone_half_widths, rasterize_segments
from sdk.skeleton import Skeleton

RGB = tuple[int, int, int]

#: Colour per skeleton group; groups are drawn in this order (later on top).
GROUP_COLORS: dict[str, RGB] = {
    "body": (90, 200, 120),
    "face": (170, 170, 185),
    "lips": (240, 95, 110),
    "left_hand": (80, 160, 255),
    "right_hand": (255, 180, 60),
}
DRAW_ORDER = tuple(GROUP_COLORS)
OTHER_COLOR: RGB = (235, 235, 235)  # bones of groups without a colour, drawn first
BACKGROUND: RGB = (16, 16, 22)
SALIENCY_TRACK: RGB = (48, 48, 56)  # the unfilled part of the saliency bar
SALIENCY_LOW: RGB = (250, 220, 80)
SALIENCY_HIGH: RGB = (240, 40, 40)


def fit_to_canvas(
    points: np.ndarray, size: tuple[int, int], margin: float = 0.05
) -> np.ndarray:
    """Scale and translate a pose sequence into a canvas, keeping its aspect ratio.

    One uniform scale and offset for all frames (so motion is preserved), chosen so that
    the bounding box of every finite joint of every frame fits inside the canvas minus a
    ``margin`` (fraction of the canvas on each side), centred.

    Args:
        points: (..., J, 2) coordinates in any unit with x right and y down
            (pixels, canonical, ...). NaN joints stay NaN.
        size: canvas (width, height) in pixels.
        margin: fraction of the canvas left empty on each side, in [0, 0.5).
    Returns:
        (..., J, 2) float32 canvas pixel coordinates (pixel centres at integers).
    """
    width, height = _check_size(size)
    if not 0 <= margin < 0.5:
        raise ValueError(f"margin must be in [0, 0.5), got {margin}")
    points = np.asarray(points, dtype=np.float32)
    if points.ndim < 2 or points.shape[-1] != 2:
        raise ValueError(f"points must be (..., J, 2), got shape {points.shape}")
    finite = np.isfinite(points).all(axis=-1)
    if not finite.any():
        return points.copy()
    valid = points[finite]  # (N, 2)
    lo, hi = valid.min(axis=0).astype(np.float64), valid.max(axis=0).astype(np.float64)
    span = hi - lo
    room = (np.array([width, height], np.float64) - 1) * (1 - 2 * margin)
    ratios = [room[i] / span[i] for i in range(2) if span[i] > 0]
    scale = min(ratios) if ratios else 1.0
    centre = (np.array([width, height], np.float64) - 1) / 2
    out = (points - (lo + hi) / 2) * scale + centre
    return out.astype(np.float32)


def render_video_frames(
    pixels: np.ndarray,
    skeleton: Skeleton,
    size: tuple[int, int],
    *,
    saliency: np.ndarray | Sequence[float] | None = None,
    half_width: float = 1.5,
    detail_half_width: float = 0.75,
    colors: Mapping[str, RGB] | None = None,
    background: RGB = BACKGROUND,
) -> np.ndarray:
    """Draw a pose sequence as RGB frames.

    Args:
        pixels: (T, J, 2) canvas pixel coordinates (see :func:`fit_to_canvas`); NaN = missing.
        skeleton: the layout of the J joints.
        size: canvas (width, height) in pixels.
        saliency: optional (T,) scores in [0, 1], shown as a bar along the bottom.
        half_width: half line width of body bones, pixels.
        detail_half_width: half line width of hand and face bones, pixels.
        colors: group -> RGB, overriding :data:`GROUP_COLORS` per group.
        background: RGB of the empty canvas.
    Returns:
        (T, H, W, 3) uint8 RGB.
    """
    width, height = _check_size(size)
    pixels = np.asarray(pixels, dtype=np.float32)
    j = skeleton.num_joints
    if pixels.ndim != 3 or pixels.shape[1:] != (j, 2):
        raise ValueError(
            f"render expects (T, {j}, 2) pixel coordinates for skeleton {skeleton.name!r}, "
            f"got {pixels.shape}; use fit_to_canvas to place poses on the canvas"
        )
    if not (half_width > 0 and detail_half_width > 0):
        raise ValueError(
            f"line half widths must be > 0 pixels, got {half_width} and {detail_half_width}"
        )
    palette = {**GROUP_COLORS, **(colors or {})}
    n_frames = pixels.shape[0]
    canvas = np.empty((n_frames, height, width, 3), dtype=np.float32)
    canvas[:] = _rgb(background, "background")

    groups = np.array(bone_groups(skeleton))
    widths = bone_half_widths(skeleton, half_width, detail_half_width)
    bones = skeleton.bone_array()
    uncoloured = sorted(set(groups.tolist()) - set(palette))
    layers = [(uncoloured, OTHER_COLOR)] + [([g], palette[g]) for g in DRAW_ORDER]
    layers += [([g], palette[g]) for g in palette if g not in DRAW_ORDER]
    for names, colour in layers:
        pick = np.isin(groups, names)
        if not pick.any():
            continue
        cover = rasterize_segments(pixels, bones[pick], widths[pick], height, width).reshape(-1)
        drawn = np.flatnonzero(cover)  # blend only covered pixels: most of a canvas is empty
        flat = canvas.reshape(-1, 3)
        rgb = _rgb(colour, f"colour of {names}")
        flat[drawn] += (rgb - flat[drawn]) * cover[drawn, None]

    if saliency is not None:
        _draw_saliency_bar(canvas, _check_saliency(saliency, n_frames))
    return np.rint(np.clip(canvas, 0, 255)).astype(np.uint8)


def render_frame(
    pixels: np.ndarray,
    skeleton: Skeleton,
    size: tuple[int, int],
    *,
    saliency: float | None = None,
    half_width: float = 1.5,
    detail_half_width: float = 0.75,
    colors: Mapping[str, RGB] | None = None,
    background: RGB = BACKGROUND,
) -> np.ndarray:
    """Draw one pose: (J, 2) canvas pixels -> (H, W, 3) uint8 RGB.

    Same arguments as :func:`render_video_frames`, for a single frame (``saliency`` a float).
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 2:
        raise ValueError(f"render_frame expects one pose (J, 2), got shape {pixels.shape}")
    return render_video_frames(
        pixels[None], skeleton, size,
        saliency=None if saliency is None else [saliency],
        half_width=half_width, detail_half_width=detail_half_width,
        colors=colors, background=background,
    )[0]


def _draw_saliency_bar(canvas: np.ndarray, scores: np.ndarray) -> None:
    """Paint the bottom bar of each frame of (T, H, W, 3) float canvas in place."""
    _, height, width, _ = canvas.shape
    thickness = max(2, height // 32)
    low, high = _rgb(SALIENCY_LOW, "low"), _rgb(SALIENCY_HIGH, "high")
    colour = low + (high - low) * scores[:, None]  # (T, 3)
    filled = np.rint(scores * width).astype(np.int64)  # (T,) pixels
    is_filled = np.arange(width)[None, :] < filled[:, None]  # (T, W)
    bar = np.where(is_filled[..., None], colour[:, None, :], _rgb(SALIENCY_TRACK, "track"))
    canvas[:, height - thickness:, :, :] = bar[:, None, :, :]


def _check_saliency(saliency: np.ndarray | Sequence[float], n_frames: int) -> np.ndarray:
    scores = np.asarray(saliency, dtype=np.float32).reshape(-1)
    if scores.shape != (n_frames,):
        raise ValueError(f"saliency must have one score per frame ({n_frames}), got {scores.size}")
    if not np.all((scores >= 0) & (scores <= 1)):  # also rejects NaN
        raise ValueError(f"saliency scores must be in [0, 1], got min {scores.min()}, "
                         f"max {scores.max()}")
    return scores


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"size must be (width, height) in pixels, got {size!r}") from exc
    if width <= 0 or height <= 0 or (width, height) != tuple(size):
        raise ValueError(f"size must be two positive ints (width, height), got {size!r}")
    return width, height


def _rgb(colour: Sequence[int], what: str) -> np.ndarray:
    rgb = np.asarray(colour, dtype=np.float32)
    if rgb.shape != (3,) or not np.all((rgb >= 0) & (rgb <= 255)):
        raise ValueError(f"{what} must be an (R, G, B) triple of 0..255, got {colour!r}")
    return rgb
