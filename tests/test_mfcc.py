"""The numpy MFCC reference: librosa parity, streaming == offline, feature stacking."""

from __future__ import annotations

from importlib.metadata import version

import librosa
import numpy as np
import pytest

from export.feature_matrices import compute_mfcc_matrices
from sdk.feature_frames import StreamingFeatureExtractor
from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.mfcc import (
    MfccMatrices,
    StreamingMfcc,
    extract_features,
    feature_frames,
    mfcc_offline,
)

C = DEFAULT_FEATURES
# max |ours - librosa| / max |librosa| over all coefficients and frames. Measured on
# this machine: 4.1e-7 on the shipped speech, 3.3e-7 on white noise (both pipelines are
# float32; librosa float32 vs librosa float64 differ by 1.6e-7 themselves).
LIBROSA_REL_TOL = 1e-5


@pytest.fixture(scope="module")
def matrices() -> MfccMatrices:
    return MfccMatrices.default()


def librosa_mfcc(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The reference call written in sdk/features.py; returns time-major (M, n_mfcc)."""
    mel_power = librosa.feature.melspectrogram(
        y=audio, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window="hann", center=True, pad_mode="constant",
        power=2.0, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax, htk=False,
        norm="slaney",
    )
    db = librosa.power_to_db(mel_power, ref=1.0, amin=config.amin, top_db=None)
    return librosa.feature.mfcc(S=db, n_mfcc=config.n_mfcc, dct_type=2, norm="ortho").T


def random_chunks(audio: np.ndarray, rng: np.random.Generator, n_cuts: int) -> list[np.ndarray]:
    """Split at random points, including empty and 1-sample chunks."""
    cuts = np.sort(rng.integers(0, len(audio) + 1, size=n_cuts))
    cuts[: n_cuts // 10] = cuts[n_cuts // 10]  # some repeated cuts -> empty chunks
    return np.split(audio, np.sort(cuts))


# ---- matrices ----
def test_shipped_matrices_equal_a_fresh_librosa_computation(matrices: MfccMatrices) -> None:
    fresh = compute_mfcc_matrices(C)
    np.testing.assert_array_equal(matrices.window, fresh.window)
    np.testing.assert_array_equal(matrices.mel, fresh.mel)
    np.testing.assert_array_equal(matrices.dct, fresh.dct)
    assert "librosa.filters.mel(" in matrices.provenance
    assert f"librosa {version('librosa')}" in fresh.provenance


def test_matrices_have_documented_shapes_and_properties(matrices: MfccMatrices) -> None:
    assert matrices.window.shape == (C.n_fft,) and matrices.window.dtype == np.float32
    assert matrices.mel.shape == (C.n_mels, C.n_freqs) and matrices.mel.dtype == np.float32
    assert matrices.dct.shape == (C.n_mfcc, C.n_mels) and matrices.dct.dtype == np.float32
    pad = (C.n_fft - C.win_length) // 2
    assert not matrices.window[:pad].any() and not matrices.window[pad + C.win_length:].any()
    np.testing.assert_allclose(matrices.dct @ matrices.dct.T, np.eye(C.n_mfcc), atol=1e-6)


def test_matrices_save_load_round_trip(matrices: MfccMatrices, tmp_path) -> None:
    path = tmp_path / "m.npz"
    matrices.save(path)
    loaded = MfccMatrices.load(path, C)
    np.testing.assert_array_equal(loaded.mel, matrices.mel)
    assert loaded.provenance == matrices.provenance


def test_matrices_load_rejects_another_feature_config(matrices: MfccMatrices, tmp_path) -> None:
    path = tmp_path / "m.npz"
    matrices.save(path)
    with pytest.raises(ValueError, match="FeatureConfig hash"):
        MfccMatrices.load(path, FeatureConfig(n_mels=64))


def test_mfcc_refuses_matrices_of_another_config(matrices: MfccMatrices) -> None:
    with pytest.raises(ValueError, match="not for the config given"):
        mfcc_offline(np.zeros(1600, np.float32), FeatureConfig(hop_length=200), matrices)


# ---- librosa parity ----
@pytest.mark.parametrize("signal", ["speech", "noise"])
def test_mfcc_matches_librosa(signal: str, speech_16k: np.ndarray, matrices: MfccMatrices,
                              rng: np.random.Generator) -> None:
    audio = speech_16k if signal == "speech" else (
        0.1 * rng.standard_normal(5 * C.sample_rate)).astype(np.float32)
    ours = mfcc_offline(audio, C, matrices)
    ref = librosa_mfcc(audio, C)
    assert ours.shape == ref.shape == (C.num_mfcc_frames(len(audio)), C.n_mfcc)
    assert ours.dtype == np.float32
    relative = np.abs(ours - ref).max() / np.abs(ref).max()
    assert relative <= LIBROSA_REL_TOL, f"{signal}: max|d|/max|ref| = {relative:.2e}"


def test_silence_gives_the_amin_floor(matrices: MfccMatrices) -> None:
    mfcc = mfcc_offline(np.zeros(800, np.float32), C, matrices)
    floor_db = 10 * np.log10(C.amin)  # every mel band sits at the floor
    np.testing.assert_allclose(mfcc[:, 0], floor_db * np.sqrt(C.n_mels), rtol=1e-6)
    np.testing.assert_allclose(mfcc[:, 1:], 0.0, atol=1e-3)


def test_more_frames_extend_the_audio_with_silence(speech_16k: np.ndarray,
                                                   matrices: MfccMatrices) -> None:
    audio = speech_16k[:5000]
    default = C.num_mfcc_frames(len(audio))
    longer = mfcc_offline(audio, C, matrices, num_frames=default + 9)
    padded = np.concatenate([audio, np.zeros(20 * C.hop_length, np.float32)])
    np.testing.assert_array_equal(longer[:default], mfcc_offline(audio, C, matrices))
    np.testing.assert_array_equal(longer, mfcc_offline(padded, C, matrices)[: default + 9])


# ---- streaming ----
def test_streaming_mfcc_equals_offline_for_random_chunkings(
        speech_16k: np.ndarray, matrices: MfccMatrices, rng: np.random.Generator) -> None:
    offline = mfcc_offline(speech_16k, C, matrices)
    stream = StreamingMfcc(C, matrices)
    for n_cuts in (3, 40, 700):
        stream.reset()
        parts = [stream.accept(chunk) for chunk in random_chunks(speech_16k, rng, n_cuts)]
        streamed = np.concatenate([*parts, stream.finish()])
        np.testing.assert_array_equal(streamed, offline)  # bit-exact by construction


def test_streaming_mfcc_one_sample_chunks_and_min_frames(
        speech_16k: np.ndarray, matrices: MfccMatrices) -> None:
    audio = speech_16k[21000:23500]  # 2500 samples of speech
    stream = StreamingMfcc(C, matrices)
    parts = [stream.accept(audio[i:i + 1]) for i in range(len(audio))]
    total = C.num_mfcc_frames(len(audio)) + 12
    streamed = np.concatenate([*parts, stream.finish(min_frames=total)])
    np.testing.assert_array_equal(streamed, mfcc_offline(audio, C, matrices, total))


def test_streaming_mfcc_emits_each_frame_as_soon_as_it_is_final(matrices: MfccMatrices) -> None:
    stream = StreamingMfcc(C, matrices)
    for frames in (1, 2, 5):
        stream.reset()
        needed = C.samples_needed_for_mfcc(frames)
        assert len(stream.accept(np.zeros(needed - 1, np.float32))) == frames - 1
        assert len(stream.accept(np.zeros(1, np.float32))) == 1


def test_streaming_mfcc_memory_does_not_grow_with_chunks_or_stream_length(
        matrices: MfccMatrices, rng: np.random.Generator) -> None:
    chunk = (0.1 * rng.standard_normal(3200)).astype(np.float32)
    long_chunk = (0.1 * rng.standard_normal(60 * C.sample_rate)).astype(np.float32)
    audio = np.concatenate([np.tile(chunk, 50), long_chunk])
    total = C.num_mfcc_frames(len(audio)) + 20000  # plus 200 s of trailing silence
    stream = StreamingMfcc(C, matrices)
    size = stream._buffer.size
    parts = [stream.accept(chunk) for _ in range(50)]  # 10 s in 200 ms chunks
    parts.append(stream.accept(long_chunk))  # one minute at once
    parts.append(stream.finish(min_frames=total))
    assert stream._buffer.size == size
    np.testing.assert_array_equal(np.concatenate(parts), mfcc_offline(audio, C, matrices, total))


def test_streaming_mfcc_rejects_bad_samples_and_use_after_finish(
        matrices: MfccMatrices) -> None:
    stream = StreamingMfcc(C, matrices)
    with pytest.raises(ValueError, match="NaN or Inf"):
        stream.accept(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        stream.accept(np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="float mono"):
        stream.accept(np.zeros(10, np.int16))
    stream.finish()
    with pytest.raises(RuntimeError, match="reset"):
        stream.accept(np.zeros(10, np.float32))


# ---- feature frames ----
def test_feature_frames_stack_seven_mfcc_frames_per_pose_frame() -> None:
    mfcc = np.arange(120 * C.n_mfcc, dtype=np.float32).reshape(120, C.n_mfcc)
    stacked = feature_frames(mfcc, C, 3, 10)
    assert stacked.shape == (10, C.feature_dim) == (10, 91)
    for row, k in enumerate(range(3, 13)):
        start = k * 16000 // (15 * 160)  # the rule in docs/architecture.md
        np.testing.assert_array_equal(stacked[row], mfcc[start:start + 7].reshape(-1))
    with pytest.raises(ValueError, match="need"):
        feature_frames(mfcc[:50], C, 3, 10)


def test_extract_features_default_length_and_trailing_silence(
        speech_16k: np.ndarray, matrices: MfccMatrices) -> None:
    audio = speech_16k[:10000]
    features = extract_features(audio, C, matrices)
    assert features.shape == (C.num_pose_frames(len(audio)), 91)
    longer = extract_features(audio, C, matrices, num_frames=len(features) + 4)
    np.testing.assert_array_equal(longer[: len(features)], features)
    # the last feature frame lies wholly past the audio: its MFCC frames are those of a
    # silent clip at the same frame indices
    m = C.mfcc_frames_needed(len(longer))
    silence = mfcc_offline(np.zeros(0, np.float32), C, matrices, num_frames=m)
    np.testing.assert_array_equal(longer[-1].reshape(7, C.n_mfcc),
                                  silence[m - 7:m])


def test_streaming_features_equal_offline_for_random_chunkings(
        speech_16k: np.ndarray, matrices: MfccMatrices, rng: np.random.Generator) -> None:
    audio = speech_16k[:40000]
    total = C.num_pose_frames(len(audio)) + 3  # e.g. a lookahead of 3 frames
    offline = extract_features(audio, C, matrices, num_frames=total)
    extractor = StreamingFeatureExtractor(C, matrices)
    for n_cuts in (1, 25, 400):
        extractor.reset()
        parts = [extractor.accept(chunk) for chunk in random_chunks(audio, rng, n_cuts)]
        streamed = np.concatenate([*parts, extractor.finish(total)])
        np.testing.assert_array_equal(streamed, offline)
        assert extractor.frames_emitted == total


def test_streaming_features_one_sample_chunks(speech_16k: np.ndarray,
                                              matrices: MfccMatrices) -> None:
    audio = speech_16k[30000:32500]
    extractor = StreamingFeatureExtractor(C, matrices)
    parts = [extractor.accept(audio[i:i + 1]) for i in range(len(audio))]
    streamed = np.concatenate([*parts, extractor.finish()])
    np.testing.assert_array_equal(streamed, extract_features(audio, C, matrices))


def test_feature_frame_is_emitted_once_its_mfcc_frames_are_final(
        matrices: MfccMatrices) -> None:
    extractor = StreamingFeatureExtractor(C, matrices)
    for k in (1, 2, 3, 8):
        extractor.reset()
        needed = C.samples_needed_for_mfcc(C.mfcc_frames_needed(k))
        assert len(extractor.accept(np.zeros(needed - 1, np.float32))) == k - 1
        assert len(extractor.accept(np.zeros(1, np.float32))) == 1


def test_finish_rejects_fewer_frames_than_already_emitted(matrices: MfccMatrices) -> None:
    extractor = StreamingFeatureExtractor(C, matrices)
    emitted = len(extractor.accept(np.zeros(16000, np.float32)))
    with pytest.raises(ValueError, match="already emitted"):
        extractor.finish(emitted - 1)
