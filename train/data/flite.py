"""flite (Debian ``flite``, CMU's small synthesizer; English only) as a second engine, with
the segment timing flite itself reports.

``flite -voice V -psdur -t TEXT -o out.wav`` writes the audio and prints ``phone:end``
pairs (end times in seconds from the start of the wav, which is also where the first
segment starts). Words and stress, which flite does not print:

* **words**: each word's phones are counted once, spoken alone (``flite -ps``); the
  sentence's non-pause phones are split in order by those counts. Post-lexical rules
  change phones, not their number ("the" is ``dh ax`` alone, ``dh iy`` before a vowel);
  if the counts do not add up, :class:`FliteTimingError` (never a guess).
* **stress**: flite prints none. The longest vowel of each word, if at least
  STRESS_MIN_VOWEL_S long, is marked primary (duration is what flite's prosody model
  lengthens stressed vowels with); the rest are unstressed.

flite ignores SSML emphasis: train.data.voice_script.louder_word gives a keyword the
loudness part of the emphasis (the gain espeak-ng is given), nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import soundfile as sf

from train.data.espeak import SpokenPhone, SpokenPhrase

FLITE = "flite"
PAUSE_PHONE = "pau"
CMU_VOWELS = frozenset({"aa", "ae", "ah", "ao", "aw", "ax", "axr", "ay", "eh", "er", "ey",
                        "ih", "ix", "iy", "ow", "oy", "uh", "uw"})
STRESS_MIN_VOWEL_S = 0.08
TIMEOUT_S = 60.0


class FliteUnavailable(RuntimeError):
    """flite is not installed (``make voices`` or ``apt-get install flite``)."""


class FliteTimingError(RuntimeError):
    """flite's segments cannot be split into the phrase's words."""


def available() -> bool:
    """True if the ``flite`` program is on PATH."""
    return shutil.which(FLITE) is not None


def _run(args: list[str]) -> str:
    if not available():
        raise FliteUnavailable("flite not found; run `make voices` (apt-get install flite)")
    done = subprocess.run([FLITE, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"flite {' '.join(args)} failed ({done.returncode}): "
                           f"{done.stderr.strip()[-300:]}")
    return done.stdout


@lru_cache(maxsize=4096)
def word_phone_count(voice: str, word: str) -> int:
    """Non-pause phones flite speaks for ``word`` alone."""
    with tempfile.TemporaryDirectory() as tmp:
        out = _run(["-voice", voice, "-ps", "-t", word, "-o", str(Path(tmp) / "w.wav")])
    return sum(1 for p in out.split() if p != PAUSE_PHONE)


def render(words: tuple[str, ...], voice: str, duration_stretch: float,
           f0_mean_hz: float) -> SpokenPhrase:
    """Speak ``words`` with flite voice ``voice`` (``slt``, ``awb``, ``rms``, ``kal16``).

    Returns the audio (float32 (N,) at the voice's rate) and one phone per segment; a
    phone's ``word_position`` is its word's index + 1 (0 for pauses).
    """
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "p.wav"
        out = _run(["-voice", voice, "-psdur", "--setf", f"duration_stretch={duration_stretch}",
                    "--setf", f"int_f0_target_mean={f0_mean_hz}", "-t", " ".join(words) + ".",
                    "-o", str(wav)])
        audio, sample_rate = sf.read(wav, dtype="float32")
    segments = [(name, float(end)) for name, end in
                (item.rsplit(":", 1) for item in out.split() if ":" in item)]
    counts = [word_phone_count(voice, w) for w in words]
    spoken = sum(1 for name, _ in segments if name != PAUSE_PHONE)
    if spoken != sum(counts):
        raise FliteTimingError(f"flite spoke {spoken} phones for {words}, the words alone "
                               f"have {sum(counts)}")
    owner = [i + 1 for i, c in enumerate(counts) for _ in range(c)]
    phones: list[SpokenPhone] = []
    start, k = 0.0, 0
    for name, end in segments:
        position = 0
        if name != PAUSE_PHONE:
            position, k = owner[k], k + 1
        phones.append(SpokenPhone("_" if name == PAUSE_PHONE else name, start, end, 0, position))
        start = end
    return SpokenPhrase(audio, int(sample_rate), _stress_longest_vowels(phones))


def _stress_longest_vowels(phones: list[SpokenPhone]) -> tuple[SpokenPhone, ...]:
    """Mark the longest vowel of each word primary (module docstring)."""
    best: dict[int, int] = {}
    for i, p in enumerate(phones):
        if p.word_position and p.name in CMU_VOWELS:
            j = best.get(p.word_position)
            if j is None or p.end_s - p.start_s > phones[j].end_s - phones[j].start_s:
                best[p.word_position] = i
    stressed = {i for i in best.values()
                if phones[i].end_s - phones[i].start_s >= STRESS_MIN_VOWEL_S}
    return tuple(SpokenPhone(p.name, p.start_s, p.end_s, 1 if i in stressed else 0,
                             p.word_position) for i, p in enumerate(phones))

