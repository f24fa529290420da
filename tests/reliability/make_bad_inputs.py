"""Write the bad-input audio corpus: broken files and every legal-but-awkward kind of audio.

    python tests/reliability/make_bad_inputs.py OUT_DIR          # write the corpus
    python tests/reliability/make_bad_inputs.py --load OUT_DIR   # load each file, JSON lines

Every file is generated here (nothing is downloaded or committed). ``OUT_DIR/corpus.json``
lists each file with what :func:`sdk.audio.load_audio` must do with it: raise
:class:`~sdk.audio.AudioError` whose message matches ``message`` (a regex), or return
``model_rate_samples(frames, rate, 16000)`` finite samples.

``--load`` reads every file with ``load_audio`` in this process and prints one JSON line
before (``"start"``) and one after (``"ok"``/``"error"``) each file, flushed, so a test
running it in a subprocess can prove no file crashes the process and name the one that
would.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

CORPUS_INDEX = "corpus.json"
MODEL_RATE = 16000  # only used to build test tones; the tests read the rate from the bundle


@dataclass(frozen=True)
class CorpusFile:
    """One corpus file and the expected outcome of loading it.

    name: file name inside the corpus directory.
    expect: "ok" (loads) or "error" (AudioError).
    message: regex the AudioError message must match ("" for ok files).
    rate: the file's sample rate in Hz (ok files; 0 for errors).
    frames: samples per channel in the file (ok files).
    channels: channels in the file (ok files).
    what: one line on what the file exercises.
    """

    name: str
    expect: str
    message: str
    rate: int
    frames: int
    channels: int
    what: str


def speechlike(rate: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """float64 (N, channels) in [-0.5, 0.5]: a gliding harmonic tone with a syllable-rate
    envelope plus a little noise; channels differ in phase and gain."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2 / 4
    out = np.empty((t.size, channels))
    for c in range(channels):
        voiced = sum(np.sin(k * phase + c) / k for k in range(1, 6))
        out[:, c] = (0.25 * envelope * voiced * (1 - 0.1 * c)
                     + 0.01 * rng.standard_normal(t.size))
    return np.clip(out, -0.5, 0.5)


def _wav_bytes(data: np.ndarray, rate: int, subtype: str, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, data, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def _ok(name: str, data: np.ndarray, rate: int, what: str) -> tuple[CorpusFile, np.ndarray]:
    return CorpusFile(name, "ok", "", rate, data.shape[0], data.shape[1], what), data


def write_corpus(out_dir: str | Path) -> list[CorpusFile]:
    """Write every corpus file and ``corpus.json`` into ``out_dir``; return the entries."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries: list[CorpusFile] = []

    def write_ok(entry: CorpusFile, data: np.ndarray, subtype: str, fmt: str = "WAV") -> None:
        (out / entry.name).write_bytes(_wav_bytes(data, entry.rate, subtype, fmt))
        entries.append(entry)

    def write_error(name: str, content: bytes, message: str, what: str) -> None:
        (out / name).write_bytes(content)
        entries.append(CorpusFile(name, "error", message, 0, 0, 0, what))

    # ---- files that load ----
    for rate in (8000, 22050, 44100, 48000):
        write_ok(*_ok(f"mono_{rate}_int16.wav", speechlike(rate, 1.3, seed=rate), rate,
                      f"{rate} Hz mono 16-bit PCM"), "PCM_16")
    write_ok(*_ok("stereo_48000_int16.wav", speechlike(48000, 1.1, 2), 48000,
                  "stereo, channels averaged"), "PCM_16")
    write_ok(*_ok("six_channel_44100_float32.wav", speechlike(44100, 0.9, 6), 44100,
                  "5.1 (6 channels, WAVE_FORMAT_EXTENSIBLE) float"), "FLOAT")
    write_ok(*_ok("mono_16000_int32.wav", speechlike(MODEL_RATE, 1.0), MODEL_RATE,
                  "32-bit PCM"), "PCM_32")
    write_ok(*_ok("mono_22050_float64.wav", speechlike(22050, 1.0), 22050,
                  "64-bit float"), "DOUBLE")
    write_ok(*_ok("mono_48000.flac", speechlike(48000, 1.2), 48000, "FLAC 16-bit"),
             "PCM_16", "FLAC")
    write_ok(*_ok("silence_16000_int16.wav", np.zeros((MODEL_RATE, 1)), MODEL_RATE,
                  "1 s of digital silence"), "PCM_16")
    square = np.where(np.sin(2 * np.pi * 200 * np.arange(MODEL_RATE) / MODEL_RATE) >= 0,
                      1.0, -1.0)[:, None]
    write_ok(*_ok("clipping_16000_int16.wav", square, MODEL_RATE,
                  "full-scale square wave (every sample clipped at +-1)"), "PCM_16")
    write_ok(*_ok("overrange_16000_float32.wav", 4.0 * speechlike(MODEL_RATE, 1.0),
                  MODEL_RATE, "float samples up to +-2 (beyond full scale; taken as is)"),
             "FLOAT")
    write_ok(*_ok("one_sample_16000_int16.wav", np.full((1, 1), 0.25), MODEL_RATE,
                  "a single sample"), "PCM_16")
    write_ok(*_ok("one_sample_44100_int16.wav", np.full((1, 1), 0.25), 44100,
                  "a single sample at 44.1 kHz"), "PCM_16")

    # ---- files that must fail with a clear error ----
    good = _wav_bytes(speechlike(MODEL_RATE, 1.0), MODEL_RATE, "PCM_16")
    write_error("zero_length.wav", b"", r"is empty \(0 bytes\)", "0 bytes")
    write_error("garbage.wav", np.random.default_rng(1).integers(0, 256, 8192, np.uint8)
                .tobytes(), "is not a readable audio file", "random bytes named .wav")
    write_error("text.wav", b"this is not audio, it is a note\n" * 20,
                "is a text file, not audio", "a text file named .wav")
    write_error("header_only.wav", good[:44], "contains no audio samples|truncated",
                "a WAV header and no samples")
    write_error("truncated_header.wav", good[:30],
                "broken or truncated WAV header", "a WAV cut inside its header")
    write_error("truncated_data.wav", good[: len(good) // 2], "is truncated",
                "a WAV cut in the middle of its samples")
    bad_format = bytearray(good)
    bad_format[20:22] = (0x7777).to_bytes(2, "little")  # fmt chunk: unknown format code
    write_error("corrupt_format.wav", bytes(bad_format), "broken or truncated WAV header",
                "a WAV whose fmt chunk names an unknown sample format")
    bad_channels = bytearray(good)
    bad_channels[22:24] = (0).to_bytes(2, "little")  # fmt chunk: 0 channels
    write_error("zero_channels.wav", bytes(bad_channels), "broken or truncated WAV header",
                "a WAV whose fmt chunk says 0 channels")
    for rate, label in ((1, "1hz"), (2**31 - 1, "2ghz")):  # a corrupt rate field in the header
        wrong_rate = bytearray(_wav_bytes(speechlike(MODEL_RATE, 10.0), MODEL_RATE, "PCM_16"))
        wrong_rate[24:28] = rate.to_bytes(4, "little")
        write_error(f"rate_{label}.wav", bytes(wrong_rate),
                    f"declares a sample rate of {rate} Hz, outside the supported",
                    f"a 10 s WAV whose header claims {rate} Hz (1 Hz asked soxr for 10 GB)")
    flac = _wav_bytes(speechlike(48000, 1.2), 48000, "PCM_16", "FLAC")
    write_error("truncated.flac", flac[: len(flac) * 6 // 10],
                "truncated|could not be decoded", "a FLAC cut in the middle of its frames")
    garbled = bytearray(flac)
    middle = len(garbled) // 2
    garbled[middle:middle + 64] = bytes(64)  # a run of zeros inside the frame data
    write_error("garbled.flac", bytes(garbled), "truncated|could not be decoded|corrupt",
                "a FLAC with 64 zeroed bytes in the middle of its frames")
    nan = speechlike(MODEL_RATE, 0.5)
    nan[1234, 0] = np.nan
    (out / "nan_16000_float32.wav").write_bytes(_wav_bytes(nan, MODEL_RATE, "FLOAT"))
    entries.append(CorpusFile("nan_16000_float32.wav", "error", r"NaN or Inf \(first at "
                              r"sample 1234 ", 0, 0, 0, "a float WAV holding a NaN"))
    inf = speechlike(22050, 0.5, 2)
    inf[777, 1] = np.inf
    (out / "inf_22050_float64.wav").write_bytes(_wav_bytes(inf, 22050, "DOUBLE"))
    entries.append(CorpusFile("inf_22050_float64.wav", "error", r"NaN or Inf \(first at "
                              r"sample 777 ", 0, 0, 0, "a stereo double WAV holding +Inf"))

    (out / CORPUS_INDEX).write_text(json.dumps([asdict(e) for e in entries], indent=1))
    return entries


def read_corpus(out_dir: str | Path) -> list[CorpusFile]:
    """The entries ``write_corpus`` listed in ``out_dir/corpus.json``."""
    return [CorpusFile(**e) for e in json.loads((Path(out_dir) / CORPUS_INDEX).read_text())]


def load_all(out_dir: str | Path) -> None:
    """Load every corpus file with ``load_audio``; JSON lines on stdout (see module doc)."""
    from sdk.audio import AudioError, load_audio

    for entry in read_corpus(out_dir):
        print(json.dumps({"name": entry.name, "status": "start"}), flush=True)
        try:
            audio = load_audio(Path(out_dir) / entry.name)
        except AudioError as exc:
            result: dict[str, object] = {"status": "error", "message": str(exc)}
        else:
            result = {"status": "ok", "samples": int(audio.size), "dtype": str(audio.dtype),
                      "finite": bool(np.isfinite(audio).all())}
        print(json.dumps({"name": entry.name, **result}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="corpus directory")
    parser.add_argument("--load", action="store_true",
                        help="load the corpus in OUT_DIR instead of writing it")
    args = parser.parse_args(argv)
    if args.load:
        load_all(args.out_dir)
    else:
        entries = write_corpus(args.out_dir)
        print(f"wrote {len(entries)} files to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
