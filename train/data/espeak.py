"""espeak-ng through its C library (``libespeak-ng.so.1``, Debian ``libespeak-ng1``): audio
plus the timing of every phoneme the synthesizer *spoke*, read back from the synthesizer.

The library runs in synchronous mode with phoneme events. One :func:`render` call
synthesises one SSML phrase and returns:

* the audio: float32 (N,) in [-1, 1] at the library's rate (22050 Hz for every voice);
* one :class:`SpokenPhone` per PHONEME event: start = the event's sample position / rate;
  end = the next event's start (pause phonemes, named ``_...``, included);
* per phone its stress (0 none, 1 primary, 2 secondary) and its word. Stress comes from the
  library's own phoneme trace (``espeak_SetPhonemeTrace``, the text ``espeak-ng -x``
  prints) written during the same synthesis, zipped with the non-pause PHONEME events;
  names must agree one for one, otherwise :class:`EspeakTimingError` (never a guess).
  Word: the WORD event before the phone; its ``text_position`` (1-based, in characters of
  the SSML text, markup included) says which word of the input it is.

Two corrections (measured in the feasibility notes, /work/shared/notes/voices.md):

* **Closures.** A stop's PHONEME event fires at its release, so the closure silence before
  it is counted into the preceding phone (a vowel ends ~30 ms late). Every phone followed
  by another phone is cut back through the silence before the next event: frames of
  CLOSURE_FRAME_S whose RMS is below CLOSURE_SILENCE_DB under the phrase's loudest frame
  (keeping at least CLOSURE_MIN_KEEP_S of the phone: a geminate's closure, Italian
  "mattina", can be longer than the vowel before it). The silence then belongs to no phone.
* **Merged words.** espeak speaks some function-word pairs ("on the") as one word, with one
  WORD event; those phones belong to the first word. Callers look words up by text
  position and must treat a word without its own WORD event as merged.

The library keeps global state, so calls are serialised by a lock. Its breathy variants
(``+f1``..``+f5`` and others with a ``breath`` line) add noise drawn from the C library's
``rand()``, so a phrase's audio would depend on how often anything in the process called
``rand()`` before it (measured: 0.046 max |difference| for ``de+f3`` after five calls).
:func:`render` seeds ``rand()`` from the phrase, the voice, rate and pitch before each
synthesis (:func:`noise_seed`): the same call sequence renders the same corpus whatever
the process imported or ran first. The library also carries state of its own from call to
call (the same phrase rendered four times in a row by ``de``: 53378, 53185, 53183, 53378
samples), so a corpus is reproduced by the same calls in a fresh process, not by rendering
it twice in one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LIBRARY_NAME = "libespeak-ng.so.1"
_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS
_INIT_PHONEME_EVENTS = 0x0001  # espeakINITIALIZE_PHONEME_EVENTS
_CHARS_UTF8, _SSML = 1, 0x10  # espeak_Synth flags
_POS_CHARACTER = 1
_EV_END, _EV_WORD, _EV_PHONEME = 0, 1, 7  # espeak_EVENT_TYPE (0 = list terminated)
_PARAM_RATE, _PARAM_PITCH = 1, 3  # espeak_PARAMETER
_TRACE_SEPARATOR = "|"
_TRACE_MODE = (ord(_TRACE_SEPARATOR) << 8) | 1  # show mnemonics, "|" between phonemes
_STRESS_MARKS = {"'": 1, ",": 2}  # primary, secondary; other marks (= %) mean unstressed
_OTHER_MARKS = "=%"
_LENGTH_MARK = ":"
CLOSURE_FRAME_S = 0.005  # s, frames scanned back by the closure correction
CLOSURE_SILENCE_DB = 25.0  # dB under the phrase's loudest frame that count as silence
CLOSURE_MIN_KEEP_S = 0.02  # s of a phone the closure correction always keeps


class EspeakUnavailable(RuntimeError):
    """libespeak-ng is not installed (``make voices`` or ``apt-get install espeak-ng``)."""


class EspeakTimingError(RuntimeError):
    """The phoneme trace and the phoneme events disagree; the phrase cannot be timed."""


@dataclass(frozen=True)
class SpokenPhone:
    """One phoneme as spoken: espeak mnemonic, times in seconds from the phrase start.

    ``word_position``: text position (1-based characters of the SSML input) of the WORD
    event the phone belongs to, 0 before the first word. ``stress``: 0, 1 (primary) or 2.
    """

    name: str
    start_s: float
    end_s: float
    stress: int
    word_position: int

    @property
    def is_pause(self) -> bool:
        return self.name.startswith("_")


@dataclass(frozen=True)
class SpokenPhrase:
    """One phrase as a synthesizer spoke it (espeak-ng here, flite too): ``audio`` float32
    (N,) at ``sample_rate``; ``phones`` in time order."""

    audio: np.ndarray
    sample_rate: int
    phones: tuple[SpokenPhone, ...]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))
_lock = threading.Lock()
_state: dict[str, object] = {}


def available() -> bool:
    """True if libespeak-ng can be loaded."""
    try:
        _library()
    except EspeakUnavailable:
        return False
    return True


def _library() -> tuple[ctypes.CDLL, int]:
    if "lib" not in _state:
        try:
            lib = ctypes.CDLL(LIBRARY_NAME)
        except OSError as exc:
            raise EspeakUnavailable(f"{LIBRARY_NAME} not found ({exc}); run `make voices` "
                                    "(apt-get install espeak-ng)") from exc
        rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS)
        if rate <= 0:
            raise EspeakUnavailable(f"espeak_Initialize failed ({rate}): espeak-ng-data missing?")
        lib.espeak_SetPhonemeTrace.argtypes = [ctypes.c_int, ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        _state["lib"], _state["rate"] = lib, rate
    return _state["lib"], int(_state["rate"])  # type: ignore[return-value,call-overload]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.srand.argtypes = [ctypes.c_uint]
    return libc


def noise_seed(ssml: str, voice: str, rate_wpm: int, pitch: int) -> int:
    """The ``srand`` seed of one :func:`render` call: CRC-32 of its arguments (0..2**32-1)."""
    return zlib.crc32(f"{voice}\n{int(rate_wpm)}\n{int(pitch)}\n{ssml}".encode())


def render(ssml: str, voice: str, rate_wpm: int, pitch: int) -> SpokenPhrase:
    """Synthesise one SSML phrase with espeak-ng voice ``voice`` (e.g. ``"en-us+f2"``).

    Args:
        ssml: text with SSML markup (``<speak>`` optional), one phrase.
        rate_wpm: speaking rate in words per minute (espeak: 80-450).
        pitch: base pitch, 0-99 (espeak's scale, 50 = the voice's normal).
    Raises:
        EspeakUnavailable: library missing. ValueError: unknown voice.
        EspeakTimingError: the phoneme trace does not match the spoken phonemes.
    """
    with _lock:
        lib, sample_rate = _library()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`)")
        lib.espeak_SetParameter(_PARAM_RATE, int(rate_wpm), 0)
        lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        chunks: list[np.ndarray] = []
        events: list[tuple[int, int, int, str]] = []  # (type, sample, text_position, name)

        def collect(wav, n, ev):  # type: ignore[no-untyped-def]
            if n > 0:
                chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
            i = 0
            while ev[i].type != 0:
                e = ev[i]
                name = bytes(e.id).split(b"\0")[0].decode("utf-8", "replace") \
                    if e.type == _EV_PHONEME else ""
                events.append((e.type, e.sample, e.text_position, name))
                i += 1
            return 0

        callback = _CALLBACK(collect)
        lib.espeak_SetSynthCallback(callback)
        libc = _libc()
        libc.srand(noise_seed(ssml, voice, rate_wpm, pitch))  # the breathy variants' noise
        with tempfile.TemporaryDirectory() as tmp:
            trace_path = Path(tmp) / "trace.txt"
            stream = libc.fopen(str(trace_path).encode(), b"w")
            lib.espeak_SetPhonemeTrace(_TRACE_MODE, stream)
            text = ssml.encode("utf-8")
            try:
                lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _SSML,
                                 None, None)
                lib.espeak_Synchronize()
            finally:
                lib.espeak_SetPhonemeTrace(0, None)
                libc.fclose(stream)
            trace = trace_path.read_text(encoding="utf-8", errors="replace")
    audio = (np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks
             else np.zeros(0, np.float32))
    phones = _timed_phones(events, _trace_stress(trace), sample_rate, audio.shape[0])
    return SpokenPhrase(audio, sample_rate, correct_closures(phones, audio, sample_rate))


def _trace_stress(trace: str) -> list[tuple[str, int]]:
    """(name, stress) of each non-pause phoneme in the trace text, in order."""
    out = []
    for token in trace.replace("\n", " ").replace(_TRACE_SEPARATOR, " ").split():
        stress = 0
        while token and (token[0] in _STRESS_MARKS or token[0] in _OTHER_MARKS):
            stress = max(stress, _STRESS_MARKS.get(token[0], 0))
            token = token[1:]
        if token and not token.startswith("_"):
            out.append((token, stress))
    return out


def _timed_phones(events: list[tuple[int, int, int, str]], stress: list[tuple[str, int]],
                  sample_rate: int, n_samples: int) -> list[SpokenPhone]:
    """Phones from the event list: start at its sample, end at the next event's sample."""
    starts: list[tuple[int, str, int]] = []  # (sample, name, word position)
    word, last_end = 0, n_samples
    for kind, sample, position, name in events:
        if kind == _EV_WORD:
            word = position
        elif kind == _EV_PHONEME:
            starts.append((sample, name, word))
        elif kind == _EV_END:
            last_end = max(sample, starts[-1][0] if starts else 0)
    spoken = [s for s in starts if not s[1].startswith("_")]
    # length marks: the trace writes some (Italian geminates) that the events lack
    if [n.replace(_LENGTH_MARK, "") for _, n, _ in spoken] != \
            [n.replace(_LENGTH_MARK, "") for n, _ in stress]:
        raise EspeakTimingError(
            f"phoneme events {[n for _, n, _ in spoken]} do not match the trace "
            f"{[n for n, _ in stress]}")
    stress_iter = iter(s for _, s in stress)
    phones = []
    for i, (sample, name, word_pos) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else last_end
        level = 0 if name.startswith("_") else next(stress_iter)
        phones.append(SpokenPhone(name, sample / sample_rate, max(end, sample) / sample_rate,
                                  level, word_pos))
    return phones


def correct_closures(phones: list[SpokenPhone], audio: np.ndarray,
                     sample_rate: int) -> tuple[SpokenPhone, ...]:
    """Cut each phone's end back through the silence before the next phone's event (see
    the module docstring); ``audio`` float32 (N,) at ``sample_rate``."""
    hop = max(1, round(CLOSURE_FRAME_S * sample_rate))
    n_frames = audio.shape[0] // hop
    if n_frames == 0:
        return tuple(phones)
    frames = audio[: n_frames * hop].astype(np.float64).reshape(n_frames, hop)
    db = 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1e-12)
    silent = db < db.max() - CLOSURE_SILENCE_DB
    out = []
    for i, ph in enumerate(phones):
        nxt = phones[i + 1] if i + 1 < len(phones) else None
        end = ph.end_s
        if nxt is not None and not ph.is_pause and not nxt.is_pause:
            k = min(int(ph.end_s * sample_rate) // hop, n_frames)  # frame ending at the event
            floor = int((ph.start_s + CLOSURE_MIN_KEEP_S) * sample_rate) // hop
            while k - 1 > floor and silent[k - 1]:
                k -= 1
            end = min(end, k * hop / sample_rate) if k * hop / sample_rate > ph.start_s else end
        out.append(SpokenPhone(ph.name, ph.start_s, end, ph.stress, ph.word_position))
    return tuple(out)
