"""Synthetic speaker corpus with ground-truth saliency, written in the SDT layout.

Each speaker (:func:`synth_script.make_speaker_profile`) talks continuously; the talk is
cut into intervals of up to CLIPS_PER_INTERVAL clips of SDT_CLIP_FRAMES (64) pose frames.
Per interval: an event script (:mod:`synth_script`), audio rendered from it
(:mod:`synth_audio`), keypoint motion rendered from the same events (:mod:`synth_motion`).
Everything is a pure function of (seed, speaker index, interval index): same seed, same
bytes. Splits go by clip: within a speaker, clip c is ``dev`` if c % 10 == 8, ``val`` if
c % 10 == 9, else ``train`` (clips are consecutive pieces of one talk, so dev/val clips
have train neighbours; the generative process is the same everywhere).

Output: ``OUT/<speaker>/processed_137.csv``, ``OUT/<speaker>/clips/*.npz`` (see
:mod:`train.data.sdt`) and ``OUT/<speaker>/synth_speaker.json`` (the speaker's profile,
posture names and seed; informative only, the loader does not need it).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from train.data.sdt import (
    INDEX_NAME,
    SDT_CLIP_FRAMES,
    IndexRow,
    clip_sample_range,
    write_clip,
    write_index,
)
from train.data.synth_audio import render_audio, voiced_envelope
from train.data.synth_motion import SynthMotion, render_motion
from train.data.synth_script import (
    POSTURE_NAMES,
    Script,
    SpeakerProfile,
    make_script,
    make_speaker_profile,
)

CLIPS_PER_INTERVAL = 14  # 14 x 64 frames = 59.7 s of continuous talk per interval
SPLIT_PERIOD = 10  # clip c of a speaker: dev if c % 10 == 8, val if c % 10 == 9
PROFILE_NAME = "synth_speaker.json"
_STREAM_SCRIPT, _STREAM_AUDIO, _STREAM_MOTION = 1, 2, 3  # independent random streams


@dataclass(frozen=True)
class SynthInterval:
    """One rendered interval of F pose frames and N = ceil(F * sr / fps) samples.

    audio: float32 (N,); envelope: float64 (N,) voiced envelope; motion: keypoints and
    ground truth (F frames); script: the events both were rendered from.
    """

    script: Script
    audio: np.ndarray
    envelope: np.ndarray
    motion: SynthMotion


def _rng(seed: int, speaker: int, interval: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, speaker, interval, stream]))


def synthesize_interval(profile: SpeakerProfile, num_frames: int, seed: int, speaker: int,
                        interval: int, config: FeatureConfig = DEFAULT_FEATURES,
                        include_postures: bool = True, articulation: bool = False
                        ) -> SynthInterval:
    """Render interval ``interval`` of speaker index ``speaker`` (pure function of the args;
    ``articulation``: vowel-dependent mouth shapes, train.data.synth_motion)."""
    script = make_script(profile, num_frames, _rng(seed, speaker, interval, _STREAM_SCRIPT),
                         config)
    _, n_samples = clip_sample_range(0, num_frames, config)
    envelope = voiced_envelope(script, n_samples, config)
    audio = render_audio(script, profile, n_samples,
                         _rng(seed, speaker, interval, _STREAM_AUDIO), config)
    motion = render_motion(script, profile, envelope,
                           _rng(seed, speaker, interval, _STREAM_MOTION), config,
                           include_postures=include_postures, articulation=articulation)
    return SynthInterval(script, audio, envelope, motion)


def split_of_clip(clip_index: int) -> str:
    """Split of a speaker's clip ``clip_index`` (see the module docstring)."""
    phase = clip_index % SPLIT_PERIOD
    return "dev" if phase == SPLIT_PERIOD - 2 else "val" if phase == SPLIT_PERIOD - 1 else "train"


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`synthesize_corpus` wrote."""

    root: Path
    speakers: tuple[str, ...]
    clips_per_speaker: int
    seconds_per_speaker: float
    salient_frame_fraction: float


def synthesize_corpus(out: Path, speakers: int, minutes: float, seed: int = 0,
                      config: FeatureConfig = DEFAULT_FEATURES, overwrite: bool = False,
                      on_clip: Callable[[], None] | None = None,
                      articulation: bool = False, keypoint_jitter: bool = True) -> CorpusSummary:
    """Write a synthetic corpus of ``speakers`` speakers x ``minutes`` minutes under ``out``.

    Each speaker gets floor(minutes * 60 * fps / 64) clips of 64 frames. ``on_clip`` is
    called after each clip is written (progress bars). Refuses to overwrite an existing
    speaker directory unless ``overwrite`` (then its clips/ and index are replaced).
    ``articulation``: vowel-dependent mouth shapes (recorded in each speaker's profile).
    ``keypoint_jitter=False``: the same corpus without the per-frame keypoint jitter (every
    random draw is the same, its size is 0; ``noise_px`` 0 in the profile): what drove the
    keypoints, for the lip-sync ceiling (``benchmarks/lip_sync_ceiling.py``).
    """
    if speakers < 1:
        raise ValueError(f"speakers must be >= 1, got {speakers}")
    clip_seconds = SDT_CLIP_FRAMES / config.fps
    n_clips = int(minutes * 60.0 // clip_seconds) if minutes > 0 else 0
    if n_clips < 1:
        raise ValueError(f"minutes={minutes} is shorter than one {SDT_CLIP_FRAMES}-frame clip; "
                         f"use at least {clip_seconds / 60:.3f}")
    out = Path(out)
    names = [make_speaker_profile(seed, s).name for s in range(speakers)]
    for name in names:
        if (out / name / INDEX_NAME).exists() and not overwrite:
            raise FileExistsError(f"{out / name / INDEX_NAME} exists; choose another --out or "
                                  "pass --overwrite")
    salient = 0.0
    for s in range(speakers):
        profile = make_speaker_profile(seed, s)
        if not keypoint_jitter:
            profile = dataclasses.replace(profile, noise_px=0.0)
        speaker_dir = out / profile.name
        if overwrite and (speaker_dir / "clips").is_dir():
            shutil.rmtree(speaker_dir / "clips")
        speaker_dir.mkdir(parents=True, exist_ok=True)
        rows: list[IndexRow] = []
        for interval, first in enumerate(range(0, n_clips, CLIPS_PER_INTERVAL)):
            count = min(CLIPS_PER_INTERVAL, n_clips - first)
            rendered = synthesize_interval(profile, count * SDT_CLIP_FRAMES, seed, s, interval,
                                           config, articulation=articulation)
            interval_id = f"{profile.name}-{interval:04d}"
            for j in range(count):
                f0, f1 = j * SDT_CLIP_FRAMES, (j + 1) * SDT_CLIP_FRAMES
                a, b = clip_sample_range(f0, f1, config)
                pose_fn = f"clips/{interval_id}-{f0:06d}-{f1:06d}.npz"
                m = rendered.motion
                write_clip(speaker_dir / pose_fn, m.pose[f0:f1], rendered.audio[a:b],
                           m.saliency[f0:f1], m.posture[f0:f1])
                rows.append(IndexRow(split_of_clip(first + j), f0, f1, interval_id, pose_fn,
                                     profile.name))
                if on_clip is not None:
                    on_clip()
            salient += float(rendered.motion.saliency.sum())
        write_index(speaker_dir, rows)
        meta = {"seed": seed, "speaker_index": s, "posture_names": list(POSTURE_NAMES),
                "articulation": articulation,
                "profile": dataclasses.asdict(profile), "features": config.to_dict()}
        (speaker_dir / PROFILE_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    total_frames = speakers * n_clips * SDT_CLIP_FRAMES
    return CorpusSummary(out, tuple(names), n_clips, n_clips * clip_seconds,
                         salient / total_frames)
