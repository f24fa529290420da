"""OpenPose JSON fixtures in the official format, written from the synthetic speaker.

The speaker's motion and voice come from :func:`train.data.synth.synthesize_interval` at
the model rate (15 fps, 16 kHz); the video is made from them at ``VIDEO_FPS`` (30 fps:
odd frames are midpoints of their neighbours, even frame 2k is model frame k exactly),
the audio at 44.1 kHz stereo. Faults, each optional: legs out of frame, a share of the
upper-body joints undetected, a stretch with nobody, a bystander (smaller, off-centre,
listed first) in some frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from sdk.audio import resample
from sdk.features import DEFAULT_FEATURES
from sdk.skeleton import BODY25_NAMES, UPPER_BODY_122
from train.data.openpose import PARTS
from train.data.synth import synthesize_interval
from train.data.synth_script import make_speaker_profile

VIDEO_FPS = 30
AUDIO_RATE = 44100
LEGS = tuple(BODY25_NAMES.index(n) for n in (
    "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
    "right_heel"))


@dataclass(frozen=True)
class Faults:
    """What is wrong with the recording (all off: a clean one)."""

    legs_out: bool = False
    missing_share: float = 0.0  # of the upper-body (model skeleton) joint-frames
    nobody_s: tuple[float, float] | None = None  # [start, end) seconds with no person
    bystander_s: tuple[float, float] | None = None  # [start, end) seconds with a bystander


ALL_FAULTS = Faults(legs_out=True, missing_share=0.05, nobody_s=(12.0, 15.0),
                    bystander_s=(4.0, 20.0))


@dataclass(frozen=True)
class Recording:
    json_dir: Path
    audio: Path
    pose_15fps: np.ndarray  # (F, 3, 137) the truth at the model rate
    audio_16k: np.ndarray  # (N,) the truth at the model rate


def video_pose(pose: np.ndarray) -> np.ndarray:
    """(F, 3, 137) at 15 fps -> (2F, 137, 3) at 30 fps (midpoints between frames; the
    last frame twice), so video and audio last F / 15 s each."""
    kp = pose.transpose(0, 2, 1).astype(np.float64)
    out = np.empty((2 * kp.shape[0],) + kp.shape[1:])
    out[0::2] = kp
    out[1:-1:2] = (kp[:-1] + kp[1:]) / 2
    out[-1] = kp[-1]
    return out.astype(np.float32)


def person_json(kp: np.ndarray) -> dict[str, object]:
    """(137, 3) -> one ``people`` entry as OpenPose writes it."""
    entry: dict[str, object] = {"person_id": [-1]}
    start = 0
    for key, points in PARTS:
        entry[key] = [round(float(v), 3) for v in kp[start:start + points].ravel()]
        entry[key.replace("_2d", "_3d")] = []
        start += points
    return entry


def write_recording(root: Path, name: str, seconds: float, faults: Faults = Faults(),
                    seed: int = 0) -> Recording:
    """Write ``root/json/<name>/<name>_<frame>_keypoints.json`` and ``root/audio/<name>.wav``."""
    cfg = DEFAULT_FEATURES
    frames = round(seconds * cfg.fps)
    rendered = synthesize_interval(make_speaker_profile(seed, 0), frames, seed, 0, 0, cfg)
    pose = rendered.motion.pose  # (F, 3, 137)
    video = video_pose(pose)
    rng = np.random.default_rng(seed + 1)
    if faults.legs_out:
        video[:, list(LEGS)] = 0.0
    if faults.missing_share > 0:
        upper = np.asarray(UPPER_BODY_122.source_indices)
        drop = rng.random((video.shape[0], upper.size)) < faults.missing_share
        sub = video[:, upper]
        sub[drop] = 0.0
        video[:, upper] = sub
    json_dir = root / "json" / name
    json_dir.mkdir(parents=True, exist_ok=True)
    for f in range(video.shape[0]):
        t = f / VIDEO_FPS
        people = [person_json(video[f])]
        if faults.nobody_s and faults.nobody_s[0] <= t < faults.nobody_s[1]:
            people = []
        elif faults.bystander_s and faults.bystander_s[0] <= t < faults.bystander_s[1]:
            other = video[f].copy()
            seen = other[:, 2] > 0
            other[seen, :2] = other[seen, :2] * 0.6 + np.array([520.0, 60.0])
            people.insert(0, person_json(other))
        doc = {"version": 1.3, "people": people}
        (json_dir / f"{name}_{f:012d}_keypoints.json").write_text(json.dumps(doc))
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    wave = resample(rendered.audio, cfg.sample_rate, AUDIO_RATE)
    stereo = np.stack([wave * 0.9, wave * 1.1], axis=1)
    audio_path = audio_dir / f"{name}.wav"
    soundfile.write(audio_path, stereo, AUDIO_RATE, subtype="PCM_16")
    return Recording(json_dir, audio_path, pose, rendered.audio)
