"""The event script of the synthetic speaker corpus: who says what, when, and which gesture.

A script is the single source of truth for one continuous interval of synthetic talk.
Audio (:mod:`train.data.synth_audio`) and motion (:mod:`train.data.synth_motion`) are both
rendered from it, so the motion is a deterministic function of the audio events and the
seed, which is what makes the corpus learnable.

Speech model: phrases of 4-10 syllables separated by pauses. A syllable is an optional
unvoiced consonant followed by a voiced vowel. Some syllables carry a phrase accent
(louder, pitch bump; they drive beat gestures). At most one syllable per phrase is a
stressed *keyword*: its consonant and vowel identify the keyword class (so the class is
audible), it is louder, higher and longer, and it triggers the salient posture of its
class (posture id == keyword class). A posture starts ``lead_frames`` pose frames before
the keyword's onset (gestures lead speech), ramps up, holds past the keyword, and
releases. Keywords whose posture would overlap the previous one, or run past the end of
the interval, are not stressed (they become ordinary syllables), so every keyword has
exactly one posture and postures never overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sdk.features import FeatureConfig

#: Vowel formants F1, F2, F3 in Hz (adult male averages; scaled per speaker).
VOWEL_FORMANTS_HZ = (
    (730.0, 1090.0, 2440.0),  # a
    (270.0, 2290.0, 3010.0),  # i
    (300.0, 870.0, 2240.0),  # u
    (530.0, 1840.0, 2480.0),  # e
    (570.0, 840.0, 2410.0),  # o
    (660.0, 1720.0, 2410.0),  # ae
)
#: Mouth shape of each vowel (same order): (openness, spread). Openness scales the jaw
#: opening and follows F1 (open /a/ 1.0 ... close /i/, /u/ about 0.3); spread widens
#: (+, /i/ /e/) or rounds (-, /u/ /o/) the lips and follows F2 and rounding. Only an
#: *articulated* corpus (``gesturert data synth --articulation``) uses it: there the
#: mouth depends on which vowel sounds, not only on how loud it is.
VOWEL_MOUTH_SHAPES = (
    (1.0, 0.0),  # a
    (0.3, 1.0),  # i
    (0.35, -1.0),  # u
    (0.65, 0.6),  # e
    (0.75, -0.7),  # o
    (0.9, 0.4),  # ae
)
#: Unvoiced consonants: (noise band low Hz, high Hz, duration s, gain vs the vowel).
CONSONANTS = (
    (3500.0, 7500.0, 0.085, 0.35),  # s
    (2000.0, 5000.0, 0.080, 0.30),  # sh
    (1200.0, 7000.0, 0.070, 0.15),  # f
    (2000.0, 6000.0, 0.030, 0.45),  # t (burst)
    (1500.0, 3200.0, 0.035, 0.40),  # k (burst)
)
#: Salient postures, in id order (the ``posture`` arrays store these ids, -1 = none).
POSTURE_NAMES = (
    "raise_hand",
    "spread_both_hands",
    "point",
    "hands_together",
    "raise_both_hands",
)
NUM_POSTURES = len(POSTURE_NAMES)
#: Keyword class c (== posture id c) is spoken as consonant KEYWORD_CONSONANT[c] + vowel
#: KEYWORD_VOWEL[c]; ordinary syllables draw from every vowel and consonant.
KEYWORD_CONSONANT = (0, 3, 4, 1, 2)
KEYWORD_VOWEL = (0, 1, 2, 4, 3)

KEYWORD_DURATION_FACTOR = 1.8  # keyword vowels are this much longer than ordinary ones
POSTURE_ATTACK_FRAMES = 4  # pose frames of ramp-up (starts lead_frames before the keyword)
POSTURE_RELEASE_FRAMES = 5  # pose frames of ramp-down after the hold
POSTURE_GAP_FRAMES = 4  # minimum pose frames between two postures


@dataclass(frozen=True)
class SpeakerProfile:
    """One synthetic speaker: voice, body placement and gesture style.

    Attributes:
        name: speaker directory name.
        f0_hz: mean voice pitch (Hz).
        formant_scale: vocal-tract factor applied to every formant frequency.
        speech_rate: multiplies syllable and pause durations (> 1 = slower).
        neck_px: (x, y) neck position in pixels.
        scale_px: shoulder width in pixels (one canonical unit).
        image_size: (width, height) in pixels.
        dominant_left: True if one-handed postures and beats use the left arm.
        gesture_scale: multiplies every posture's joint-angle change from rest.
        lead_frames: pose frames a posture starts before its keyword onset (>= 1).
        hold_s: seconds a posture holds after its keyword ends.
        beat_deg: forearm dip of a beat gesture (degrees).
        keyword_rate: probability that a phrase carries a keyword.
        posture_weights: (NUM_POSTURES,) probabilities of the keyword classes.
        sway_px: idle sway amplitude of the whole body (pixels).
        sway_hz: idle sway frequency (Hz).
        noise_px: std of the per-frame keypoint jitter (pixels).
    """

    name: str
    f0_hz: float
    formant_scale: float
    speech_rate: float
    neck_px: tuple[float, float]
    scale_px: float
    image_size: tuple[int, int]
    dominant_left: bool
    gesture_scale: float
    lead_frames: int
    hold_s: float
    beat_deg: float
    keyword_rate: float
    posture_weights: tuple[float, ...]
    sway_px: float
    sway_hz: float
    noise_px: float


def make_speaker_profile(seed: int, index: int) -> SpeakerProfile:
    """Draw speaker ``index`` of the corpus with ``seed`` (a pure function of both)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 0x5EA4E2]))
    f0 = float(rng.uniform(95.0, 230.0))
    weights = rng.dirichlet(np.full(NUM_POSTURES, 3.0))
    return SpeakerProfile(
        name=f"synth_{index:02d}",
        f0_hz=f0,
        formant_scale=float(1.0 + 0.15 * (f0 - 95.0) / 135.0 + rng.uniform(-0.03, 0.03)),
        speech_rate=float(rng.uniform(0.85, 1.15)),
        neck_px=(float(640.0 + rng.uniform(-120.0, 120.0)), float(300.0 + rng.uniform(-30, 30))),
        scale_px=float(rng.uniform(135.0, 185.0)),
        image_size=(1280, 720),
        dominant_left=bool(rng.random() < 0.3),
        gesture_scale=float(rng.uniform(0.8, 1.15)),
        lead_frames=int(rng.integers(2, 5)),
        hold_s=float(rng.uniform(0.35, 0.8)),
        beat_deg=float(rng.uniform(5.0, 12.0)),
        keyword_rate=float(rng.uniform(0.2, 0.4)),
        posture_weights=tuple(float(w) for w in weights),
        sway_px=float(rng.uniform(3.0, 8.0)),
        sway_hz=float(rng.uniform(0.15, 0.35)),
        noise_px=float(rng.uniform(0.15, 0.35)),
    )


@dataclass(frozen=True)
class Syllable:
    """One syllable; times in seconds from the interval start.

    ``consonant`` is an index into CONSONANTS or -1; ``vowel`` an index into
    VOWEL_FORMANTS_HZ; ``keyword`` the keyword class (== posture id) or -1.
    """

    onset_s: float  # consonant onset (== vowel_onset_s without a consonant)
    vowel_onset_s: float
    end_s: float
    consonant: int
    vowel: int
    accent: bool
    keyword: int
    phrase: int


@dataclass(frozen=True)
class Phrase:
    """A breath group: its syllables lie in [onset_s, end_s)."""

    onset_s: float
    end_s: float


@dataclass(frozen=True)
class PostureEvent:
    """A salient posture on pose frames [start_frame, end_frame).

    Ramp up over ``POSTURE_ATTACK_FRAMES`` from ``start_frame``, hold until
    ``hold_end_frame``, ramp down until ``end_frame``. ``keyword_frame`` is the pose frame
    holding the keyword's onset; ``start_frame = keyword_frame - lead_frames``.
    """

    posture: int
    keyword_frame: int
    start_frame: int
    hold_end_frame: int
    end_frame: int


@dataclass(frozen=True)
class Script:
    """Everything that happens in one interval of ``num_frames`` pose frames."""

    num_frames: int
    duration_s: float
    phrases: tuple[Phrase, ...]
    syllables: tuple[Syllable, ...]
    postures: tuple[PostureEvent, ...]


def make_script(
    profile: SpeakerProfile, num_frames: int, rng: np.random.Generator,
    config: FeatureConfig,
) -> Script:
    """Draw the events of an interval of ``num_frames`` pose frames at ``config.fps``."""
    fps = config.fps
    duration = num_frames / fps
    rate = profile.speech_rate
    phrases: list[Phrase] = []
    syllables: list[Syllable] = []
    postures: list[PostureEvent] = []
    last_posture_end = -(10**9)
    t = float(rng.uniform(0.2, 0.6))
    while True:
        n_syl = int(rng.integers(4, 11))
        keyword_slot = int(rng.integers(1, n_syl)) if rng.random() < profile.keyword_rate else -1
        keyword_class = int(rng.choice(NUM_POSTURES, p=np.asarray(profile.posture_weights)))
        # draw the whole phrase first so that rejected phrases do not shift the stream
        draws = [
            (rng.random() < 0.6, int(rng.integers(len(CONSONANTS))),
             int(rng.integers(len(VOWEL_FORMANTS_HZ))), float(rng.uniform(0.09, 0.17)),
             rng.random() < 0.3, float(rng.uniform(0.0, 0.03)))
            for _ in range(n_syl)
        ]
        pause = float(rng.uniform(0.25, 0.9)) * rate
        phrase_syllables: list[Syllable] = []
        cursor = t
        for i, (has_cons, cons, vowel, vowel_s, accent, gap_s) in enumerate(draws):
            keyword = -1
            if i == keyword_slot:
                keyword, has_cons = keyword_class, True
                cons, vowel = KEYWORD_CONSONANT[keyword], KEYWORD_VOWEL[keyword]
                vowel_s *= KEYWORD_DURATION_FACTOR
                accent = True
            cons_s = CONSONANTS[cons][2] * rate if has_cons else 0.0
            onset = cursor + gap_s * rate
            vowel_onset = onset + cons_s
            end = vowel_onset + vowel_s * rate
            phrase_syllables.append(
                Syllable(onset, vowel_onset, end, cons if has_cons else -1, vowel, accent,
                         keyword, len(phrases))
            )
            cursor = end
        if cursor > duration - 0.2:
            break
        for i, syl in enumerate(phrase_syllables):
            if syl.keyword < 0:
                continue
            event = posture_for(syl, profile, fps)
            if event.start_frame < last_posture_end + POSTURE_GAP_FRAMES or \
                    event.start_frame < 0 or event.end_frame > num_frames:
                # not stressed after all: an ordinary accented syllable
                phrase_syllables[i] = Syllable(syl.onset_s, syl.vowel_onset_s, syl.end_s,
                                               syl.consonant, syl.vowel, True, -1, syl.phrase)
                continue
            postures.append(event)
            last_posture_end = event.end_frame
        phrases.append(Phrase(phrase_syllables[0].onset_s, cursor))
        syllables.extend(phrase_syllables)
        t = cursor + pause
    return Script(num_frames, duration, tuple(phrases), tuple(syllables), tuple(postures))


def posture_for(keyword: Syllable, profile: SpeakerProfile, fps: int) -> PostureEvent:
    """The posture a stressed keyword triggers (frame indices; may be out of range)."""
    keyword_frame = math.floor(keyword.onset_s * fps)
    start = keyword_frame - profile.lead_frames
    hold_end = max(math.ceil((keyword.end_s + profile.hold_s) * fps),
                   start + POSTURE_ATTACK_FRAMES + 1)
    return PostureEvent(keyword.keyword, keyword_frame, start, hold_end,
                        hold_end + POSTURE_RELEASE_FRAMES)


def posture_weights(script: Script) -> tuple[np.ndarray, np.ndarray]:
    """Per pose frame, the active posture's blend weight and id.

    Returns:
        weight: float64 (num_frames,) in [0, 1]; > 0 exactly on frames of a posture.
        posture: int16 (num_frames,) posture id, -1 where no posture is active.
    """
    weight = np.zeros(script.num_frames, dtype=np.float64)
    posture = np.full(script.num_frames, -1, dtype=np.int16)
    for ev in script.postures:
        k = np.arange(ev.start_frame, ev.end_frame)
        up = _smoothstep((k - ev.start_frame + 1) / (POSTURE_ATTACK_FRAMES + 1))
        down = _smoothstep((ev.end_frame - k) / (POSTURE_RELEASE_FRAMES + 1))
        weight[k] = np.minimum(up, down)
        posture[k] = ev.posture
    return weight, posture


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """3x^2 - 2x^3 on x clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)
