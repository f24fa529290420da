"""Body geometry of the synthetic speaker: face and hand templates, arm chains, postures.

All coordinates are canonical units (:mod:`sdk.normalization`): x right, y down, the neck
at (0, 0) and one unit = the shoulder width. Arms are 2-segment chains with fixed bone
lengths driven by absolute angles (degrees, image convention: 0 = +x, 90 = straight
down). Everything is written for the speaker's *right* arm, which appears on the image's
left (negative x); the left arm is its mirror image (x -> -x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIGHT_SHOULDER = (-0.5, 0.03)  # canonical; the left shoulder is its mirror
UPPER_ARM, FOREARM, HAND_LENGTH = 0.62, 0.55, 0.4  # canonical units
FACE_WIDTH = 0.36  # jaw width in canonical units; the face template is in jaw widths
NOSE_TIP = (0.0, -0.46)  # canonical position of the nose tip at rest
HEAD_PIVOT = (0.0, -0.2)  # canonical point the head rolls about
FACE_NOSE_TIP = 30  # index of the nose tip in the 70-point face
FACE_EYES = ((36, 42), (42, 48))  # right, left eye contour index ranges
FACE_PUPILS = (68, 69)  # right, left


@dataclass(frozen=True)
class ArmPose:
    """Joint angles and hand shape of one arm (right-arm convention).

    upper_deg / fore_deg: absolute angles of upper arm and forearm; flex_deg: hand axis
    relative to the forearm; curl: (5,) finger curl thumb..pinky in [0, 1] (1 = fist);
    spread: finger fan-out (0 = relaxed).
    """

    upper_deg: float
    fore_deg: float
    flex_deg: float
    curl: tuple[float, float, float, float, float]
    spread: float

    def as_array(self) -> np.ndarray:
        """(9,) float64: upper, fore, flex, curl x5, spread."""
        return np.array([self.upper_deg, self.fore_deg, self.flex_deg, *self.curl, self.spread])


REST_ARM = ArmPose(100.0, 20.0, 10.0, (0.4, 0.35, 0.4, 0.45, 0.5), 0.0)
_OPEN = (0.05, 0.05, 0.05, 0.05, 0.05)
_RELAXED = (0.3, 0.3, 0.3, 0.3, 0.3)
#: Per posture id (synth_script.POSTURE_NAMES order): (dominant arm, other arm or None = rest).
POSTURE_ARMS: tuple[tuple[ArmPose, ArmPose | None], ...] = (
    (ArmPose(200.0, 265.0, 0.0, _OPEN, 0.4), None),  # raise_hand
    (ArmPose(135.0, 170.0, 5.0, _OPEN, 0.8), ArmPose(135.0, 170.0, 5.0, _OPEN, 0.8)),  # spread
    (ArmPose(150.0, 185.0, 0.0, (0.6, 0.0, 0.9, 0.9, 0.9), 0.0), None),  # point
    (ArmPose(120.0, 320.0, 0.0, _RELAXED, 0.0),  # hands_together (fingertips meet)
     ArmPose(120.0, 320.0, 0.0, _RELAXED, 0.0)),
    (ArmPose(195.0, 255.0, 0.0, _OPEN, 0.6), ArmPose(195.0, 255.0, 0.0, _OPEN, 0.6)),  # both up
)


def posture_delta(posture: int, gesture_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Change from REST_ARM of the (dominant, other) arm for ``posture``, each (9,) float64.

    Angle changes take the short way round and are scaled by ``gesture_scale``; hand
    shape changes are not scaled.
    """
    rest = REST_ARM.as_array()
    out = []
    for arm in POSTURE_ARMS[posture]:
        delta = np.zeros(9) if arm is None else arm.as_array() - rest
        delta[:3] = (delta[:3] + 180.0) % 360.0 - 180.0
        delta[:3] *= gesture_scale
        out.append(delta)
    return out[0], out[1]


def _unit(deg: np.ndarray) -> np.ndarray:
    """(...,) degrees -> (..., 2) unit vectors."""
    rad = np.deg2rad(deg)
    return np.stack([np.cos(rad), np.sin(rad)], axis=-1)


# Hand template: per finger (base angle deg, distance of first point, segment lengths),
# lengths in hand lengths; the thumb's first point is its CMC joint.
_FINGERS = (
    (-55.0, 0.16, (0.15, 0.12, 0.10)),  # thumb
    (-14.0, 0.42, (0.21, 0.13, 0.10)),  # index
    (-3.0, 0.44, (0.23, 0.14, 0.11)),  # middle
    (8.0, 0.42, (0.21, 0.13, 0.10)),  # ring
    (18.0, 0.38, (0.17, 0.10, 0.09)),  # pinky
)
_SPREAD_DEG = (15.0, 8.0, 0.0, -6.0, -12.0)  # extra base angle per unit spread (fan out)
_CURL_BEND_DEG, _CURL_SHORTEN = 28.0, 0.6


def arm_chain(arm: np.ndarray) -> np.ndarray:
    """Right-arm shoulder, elbow, wrist and 21 hand points from arm parameters.

    Args:
        arm: (F, 9) float64 ArmPose arrays (see :meth:`ArmPose.as_array`).
    Returns:
        (F, 24, 2) float64 canonical: [shoulder, elbow, wrist, hand 0..20].
    """
    n = arm.shape[0]
    shoulder = np.broadcast_to(np.asarray(RIGHT_SHOULDER), (n, 2))
    elbow = shoulder + UPPER_ARM * _unit(arm[:, 0])
    wrist = elbow + FOREARM * _unit(arm[:, 1])
    axis = arm[:, 1] + arm[:, 2]  # (F,) hand axis angle
    hand = np.empty((n, 21, 2))
    hand[:, 0] = wrist
    for f, (base, first, segments) in enumerate(_FINGERS):
        curl = arm[:, 3 + f]
        angle = axis + base + _SPREAD_DEG[f] * arm[:, 8]
        point = wrist + HAND_LENGTH * first * _unit(angle)
        hand[:, 1 + 4 * f] = point
        for j, length in enumerate(segments):
            angle = angle + _CURL_BEND_DEG * curl
            step = HAND_LENGTH * length * (1.0 - _CURL_SHORTEN * curl)
            point = point + step[:, None] * _unit(angle)
            hand[:, 2 + 4 * f + j] = point
    return np.concatenate([shoulder[:, None], elbow[:, None], wrist[:, None], hand], axis=1)


def face_template() -> np.ndarray:
    """The 70-point face (iBUG 68 + pupils) at rest, in jaw widths around the nose tip.

    Returns float64 (70, 2); lips closed (inner lips 0.01 apart).
    """
    pts = np.zeros((70, 2))
    a = np.pi * np.arange(17) / 16
    pts[0:17] = np.stack([-0.5 * np.cos(a), -0.15 + 0.70 * np.sin(a)], axis=1)  # jaw
    bx = np.linspace(-0.42, -0.08, 5)
    brow_y = -0.42 - 0.05 * np.sin(np.pi * np.arange(5) / 4)
    pts[17:22] = np.stack([bx, brow_y], axis=1)
    pts[22:27] = np.stack([-bx[::-1], brow_y[::-1]], axis=1)
    pts[27:31] = np.stack([np.zeros(4), np.linspace(-0.33, 0.0, 4)], axis=1)  # bridge
    pts[31:36] = np.stack([np.linspace(-0.1, 0.1, 5), [0.05, 0.07, 0.08, 0.07, 0.05]], axis=1)
    e = 2 * np.pi * np.array([0.5, 0.35, 0.15, 0.0, -0.15, -0.35])  # corner, top, bottom
    for (lo, _), cx, sign in ((FACE_EYES[0], -0.2, 1.0), (FACE_EYES[1], 0.2, -1.0)):
        pts[lo:lo + 6] = np.stack([cx + sign * 0.09 * np.cos(e), -0.28 - 0.035 * np.sin(e)], 1)
    pts[42:48] = pts[42:48][[3, 2, 1, 0, 5, 4]]  # left eye starts at its inner corner
    o = np.pi * np.array([1.0, 0.8, 0.6, 0.5, 0.4, 0.2, 0.0, -0.2, -0.4, -0.5, -0.6, -0.8])
    pts[48:60] = np.stack([0.16 * np.cos(o), 0.25 - 0.05 * np.sin(o)], axis=1)  # outer lip
    i = np.pi * np.array([1.0, 0.75, 0.5, 0.25, 0.0, -0.25, -0.5, -0.75])
    pts[60:68] = np.stack([0.12 * np.cos(i), 0.25 - 0.005 * np.sin(i)], axis=1)  # inner lip
    pts[FACE_PUPILS[0]] = pts[36:42].mean(axis=0)
    pts[FACE_PUPILS[1]] = pts[42:48].mean(axis=0)
    return pts - pts[FACE_NOSE_TIP]


# How much each face point follows the jaw when the mouth opens (0 = not at all).
_JAW_FOLLOW = np.zeros(70)
_JAW_FOLLOW[4:13] = np.sin(np.pi * (np.arange(4, 13) - 3) / 10)  # lower jaw, chin = 1
_JAW_FOLLOW[[55, 56, 57, 58, 59]] = 1.0  # lower outer lip
_JAW_FOLLOW[[65, 66, 67]] = 1.0  # lower inner lip
_JAW_FOLLOW[[49, 50, 51, 52, 53, 61, 62, 63]] = -0.15  # upper lip lifts a little


LIP_SPREAD_GAIN = 0.25  # relative mouth-width change per unit of lip spread
_MOUTH = slice(48, 68)  # outer and inner lip points


def face_points(aperture: np.ndarray, spread: np.ndarray | None = None) -> np.ndarray:
    """Face at rest with the mouth opened by ``aperture`` (F,) jaw widths: (F, 70, 2).

    ``spread`` (F,), unitless: the lips widen (> 0) or round (< 0) by ``LIP_SPREAD_GAIN``
    of their width per unit, about the mouth's centre line (None: never).
    """
    pts = np.broadcast_to(face_template(), (aperture.shape[0], 70, 2)).copy()
    pts[:, :, 1] += aperture[:, None] * _JAW_FOLLOW[None, :]
    if spread is not None:
        pts[:, _MOUTH, 0] *= 1.0 + LIP_SPREAD_GAIN * spread[:, None]
    return pts


def rotate(points: np.ndarray, deg: np.ndarray, pivot: tuple[float, float]) -> np.ndarray:
    """Rotate (F, P, 2) points by (F,) degrees about ``pivot``."""
    rad = np.deg2rad(deg)[:, None]
    c, s = np.cos(rad), np.sin(rad)
    x = points[..., 0] - pivot[0]
    y = points[..., 1] - pivot[1]
    return np.stack([c * x - s * y + pivot[0], s * x + c * y + pivot[1]], axis=-1)
