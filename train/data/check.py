"""``gesturert data check``: can a corpus in the SDT layout be trained on, and if not, why.

Per speaker: clips, sequences (clips of an interval joined, as training joins them),
duration, frame rate (pose frames per second of clip audio), missing-joint rate per
group of the model skeleton (body, hands, face, lips; a joint is missing as defined in
:mod:`train.data.sequences`), sequences shorter than one training window, the training
windows and how many are dropped for missing joints, audio/pose duration mismatches of
imported recordings (``openpose_import.json``, :mod:`train.data.openpose`) and
implausible jumps (a body joint moving more than ``JUMP_SPEED`` shoulder widths per
second between two frames: an identity switch or a detection error).

**Errors** (the corpus is not trainable; ``data check`` exits 1 and ``gesturert train``
refuses with the same reasons): no speaker; a clip that does not load; a speaker whose
neck and shoulders are never seen together (no pose scale); no ``train`` clip; no
training window (every sequence shorter than one window, or every window dropped for
missing joints); a recording whose audio and pose durations differ by more than
``MISMATCH_ERROR_S``. **Warnings** (trainable): some sequences shorter than a window, a
group missing more than ``MISSING_WARN`` of its joints, a mismatch of more than one
frame, jumps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.skeleton import UPPER_BODY_122
from train.data.openpose import IMPORT_RECORD
from train.data.sdt import SdtClip, list_speakers, load_clip, read_index, speaker_scales
from train.data.sequences import (
    ROOT,
    PoseSequence,
    count_windows,
    frame_alignment,
    join_clips,
)

MISSING_WARN = 0.2  # a group missing more than this share of its joint-frames: warning
MISMATCH_ERROR_S = 1.0  # audio and pose durations further apart: wrong file or wrong --fps
JUMP_SPEED = 20.0  # shoulder widths per second: faster body-joint motion is implausible
_GROUPS = {
    "body": tuple(j for j in UPPER_BODY_122.groups["body"] if j != ROOT),
    "hands": UPPER_BODY_122.groups["left_hand"] + UPPER_BODY_122.groups["right_hand"],
    "face": UPPER_BODY_122.groups["face"],
    "lips": UPPER_BODY_122.groups["lips"],
}
_BODY = np.asarray(UPPER_BODY_122.groups["body"])


def min_window_seconds(window_frames: int, config: FeatureConfig = DEFAULT_FEATURES) -> float:
    """Shortest sequence that holds one training window, in seconds."""
    return window_frames / config.fps


@dataclass
class SpeakerCheck:
    """What ``data check`` measured for one speaker (rates are shares in [0, 1])."""

    speaker: str
    clips: int = 0
    sequences: int = 0
    seconds: float = 0.0
    fps: float = float("nan")
    missing: dict[str, float] = field(default_factory=dict)
    short_sequences: int = 0
    windows: int = 0
    dropped_windows: int = 0
    jump_frames: int = 0
    mismatches_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        missing = ", ".join(f"{g} {100 * r:.1f}%" for g, r in self.missing.items())
        return (f"{self.speaker}: {self.clips} clips in {self.sequences} sequences, "
                f"{self.seconds:.1f} s at {self.fps:.2f} fps; missing joints: {missing or '-'}; "
                f"{self.windows} training windows ({self.dropped_windows} dropped for missing "
                f"joints); {self.short_sequences} sequences shorter than a window; "
                f"{self.jump_frames} frames with implausible jumps")


@dataclass
class CorpusCheck:
    """The whole check: per-speaker numbers, errors (not trainable) and warnings."""

    root: Path
    window_frames: int
    speakers: list[SpeakerCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def trainable(self) -> bool:
        return not self.errors

    def report(self) -> str:
        """Human-readable report, one line per speaker, warning and error."""
        lines = [s.summary() for s in self.speakers]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"error: {e}" for e in self.errors]
        lines.append("trainable" if self.trainable else
                     f"NOT trainable ({len(self.errors)} reason(s) above)")
        return "\n".join(lines)


def check_corpus(root: Path, window_frames: int = 64, stride_frames: int = 3,
                 max_missing_fraction: float = 0.5,
                 config: FeatureConfig = DEFAULT_FEATURES) -> CorpusCheck:
    """Check the corpus at ``root`` for training windows of ``window_frames`` frames
    (starts every ``stride_frames``, aligned as training aligns them), dropping
    windows with more than ``max_missing_fraction`` missing (as training does)."""
    root = Path(root)
    result = CorpusCheck(root, window_frames)
    if not root.is_dir():
        result.errors.append(f"{root}: corpus directory does not exist")
        return result
    speakers = list_speakers(root)
    if not speakers:
        result.errors.append(f"{root}: no <speaker>/processed_137.csv under it (import "
                             "recordings with `gesturert data import-openpose`)")
        return result
    minimum = (f"the minimum is {min_window_seconds(window_frames, config):.2f} s "
               f"({window_frames} frames at {config.fps} fps)")
    total_windows = 0
    for speaker in speakers:
        checked = _check_speaker(root / speaker, result, config)
        if checked is None:
            continue
        found, sequences = checked
        result.speakers.append(found)
        train = [s for s in sequences if s.split == "train"]
        counted = count_windows([s.joint_mask() for s in train], window_frames, stride_frames,
                                frame_alignment(config), max_missing_fraction)
        found.windows, found.dropped_windows = len(counted.kept), counted.dropped
        found.short_sequences = sum(s.num_frames < window_frames for s in sequences)
        total_windows += found.windows
        if not train and sequences and all(s.split == "test" for s in sequences):
            result.warnings.append(f"speaker {speaker}: every clip is in the 'test' split "
                                   "(a held-out speaker: evaluated, never trained on)")
        elif not train:
            result.errors.append(f"speaker {speaker}: no clip in the 'train' split")
        elif found.windows == 0:
            longest = max(s.num_frames for s in train) / config.fps
            why = (f"every sequence is shorter than one training window (longest "
                   f"{longest:.2f} s; {minimum})" if found.dropped_windows == 0 else
                   f"all {found.dropped_windows} windows have more than "
                   f"{100 * max_missing_fraction:.0f}% of their joints missing")
            result.errors.append(f"speaker {speaker}: no training window: {why}")
        elif found.short_sequences:
            result.warnings.append(f"speaker {speaker}: {found.short_sequences} sequence(s) "
                                   f"shorter than one training window are not used ({minimum})")
    if result.speakers and total_windows == 0 and not result.errors:
        result.errors.append(f"{root}: no training window in any speaker ({minimum})")
    return result


def _check_speaker(speaker_dir: Path, result: CorpusCheck, config: FeatureConfig
                   ) -> tuple[SpeakerCheck, list[PoseSequence]] | None:
    """Load, measure and warn for one speaker; None (with an error) when it cannot load."""
    name = speaker_dir.name
    try:
        rows = read_index(speaker_dir)
    except (ValueError, FileNotFoundError) as exc:
        result.errors.append(f"speaker {name}: {exc}")
        return None
    clips: list[SdtClip] = []
    for row in rows:
        try:
            clips.append(load_clip(speaker_dir, row, config))
        except (ValueError, FileNotFoundError) as exc:
            result.errors.append(f"speaker {name}: {exc}")
    found = SpeakerCheck(name, clips=len(rows))
    if not clips:
        result.errors.append(f"speaker {name}: no clip could be loaded")
        return None
    try:
        scale = speaker_scales(clips)[clips[0].speaker]
    except ValueError as exc:
        result.errors.append(f"speaker {name}: {exc}; no pose scale can be measured")
        return None
    sequences = join_clips(clips)
    frames = sum(s.num_frames for s in sequences)
    samples = sum(s.audio.shape[0] for s in sequences)
    found.sequences, found.seconds = len(sequences), frames / config.fps
    found.fps = frames * config.sample_rate / max(samples, 1)
    masks = np.concatenate([s.joint_mask() for s in sequences])
    for group, joints in _GROUPS.items():
        found.missing[group] = float(1.0 - masks[:, list(joints)].mean())
        if found.missing[group] > MISSING_WARN:
            result.warnings.append(f"speaker {name}: {100 * found.missing[group]:.0f}% of "
                                   f"{group} joints missing (more than "
                                   f"{100 * MISSING_WARN:.0f}%)")
    found.jump_frames = sum(jump_frames(s, scale, config.fps) for s in sequences)
    if found.jump_frames:
        result.warnings.append(f"speaker {name}: {found.jump_frames} frame(s) where a body "
                               f"joint moves faster than {JUMP_SPEED:g} shoulder widths/s "
                               "(another person tracked, or detection errors)")
    _check_mismatches(speaker_dir, found, result, config)
    return found, sequences


def jump_frames(sequence: PoseSequence, scale_px: float, fps: float) -> int:
    """Frames t >= 1 where an observed body joint moved faster than ``JUMP_SPEED``
    shoulder widths per second since frame t - 1 (pixel positions / ``scale_px``)."""
    px = UPPER_BODY_122.from_openpose(sequence.pose_px)[:, _BODY].astype(np.float64)
    seen = sequence.joint_mask()[:, _BODY]
    both = seen[1:] & seen[:-1]
    step = np.linalg.norm(np.diff(px, axis=0), axis=-1) / scale_px  # (T-1, body)
    return int(np.sum(np.any(both & (step * fps > JUMP_SPEED), axis=1)))


def _check_mismatches(speaker_dir: Path, found: SpeakerCheck, result: CorpusCheck,
                      config: FeatureConfig) -> None:
    path = speaker_dir / IMPORT_RECORD
    if not path.is_file():
        return
    try:
        record = json.loads(path.read_text())
        found.mismatches_s = {k: float(v["mismatch_s"]) for k, v in record.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        result.errors.append(f"{path}: unreadable import record ({exc!r})")
        return
    for interval, mismatch in sorted(found.mismatches_s.items()):
        where = (f"speaker {found.speaker}, recording {interval}: audio is {abs(mismatch):.2f} s "
                 f"{'longer' if mismatch > 0 else 'shorter'} than the pose")
        if abs(mismatch) > MISMATCH_ERROR_S:
            result.errors.append(f"{where} (more than {MISMATCH_ERROR_S:g} s: the wrong audio "
                                 "file, or the wrong --fps for the video?)")
        elif abs(mismatch) > 1.0 / config.fps:
            result.warnings.append(f"{where}; the longer one was cut")


def require_trainable(root: Path, window_frames: int, stride_frames: int = 3,
                      max_missing_fraction: float = 1.0,
                      config: FeatureConfig = DEFAULT_FEATURES) -> CorpusCheck:
    """:func:`check_corpus`, raising ValueError with every error when not trainable."""
    checked = check_corpus(root, window_frames, stride_frames, max_missing_fraction, config)
    if not checked.trainable:
        raise ValueError(f"{root} is not trainable (`gesturert data check {root}`):\n  "
                         + "\n  ".join(checked.errors))
    return checked
