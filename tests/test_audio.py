"""Audio input: file reading and its errors, array conversion, (streaming) resampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from sdk.audio import AudioError, StreamingResampler, load_audio, resample, to_float_mono

RATE = 16000


def tone(n: int, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(n) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---- load_audio: good files ----
def test_load_wav_int16_mono_at_model_rate(tmp_path: Path) -> None:
    pcm = (np.arange(-8000, 8000, dtype=np.int32) * 2).astype(np.int16)
    path = tmp_path / "a.wav"
    sf.write(path, pcm, RATE, subtype="PCM_16")
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.shape == (len(pcm),)
    np.testing.assert_array_equal(audio, pcm.astype(np.float32) / 32768)


def test_load_stereo_flac_at_44k1_mixes_and_resamples(tmp_path: Path) -> None:
    left, right = tone(44100, 44100, 300.0), tone(44100, 44100, 500.0)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_24")
    audio = load_audio(path, target_rate=RATE)
    stored, _ = sf.read(path, dtype="float32")
    expected = soxr.resample(stored.mean(axis=1), 44100, RATE, quality="HQ")
    assert audio.shape == (RATE,)
    np.testing.assert_allclose(audio, expected, atol=1e-6)


def test_load_ogg_vorbis(tmp_path: Path) -> None:
    path = tmp_path / "a.ogg"
    sf.write(path, tone(RATE, RATE), RATE)
    audio = load_audio(path)
    assert audio.shape == (RATE,)
    assert np.corrcoef(audio, tone(RATE, RATE))[0, 1] > 0.99  # lossy codec


def test_load_shipped_speech_sample(speech_16k: np.ndarray) -> None:
    sample = Path(__file__).resolve().parents[1] / "sdk" / "data" / "samples" / "speech_en.flac"
    np.testing.assert_array_equal(load_audio(sample), speech_16k)


# ---- load_audio: bad files ----
def _wav_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "good.wav"
    sf.write(path, tone(4000, RATE), RATE, subtype="PCM_16")
    return path.read_bytes()


def _bad_file(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.wav"
    if kind == "zero_length":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    elif kind == "truncated_header":
        path.write_bytes(_wav_bytes(tmp_path)[:20])
    elif kind == "truncated_data":
        path.write_bytes(_wav_bytes(tmp_path)[:1000])
    elif kind == "truncated_flac":
        path = tmp_path / "truncated.flac"
        sf.write(path, tone(8000, RATE), RATE)
        path.write_bytes(path.read_bytes()[:3000])
    elif kind == "text":
        path.write_text("this is a note, not a recording\n" * 5)
    elif kind == "nan":
        samples = tone(1000, RATE)
        samples[123] = np.nan
        sf.write(path, samples, RATE, subtype="FLOAT")
    elif kind == "no_samples":
        sf.write(path, np.zeros(0, np.float32), RATE)
    elif kind == "directory":
        path.mkdir()
    return path


@pytest.mark.parametrize(("kind", "problem"), [
    ("zero_length", "is empty"),
    ("garbage", "not a readable audio file"),
    ("truncated_header", "broken or truncated WAV header"),
    ("truncated_data", "is truncated"),
    ("truncated_flac", "could not be decoded, it is probably truncated"),
    ("text", "is a text file"),
    ("nan", "NaN or Inf.*sample 123"),
    ("no_samples", "contains no audio samples"),
    ("directory", "is a directory"),
    ("missing", "does not exist"),
])
def test_bad_audio_file_raises_naming_file_and_problem(kind: str, problem: str,
                                                       tmp_path: Path) -> None:
    path = _bad_file(kind, tmp_path)
    with pytest.raises(AudioError, match=problem) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_audio_error_is_a_value_error() -> None:
    assert issubclass(AudioError, ValueError)


# ---- to_float_mono ----
def test_int16_and_int32_are_scaled_to_unit_range() -> None:
    np.testing.assert_array_equal(
        to_float_mono(np.array([-32768, 0, 16384], np.int16)), [-1.0, 0.0, 0.5])
    np.testing.assert_array_equal(
        to_float_mono(np.array([-(2**31), 2**30], np.int32)), [-1.0, 0.5])


def test_float64_becomes_float32_and_stereo_is_averaged() -> None:
    mono = to_float_mono(np.array([0.25, -0.5], np.float64))
    assert mono.dtype == np.float32
    np.testing.assert_array_equal(mono, [0.25, -0.5])
    stereo = np.array([[0.5, 0.0], [1.0, -1.0], [0.2, 0.4]], np.float32)  # (N, C)
    np.testing.assert_allclose(to_float_mono(stereo), [0.25, 0.0, 0.3], atol=1e-7)
    pcm = np.array([[32767, -32768], [100, 300]], np.int16)
    np.testing.assert_allclose(to_float_mono(pcm), [-0.5 / 32768, 200 / 32768], atol=1e-9)


@pytest.mark.parametrize(("samples", "problem"), [
    (np.zeros((4, 2, 1), np.float32), r"shape \(N,\) or \(N, channels\)"),
    (np.zeros((2, 48000), np.float32), "channels last.*samples.T"),
    (np.zeros(8, np.uint8), "int16, int32, float32 or float64"),
    (np.array(["a", "b"]), "int16, int32, float32 or float64"),
    (np.array([0.0, np.inf], np.float32), "NaN or Inf"),
    (np.array([[0.0, 0.1], [np.nan, 0.0]]), "NaN or Inf .first at sample 1"),
])
def test_to_float_mono_rejects_bad_arrays(samples: np.ndarray, problem: str) -> None:
    with pytest.raises(AudioError, match=problem):
        to_float_mono(samples)


# ---- resampling ----
@pytest.mark.parametrize("rate", [0, -16000, 44100.0, True, "16000"])
def test_rates_must_be_positive_ints(rate: object) -> None:
    with pytest.raises(AudioError, match="positive integer"):
        StreamingResampler(rate, RATE)  # type: ignore[arg-type]
    with pytest.raises(AudioError, match="positive integer"):
        resample(np.zeros(4, np.float32), RATE, rate)  # type: ignore[arg-type]


def _chunked(resampler: StreamingResampler, x: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    resampler.reset()
    parts = [resampler.process(chunk) for chunk in np.split(x, cuts)]
    return np.concatenate([*parts, resampler.flush()])


@pytest.mark.parametrize("in_rate", [8000, 22050, 44100])
def test_soxr_resampling_does_not_depend_on_chunking(
        in_rate: int, rng: np.random.Generator) -> None:
    """Rates that are no integer multiple of 16 kHz go through soxr HQ. Measured tolerance:
    0 (bit-identical) for every chunking tried, 1-sample included."""
    x = (0.3 * rng.standard_normal(in_rate // 2)).astype(np.float32)
    offline = resample(x, in_rate, RATE)
    np.testing.assert_array_equal(offline, soxr.resample(x, in_rate, RATE, quality="HQ"))
    resampler = StreamingResampler(in_rate, RATE)
    for n_cuts in (1, 37, 500):
        cuts = np.sort(rng.integers(0, len(x) + 1, n_cuts))
        np.testing.assert_array_equal(_chunked(resampler, x, cuts), offline)
    head = x[:3000]
    np.testing.assert_array_equal(_chunked(resampler, head, np.arange(1, len(head))),
                                  resample(head, in_rate, RATE))


@pytest.mark.parametrize("in_rate", [32000, 48000, 96000])
def test_decimated_resampling_does_not_depend_on_chunking(
        in_rate: int, rng: np.random.Generator) -> None:
    """Integer multiples of 16 kHz go through sdk.decimator: any chunking, 1-sample chunks
    included, gives the one-call output bit for bit, and that is the decimator's."""
    from sdk.decimator import Decimator

    x = (0.3 * rng.standard_normal(in_rate // 2)).astype(np.float32)
    offline = resample(x, in_rate, RATE)
    decimator = Decimator(in_rate // RATE, 1)
    direct = np.concatenate([decimator.process(x[None]), decimator.flush()], axis=1)[0]
    np.testing.assert_array_equal(offline, direct)
    resampler = StreamingResampler(in_rate, RATE)
    assert not resampler.is_identity
    for n_cuts in (1, 37, 500):
        cuts = np.sort(rng.integers(0, len(x) + 1, n_cuts))
        np.testing.assert_array_equal(_chunked(resampler, x, cuts), offline)
    head = x[:3000]
    np.testing.assert_array_equal(_chunked(resampler, head, np.arange(1, len(head))),
                                  resample(head, in_rate, RATE))


@pytest.mark.parametrize(("in_rate", "n"), [(44100, 1), (44100, 4410), (48000, 12345),
                                            (48000, 1), (48000, 2), (32000, 3), (96000, 9),
                                            (11025, 999), (8000, 7)])
def test_resampled_length_is_rounded_half_up(in_rate: int, n: int) -> None:
    out = resample(np.ones(n, np.float32), in_rate, RATE)
    assert len(out) == (2 * n * RATE + in_rate) // (2 * in_rate)


def test_equal_rates_pass_samples_through() -> None:
    x = np.array([0.1, -0.2, 0.3], np.float32)
    resampler = StreamingResampler(RATE, RATE)
    assert resampler.is_identity
    np.testing.assert_array_equal(resampler.process(x), x)
    assert resampler.flush().size == 0
    np.testing.assert_array_equal(resample(np.array([1, 2], np.int16), RATE, RATE),
                                  [1 / 32768, 2 / 32768])


def test_resampler_refuses_input_after_flush_until_reset() -> None:
    resampler = StreamingResampler(48000, RATE)
    resampler.process(np.zeros(480, np.float32))
    resampler.flush()
    with pytest.raises(RuntimeError, match="reset"):
        resampler.process(np.zeros(480, np.float32))
    resampler.reset()
    assert resampler.process(np.zeros(4800, np.float32)).dtype == np.float32
