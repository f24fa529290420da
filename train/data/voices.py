"""The real synthesizer voices a voiced corpus (``gesturert data synth --voices``) can speak
with, and the licence of each: whether a model trained on a voice's output may be shipped.

Two engines, both Debian main:

* espeak-ng (``espeak-ng``, formant synthesis): a language voice, a variant (``+m1``..
  ``+m7`` male, ``+f1``..``+f5`` female: formant, breathiness and pitch settings of a
  different speaker) and a speaking rate and pitch of its own. 5 languages.
* flite (``flite``, English only): CMU ARCTIC voices slt (female), awb and rms (male),
  statistical-parametric voices trained on recordings of real people, and kal16 (male
  diphone); rate via ``duration_stretch``, pitch via ``int_f0_target_mean`` (Hz). A
  second engine makes "an engine never heard in training" a possible held-out set.

MBROLA's human diphone voices (the exact-timing path of the feasibility notes) are in
Debian's contrib and non-free sections, which this machine's apt sources do not enable,
and their licence forbids commercial use, so none is registered. festival is not
registered either: it is the engine no model hears (:mod:`train.data.festival`), spoken
only by the acceptance of voices never heard.

Licences (what the output may be used for):

* espeak-ng program and voice data: GPL-3.0-or-later. The GPL covers the program, not
  what it speaks; audio made with it, and a model trained on that audio, may be
  distributed (also commercially). ``model_distributable = True``.
* flite and its voices: CMU/Festvox licence ("use and distribute ... without restriction",
  keep the notice; BSD-like). ``model_distributable = True``.
* MBROLA voices (not registered): "non-commercial, non-military" research licence, so a
  model trained on them is for research only and stays out of the shipped bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ESPEAK_LICENCE = "GPL-3.0-or-later (espeak-ng program and voice data; output unrestricted)"
FLITE_LICENCE = "CMU/Festvox BSD-like (flite and CMU ARCTIC voices; use without restriction)"


@dataclass(frozen=True)
class Voice:
    """One synthesizer voice.

    Attributes:
        name: speaker directory name in the corpus (``espeak-<accent>-<variant>``,
            ``flite-<voice>``).
        engine: synthesizer (``espeak-ng`` or ``flite``).
        engine_voice: the engine's voice id (espeak: ``language+variant``; flite: voice).
        language: ISO 639-1 code of the language spoken (selects the word lists).
        gender: ``"male"`` or ``"female"`` (the variant's).
        rate_wpm: speaking rate, words per minute.
        pitch: espeak: base pitch 0-99 (50 = the variant's own); flite: mean F0 in Hz.
        licence: the licence of the engine and voice data.
        model_distributable: True if a model trained on this voice's output may be
            distributed (the shipped bundle uses only such voices).
    """

    name: str
    engine: str
    engine_voice: str
    language: str
    gender: str
    rate_wpm: int
    pitch: int
    licence: str
    model_distributable: bool


def _espeak(label: str, espeak_voice: str, variant: str, rate_wpm: int, pitch: int) -> Voice:
    """An espeak-ng voice named ``espeak-<label>-<variant>``; language = label's first part."""
    gender = "female" if variant.startswith("f") else "male"
    return Voice(f"espeak-{label}-{variant}", "espeak-ng", f"{espeak_voice}+{variant}",
                 label.split("-")[0], gender, rate_wpm, pitch, ESPEAK_LICENCE, True)


def _flite(voice: str, gender: str, rate_wpm: int, f0_hz: int) -> Voice:
    return Voice(f"flite-{voice}", "flite", voice, "en", gender, rate_wpm, f0_hz,
                 FLITE_LICENCE, True)


#: Every registered voice, in a fixed order (corpus speaker index = position here).
VOICES: tuple[Voice, ...] = (
    _espeak("en-us", "en-us", "m1", 165, 40),
    _espeak("en-us", "en-us", "f2", 175, 62),
    _espeak("en-us", "en-us", "m3", 145, 30),
    _espeak("en-us", "en-us", "f4", 195, 70),
    _espeak("en-gb", "en", "m2", 160, 45),
    _espeak("en-rp", "en-gb-x-rp", "f1", 150, 55),
    _espeak("de", "de", "m4", 155, 35),
    _espeak("de", "de", "f3", 170, 60),
    _espeak("fr", "fr", "m7", 170, 45),
    _espeak("fr", "fr", "f5", 160, 65),
    _espeak("es", "es", "m6", 180, 40),
    _espeak("es", "es", "f2", 165, 58),
    _espeak("it", "it", "m2", 150, 50),
    _espeak("it", "it", "f4", 185, 68),
    _flite("slt", "female", 170, 180),
    _flite("awb", "male", 160, 115),
    _flite("rms", "male", 180, 100),
    _flite("kal16", "male", 150, 110),
)
VOICES_BY_NAME = {v.name: v for v in VOICES}


def select_voices(spec: str) -> tuple[Voice, ...]:
    """Voices named by a ``--voices`` value: ``all``, or comma-separated voice names,
    language codes (``en`` = every English voice) and engines (``flite``), in registry
    order, no duplicates.

    Raises:
        ValueError: an item names no voice (the message lists the names).
    """
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise ValueError("--voices is empty; give 'all', voice names or language codes")
    chosen: set[str] = set()
    for item in items:
        match = [v.name for v in VOICES if item in ("all", v.name, v.language, v.engine)]
        if not match:
            raise ValueError(f"no voice, language or engine {item!r}; voices: "
                             f"{', '.join(VOICES_BY_NAME)}; languages: "
                             f"{', '.join(sorted({v.language for v in VOICES}))}; engines: "
                             f"{', '.join(sorted({v.engine for v in VOICES}))}")
        chosen.update(match)
    return tuple(v for v in VOICES if v.name in chosen)


def held_out_names(spec: str, voices: Sequence[Voice]) -> frozenset[str]:
    """Names of the voices ``spec`` (same syntax as :func:`select_voices`; empty = none)
    holds out; each must be among ``voices`` (raise ValueError otherwise)."""
    if not spec.strip():
        return frozenset()
    held = select_voices(spec)
    missing = [v.name for v in held if v not in voices]
    if missing:
        raise ValueError(f"held-out voices {missing} are not among --voices")
    if len(held) == len(voices):
        raise ValueError("every voice is held out: nothing is left to train on")
    return frozenset(v.name for v in held)


def voices_markdown_table() -> str:
    """The voice table of docs/training.md (a test keeps the two equal)."""
    lines = ["| voice | engine voice | language | gender | rate (wpm) | pitch | "
             "licence | model may be distributed |", "|---|---|---|---|---|---|---|---|"]
    for v in VOICES:
        lines.append(f"| `{v.name}` | `{v.engine_voice}` | {v.language} | {v.gender} | "
                     f"{v.rate_wpm} | {v.pitch} | {v.licence} | "
                     f"{'yes' if v.model_distributable else 'no'} |")
    return "\n".join(lines)
