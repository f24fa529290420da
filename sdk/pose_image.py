"""Pose imaging: canonical keypoints -> single-channel images of anti-aliased limbs.

This is the numpy reference of PoseSyncNet's pose input. Training images clips with it,
the runtime PSD images generated poses with it, and the CUDA kernel mirrors it pixel for
pixel; previews (:mod:`sdk.render`) draw with the same rasteriser.

**Clip layout.** A PoseSyncNet pose clip is 9 consecutive pose frames, each imaged on its
own, stacked as channels as SyncNet stacks video frames: canonical ``(9, J, 2)`` ->
``pose_images`` -> ``(9, H, W)`` float32 in [0, 1]; a batch of clips ``(B, 9, J, 2)`` ->
``(B, 9, H, W)``, which is the ``pose_images`` input of ``posesync.onnx`` as is.

**Coordinates.** Input is canonical (neck-relative, 1 unit = mean shoulder width, x right,
y down; see :mod:`sdk.normalization`). :class:`ImagingConfig` fixes the window
``[x_min, x_max] x [y_min, y_max]`` (canonical units) that fills the ``height x width``
image. Pixel ``(row r, column c)`` has its centre at image coordinates ``(c, r)``; the
window's left edge is ``-0.5`` and its right edge ``width - 0.5``. Joints outside the
window are drawn as far as they reach into it (the limbs are clipped, not the joints).

**Per-pixel formula** (float32 throughout, in this order; the CUDA kernel, one thread
per output pixel, computes the same)::

    sx = float32(width / (x_max - x_min))      # pixels per unit, rounded once from doubles
    sy = float32(height / (y_max - y_min))
    u_j = (x_j - float32(x_min)) * sx - 0.5    # joint j in image coordinates
    v_j = (y_j - float32(y_min)) * sy - 0.5
    for pixel (f, r, c), p = (c, r):
      I = 0
      for each bone k = (a, b) with half width w_k (pixels), skipping any bone whose
      u_a, v_a, u_b, v_b is not finite (a NaN joint = missing, draws nothing):
        dx = u_b - u_a;  dy = v_b - v_a;  qx = c - u_a;  qy = r - v_a
        len2 = dx*dx + dy*dy
        t = 0 if len2 == 0 else clamp((qx*dx + qy*dy) / len2, 0, 1)
        ex = qx - t*dx;  ey = qy - t*dy
        d = sqrt(ex*ex + ey*ey)                  # distance to the segment, pixels
        I = max(I, clamp((w_k + 0.5) - d, 0, 1))
      image[f, r, c] = I

So a pixel whose centre lies within ``w - 0.5`` of a limb is exactly 1, one beyond
``w + 0.5`` is exactly 0, and in between the intensity falls off linearly (a 1-pixel
box filter across the edge). A kernel that lets the compiler contract ``a*b - c`` into FMA
may differ from this reference by a few float32 ulps (expect <= 1e-5 absolute).

**Line widths.** ``bone_half_widths`` gives body bones ``half_width`` and the finer parts
(hands and face, :data:`DETAIL_GROUPS`) ``detail_half_width``; a bone belongs to the group
of its second joint (:func:`bone_groups`), so the wrist-to-hand links count as hands.
At the default 48 x 48 (12 pixels per shoulder width) a body limb is ~3 px wide
(1.0 px half width) and a finger or lip contour ~2 px (0.5 px).

**Speed.** The reference visits, per bone, only the pixels of its bounding box widened
by ``w + 0.5`` (all others are exactly 0 by the formula), in bounded chunks, and takes
the maximum with ``np.maximum.at``: no Python loop over pixels, bones or frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdk.skeleton import Skeleton

#: Groups drawn with the thinner ``detail_half_width`` (everything else: ``half_width``).
DETAIL_GROUPS = ("face", "lips", "left_hand", "right_hand")

# Widening of each bone's pixel box beyond w + 0.5, so float rounding never drops a pixel
# whose intensity is > 0; the extra pixels compute to exactly 0.
_BOX_SLACK = 1.0 / 64.0
_CHUNK_PAIRS = 1 << 20  # (pixel, bone) pairs evaluated per vectorised step: bounds memory


@dataclass(frozen=True)
class ImagingConfig:
    """Where and how poses are imaged. Carried in the bundle manifest (``imaging``).

    Attributes:
        height, width: image size in pixels.
        x_min, x_max, y_min, y_max: the canonical-unit window the image covers (y down,
            so ``y_min`` is the top edge). The default 4 x 4 units holds a speaker's upper
            body with arms spread or raised: head (~ -1) to below the hips (~ 2.5).
        half_width: half line width of body bones, pixels (> 0; >= 0.5 gives a fully bright
            centre line).
        detail_half_width: half line width of hand and face bones, pixels (> 0).
    """

    height: int = 48
    width: int = 48
    x_min: float = -2.0
    x_max: float = 2.0
    y_min: float = -1.5
    y_max: float = 2.5
    half_width: float = 1.0
    detail_half_width: float = 0.5

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ImagingConfig.{name} must be a positive int, got {value!r}")
        for name in ("x_min", "x_max", "y_min", "y_max", "half_width", "detail_half_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value
            ):
                raise ValueError(f"ImagingConfig.{name} must be a finite number, got {value!r}")
        if not (self.x_min < self.x_max and self.y_min < self.y_max):
            raise ValueError(
                "ImagingConfig window needs x_min < x_max and y_min < y_max, got "
                f"x [{self.x_min}, {self.x_max}], y [{self.y_min}, {self.y_max}]"
            )
        if not (self.half_width > 0 and self.detail_half_width > 0):
            raise ValueError(
                "ImagingConfig half widths must be > 0 pixels, got "
                f"half_width={self.half_width}, detail_half_width={self.detail_half_width}"
            )

    @property
    def pixels_per_unit(self) -> tuple[np.float32, np.float32]:
        """(sx, sy): pixels per canonical unit along x and y, rounded once to float32."""
        return (
            np.float32(self.width / (self.x_max - self.x_min)),
            np.float32(self.height / (self.y_max - self.y_min)),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagingConfig:
        """Rebuild from :meth:`to_dict`; unknown or missing fields raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"ImagingConfig.from_dict expects a dict, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = set(data) - fields, fields - set(data)
        if unknown or missing:
            raise ValueError(
                f"malformed ImagingConfig: unknown fields {sorted(unknown)}, "
                f"missing fields {sorted(missing)}; expected exactly {sorted(fields)}"
            )
        return cls(**data)


def bone_groups(skeleton: Skeleton) -> tuple[str, ...]:
    """(B,) the group of each bone: the most specific group of its second joint."""
    per_joint = skeleton.group_of_joint()
    return tuple(per_joint[b] for _, b in skeleton.bones)


def bone_half_widths(
    skeleton: Skeleton, half_width: float, detail_half_width: float
) -> np.ndarray:
    """(B,) float32 half line width per bone in pixels: detail groups get the thinner one."""
    return np.array(
        [detail_half_width if g in DETAIL_GROUPS else half_width for g in bone_groups(skeleton)],
        dtype=np.float32,
    )


def canonical_to_image_pixels(canonical: np.ndarray, config: ImagingConfig) -> np.ndarray:
    """(..., J, 2) canonical units -> (..., J, 2) float32 image coordinates (pixel centres
    at integers; see the module docstring). NaN stays NaN."""
    canonical = np.asarray(canonical, dtype=np.float32)
    sx, sy = config.pixels_per_unit
    half = np.float32(0.5)
    u = (canonical[..., 0] - np.float32(config.x_min)) * sx - half
    v = (canonical[..., 1] - np.float32(config.y_min)) * sy - half
    return np.stack([u, v], axis=-1)


def pose_images(canonical: np.ndarray, skeleton: Skeleton, config: ImagingConfig) -> np.ndarray:
    """Image every frame of canonical poses: (..., T, J, 2) -> (..., T, H, W) float32 in [0, 1].

    Args:
        canonical: (..., T, J, 2) canonical coordinates (any float dtype; NaN = missing joint).
            A PoseSyncNet clip is (9, J, 2) -> (9, H, W); a batch (B, 9, J, 2) -> (B, 9, H, W).
        skeleton: the layout of the J joints (its bones are drawn).
        config: window, image size and line widths (the bundle's ``imaging``).
    Returns:
        float32 array (..., T, H, W), the per-pixel formula of the module docstring.
    """
    canonical = np.asarray(canonical, dtype=np.float32)
    j = skeleton.num_joints
    if canonical.ndim < 3 or canonical.shape[-2:] != (j, 2):
        raise ValueError(
            f"pose_images expects canonical poses of shape (..., T, {j}, 2) for skeleton "
            f"{skeleton.name!r}, got {canonical.shape}; select the joints with "
            "Skeleton.from_openpose and convert pixels with PoseNormalization first"
        )
    lead = canonical.shape[:-2]
    points = canonical_to_image_pixels(canonical.reshape(-1, j, 2), config)
    images = rasterize_segments(
        points,
        skeleton.bone_array(),
        bone_half_widths(skeleton, config.half_width, config.detail_half_width),
        config.height,
        config.width,
    )
    return images.reshape(*lead, config.height, config.width)


def rasterize_segments(
    points: np.ndarray, bones: np.ndarray, half_widths: np.ndarray, height: int, width: int
) -> np.ndarray:
    """Anti-aliased segments, max over bones: the module docstring's loop, vectorised.

    Args:
        points: (F, J, 2) image coordinates (x = column, y = row; pixel centres at
            integers), float32. Non-finite joints draw nothing.
        bones: (B, 2) int joint index pairs.
        half_widths: (B,) float32 half line width per bone, pixels (> 0).
        height, width: output size in pixels.
    Returns:
        (F, height, width) float32 in [0, 1].
    """
    points = np.asarray(points, dtype=np.float32)
    bones = np.asarray(bones, dtype=np.int64).reshape(-1, 2)
    reach = np.asarray(half_widths, dtype=np.float32).reshape(-1) + np.float32(0.5)  # (B,)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (F, J, 2), got {points.shape}")
    if reach.shape[0] != bones.shape[0]:
        raise ValueError(f"{bones.shape[0]} bones but {reach.shape[0]} half widths")
    n_frames = points.shape[0]
    image = np.zeros(n_frames * height * width, dtype=np.float32)
    if n_frames == 0 or bones.shape[0] == 0:
        return image.reshape(n_frames, height, width)

    a = points[:, bones[:, 0]].reshape(-1, 2)  # (F*B, 2): segment starts, frame-major
    b = points[:, bones[:, 1]].reshape(-1, 2)
    seg_reach = np.tile(reach, n_frames)  # (F*B,)
    finite = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    size = np.array([width, height], dtype=np.float32)
    widen = (seg_reach + np.float32(_BOX_SLACK))[:, None]
    with np.errstate(invalid="ignore"):  # NaN segments are masked out just below
        lo = np.clip(np.ceil(np.minimum(a, b) - widen), 0, size)
        hi = np.clip(np.floor(np.maximum(a, b) + widen), -1, size - 1)
    lo = np.where(finite[:, None], lo, 0).astype(np.int64)  # (F*B, 2) first pixel (x, y)
    extent = np.where(finite[:, None], hi, -1).astype(np.int64) - lo + 1
    extent = np.maximum(extent, 0)  # (F*B, 2) pixels across, down
    count = extent[:, 0] * extent[:, 1]  # (F*B,) pixels visited per segment
    segment_frame = np.repeat(np.arange(n_frames, dtype=np.int64), bones.shape[0])

    visited = np.flatnonzero(count)
    ends = np.cumsum(count[visited])
    start = 0
    while start < visited.size:  # chunks of whole segments, ~_CHUNK_PAIRS pairs each
        done = ends[start] - count[visited[start]]  # pairs before this chunk
        stop = max(int(np.searchsorted(ends, done + _CHUNK_PAIRS, "right")), start + 1)
        segs = visited[start:stop]
        _draw_segments(image, a[segs], b[segs], seg_reach[segs], lo[segs], extent[segs],
                       count[segs], segment_frame[segs], height, width)
        start = stop
    return image.reshape(n_frames, height, width)


def _draw_segments(
    image: np.ndarray, a: np.ndarray, b: np.ndarray, reach: np.ndarray, lo: np.ndarray,
    extent: np.ndarray, count: np.ndarray, frame: np.ndarray, height: int, width: int,
) -> None:
    """Max the intensities of segments (S,) over their pixel boxes into flat ``image``."""
    seg = np.repeat(np.arange(count.size), count)  # (P,) segment of each (pixel, bone) pair
    first = np.cumsum(count) - count
    k = np.arange(seg.size, dtype=np.int64) - first[seg]  # index within the segment's box
    across = extent[seg, 0]
    col = lo[seg, 0] + k % across
    row = lo[seg, 1] + k // across

    ax, ay = a[seg, 0], a[seg, 1]
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]  # (S,)
    len2 = dx * dx + dy * dy
    len2_safe = np.where(len2 > 0, len2, np.float32(1))  # len2 == 0 -> dot == 0 -> t == 0
    dx, dy, len2_safe = dx[seg], dy[seg], len2_safe[seg]
    qx = col.astype(np.float32) - ax
    qy = row.astype(np.float32) - ay
    t = np.clip((qx * dx + qy * dy) / len2_safe, np.float32(0), np.float32(1))
    ex = qx - t * dx
    ey = qy - t * dy
    dist = np.sqrt(ex * ex + ey * ey)
    value = np.clip(reach[seg] - dist, np.float32(0), np.float32(1))
    np.maximum.at(image, (frame[seg] * height + row) * width + col, value)
