"""Voiced corpus: the synthetic speakers' bodies and gestures, with speech from real
synthesizer voices (:mod:`train.data.voices`), written in the SDT layout.

Speaker i speaks with voice i of the selection; its body and gesture style are those of
synthetic speaker i (:func:`~train.data.synth_script.make_speaker_profile`, renamed to
the voice; its ``f0_hz``, ``formant_scale`` and ``speech_rate`` are not used, the voice
has its own). With ``styles=N`` speaker i takes those of synthetic speaker ``i % N``
instead, so each gesture style is spoken by several voices and a model conditioned on the
style cannot learn it as the voice's identity; ``synth_speaker.json`` names the style
(``"style": "style_<k>"``).

Per interval: phrases spoken by the voice and the script rebuilt from the returned
timing (:mod:`train.data.voice_script`), then the motion rendered from that script and
the lip envelope measured on the audio (:func:`synth_motion.render_motion`), so saliency,
beats and lip-sync ground truth are exact for the speech as spoken.
Every interval's labels are checked against its audio (:mod:`train.data.voice_timing`).

Splits as in :mod:`train.data.synth` (clip c: dev if c % 10 == 8, val if 9, else
train), except that every clip of a *held-out* voice is ``test`` (never trained on, and
spoken with held-out words). Phrases that start in a dev/val clip use held-out words
too (:mod:`train.data.voice_text`).

Output per speaker, beside clips/ and processed_137.csv: ``synth_speaker.json`` with the
profile, the voice (engine, language, gender, rate, pitch, licence, whether a model
trained on it may be distributed), ``held_out`` and the timing check per interval; and
``OUT/voices.json``, the table of all speakers' voices and licences.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
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
from train.data.synth import CLIPS_PER_INTERVAL, PROFILE_NAME, split_of_clip
from train.data.synth_motion import render_motion
from train.data.synth_script import POSTURE_NAMES, make_speaker_profile
from train.data.voice_script import HeldOutText, render_voiced_interval
from train.data.voice_timing import check_timing
from train.data.voices import Voice

VOICES_TABLE_NAME = "voices.json"
HELD_OUT_SPLIT = "test"
_STREAM_SCRIPT, _STREAM_MOTION = 11, 13  # random streams (distinct from synth.py's)


class TimingCheckFailed(RuntimeError):
    """An interval's returned timing does not match its audio."""


@dataclass(frozen=True)
class VoiceCorpusSummary:
    """What :func:`synthesize_voice_corpus` wrote."""

    root: Path
    speakers: tuple[str, ...]
    held_out: tuple[str, ...]
    clips_per_speaker: int
    salient_frame_fraction: float
    phrases_untimed: int


def _rng(seed: int, speaker: int, interval: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, speaker, interval, stream]))


def synthesize_voice_corpus(out: Path, voices: Sequence[Voice], minutes: float, seed: int = 0,
                            held_out: frozenset[str] = frozenset(),
                            config: FeatureConfig = DEFAULT_FEATURES, overwrite: bool = False,
                            on_clip: Callable[[], None] | None = None,
                            articulation: bool = False,
                            styles: int | None = None,
                            keypoint_jitter: bool = True) -> VoiceCorpusSummary:
    """Write ``minutes`` of talk per voice under ``out`` (see the module docstring).

    ``styles``: number of gesture styles shared round-robin by the voices (None: one per
    voice). ``keypoint_jitter=False``: the same corpus without the per-frame keypoint
    jitter (as :func:`train.data.synth.synthesize_corpus`); render it in a fresh process
    to compare with one rendered with jitter (:mod:`train.data.espeak` keeps state).

    Raises:
        ValueError: no voices or too few minutes. FileExistsError: a speaker exists and
        not ``overwrite``. TimingCheckFailed: an interval's labels fail the audio check.
        train.data.espeak.EspeakUnavailable: espeak-ng is not installed.
    """
    if not voices:
        raise ValueError("no voices selected")
    if styles is not None and not 1 <= styles <= len(voices):
        raise ValueError(f"styles={styles}: need 1 <= styles <= the number of voices "
                         f"({len(voices)})")
    clip_seconds = SDT_CLIP_FRAMES / config.fps
    n_clips = int(minutes * 60.0 // clip_seconds) if minutes > 0 else 0
    if n_clips < 1:
        raise ValueError(f"minutes={minutes} is shorter than one {SDT_CLIP_FRAMES}-frame clip; "
                         f"use at least {clip_seconds / 60:.3f}")
    out = Path(out)
    for voice in voices:
        if (out / voice.name / INDEX_NAME).exists() and not overwrite:
            raise FileExistsError(f"{out / voice.name / INDEX_NAME} exists; choose another "
                                  "--out or pass --overwrite")
    held_clips = frozenset(c for c in range(n_clips) if split_of_clip(c) != "train")
    salient, untimed = 0.0, 0
    for s, voice in enumerate(voices):
        style = s if styles is None else s % styles
        profile = dataclasses.replace(make_speaker_profile(seed, style), name=voice.name)
        if not keypoint_jitter:
            profile = dataclasses.replace(profile, noise_px=0.0)
        speaker_dir = out / voice.name
        if overwrite and (speaker_dir / "clips").is_dir():
            shutil.rmtree(speaker_dir / "clips")
        speaker_dir.mkdir(parents=True, exist_ok=True)
        is_held = voice.name in held_out
        rows: list[IndexRow] = []
        checks = []
        for interval, first in enumerate(range(0, n_clips, CLIPS_PER_INTERVAL)):
            count = min(CLIPS_PER_INTERVAL, n_clips - first)
            frames = count * SDT_CLIP_FRAMES
            text = HeldOutText(is_held, first, config.fps, SDT_CLIP_FRAMES, held_clips)
            spoken = render_voiced_interval(voice, profile, frames,
                                            _rng(seed, s, interval, _STREAM_SCRIPT), config, text)
            vowels = [(syl.vowel_onset_s, syl.end_s) for syl in spoken.script.syllables]
            check = check_timing(spoken.audio, config.sample_rate, vowels, spoken.pauses)
            if not check.passed:
                raise TimingCheckFailed(f"{voice.name} interval {interval}: the returned "
                                        f"timing does not match the audio ({check.to_dict()})")
            checks.append(check.to_dict() | {"phrases_untimed": spoken.phrases_untimed})
            untimed += spoken.phrases_untimed
            motion = render_motion(spoken.script, profile, spoken.envelope,
                                   _rng(seed, s, interval, _STREAM_MOTION), config,
                                   articulation=articulation)
            interval_id = f"{voice.name}-{interval:04d}"
            for j in range(count):
                f0, f1 = j * SDT_CLIP_FRAMES, (j + 1) * SDT_CLIP_FRAMES
                a, b = clip_sample_range(f0, f1, config)
                pose_fn = f"clips/{interval_id}-{f0:06d}-{f1:06d}.npz"
                write_clip(speaker_dir / pose_fn, motion.pose[f0:f1], spoken.audio[a:b],
                           motion.saliency[f0:f1], motion.posture[f0:f1])
                split = HELD_OUT_SPLIT if is_held else split_of_clip(first + j)
                rows.append(IndexRow(split, f0, f1, interval_id, pose_fn, voice.name))
                if on_clip is not None:
                    on_clip()
            salient += float(motion.saliency.sum())
        write_index(speaker_dir, rows)
        meta = {"seed": seed, "speaker_index": s, "style": f"style_{style}",
                "posture_names": list(POSTURE_NAMES),
                "articulation": articulation, "voice": dataclasses.asdict(voice),
                "held_out": is_held, "timing_checks": checks,
                "profile": dataclasses.asdict(profile), "features": config.to_dict()}
        (speaker_dir / PROFILE_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    _write_voices_table(out, voices, held_out)
    total_frames = len(voices) * n_clips * SDT_CLIP_FRAMES
    return VoiceCorpusSummary(out, tuple(v.name for v in voices),
                              tuple(v.name for v in voices if v.name in held_out), n_clips,
                              salient / total_frames, untimed)


def _write_voices_table(out: Path, voices: Sequence[Voice], held_out: frozenset[str]) -> None:
    """``OUT/voices.json``: every speaker directory under ``out`` that has a voice (merged
    with a table already there, so corpora written in parts keep one table)."""
    path = out / VOICES_TABLE_NAME
    table = json.loads(path.read_text()) if path.exists() else {}
    for voice in voices:
        table[voice.name] = dataclasses.asdict(voice) | {"held_out": voice.name in held_out}
    path.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
