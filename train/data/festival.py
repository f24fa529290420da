"""Festival (Debian ``festival``, Edinburgh's synthesizer) as an engine the models never
heard: speech for the acceptance of issue 17 ("held out: some voices, and an engine if you
can"), not for training.

No corpus voice speaks through festival (:mod:`train.data.voices` registers espeak-ng and
flite only), so its voices test whether sync carries over to a synthesizer whose prosody,
waveform generation and voice were all never heard:

* ``festival-ked``: ``voice_ked_diphone`` (``festvox-kdlpc16k``), American English male,
  residual-LPC diphones of a speaker no corpus voice uses.
* ``festival-slt-hts``: ``voice_cmu_us_slt_arctic_hts`` (``festvox-us-slt-hts``), American
  English female, an HTS statistical-parametric voice (the CMU ARCTIC slt recordings,
  which flite's held-out ``flite-slt`` is also built from, through another engine).

What they say (:func:`held_out_speech`): phrases drawn like a held-out corpus voice's
(:func:`train.data.voice_text.draw_phrase` with the held-out English words, keywords at the
corpus's rate), each synthesised on its own and followed by the phrase's pause of silence.
Festival is given plain text: the corpus's keyword emphasis (slower, louder) is not
applied, and festival's own prosody decides the rest. No timing is read back: only the
audio is needed (the acceptance judges with the bundle's PoseSyncNet and the audio energy).

One ``festival -b`` process renders every phrase of a voice (a Scheme script of
``SynthText`` + ``utt.save.wave`` calls), so a minute of speech costs about a second.

Licences: festival and both voices are free to use and distribute (Edinburgh/CMU BSD-like
terms: keep the notice, mark changes); nothing trained here hears them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.data.voice_text import draw_phrase

FESTIVAL = "festival"
TIMEOUT_S = 300.0
LANGUAGE = "en"  # both voices speak English; the phrases use the held-out English words
KEYWORD_RATE = 0.35  # share of phrases with a keyword (a corpus speaker's is 0.2-0.5)


class FestivalUnavailable(RuntimeError):
    """festival or a voice of it is not installed (``make voices`` installs them)."""


@dataclass(frozen=True)
class FestivalVoice:
    """A festival voice: ``name`` (acceptance row), the Scheme call that selects it, its
    Debian package, the directory the package installs, gender and licence."""

    name: str
    scheme: str
    package: str
    directory: str
    gender: str
    licence: str


FESTIVAL_LICENCE = ("Edinburgh/CMU BSD-like (festival and its voices: use and distribute "
                    "without restriction, keep the notice)")
VOICES: tuple[FestivalVoice, ...] = (
    FestivalVoice("festival-ked", "(voice_ked_diphone)", "festvox-kdlpc16k",
                  "/usr/share/festival/voices/english/ked_diphone", "male", FESTIVAL_LICENCE),
    FestivalVoice("festival-slt-hts", "(voice_cmu_us_slt_arctic_hts)", "festvox-us-slt-hts",
                  "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts", "female",
                  FESTIVAL_LICENCE),
)
VOICES_BY_NAME = {v.name: v for v in VOICES}


def select(spec: str) -> tuple[FestivalVoice, ...]:
    """Voices named by ``spec``: ``all`` or comma-separated names; raise ValueError naming
    the unknown item and the choices."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise ValueError(f"no festival voice named; choose from {', '.join(VOICES_BY_NAME)}")
    chosen: set[str] = set()
    for item in items:
        if item != "all" and item not in VOICES_BY_NAME:
            raise ValueError(f"no festival voice {item!r}; choose from all, "
                             f"{', '.join(VOICES_BY_NAME)}")
        chosen.update(VOICES_BY_NAME if item == "all" else {item})
    return tuple(v for v in VOICES if v.name in chosen)


def missing(voice: FestivalVoice) -> str | None:
    """What is not installed for ``voice`` (the Debian packages to install), or None."""
    if shutil.which(FESTIVAL) is None:
        return f"festival not found; run `make voices` (apt-get install festival {voice.package})"
    if not Path(voice.directory).is_dir():
        return (f"festival voice {voice.name} not installed ({voice.directory} missing); run "
                f"`make voices` (apt-get install {voice.package})")
    return None


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synthesize(voice: FestivalVoice, texts: list[str], rate: int) -> list[np.ndarray]:
    """Each of ``texts`` spoken by ``voice``: float32 (N,) in [-1, 1] at ``rate`` Hz, in the
    same order (resampled from the voice's own rate: 16000 Hz for ked, 32000 Hz for
    slt-hts)."""
    from sdk.audio import load_audio

    problem = missing(voice)
    if problem:
        raise FestivalUnavailable(problem)
    with tempfile.TemporaryDirectory(prefix="gesturert-festival-") as tmp:
        lines = [voice.scheme]
        paths = [Path(tmp) / f"{i:04d}.wav" for i in range(len(texts))]
        for text, path in zip(texts, paths, strict=True):
            lines.append(f"(utt.save.wave (SynthText {_scheme_string(text)}) "
                         f"{_scheme_string(str(path))} 'riff)")
        script = Path(tmp) / "speak.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        done = subprocess.run([FESTIVAL, "-b", str(script)], capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
        absent = [p.name for p in paths if not p.is_file()]
        if done.returncode != 0 or absent:
            raise RuntimeError(f"festival ({voice.name}) failed (exit {done.returncode}, "
                               f"{len(absent)} of {len(paths)} phrases not written): "
                               f"{(done.stderr or done.stdout).strip()[-300:]}")
        return [load_audio(p, rate) for p in paths]


def held_out_speech(voice: FestivalVoice, sequences: int, seconds: float, rate: int,
                    seed: int = 0) -> list[np.ndarray]:
    """``sequences`` float32 (N,) audios at ``rate`` Hz, each about ``seconds`` long (at
    least that much, whole phrases): held-out English phrases spoken by ``voice``, each
    followed by its pause of silence. Deterministic in ``seed`` and the voice's name."""
    if sequences < 1 or seconds <= 0:
        raise ValueError(f"need sequences >= 1 and seconds > 0, got {sequences}, {seconds}")
    weights = (1.0 / 5,) * 5
    rng = np.random.default_rng([seed, *voice.name.encode()])
    plans: list[list[tuple[str, float]]] = [[] for _ in range(sequences)]
    # Words per second of the slowest voice is about 2: draw enough phrases, trim later.
    for plan in plans:
        while sum(len(text.split()) / 2.0 + pause for text, pause in plan) < seconds * 1.5:
            phrase = draw_phrase(rng, LANGUAGE, KEYWORD_RATE, weights, held_out_text=True)
            plan.append((" ".join(phrase.words) + ".", phrase.pause_s))
    spoken = iter(synthesize(voice, [text for plan in plans for text, _ in plan], rate))
    out = []
    for plan in plans:
        parts: list[np.ndarray] = []
        length = 0
        for _, pause in plan:
            audio = next(spoken)
            if length >= seconds * rate:
                continue
            parts += [audio, np.zeros(round(pause * rate), np.float32)]
            length += len(audio) + len(parts[-1])
        out.append(np.concatenate(parts).astype(np.float32))
    return out
