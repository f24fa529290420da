"""The keypoint layouts: OpenPose 137 order, the SDT upper body, groups, bones, manifest dicts."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from sdk.skeleton import (
    LIP_BOTTOM,
    LIP_TOP,
    MODEL_SKELETON,
    OPENPOSE_137,
    OPENPOSE_NUM_JOINTS,
    UPPER_BODY_122,
    Skeleton,
)

# Independent references, typed from the sources rather than imported:
# OpenPose doc/02_output.md, BODY_25 pose pairs.
OPENPOSE_BODY25_PAIRS = {
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11),
    (8, 12), (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19),
    (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
}
# SpeechDrivesTemplates pose_definition.md: pose137_to_pose121 keeps these, in this order.
SDT_121_FROM_137 = [0, *range(2, 8), 15, 16, *range(25, 137)]


def _adjacency(bones: tuple[tuple[int, int], ...]) -> dict[int, set[int]]:
    adjacent: dict[int, set[int]] = defaultdict(set)
    for a, b in bones:
        adjacent[a].add(b)
        adjacent[b].add(a)
    return adjacent


def _reachable(start: int, adjacent: dict[int, set[int]]) -> set[int]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in adjacent[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _components(joints: set[int], bones: list[tuple[int, int]]) -> list[tuple[int, str]]:
    """(size, 'path' | 'cycle' | 'point') per connected component of joints under bones."""
    adjacent = _adjacency(tuple(bones))
    out, left = [], set(joints)
    while left:
        comp = _reachable(min(left), adjacent)
        left -= comp
        n_bones = sum(1 for a, b in bones if a in comp)
        degrees = {len(adjacent[j]) for j in comp}
        if len(comp) == 1:
            kind = "point"
        elif n_bones == len(comp) and degrees == {2}:
            kind = "cycle"
        elif n_bones == len(comp) - 1 and degrees <= {1, 2}:
            kind = "path"
        else:
            kind = f"other({n_bones} bones)"
        out.append((len(comp), kind))
    return sorted(out)


def test_openpose_137_is_body25_face70_left_hand_right_hand_in_order() -> None:
    sk = OPENPOSE_137
    assert sk.num_joints == OPENPOSE_NUM_JOINTS == 137
    assert len(set(sk.joint_names)) == 137
    assert sk.groups["body"] == tuple(range(25))
    assert sk.groups["face"] == tuple(range(25, 95))
    assert sk.groups["left_hand"] == tuple(range(95, 116))
    assert sk.groups["right_hand"] == tuple(range(116, 137))
    names = sk.joint_names
    assert (names[0], names[1], names[4], names[7]) == (
        "nose", "neck", "right_wrist", "left_wrist")
    assert (names[15], names[16], names[17], names[24]) == (
        "right_eye", "left_eye", "right_ear", "right_heel")
    assert names[95] == "left_hand_wrist" and names[116] == "right_hand_wrist"
    assert sk.root == 1 and sk.source_indices is None


def test_openpose_body_bones_are_the_body25_pose_pairs() -> None:
    body = set(OPENPOSE_137.groups["body"])
    body_bones = {b for b in OPENPOSE_137.bones if b[0] in body and b[1] in body}
    assert {tuple(sorted(b)) for b in body_bones} == {
        tuple(sorted(b)) for b in OPENPOSE_BODY25_PAIRS}


def test_upper_body_is_neck_root_then_sdt_121_points() -> None:
    sk = UPPER_BODY_122
    assert MODEL_SKELETON is UPPER_BODY_122
    assert sk.num_joints == 122 and sk.root == 0
    assert sk.source_indices == (1, *SDT_121_FROM_137)
    for i, src in enumerate(sk.source_indices):
        assert sk.joint_names[i] == OPENPOSE_137.joint_names[src]
    assert sk.joint_names[0] == "neck"


def test_from_openpose_matches_sdt_selection_on_a_137_array(rng: np.random.Generator) -> None:
    data = rng.normal(size=(4, 137, 3)).astype(np.float32)
    picked = UPPER_BODY_122.from_openpose(data)
    assert picked.shape == (4, 122, 3)
    np.testing.assert_array_equal(picked[:, 1:], data[:, SDT_121_FROM_137])
    np.testing.assert_array_equal(picked[:, 0], data[:, 1])
    np.testing.assert_array_equal(OPENPOSE_137.from_openpose(data), data)


def test_from_openpose_rejects_other_joint_counts() -> None:
    with pytest.raises(ValueError, match="137"):
        UPPER_BODY_122.from_openpose(np.zeros((4, 122, 3), np.float32))


def test_upper_body_groups_match_the_contract() -> None:
    g = UPPER_BODY_122.groups
    assert g["body"] == tuple(range(0, 10))
    assert g["face"] == tuple(range(10, 80))
    assert g["lips"] == tuple(range(58, 78))
    assert g["left_hand"] == tuple(range(80, 101))
    assert g["right_hand"] == tuple(range(101, 122))
    assert set(g["lips"]) <= set(g["face"])
    partition = [j for name in ("body", "face", "left_hand", "right_hand") for j in g[name]]
    assert sorted(partition) == list(range(122))


def test_group_of_joint_prefers_lips_over_face() -> None:
    per_joint = UPPER_BODY_122.group_of_joint()
    assert per_joint[0] == "body" and per_joint[10] == "face" and per_joint[79] == "face"
    assert all(per_joint[j] == "lips" for j in range(58, 78))
    assert per_joint[80] == "left_hand" and per_joint[121] == "right_hand"


def test_lip_opening_joints_are_inner_lip_top_and_bottom() -> None:
    assert LIP_TOP in UPPER_BODY_122.groups["lips"]
    assert LIP_BOTTOM in UPPER_BODY_122.groups["lips"]
    assert UPPER_BODY_122.joint_names[LIP_TOP] == "face_inner_lip_2"
    assert UPPER_BODY_122.joint_names[LIP_BOTTOM] == "face_inner_lip_6"


@pytest.mark.parametrize("sk", [OPENPOSE_137, UPPER_BODY_122], ids=lambda s: s.name)
def test_bones_are_in_range_distinct_and_not_loops(sk: Skeleton) -> None:
    bones = sk.bone_array()
    assert bones.shape == (len(sk.bones), 2) and bones.dtype == np.int64
    assert bones.min() >= 0 and bones.max() < sk.num_joints
    assert np.all(bones[:, 0] != bones[:, 1])
    assert len({tuple(sorted(b)) for b in sk.bones}) == len(sk.bones)


@pytest.mark.parametrize("sk", [OPENPOSE_137, UPPER_BODY_122], ids=lambda s: s.name)
def test_body_and_hands_form_one_tree_from_the_root(sk: Skeleton) -> None:
    nodes = set(sk.groups["body"]) | set(sk.groups["left_hand"]) | set(sk.groups["right_hand"])
    bones = [b for b in sk.bones if b[0] in nodes or b[1] in nodes]
    assert all(a in nodes and b in nodes for a, b in bones), "a bone links body/hands to face"
    assert len(bones) == len(nodes) - 1
    assert _reachable(sk.root, _adjacency(tuple(bones))) == nodes


@pytest.mark.parametrize("sk", [OPENPOSE_137, UPPER_BODY_122], ids=lambda s: s.name)
def test_each_hand_is_a_tree_from_its_wrist_hung_on_the_same_side_body_wrist(
    sk: Skeleton,
) -> None:
    for side in ("left", "right"):
        hand = sk.groups[f"{side}_hand"]
        inside = [b for b in sk.bones if b[0] in hand and b[1] in hand]
        assert len(inside) == 20
        assert _reachable(hand[0], _adjacency(tuple(inside))) == set(hand)
        links = [b for b in sk.bones if (b[0] in hand) != (b[1] in hand)]
        assert len(links) == 1
        body_end = links[0][0] if links[0][1] in hand else links[0][1]
        assert sk.joint_names[body_end] == f"{side}_wrist"
        assert hand[0] in links[0]


@pytest.mark.parametrize("sk", [OPENPOSE_137, UPPER_BODY_122], ids=lambda s: s.name)
def test_face_is_separate_polylines_and_two_unconnected_pupils(sk: Skeleton) -> None:
    face = set(sk.groups["face"])
    face_bones = [b for b in sk.bones if b[0] in face or b[1] in face]
    assert all(a in face and b in face for a, b in face_bones)
    assert _components(face, face_bones) == sorted([
        (17, "path"),  # jaw
        (5, "path"), (5, "path"),  # brows
        (4, "path"),  # nose bridge
        (5, "path"),  # nose base
        (6, "cycle"), (6, "cycle"),  # eyes
        (12, "cycle"), (8, "cycle"),  # outer and inner lip
        (1, "point"), (1, "point"),  # pupils
    ])
    lips = set(sk.groups["lips"])
    lip_bones = [b for b in face_bones if b[0] in lips or b[1] in lips]
    assert all(a in lips and b in lips for a, b in lip_bones) and len(lip_bones) == 20


@pytest.mark.parametrize("sk", [OPENPOSE_137, UPPER_BODY_122], ids=lambda s: s.name)
def test_dict_round_trip_through_json_is_identity(sk: Skeleton) -> None:
    back = Skeleton.from_dict(json.loads(json.dumps(sk.to_dict())))
    assert back == sk
    assert back.to_dict() == sk.to_dict()


def _edited(edit: Any) -> dict[str, Any]:
    data = copy.deepcopy(UPPER_BODY_122.to_dict())
    edit(data)
    return data


MALFORMED = {
    "no known fields": lambda d: d.clear() or d.update(unrelated=1),
    "missing bones": lambda d: d.pop("bones"),
    "bone out of range": lambda d: d["bones"].append([0, 122]),
    "negative bone": lambda d: d["bones"].append([-1, 3]),
    "bone of three joints": lambda d: d["bones"].append([0, 1, 2]),
    "fractional bone index": lambda d: d["bones"].append([0.5, 1]),
    "groups as a list": lambda d: d.update(groups=[1, 2]),
    "group index out of range": lambda d: d["groups"]["face"].append(500),
    "root out of range": lambda d: d.update(root=122),
    "joint_names a string": lambda d: d.update(joint_names="neck"),
    "source_indices too short": lambda d: d.update(source_indices=[1, 0]),
    "source index past 136": lambda d: d["source_indices"].__setitem__(5, 137),
}


@pytest.mark.parametrize("edit", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_dict_raises_value_error(edit: Any) -> None:
    with pytest.raises(ValueError, match="skeleton"):
        Skeleton.from_dict(_edited(edit))


@pytest.mark.parametrize("data", [None, [], "upper_body_122", 3])
def test_non_dict_raises_value_error(data: Any) -> None:
    with pytest.raises(ValueError, match="malformed skeleton"):
        Skeleton.from_dict(data)
