"""OpenPose JSON + audio -> the SDT layout (``gesturert data import-openpose``), numpy only.

One recording (a video's per-frame OpenPose JSON and its audio) becomes one interval of a
speaker in the SDT layout (:mod:`train.data.sdt`). The rules, in order:

1. **Frames.** OpenPose ``--write_json DIR`` writes ``<video>_<frame>_keypoints.json`` per
   video frame; the frame number is the digits before ``_keypoints.json`` and frame n is at
   n / ``video_fps`` seconds of the video (and of its audio). A number with no file is a
   frame where nobody was detected.
2. **People.** Each entry of ``people`` gives 137 points (x px, y px, confidence): BODY_25
   ``pose_keypoints_2d``, 70 ``face_keypoints_2d``, 21 ``hand_left_keypoints_2d``, 21
   ``hand_right_keypoints_2d``. A part OpenPose did not run (an empty list) is confidence
   0; the ``*_3d`` keys are ignored. Confidences are kept as OpenPose gave them.
3. **The speaker** is one consistent track of the largest, most central person. A
   person's *box* is the bounding box of their body joints with confidence > 0, *size* its
   diagonal, *score* = size x centrality, centrality = 1 - (distance of the box centre
   from the image centre) / (half the image diagonal), floored at 0. The track starts at
   the highest-scoring person of the first frame with anyone in it; in each next frame it
   continues with the person whose box centre is nearest to the track's last centre, if
   that is within ``TRACK_RADIUS`` x the track's size; otherwise the speaker is missing in
   that frame (a bystander is never taken for them), until the track has been lost for
   ``REACQUIRE_S`` seconds: then the highest-scoring person starts the track again.
4. **Gaps.** Per joint, a run of unobserved frames (confidence 0) between two observed
   ones, at most ``max_gap_s`` long, is filled by linear interpolation (confidence: the
   smaller of the two ends). Longer runs stay marked missing: x = y = 0, confidence 0.
5. **Resampling** to ``FeatureConfig.fps``: model frame k reads video position
   u = k * video_fps / fps. Between video frames floor(u) and floor(u) + 1: linear
   interpolation (positions and confidence) when both are observed, the nearer one alone
   when only it is, missing otherwise.
6. **Audio**: any format libsndfile reads, any rate and channel count, read and resampled
   by :func:`sdk.audio.load_audio` to ``FeatureConfig.sample_rate`` mono. The interval
   covers the shorter of the two durations, F = floor(min(pose s, audio s) * fps) frames;
   the difference (audio - pose, seconds) is reported and recorded.
7. **Writing**: clips of ``SDT_CLIP_FRAMES`` frames (the last one may be shorter), rows
   added to ``OUT/<speaker>/processed_137.csv`` (rows of other intervals are kept; the same
   interval again needs ``overwrite``), and the import record (rules' numbers per
   interval) in ``OUT/<speaker>/openpose_import.json``, which ``gesturert data check``
   reads for the duration mismatch.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sdk.audio import load_audio
from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.skeleton import BODY25_NAMES, FACE_NAMES, HAND_NAMES, OPENPOSE_NUM_JOINTS
from train.data.sdt import (
    DEFAULT_IMAGE_SIZE,
    INDEX_NAME,
    SDT_CLIP_FRAMES,
    IndexRow,
    clip_sample_range,
    read_index,
    write_clip,
    write_index,
)

#: (JSON key, points) in OpenPose-137 order.
PARTS = (("pose_keypoints_2d", len(BODY25_NAMES)), ("face_keypoints_2d", len(FACE_NAMES)),
         ("hand_left_keypoints_2d", len(HAND_NAMES)),
         ("hand_right_keypoints_2d", len(HAND_NAMES)))
TRACK_RADIUS = 0.5  # of the track's size: how far its box centre may move per frame
REACQUIRE_S = 1.0  # seconds without the speaker before the best person starts a new track
MAX_GAP_S = 0.2  # default: longest run of missing frames filled by interpolation
IMPORT_RECORD = "openpose_import.json"
_FRAME_FILE = re.compile(r"(\d+)_keypoints\.json$")
_BODY = len(BODY25_NAMES)


@dataclass(frozen=True)
class ImportResult:
    """What one recording became (also the record in ``openpose_import.json``).

    Seconds are of the recording; frames of the video unless said otherwise.
    """

    interval_id: str
    video_fps: float
    video_frames: int
    frames: int  # model frames written
    fps: float  # model frame rate (FeatureConfig.fps)
    clips: int
    pose_s: float
    audio_s: float
    mismatch_s: float  # audio_s - pose_s
    speaker_missing_frames: int  # video frames without the speaker
    track_restarts: int
    gaps_filled: int  # per-joint runs interpolated
    gaps_marked: int  # per-joint runs left missing (longer than max_gap_s)


def frame_files(json_dir: Path) -> dict[int, Path]:
    """Frame number -> ``*_keypoints.json`` file of one video; errors name the directory."""
    json_dir = Path(json_dir)
    if not json_dir.is_dir():
        raise FileNotFoundError(f"{json_dir}: OpenPose JSON directory does not exist")
    files: dict[int, Path] = {}
    for path in sorted(json_dir.glob("*_keypoints.json")):
        match = _FRAME_FILE.search(path.name)
        if match is None:
            continue
        n = int(match.group(1))
        if n in files:
            raise ValueError(f"{json_dir}: two files for frame {n} ({files[n].name}, "
                             f"{path.name}); put each video's JSON in its own directory")
        files[n] = path
    if not files:
        raise FileNotFoundError(f"{json_dir}: no <video>_<frame>_keypoints.json files (run "
                                "OpenPose with --write_json on this directory)")
    return files


def read_people(path: Path) -> list[np.ndarray]:
    """One OpenPose JSON file -> per person float32 (137, 3) x px, y px, confidence."""
    try:
        data = json.loads(Path(path).read_text())
        people = data["people"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not an OpenPose keypoints file with 'people' ({exc!r})"
                         ) from exc
    out = []
    for p, person in enumerate(people):
        parts = []
        for key, points in PARTS:
            values = (person.get(key) or []) if isinstance(person, dict) else None
            if values is None or len(values) not in (0, 3 * points):
                raise ValueError(f"{path}: person {p} '{key}' has "
                                 f"{'no list' if values is None else len(values)} values, "
                                 f"expected {3 * points} (x, y, c for {points} points) or none")
            array = (np.asarray(values, dtype=np.float32).reshape(points, 3) if values
                     else np.zeros((points, 3), np.float32))
            parts.append(array)
        joints = np.concatenate(parts)
        if not np.all(np.isfinite(joints)):
            raise ValueError(f"{path}: person {p} has NaN or Inf keypoints")
        joints[joints[:, 2] <= 0] = 0.0  # undetected: (0, 0, 0) as OpenPose writes it
        out.append(joints)
    return out


def _box(person: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Box centre (2,) and diagonal (px) of a person's observed body joints, or None."""
    body = person[:_BODY]
    seen = body[body[:, 2] > 0, :2]
    if seen.shape[0] < 2:
        return None
    low, high = seen.min(axis=0), seen.max(axis=0)
    size = float(np.linalg.norm(high - low))
    return ((low + high) / 2, size) if size > 0 else None


def track_speaker(frames: list[list[np.ndarray]], video_fps: float,
                  image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
                  ) -> tuple[np.ndarray, int]:
    """Rule 3 of the module docstring over per-frame people lists.

    Returns float32 (F, 137, 3) the speaker per frame (zeros where missing) and how many
    times the track (re)started.
    """
    centre_img = np.asarray(image_size, np.float64) / 2
    half_diag = float(np.linalg.norm(centre_img))
    reacquire = max(1, math.ceil(REACQUIRE_S * video_fps))
    out = np.zeros((len(frames), OPENPOSE_NUM_JOINTS, 3), np.float32)
    track: tuple[np.ndarray, float] | None = None
    lost, starts = 0, 0
    for f, people in enumerate(frames):
        candidates = [(p, box) for p in people if (box := _box(p)) is not None]
        chosen = None
        if track is not None and candidates:
            dist = [float(np.linalg.norm(box[0] - track[0])) for _, box in candidates]
            best = int(np.argmin(dist))
            if dist[best] <= TRACK_RADIUS * track[1]:
                chosen = candidates[best]
        if chosen is None and candidates and (track is None or lost >= reacquire):
            chosen = max(candidates, key=lambda c: c[1][1] * max(
                0.0, 1.0 - float(np.linalg.norm(c[1][0] - centre_img)) / half_diag))
            starts += 1
        if chosen is None:
            lost += 1
            continue
        out[f], track, lost = chosen[0], chosen[1], 0
    return out, starts


def fill_gaps(keypoints: np.ndarray, max_gap: int) -> tuple[np.ndarray, int, int]:
    """Rule 4: float32 (F, J, 3) -> filled copy, runs filled, runs left missing."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    filled = marked = 0
    for j in range(out.shape[1]):
        seen = np.flatnonzero(out[:, j, 2] > 0)
        if seen.size == 0:
            continue
        marked += int(seen[0] > 0) + int(seen[-1] < out.shape[0] - 1)
        for a, b in itertools.pairwise(seen):
            if b - a <= 1:
                continue
            if b - a - 1 > max_gap:
                marked += 1
                continue
            w = (np.arange(a + 1, b) - a)[:, None] / (b - a)
            out[a + 1:b, j, :2] = (1 - w) * out[a, j, :2] + w * out[b, j, :2]
            out[a + 1:b, j, 2] = min(out[a, j, 2], out[b, j, 2])
            filled += 1
    return out, filled, marked


def resample_keypoints(keypoints: np.ndarray, video_fps: float, fps: float, frames: int
                       ) -> np.ndarray:
    """Rule 5: float32 (F_video, J, 3) -> float32 (frames, J, 3) at ``fps``."""
    u = np.arange(frames) * (video_fps / fps)
    i0 = np.floor(u + 1e-9).astype(np.int64)
    a = np.clip(u - i0, 0.0, 1.0)[:, None]  # (frames, 1)
    last = keypoints.shape[0] - 1
    lo = keypoints[np.minimum(i0, last)]
    hi = keypoints[np.minimum(i0 + 1, last)]
    lo_ok, hi_ok = lo[..., 2] > 0, hi[..., 2] > 0
    both = lo_ok & hi_ok
    use_lo = lo_ok & ~hi_ok & (a < 0.5) | lo_ok & (a < 1e-9)
    use_hi = hi_ok & ~lo_ok & (a >= 0.5)
    out = np.zeros((frames,) + keypoints.shape[1:], np.float32)
    mixed = (1 - a)[..., None] * lo + a[..., None] * hi
    out[both] = mixed[both]
    out[use_lo] = lo[use_lo]
    out[use_hi] = hi[use_hi]
    return out


def import_recording(json_dir: Path, audio_path: Path, video_fps: float, speaker: str,
                     out: Path, interval_id: str | None = None, split: str = "train",
                     config: FeatureConfig = DEFAULT_FEATURES, max_gap_s: float = MAX_GAP_S,
                     image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
                     overwrite: bool = False) -> ImportResult:
    """Import one recording (the module docstring's rules); returns what was written.

    Raises FileNotFoundError / ValueError (sdk.audio.AudioError included) naming the file,
    FileExistsError when the interval is already in the speaker's index and not
    ``overwrite``. Nothing is written before the input has been read and checked.
    """
    if not (math.isfinite(video_fps) and video_fps > 0):
        raise ValueError(f"--fps must be the video's frame rate (> 0), got {video_fps}")
    if not speaker or "/" in speaker or speaker.startswith("."):
        raise ValueError(f"--speaker must be a plain directory name, got {speaker!r}")
    interval_id = interval_id or Path(json_dir).resolve().name
    speaker_dir = Path(out) / speaker
    old_rows = read_index(speaker_dir) if (speaker_dir / INDEX_NAME).is_file() else []
    if any(r.interval_id == interval_id for r in old_rows) and not overwrite:
        raise FileExistsError(f"{speaker_dir / INDEX_NAME} already has interval "
                              f"{interval_id!r}; pass --overwrite to replace it")
    files = frame_files(Path(json_dir))
    video_frames = max(files) + 1
    people = [read_people(files[n]) if n in files else [] for n in range(video_frames)]
    audio = load_audio(audio_path, config.sample_rate)
    speaker_kp, starts = track_speaker(people, video_fps, image_size)
    missing = int(np.sum(~np.any(speaker_kp[..., 2] > 0, axis=1)))
    filled, n_filled, n_marked = fill_gaps(speaker_kp, int(max_gap_s * video_fps))
    pose_s, audio_s = video_frames / video_fps, audio.shape[0] / config.sample_rate
    frames = math.floor(min(pose_s, audio_s) * config.fps + 1e-9)
    if frames < 1:
        raise ValueError(f"{json_dir}: {pose_s:.2f} s of pose and {audio_s:.2f} s of audio "
                         "make no model frame")
    pose = resample_keypoints(filled, video_fps, config.fps, frames)  # (F, 137, 3)
    pose = np.ascontiguousarray(pose.transpose(0, 2, 1))  # (F, 3, 137) SDT layout
    rows = [r for r in old_rows if r.interval_id != interval_id]
    for r in old_rows:
        if r.interval_id == interval_id and not Path(r.pose_fn).is_absolute():
            (speaker_dir / r.pose_fn).unlink(missing_ok=True)
    clips = 0
    for f0 in range(0, frames, SDT_CLIP_FRAMES):
        f1 = min(f0 + SDT_CLIP_FRAMES, frames)
        a, b = clip_sample_range(f0, f1, config)
        pose_fn = f"clips/{interval_id}-{f0:06d}-{f1:06d}.npz"
        write_clip(speaker_dir / pose_fn, pose[f0:f1], audio[a:b])
        rows.append(IndexRow(split, f0, f1, interval_id, pose_fn, speaker))
        clips += 1
    write_index(speaker_dir, rows)
    result = ImportResult(interval_id, float(video_fps), video_frames, frames,
                          float(config.fps), clips,
                          round(pose_s, 4), round(audio_s, 4), round(audio_s - pose_s, 4),
                          missing, starts, n_filled, n_marked)
    record_path = speaker_dir / IMPORT_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record[interval_id] = asdict(result)
    record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return result


def batch_pairs(json_root: Path, audio_dir: Path) -> list[tuple[Path, Path]]:
    """Batch form: ``json_root/<name>/*_keypoints.json`` with ``audio_dir/<name>.<ext>``.

    Returns (json dir, audio file) per video, sorted by name; raises naming every video
    without exactly one audio file before anything is imported.
    """
    dirs = sorted(d for d in Path(json_root).iterdir()
                  if d.is_dir() and any(d.glob("*_keypoints.json")))
    if not dirs:
        raise FileNotFoundError(f"{json_root}: no sub-directory with *_keypoints.json files "
                                "(batch form: one directory per video)")
    pairs, problems = [], []
    for d in dirs:
        audio = sorted(p for p in Path(audio_dir).glob(f"{glob_escape(d.name)}.*")
                       if p.is_file())
        if len(audio) != 1:
            problems.append(f"{d.name}: {len(audio)} audio files named {d.name}.* in "
                            f"{audio_dir}")
        else:
            pairs.append((d, audio[0]))
    if problems:
        raise FileNotFoundError("every video needs exactly one audio file: "
                                + "; ".join(problems))
    return pairs


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters bracketed."""
    return re.sub(r"([*?\[])", r"[\1]", name)
