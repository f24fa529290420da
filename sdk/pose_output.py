"""Writing pose frames for other programs: a self-describing .npz, or OpenPose JSON.

Both ``gesturert stream`` and ``gesturert client`` write through here, so the same audio
and seed give the same files whichever path made the frames.

**.npz** (``format="npz"``): ``keypoints`` float32 (T, J, 2) pixels, ``saliency`` float32
(T,), ``time`` float64 (T,) seconds (= index / fps), ``index`` int64 (T,), ``fps`` int,
``backend`` str, ``joint_names`` str (J,), ``bones`` int64 (B, 2) joint index pairs,
``image_size`` int64 (2,) (width, height) of the pixel frame. Readable without the bundle.

**OpenPose JSON** (``format="openpose-json"``): one file per frame,
``<dir>/<stem>_<index:012d>_keypoints.json``, as OpenPose's ``--write_json`` names them, in
its 137-point layout: ``pose_keypoints_2d`` (BODY_25, 75 numbers x, y, c),
``face_keypoints_2d`` (70 points), ``hand_left_keypoints_2d`` and ``hand_right_keypoints_2d``
(21 points each). A joint the model produces has confidence 1; a joint it does not produce
(legs, hips, ears, feet) is written as ``0, 0, 0``, OpenPose's own "not detected".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sdk.frames import PoseFrames
from sdk.skeleton import BODY25_NAMES, FACE_NAMES, HAND_NAMES, OPENPOSE_NUM_JOINTS, Skeleton

#: Output formats of ``gesturert stream`` / ``gesturert client``.
OUTPUT_FORMATS = ("npz", "openpose-json")
OPENPOSE_JSON_VERSION = 1.3

# (field, first OpenPose-137 index, count), in the order of the 137-point layout.
_OPENPOSE_PARTS = (
    ("pose_keypoints_2d", 0, len(BODY25_NAMES)),
    ("face_keypoints_2d", len(BODY25_NAMES), len(FACE_NAMES)),
    ("hand_left_keypoints_2d", len(BODY25_NAMES) + len(FACE_NAMES), len(HAND_NAMES)),
    ("hand_right_keypoints_2d", len(BODY25_NAMES) + len(FACE_NAMES) + len(HAND_NAMES),
     len(HAND_NAMES)),
)


def save_frames(path: str | Path, frames: PoseFrames, *, fmt: str, fps: int, backend: str,
                skeleton: Skeleton, image_size: tuple[int, int]) -> Path:
    """Write ``frames`` as ``fmt`` (one of :data:`OUTPUT_FORMATS`); returns what was written.

    ``path`` is the .npz file, or for ``openpose-json`` the directory (created) that gets
    one file per frame named after the directory.
    """
    if fmt == "npz":
        frames.save_npz(path, fps=np.array(fps), backend=np.array(backend),
                        joint_names=np.array(skeleton.joint_names),
                        bones=skeleton.bone_array(), image_size=np.array(image_size, np.int64))
        return Path(path)
    if fmt == "openpose-json":
        return write_openpose_json(path, frames, skeleton)
    raise ValueError(f"unknown output format {fmt!r}; expected one of {OUTPUT_FORMATS}")


def to_openpose_137(keypoints: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Model keypoints in the OpenPose 137-point layout with confidences.

    Args:
        keypoints: float (T, J, 2) pixels in ``skeleton``'s layout.
        skeleton: the layout; its ``source_indices`` place each joint (None: already 137).
    Returns:
        float32 (T, 137, 3): x, y, confidence (1 for produced joints, all 0 for the rest).
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (skeleton.num_joints, 2):
        raise ValueError(f"expected keypoints (T, {skeleton.num_joints}, 2) for skeleton "
                         f"{skeleton.name!r}, got {keypoints.shape}")
    source = (list(range(OPENPOSE_NUM_JOINTS)) if skeleton.source_indices is None
              else list(skeleton.source_indices))
    out = np.zeros((keypoints.shape[0], OPENPOSE_NUM_JOINTS, 3), np.float32)
    out[:, source, :2] = keypoints
    out[:, source, 2] = 1.0
    return out


def openpose_frame_dict(points_137: np.ndarray) -> dict[str, object]:
    """One frame, float (137, 3), as the dict OpenPose's ``--write_json`` writes (one person)."""
    person: dict[str, object] = {"person_id": [-1]}
    for name, first, count in _OPENPOSE_PARTS:
        person[name] = [round(float(v), 3) for v in points_137[first:first + count].reshape(-1)]
    for name, _, _ in _OPENPOSE_PARTS:
        person[name.replace("_2d", "_3d")] = []
    return {"version": OPENPOSE_JSON_VERSION, "people": [person]}


def write_openpose_json(directory: str | Path, frames: PoseFrames, skeleton: Skeleton) -> Path:
    """One OpenPose JSON file per frame under ``directory`` (created); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory.name
    for k, points in zip(frames.index, to_openpose_137(frames.keypoints, skeleton), strict=True):
        target = directory / f"{stem}_{int(k):012d}_keypoints.json"
        target.write_text(json.dumps(openpose_frame_dict(points)))
    return directory
