"""One interval of a voiced speaker: phrases spoken by a real synthesizer, and the event
script rebuilt from the timing the synthesizer *returned*.

Per phrase (:mod:`train.data.voice_text`): words and keyword go to the voice's engine
(:func:`speak`: SSML to espeak-ng, :mod:`train.data.espeak`; plain words to flite,
:mod:`train.data.flite`), which reports each phoneme's start, end, stress and word.
The phrase is placed at the current time t (its first spoken phoneme at t), then t moves
past its last phoneme plus the planned pause. From the returned phones:

* one :class:`Syllable` per vowel phone: ``vowel_onset_s``/``end_s`` are the vowel's
  (closure-corrected) times, ``onset_s`` the start of the consonant right before it (the
  vowel's own start when none), ``consonant`` the nearest class of
  :data:`~train.data.synth_script.CONSONANTS` for voiceless onsets (-1 otherwise),
  ``vowel`` the nearest of the six vowel classes (mouth shapes with ``--articulation``),
  ``accent`` = primary stress (beats), ``keyword`` = the keyword class on the primary
  stressed vowel of the keyword word (the first vowel if none is stressed);
* postures follow keywords exactly as in :func:`~train.data.synth_script.make_script`
  (:func:`~train.data.synth_script.posture_for`; a keyword whose posture would overlap
  the previous one or leave the interval becomes an ordinary accented syllable, as does a
  keyword espeak merged into another word).

The voiced envelope that drives the lips is measured on the audio: the RMS of the audio
low-passed at VOICED_BAND_HZ over ENVELOPE_WINDOW_S, divided by its median over vowel
samples (an ordinary vowel is about 1, as in the synthetic corpus).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import soxr

from sdk.features import FeatureConfig
from train.data import espeak, flite
from train.data.sdt import clip_sample_range
from train.data.synth_script import (
    Phrase,
    PostureEvent,
    Script,
    SpeakerProfile,
    Syllable,
    posture_for,
)
from train.data.voice_text import KEYWORD_GAIN_DB, PhrasePlan, draw_phrase, phrase_ssml
from train.data.voices import Voice

VOICED_BAND_HZ = 1500.0  # upper edge of the band the lip envelope is measured in
ENVELOPE_WINDOW_S = 0.02  # RMS window of the lip envelope
SPEECH_GAIN = 0.5  # espeak speaks near full scale (and +6 dB on keywords): headroom
NOISE_FLOOR = 3e-4  # std of the background noise added to the speech (about -70 dBFS)
LEAD_IN_S = (0.2, 0.6)  # silence before the first phrase, uniform (s)
END_MARGIN_S = 0.2  # the last phrase ends at least this long before the interval's end
MAX_UNTIMED_PHRASES = 20  # consecutive phrases espeak could not time before giving up
POSTURE_GAP_FRAMES = 4  # as in synth_script: pose frames between two postures
FLITE_NOMINAL_WPM = 170.0  # flite's own rate at duration_stretch 1
KEYWORD_RAMP_S = 0.01  # gain ramps around a flite keyword (louder_word)
#: espeak mnemonic first letter -> vowel class (a, i, u, e, o, ae of VOWEL_FORMANTS_HZ)
_ESPEAK_VOWELS = {"a": 0, "A": 0, "V": 0, "i": 1, "I": 1, "y": 1, "Y": 1, "u": 2, "U": 2,
                  "e": 3, "E": 3, "@": 3, "3": 3, "W": 3, "o": 4, "O": 4, "0": 4, "&": 5}
_ESPEAK_NOT_NUCLEI = frozenset({"@-"})  # epenthetic schwa before /r/: no syllable of its own
#: flite (CMU) vowel -> vowel class
_CMU_VOWELS = {"aa": 0, "ah": 0, "ax": 0, "ay": 0, "aw": 0, "ae": 5, "iy": 1, "ih": 1,
               "ix": 1, "uw": 2, "uh": 2, "eh": 3, "ey": 3, "er": 3, "axr": 3, "ow": 4,
               "oy": 4, "ao": 4}
#: voiceless onset consonant -> CONSONANTS class (s, sh, f, t, k), espeak and CMU names
_CONSONANT_CLASS = {"s": 0, "S": 1, "tS": 1, "sh": 1, "ch": 1, "f": 2, "T": 2, "th": 2,
                    "h": 2, "hh": 2, "x": 2, "t": 3, "p": 3, "k": 4}


def vowel_class(engine: str, name: str) -> int:
    """Vowel class (index into VOWEL_FORMANTS_HZ) of phone ``name`` of ``engine``; -1 if the
    phone is no syllable nucleus."""
    if engine == "flite":
        return _CMU_VOWELS.get(name, -1)
    if name in _ESPEAK_NOT_NUCLEI:
        return -1
    return _ESPEAK_VOWELS.get(name[:1], -1)


def speak(plan: PhrasePlan, voice: Voice) -> tuple[espeak.SpokenPhrase, int]:
    """Render ``plan`` with ``voice``'s engine: the rendering and the keyword's word
    position in its phones (0 = no keyword)."""
    if voice.engine == "espeak-ng":
        ssml, positions = phrase_ssml(plan)
        spoken = espeak.render(ssml, voice.engine_voice, voice.rate_wpm, voice.pitch)
        return spoken, positions[plan.keyword_index] if plan.keyword_index >= 0 else 0
    if voice.engine == "flite":
        spoken = flite.render(plan.words, voice.engine_voice,
                              FLITE_NOMINAL_WPM / voice.rate_wpm, float(voice.pitch))
        if plan.keyword_index < 0:
            return spoken, 0
        position = plan.keyword_index + 1
        return louder_word(spoken, position, KEYWORD_GAIN_DB), position
    raise ValueError(f"voice {voice.name}: unknown engine {voice.engine!r}")


def louder_word(spoken: espeak.SpokenPhrase, word_position: int, gain_db: float
                ) -> espeak.SpokenPhrase:
    """``spoken`` with the phones of word ``word_position`` ``gain_db`` louder.

    flite has no emphasis (no SSML prosody): its keywords get the loudness part of the
    emphasis espeak-ng is given (KEYWORD_PROSODY), from the phone times flite returned,
    with raised-cosine ramps of KEYWORD_RAMP_S at both ends (no clicks). Timing unchanged.
    """
    phones = [p for p in spoken.phones if p.word_position == word_position]
    if not phones:
        return spoken
    sr = spoken.sample_rate
    begin, end = round(phones[0].start_s * sr), round(phones[-1].end_s * sr)
    ramp = max(1, round(KEYWORD_RAMP_S * sr))
    envelope = np.zeros(len(spoken.audio), np.float64)
    envelope[begin:end] = 1.0
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    envelope[max(0, begin - ramp):begin] = rise[ramp - (begin - max(0, begin - ramp)):]
    after = envelope[end:end + ramp]
    after[:] = rise[::-1][:after.size]
    gain = 1.0 + (10.0 ** (gain_db / 20.0) - 1.0) * envelope
    return replace(spoken, audio=(spoken.audio * gain).astype(np.float32))


@dataclass(frozen=True)
class VoicedInterval:
    """One interval of F pose frames and N = ceil(F * sr / fps) samples of a voice.

    audio: float32 (N,); envelope: float64 (N,) lip envelope; script: the events rebuilt
    from the returned timing; pauses: (start_s, end_s) of the silences between phrases;
    phrases_untimed: phrases dropped because espeak's events and trace disagreed.
    """

    script: Script
    audio: np.ndarray
    envelope: np.ndarray
    pauses: tuple[tuple[float, float], ...]
    phrases_untimed: int


def phrase_syllables(engine: str, phones: tuple[espeak.SpokenPhone, ...], offset_s: float,
                     keyword_position: int, keyword_class: int, phrase: int
                     ) -> list[Syllable]:
    """Syllables of one spoken phrase (see the module docstring); times + ``offset_s``.

    ``keyword_position``: text position of the keyword word (0 = no keyword).
    """
    keyword_at = -1
    if keyword_position > 0:
        in_word = [i for i, p in enumerate(phones)
                   if p.word_position == keyword_position and vowel_class(engine, p.name) >= 0]
        stressed = [i for i in in_word if phones[i].stress == 1]
        keyword_at = (stressed or in_word or [-1])[0]
    out = []
    for i, ph in enumerate(phones):
        vowel = vowel_class(engine, ph.name)
        if vowel < 0:
            continue
        prev = phones[i - 1] if i > 0 else None
        onset = ph.start_s
        consonant = -1
        if prev is not None and not prev.is_pause and vowel_class(engine, prev.name) < 0:
            onset = prev.start_s
            consonant = _CONSONANT_CLASS.get(prev.name, -1)
        keyword = keyword_class if i == keyword_at else -1
        out.append(Syllable(onset + offset_s, ph.start_s + offset_s, ph.end_s + offset_s,
                            consonant, vowel, ph.stress == 1 or keyword >= 0,
                            keyword, phrase))
    return out


def render_voiced_interval(voice: Voice, profile: SpeakerProfile, num_frames: int,
                           rng: np.random.Generator, config: FeatureConfig,
                           held_out_text: HeldOutText) -> VoicedInterval:
    """Speak an interval of ``num_frames`` pose frames with ``voice`` (see module docstring).

    ``held_out_text(t)``: True if a phrase starting at t seconds uses held-out words.
    """
    sr, fps = config.sample_rate, config.fps
    duration = num_frames / fps
    _, n_samples = clip_sample_range(0, num_frames, config)
    audio = np.zeros(n_samples, dtype=np.float64)
    phrases: list[Phrase] = []
    syllables: list[Syllable] = []
    postures: list[PostureEvent] = []
    pauses: list[tuple[float, float]] = []
    last_posture_end, untimed, failed_in_row = -(10**9), 0, 0
    t = float(rng.uniform(*LEAD_IN_S))
    pauses.append((0.0, t))
    while True:
        plan = draw_phrase(rng, voice.language, profile.keyword_rate, profile.posture_weights,
                           held_out_text(t))
        try:
            spoken, keyword_position = speak(plan, voice)
        except (espeak.EspeakTimingError, flite.FliteTimingError):
            untimed, failed_in_row = untimed + 1, failed_in_row + 1
            if failed_in_row > MAX_UNTIMED_PHRASES:
                raise
            continue
        failed_in_row = 0
        voiced = [p for p in spoken.phones if not p.is_pause]
        if not voiced:
            continue
        offset = t - voiced[0].start_s
        end = offset + voiced[-1].end_s
        if end > duration - END_MARGIN_S:
            pauses[-1] = (pauses[-1][0], duration)
            break
        _mix(audio, SPEECH_GAIN * soxr.resample(spoken.audio, spoken.sample_rate, sr), offset, sr)
        phrase_syl = phrase_syllables(voice.engine, spoken.phones, offset, keyword_position,
                                      plan.keyword_class, len(phrases))
        for i, syl in enumerate(phrase_syl):
            if syl.keyword < 0:
                continue
            event = posture_for(syl, profile, fps)
            if event.start_frame < last_posture_end + POSTURE_GAP_FRAMES or \
                    event.start_frame < 0 or event.end_frame > num_frames:
                phrase_syl[i] = Syllable(syl.onset_s, syl.vowel_onset_s, syl.end_s,
                                         syl.consonant, syl.vowel, True, -1, syl.phrase)
                continue
            postures.append(event)
            last_posture_end = event.end_frame
        phrases.append(Phrase(t, end))
        syllables.extend(phrase_syl)
        t = end + plan.pause_s
        pauses.append((end, t))
    audio += NOISE_FLOOR * rng.standard_normal(n_samples)
    script = Script(num_frames, duration, tuple(phrases), tuple(syllables), tuple(postures))
    audio32 = np.clip(audio, -1.0, 1.0).astype(np.float32)
    return VoicedInterval(script, audio32, lip_envelope(audio32, script, sr), tuple(pauses),
                          untimed)


class HeldOutText:
    """Which phrases use held-out words: all (``everything``) or those starting in a clip
    whose split is held out (``clip_split(first_clip + floor(t * fps / clip_frames))``)."""

    def __init__(self, everything: bool, first_clip: int, fps: int, clip_frames: int,
                 held_out_clips: frozenset[int]) -> None:
        self.everything, self.first_clip = everything, first_clip
        self.fps, self.clip_frames, self.held_out_clips = fps, clip_frames, held_out_clips

    def __call__(self, t: float) -> bool:
        clip = self.first_clip + int(t * self.fps) // self.clip_frames
        return self.everything or clip in self.held_out_clips


def _mix(out: np.ndarray, x: np.ndarray, offset_s: float, sr: int) -> None:
    """Add ``x`` (float (n,)) into ``out`` (float64 (N,)) starting at ``offset_s`` (cropped)."""
    a = round(offset_s * sr)
    lo, hi = max(0, -a), min(x.shape[0], out.shape[0] - a)
    if hi > lo:
        out[a + lo : a + hi] += x[lo:hi]


def lip_envelope(audio: np.ndarray, script: Script, sample_rate: int) -> np.ndarray:
    """Per-sample lip envelope, float64 (N,) (module docstring); ``audio`` float32 (N,)."""
    n = audio.shape[0]
    spectrum = np.fft.rfft(audio.astype(np.float64))
    spectrum[np.fft.rfftfreq(n, 1.0 / sample_rate) > VOICED_BAND_HZ] = 0.0
    low = np.fft.irfft(spectrum, n)
    win = max(1, round(ENVELOPE_WINDOW_S * sample_rate))
    power = np.convolve(low * low, np.ones(win) / win, mode="same")
    rms = np.sqrt(np.maximum(power, 0.0))
    vowel = np.zeros(n, dtype=bool)
    for syl in script.syllables:
        vowel[round(syl.vowel_onset_s * sample_rate) : round(syl.end_s * sample_rate)] = True
    reference = float(np.median(rms[vowel])) if vowel.any() else 0.0
    return rms / reference if reference > 0 else rms
