"""The range of the poses a generator was trained on, and how far an output strays past it.

A generator can keep sync on speech it never heard and still, on a loud voice or a
reverberant room, throw an arm further than any pose it was trained on. The bundle carries
the training poses' range (``manifest.json`` key ``pose_range``, written by export from the
corpus the generator was trained on), so a deployment measures that on live output without
the corpus or torch.

Units: *standardised* poses, ``z = (canonical - mean) / std`` per joint and axis
(:mod:`sdk.normalization`; one SD = one training standard deviation of that coordinate).
Joints: the body and both hands, root excluded (:func:`range_joints`): the face and lips
follow the audio closely and are not what goes astray.

For standardised poses ``z`` (T, J, 2), per body/hand joint j and axis a::

    past[t, j, a] = max(low[j, a] - z[t, j, a], z[t, j, a] - high[j, a])   (> 0: outside)

* ``outside_share``: share of (frame, joint, axis) values with ``past > 0``;
* ``largest_excursion``: ``max(past)`` floored at 0, in SD: how far the farthest value lies
  past the range;
* ``frame_excursion[t]``: the same per frame (0 for a frame inside the range);
* ``mean_abs_z``: mean |z| over the body/hand values (the training poses' own is recorded).

A run of frames is *within* the range when ``mean_abs_z <= mean_abs_z_max`` and
``largest_excursion <= excursion_max_sd`` (:class:`RangeLimits`, recorded in the bundle
with the range; ``benchmarks/voices_acceptance.py`` judges voices by the same limits).
Undetected joints (NaN, in ground truth) are left out of every measure.

Live: :class:`PoseRangeMonitor` keeps these measures for one stream as its frames are
popped (equal to one :meth:`PoseRange.measure_pixels` over all of them, for any split);
:func:`update_monitors` updates many streams' monitors in one call (``gesturert serve
--pose-range``). ``gesturert stream`` and ``gesturert demo`` print :func:`describe_range`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.normalization import PoseNormalization
from sdk.skeleton import Skeleton

RANGE_GROUPS = ("body", "left_hand", "right_hand")
"""Skeleton groups whose joints (root excluded) the range covers."""
FAR_SD = 4.0
"""|z| beyond which a value counts as far from the training mean (``beyond_4sd``)."""


def range_joints(skeleton: Skeleton) -> tuple[int, ...]:
    """Indices of the body and hand joints of ``skeleton``, root excluded, in group order."""
    missing = [g for g in RANGE_GROUPS if g not in skeleton.groups]
    if missing:
        raise ValueError(f"skeleton {skeleton.name} has no group(s) {missing}: the pose range "
                         f"covers {RANGE_GROUPS}")
    joints: list[int] = []
    for group in RANGE_GROUPS:
        joints += [j for j in skeleton.groups[group] if j != skeleton.root and j not in joints]
    return tuple(joints)


@dataclass(frozen=True)
class RangeLimits:
    """When a run of output frames counts as within the training range.

    Attributes:
        mean_abs_z_max: largest allowed mean |z| over body/hand values (training poses: ~0.55).
        excursion_max_sd: largest allowed distance past the range, SD. Real poses never
            trained on (the voiced corpus's held-out clips) go at most 0.26 SD past it.
    """

    mean_abs_z_max: float = 1.0
    excursion_max_sd: float = 0.5

    def __post_init__(self) -> None:
        if not (self.mean_abs_z_max > 0 and self.excursion_max_sd >= 0):
            raise ValueError(f"pose range limits: mean_abs_z_max must be > 0 and "
                             f"excursion_max_sd >= 0, got {self.mean_abs_z_max}, "
                             f"{self.excursion_max_sd}")

    def allow(self, mean_abs_z: float, largest_excursion: float) -> bool:
        """Whether frames with this mean |z| and farthest excursion (SD) are within."""
        return mean_abs_z <= self.mean_abs_z_max and largest_excursion <= self.excursion_max_sd

    def to_dict(self) -> dict[str, float]:
        return {"mean_abs_z_max": self.mean_abs_z_max, "excursion_max_sd": self.excursion_max_sd}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RangeLimits:
        return cls(float(d["mean_abs_z_max"]), float(d["excursion_max_sd"]))


@dataclass(frozen=True)
class RangeMeasure:
    """How a run of frames relates to a :class:`PoseRange` (see the module docstring).

    Attributes:
        frames: frames measured.
        mean_abs_z: mean |z| of their body/hand values.
        outside_share: share of body/hand values outside the range, in [0, 1].
        largest_excursion: farthest past the range, SD (0 = all inside).
        worst_joint: name of the joint of the farthest value ("" when all inside).
        frames_outside: frames with at least one value outside.
        within: both :class:`RangeLimits` met.
    """

    frames: int
    mean_abs_z: float
    outside_share: float
    largest_excursion: float
    worst_joint: str
    frames_outside: int
    within: bool

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "mean_abs_z": self.mean_abs_z,
                "outside_share": self.outside_share, "largest_excursion": self.largest_excursion,
                "worst_joint": self.worst_joint, "frames_outside": self.frames_outside,
                "within": self.within}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RangeMeasure:
        """From :meth:`to_dict`'s dict (e.g. the live server's ``end`` message)."""
        try:
            return cls(int(d["frames"]), float(d["mean_abs_z"]), float(d["outside_share"]),
                       float(d["largest_excursion"]), str(d["worst_joint"]),
                       int(d["frames_outside"]), bool(d["within"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed pose range measure: {exc!r}") from exc

    def describe(self, limits: RangeLimits | None = None,
                 training_mean_abs_z: float | None = None) -> str:
        """One line for a command's summary (``limits``, the training poses' mean |z|:
        shown when given)."""
        where = f" ({self.worst_joint})" if self.worst_joint else ""
        training = "" if training_mean_abs_z is None else f" (training {training_mean_abs_z:.2f})"
        shown = "" if limits is None else (f" ({limits.excursion_max_sd:g} SD past, mean |z| "
                                           f"{limits.mean_abs_z_max:g})")
        return (f"{100 * self.outside_share:.3f}% of body/hand values outside the training "
                f"poses' range, in {self.frames_outside} of {self.frames} frames; farthest "
                f"{self.largest_excursion:.3f} SD past{where}, mean |z| {self.mean_abs_z:.2f}"
                f"{training}: {'within' if self.within else 'PAST'} the bundle's limits{shown}")


@dataclass(frozen=True)
class PoseRange:
    """Lowest and highest standardised value per body/hand joint and axis seen in training.

    Attributes:
        joint_names: the joints covered, in the order of ``low``/``high`` rows.
        joints: their indices in the skeleton the range was built for.
        low, high: float64 (len(joints), 2), standardised units; low <= high.
        frames: number of training frames they come from.
        mean_abs_z, beyond_4sd: the training poses' own mean |z| and share beyond
            :data:`FAR_SD` (references for an output's).
        limits: when an output counts as within the range.
    """

    joint_names: tuple[str, ...]
    joints: tuple[int, ...]
    low: np.ndarray
    high: np.ndarray
    frames: int
    mean_abs_z: float
    beyond_4sd: float
    limits: RangeLimits = field(default_factory=RangeLimits)

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float64)
        high = np.asarray(self.high, dtype=np.float64)
        shape = (len(self.joints), 2)
        if len(self.joint_names) != len(self.joints) or low.shape != shape or high.shape != shape:
            raise ValueError(f"pose range: {len(self.joint_names)} names, {len(self.joints)} "
                             f"joints, low {low.shape}, high {high.shape}; expected {shape} each")
        if not (np.isfinite(low).all() and np.isfinite(high).all()) or (low > high).any():
            raise ValueError("pose range: low and high must be finite with low <= high")
        if self.frames < 1:
            raise ValueError(f"pose range: frames must be >= 1, got {self.frames}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def from_poses(cls, poses: Iterable[np.ndarray], skeleton: Skeleton,
                   limits: RangeLimits | None = None) -> PoseRange:
        """From standardised training poses, each float (T, J, 2) of ``skeleton``; NaN =
        not detected. Raises ValueError when some body/hand joint is never seen."""
        joints = range_joints(skeleton)
        body = np.concatenate([_body_hand(z, skeleton.num_joints, joints) for z in poses])
        if not np.isfinite(body).any(axis=0).all():
            raise ValueError("the training poses never show some body/hand joint")
        seen = np.abs(body[np.isfinite(body)])
        return cls(tuple(skeleton.joint_names[j] for j in joints), joints,
                   np.nanmin(body, axis=0), np.nanmax(body, axis=0), int(body.shape[0]),
                   float(seen.mean()), float(np.mean(seen > FAR_SD)),
                   limits or RangeLimits())

    def past(self, z: np.ndarray) -> np.ndarray:
        """float64 (T, len(joints), 2): SD past the range of each body/hand value of
        standardised poses ``z`` (T, J, 2); <= 0 inside, NaN where ``z`` is NaN."""
        body = _body_hand(z, None, self.joints)
        return np.maximum(self.low - body, body - self.high)

    def frame_excursion(self, z: np.ndarray) -> np.ndarray:
        """float64 (T,): per frame, the farthest past the range in SD (0 inside)."""
        past = self.past(z)
        if not past.shape[0]:
            return np.zeros(0)
        return np.maximum(np.nanmax(np.where(np.isfinite(past), past, 0.0), axis=(1, 2)), 0.0)

    def measure(self, z: np.ndarray) -> RangeMeasure:
        """The measures of the module docstring for standardised poses ``z`` (T, J, 2)."""
        body = _body_hand(z, None, self.joints)
        past = self.past(z)
        known = np.isfinite(past)
        if not known.any():
            raise ValueError("no body/hand value to compare with the training range")
        largest = float(max(np.nanmax(np.where(known, past, -np.inf)), 0.0))
        worst = ""
        if largest > 0:
            _, joint, _ = np.unravel_index(np.argmax(np.where(known, past, -np.inf)), past.shape)
            worst = self.joint_names[int(joint)]
        mean_abs_z = float(np.abs(body[known]).mean())
        return RangeMeasure(
            frames=int(body.shape[0]), mean_abs_z=mean_abs_z,
            outside_share=float(np.mean(past[known] > 0)), largest_excursion=largest,
            worst_joint=worst, frames_outside=int(np.sum((np.where(known, past, 0) > 0)
                                                         .any(axis=(1, 2)))),
            within=self.limits.allow(mean_abs_z, largest))

    def measure_pixels(self, keypoints: np.ndarray, normalization: PoseNormalization,
                       root: int = 0) -> RangeMeasure:
        """:meth:`measure` of output frames in pixels (``PoseFrames.keypoints``, float
        (T, J, 2)), standardised with the bundle's ``normalization`` around joint ``root``."""
        return self.measure(standardize_pixels(keypoints, normalization, root))

    def summary(self) -> dict[str, float]:
        """The training poses' own measures (a report's reference; not the bounds)."""
        return {"frames": float(self.frames), "mean_abs_z": self.mean_abs_z,
                "beyond_4sd": self.beyond_4sd}

    def to_dict(self) -> dict[str, Any]:
        return {"joints": list(self.joint_names), "low": self.low.tolist(),
                "high": self.high.tolist(), "frames": self.frames,
                "mean_abs_z": self.mean_abs_z, "beyond_4sd": self.beyond_4sd,
                "limits": self.limits.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], skeleton: Skeleton) -> PoseRange:
        """From :meth:`to_dict`'s dict; joint names resolved in ``skeleton`` (the bundle's).
        Raises ValueError naming what is wrong."""
        try:
            names = tuple(str(n) for n in d["joints"])
            unknown = [n for n in names if n not in skeleton.joint_names]
            if unknown:
                raise ValueError(f"pose range names joints {unknown[:3]} that skeleton "
                                 f"{skeleton.name} does not have")
            return cls(names, tuple(skeleton.joint_names.index(n) for n in names),
                       np.asarray(d["low"], dtype=np.float64),
                       np.asarray(d["high"], dtype=np.float64), int(d["frames"]),
                       float(d["mean_abs_z"]), float(d["beyond_4sd"]),
                       RangeLimits.from_dict(d["limits"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed pose range: {exc!r}") from exc


def standardize_pixels(keypoints: np.ndarray, normalization: PoseNormalization,
                       root: int = 0) -> np.ndarray:
    """float32 (T, J, 2) standardised poses of keypoints in pixels (T, J, 2)."""
    return normalization.standardize(normalization.pixels_to_canonical(keypoints, root))


def _body_hand(z: np.ndarray, num_joints: int | None, joints: Sequence[int]) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 3 or z.shape[2] != 2 or (num_joints is not None and z.shape[1] != num_joints):
        raise ValueError(f"poses must be (T, {num_joints or 'J'}, 2), got {z.shape}")
    if z.shape[1] <= max(joints):
        raise ValueError(f"poses have {z.shape[1]} joints; the range covers joint {max(joints)}")
    return z[:, list(joints)]


class PoseRangeMonitor:
    """The measures of :meth:`PoseRange.measure` kept up to date as frames arrive, for one
    stream: feed every popped run of frames to :meth:`update`, read :meth:`result` at any
    time. The result over any split of the frames equals one :meth:`PoseRange.measure_pixels`
    over all of them (sums and maxima only). Not thread-safe: one monitor per stream.
    """

    def __init__(self, pose_range: PoseRange, normalization: PoseNormalization,
                 root: int = 0) -> None:
        self.pose_range = pose_range
        self.normalization = normalization
        self.root = root
        joints = list(pose_range.joints)
        # z of the covered joints = ((pixels - root) / scale - mean) / std in float32, the
        # operations of standardize_pixels in its order (so the same values), subsets cut once
        self._scale = np.float32(normalization.scale_px)
        self._joints = np.asarray(joints, dtype=np.intp)
        self._mean = normalization.mean[joints]
        self._std = normalization.std[joints]
        self._frames = 0
        self._values = 0  # finite body/hand values seen
        self._outside = 0
        self._abs_z = 0.0
        self._frames_outside = 0
        self._largest = 0.0
        self._worst = ""

    def update(self, keypoints: np.ndarray) -> np.ndarray:
        """Add frames (float (T, J, 2) pixels, ``PoseFrames.keypoints``); returns float64
        (T,) SD past the range per frame (0 inside), e.g. to flag frames as they go out."""
        return update_monitors([(self, keypoints)])[0]

    def _standardized(self, keypoints: np.ndarray) -> np.ndarray:
        """float32 (T, len(joints), 2) z of the covered joints of pixels (T, J, 2)."""
        keypoints = np.asarray(keypoints, dtype=np.float32)
        if keypoints.ndim != 3 or keypoints.shape[2] != 2 or \
                keypoints.shape[1] <= max(max(self.pose_range.joints), self.root):
            raise ValueError(f"keypoints must be (T, J, 2) with the range's joints, got "
                             f"{keypoints.shape}")
        rel = keypoints[:, self._joints] - keypoints[:, self.root:self.root + 1]
        return (rel / self._scale - self._mean) / self._std

    def result(self) -> RangeMeasure | None:
        """The measures so far; None before any body/hand value was seen."""
        if not self._values:
            return None
        mean_abs_z = self._abs_z / self._values
        return RangeMeasure(self._frames, mean_abs_z, self._outside / self._values,
                            self._largest, self._worst, self._frames_outside,
                            self.pose_range.limits.allow(mean_abs_z, self._largest))


def update_monitors(updates: Sequence[tuple[PoseRangeMonitor, np.ndarray]]
                    ) -> list[np.ndarray]:
    """:meth:`PoseRangeMonitor.update` of many monitors in one vectorised pass (the live
    server's streams after a batched step): ``updates`` = (monitor, float (T_i, J, 2)
    pixels); every monitor must share one range, normalisation and root (one generator's
    streams), else ValueError. Returns each run's (T_i,) SD past the range per frame."""
    if not updates:
        return []
    first = updates[0][0]
    if any(m.pose_range is not first.pose_range or m.normalization is not first.normalization
           or m.root != first.root for m, _ in updates):
        raise ValueError("update_monitors: the monitors must share one pose range, "
                         "normalisation and root (one generator's streams)")
    runs = [np.asarray(k) for _, k in updates]
    bounds = np.cumsum([0] + [len(k) for k in runs])
    if not bounds[-1]:
        return [np.zeros(0) for _ in runs]
    z = first._standardized(np.concatenate(runs) if len(runs) > 1 else runs[0])
    flat = (len(z), 2 * len(first.pose_range.joints))  # (T, joints x axes)
    past = np.maximum(first.pose_range.low - z, z - first.pose_range.high).reshape(flat)
    abs_z = np.abs(z).reshape(flat)
    known = np.isfinite(past)
    if not known.all():  # undetected joints (NaN) are left out of every measure
        past = np.where(known, past, -np.inf)
        abs_z = np.where(known, abs_z, 0.0)
    largest = np.maximum(past.max(axis=1), 0.0)  # (T,)
    filled = [i for i in range(len(runs)) if bounds[i + 1] > bounds[i]]
    starts = bounds[:-1][filled]
    per_run = [np.add.reduceat(a, starts).tolist() for a in (
        known.sum(axis=1), (past > 0).sum(axis=1), largest > 0,
        abs_z.sum(axis=1, dtype=np.float64))]
    run_max = np.maximum.reduceat(largest, starts).tolist()
    for n, i in enumerate(filled):
        monitor, begin, stop = updates[i][0], int(bounds[i]), int(bounds[i + 1])
        monitor._frames += stop - begin
        monitor._values += int(per_run[0][n])
        monitor._outside += int(per_run[1][n])
        monitor._frames_outside += int(per_run[2][n])
        monitor._abs_z += float(per_run[3][n])
        if run_max[n] > monitor._largest:  # a new farthest value: find its joint
            frame = begin + int(np.argmax(largest[begin:stop]))
            monitor._largest = float(run_max[n])
            monitor._worst = first.pose_range.joint_names[int(np.argmax(past[frame])) // 2]
    return [largest[bounds[i]:bounds[i + 1]] for i in range(len(runs))]


def describe_range(pose_range: PoseRange | None, normalization: PoseNormalization,
                   keypoints: np.ndarray) -> str:
    """One line on output frames (float (T, J, 2) pixels) against the bundle's training pose
    range, for a command's summary; says why when nothing can be measured."""
    if pose_range is None:
        return ("pose range: not measured (the bundle carries no training pose range; "
                "export it with --corpus)")
    try:
        m = pose_range.measure_pixels(keypoints, normalization)
    except ValueError as exc:
        return f"pose range: not measured ({exc})"
    return "pose range: " + m.describe(pose_range.limits, pose_range.mean_abs_z)
