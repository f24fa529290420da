"""Keypoint layouts: the OpenPose 137-point layout of the data and the upper body the models use.

Defined once, here; the bundle manifest carries :meth:`Skeleton.to_dict` of the model
skeleton, and :func:`Skeleton.from_dict` rebuilds it at run time.

``OPENPOSE_137`` is the layout of Speech2Gesture / SDT keypoint files: BODY_25 (0-24),
face 70 (25-94: 68 landmarks + 2 pupils), left hand 21 (95-115), right hand 21 (116-136).

``UPPER_BODY_122`` is what every model in gesturert reads and writes. SDT drops legs,
hips, ears and feet and uses the neck as root, leaving 121 points; we keep the root as
joint 0 so that one array holds everything needed to draw and image the pose:

====  ===========================================  ==========
idx   joints                                        OpenPose
====  ===========================================  ==========
0     neck (root; 0 in neck-relative coordinates)   1
1-7   nose, R shoulder/elbow/wrist, L sh/el/wr      0, 2-7
8-9   right eye, left eye                           15, 16
10-79 face 70 (lips are face 48-67 -> 58-77)        25-94
80-100  left hand 21 (80 = wrist)                   95-115
101-121 right hand 21 (101 = wrist)                 116-136
====  ===========================================  ==========

SDT's 121 points are indices 1..121 in this order. Models predict those 121; the root
is fixed.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BODY25_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
    "right_heel",
)
BODY25_BONES = (
    (1, 0), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (10, 11), (8, 12), (12, 13), (13, 14), (0, 15), (0, 16), (15, 17), (16, 18),
    (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
)

# 68-point face (iBUG 300-W order) + 2 pupils.
_FACE_PARTS = (
    ("jaw", 0, 17, False), ("right_brow", 17, 22, False), ("left_brow", 22, 27, False),
    ("nose_bridge", 27, 31, False), ("nose_base", 31, 36, False),
    ("right_eye", 36, 42, True), ("left_eye", 42, 48, True),
    ("outer_lip", 48, 60, True), ("inner_lip", 60, 68, True),
)
FACE_NAMES = tuple(
    [f"face_{part}_{i - start}" for part, start, stop, _ in _FACE_PARTS for i in range(start, stop)]
    + ["face_right_pupil", "face_left_pupil"]
)
FACE_BONES = tuple(
    pair
    for _, start, stop, closed in _FACE_PARTS
    for pair in [(i, i + 1) for i in range(start, stop - 1)]
    + ([(stop - 1, start)] if closed else [])
)
FACE_LIPS = tuple(range(48, 68))  # outer 48-59, inner 60-67
FACE_INNER_LIP_TOP, FACE_INNER_LIP_BOTTOM = 62, 66  # lip opening = |p62 - p66|

_FINGERS = ("thumb", "index", "middle", "ring", "pinky")
HAND_NAMES = ("wrist",) + tuple(f"{f}_{j}" for f in _FINGERS for j in range(1, 5))
HAND_BONES = tuple(
    pair for f in range(5) for pair in [(0, 1 + 4 * f)] + [(1 + 4 * f + j, 2 + 4 * f + j)
                                                           for j in range(3)]
)

#: Joints in an OpenPose-137 file: BODY_25 + face 70 + two hands of 21.
OPENPOSE_NUM_JOINTS = len(BODY25_NAMES) + len(FACE_NAMES) + 2 * len(HAND_NAMES)


@dataclass(frozen=True)
class Skeleton:
    """A keypoint layout.

    Attributes:
        name: layout id, stored in the bundle manifest.
        joint_names: (J,) names.
        groups: name -> sorted joint indices. Groups may overlap (lips is part of face).
        bones: (B, 2) joint index pairs, for drawing and pose imaging.
        source_indices: (J,) index of each joint in OpenPose 137, or None for OpenPose 137.
        root: index of the root joint (neck-relative coordinates put it at 0), or -1.
    """

    name: str
    joint_names: tuple[str, ...]
    groups: dict[str, tuple[int, ...]] = field(hash=False)
    bones: tuple[tuple[int, int], ...]
    source_indices: tuple[int, ...] | None = None
    root: int = -1

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def bone_array(self) -> np.ndarray:
        """Bones as an int64 array of shape (B, 2)."""
        return np.asarray(self.bones, dtype=np.int64).reshape(-1, 2)

    def group_of_joint(self) -> list[str]:
        """Per joint, its most specific group name (lips wins over face), (J,) list."""
        out = ["" for _ in self.joint_names]
        for name, idx in sorted(self.groups.items(), key=lambda kv: -len(kv[1])):
            for i in idx:
                out[i] = name
        return out

    def from_openpose(self, keypoints: np.ndarray) -> np.ndarray:
        """Select this layout's joints from OpenPose-137 arrays.

        Args:
            keypoints: (..., 137, C) array.
        Returns:
            (..., J, C) array (a copy).
        """
        keypoints = np.asarray(keypoints)
        if self.source_indices is None:
            return np.array(keypoints, copy=True)
        if keypoints.ndim < 2 or keypoints.shape[-2] != OPENPOSE_NUM_JOINTS:
            raise ValueError(
                f"expected OpenPose keypoints with shape (..., {OPENPOSE_NUM_JOINTS}, C), "
                f"got {keypoints.shape}"
            )
        return keypoints[..., list(self.source_indices), :]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "joint_names": list(self.joint_names),
            "groups": {k: list(v) for k, v in self.groups.items()},
            "bones": [list(b) for b in self.bones],
            "source_indices": None if self.source_indices is None else list(self.source_indices),
            "root": self.root,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skeleton:
        """Rebuild a skeleton from :meth:`to_dict`; ValueError names what is malformed."""
        try:
            source = data.get("source_indices")
            skeleton = cls(
                name=str(data["name"]),
                joint_names=_names(data["joint_names"]),
                groups={str(k): _indices(v) for k, v in data["groups"].items()},
                bones=tuple(_pair(b) for b in data["bones"]),
                source_indices=None if source is None else _indices(source),
                root=operator.index(data.get("root", -1)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"malformed skeleton in manifest: {exc!r}; expected the dict that "
                "Skeleton.to_dict() writes"
            ) from exc
        skeleton._check_indices()
        return skeleton

    def _check_indices(self) -> None:
        """Raise ValueError if any bone, group, root or source index is out of range."""
        n = self.num_joints
        where = f"skeleton {self.name!r} with {n} joints"
        bad = [b for b in self.bones if not (0 <= b[0] < n and 0 <= b[1] < n)]
        if bad:
            raise ValueError(f"{where} has bones outside 0..{n - 1}: {bad[:3]}")
        for group, idx in self.groups.items():
            if any(not 0 <= i < n for i in idx):
                raise ValueError(f"{where}: group {group!r} has indices outside 0..{n - 1}")
        if not -1 <= self.root < n:
            raise ValueError(f"{where}: root {self.root} is not -1 (none) or in 0..{n - 1}")
        if self.source_indices is not None:
            if len(self.source_indices) != n:
                raise ValueError(
                    f"{where}: {len(self.source_indices)} source_indices, expected one per joint"
                )
            if any(not 0 <= i < OPENPOSE_NUM_JOINTS for i in self.source_indices):
                raise ValueError(f"{where}: source_indices outside 0..{OPENPOSE_NUM_JOINTS - 1}")


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"joint_names must be a list of strings, got {value!r:.60}")
    return tuple(value)


def _indices(value: Any) -> tuple[int, ...]:
    """A list of integer indices (floats such as 1.5 are rejected, not truncated)."""
    return tuple(operator.index(i) for i in value)


def _pair(value: Any) -> tuple[int, int]:
    a, b = _indices(value)
    return a, b


def _openpose_137() -> Skeleton:
    names = (
        BODY25_NAMES
        + FACE_NAMES
        + tuple(f"left_hand_{n}" for n in HAND_NAMES)
        + tuple(f"right_hand_{n}" for n in HAND_NAMES)
    )
    face0 = len(BODY25_NAMES)
    lh0 = face0 + len(FACE_NAMES)
    rh0 = lh0 + len(HAND_NAMES)
    bones = (
        list(BODY25_BONES)
        + [(face0 + a, face0 + b) for a, b in FACE_BONES]
        + [(lh0 + a, lh0 + b) for a, b in HAND_BONES]
        + [(rh0 + a, rh0 + b) for a, b in HAND_BONES]
        + [(7, lh0), (4, rh0)]
    )
    groups = {
        "body": tuple(range(25)),
        "face": tuple(range(face0, face0 + 70)),
        "lips": tuple(face0 + i for i in FACE_LIPS),
        "left_hand": tuple(range(lh0, lh0 + 21)),
        "right_hand": tuple(range(rh0, rh0 + 21)),
    }
    return Skeleton("openpose_137", names, groups, tuple(bones), None, root=1)


OPENPOSE_137 = _openpose_137()

# Upper-body layout: OpenPose index of each joint, in order (see the module docstring).
_UPPER_SOURCE = (1, 0, 2, 3, 4, 5, 6, 7, 15, 16) + tuple(
    range(len(BODY25_NAMES), OPENPOSE_NUM_JOINTS)  # face and both hands: OpenPose 25-136
)


def _upper_body_122() -> Skeleton:
    src = _UPPER_SOURCE
    where = {op: i for i, op in enumerate(src)}
    names = tuple(OPENPOSE_137.joint_names[i] for i in src)
    bones = tuple(
        (where[a], where[b]) for a, b in OPENPOSE_137.bones if a in where and b in where
    )
    groups = {
        g: tuple(sorted(where[i] for i in idx if i in where))
        for g, idx in OPENPOSE_137.groups.items()
    }
    return Skeleton("upper_body_122", names, groups, bones, src, root=0)


UPPER_BODY_122 = _upper_body_122()

#: The layout every model reads and writes.
MODEL_SKELETON = UPPER_BODY_122

# Index helpers for the model skeleton (derived, not typed twice).
FACE_OFFSET = MODEL_SKELETON.groups["face"][0]
LIP_TOP = FACE_OFFSET + FACE_INNER_LIP_TOP
LIP_BOTTOM = FACE_OFFSET + FACE_INNER_LIP_BOTTOM
