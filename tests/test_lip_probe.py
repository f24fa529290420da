"""benchmarks.lip_probe: what the audio features alone tell about the lips."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.fft
from helpers_training import TinyRun, make_tiny_run

from benchmarks import lip_probe
from benchmarks.lip_sync_ceiling import min_frames
from sdk.features import DEFAULT_FEATURES as C
from train.evaluation import load_held_out

STEPS = 400  # enough for the tiny corpus's lips (driven by its voice's envelope)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"), generator=False)


def test_logmel_features_are_librosas_log_mel_bands_stacked_as_the_generators(
        speech_16k: np.ndarray) -> None:
    audio = speech_16k[: 3 * C.sample_rate]
    frames = C.num_pose_frames(len(audio))
    ours = lip_probe.feature_extractor("logmel")(audio, frames)
    mel = librosa.feature.melspectrogram(
        y=audio, sr=C.sample_rate, n_fft=C.n_fft, hop_length=C.hop_length,
        win_length=C.win_length, window="hann", center=True, pad_mode="constant", power=2.0,
        n_mels=C.n_mels, fmin=C.fmin, fmax=C.fmax, htk=False, norm="slaney")
    db = librosa.power_to_db(mel, ref=1.0, amin=C.amin, top_db=None).T  # (M, 40)
    k = frames // 2  # a frame in the middle: its 7 hops from floor(k * 100 / 15)
    start = int(C.mfcc_start(np.array([k]))[0])
    expected = db[start:start + C.mfcc_context].reshape(-1)
    assert ours.shape == (frames, C.mfcc_context * C.n_mels)
    np.testing.assert_allclose(ours[k], expected, atol=1e-3 * np.abs(expected).max())
    # the mfcc kind is the bundle's own features (13 coefficients per hop)
    assert lip_probe.feature_extractor("mfcc")(audio, frames).shape == (frames, C.feature_dim)
    # mfcc40: the full orthonormal DCT of each hop's bands; its first 13 are the mfcc kind's
    cepstra = lip_probe.feature_extractor("mfcc40")(audio, frames)[k].reshape(C.mfcc_context, -1)
    bands = ours[k].reshape(C.mfcc_context, C.n_mels)
    dct = scipy.fft.dct(np.eye(C.n_mels), type=2, norm="ortho", axis=0)
    np.testing.assert_allclose(cepstra, bands @ dct.T, atol=1e-3 * np.abs(cepstra).max())
    first = lip_probe.feature_extractor("mfcc")(audio, frames)[k].reshape(C.mfcc_context, -1)
    np.testing.assert_allclose(cepstra[:, :C.n_mfcc], first, atol=1e-3 * np.abs(first).max())
    with pytest.raises(ValueError, match="unknown feature kind 'mel'"):
        lip_probe.feature_extractor("mel")


def test_context_rows_hold_the_face_branchs_window_with_zeros_outside() -> None:
    first, last = lip_probe.face_window()
    assert (first, last) == (-2, 2)  # lookahead 2, receptive field 5 (generator.yaml)
    x = np.arange(1, 7, dtype=np.float32)[:, None]  # (6, 1): frame k holds k + 1
    z = lip_probe.context(x, first, last)
    assert z.shape == (6, 5)
    np.testing.assert_array_equal(z[0], [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(z[3], [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(z[5], [4, 5, 6, 0, 0])
    # a window wholly in the future (a longer lookahead than the receptive field)
    np.testing.assert_array_equal(lip_probe.context(x, 1, 2)[:, 1], [3, 4, 5, 6, 0, 0])


def test_pearson_skips_unobserved_frames_and_is_zero_for_a_constant() -> None:
    truth = np.array([1.0, np.nan, 2.0, 3.0])
    assert lip_probe.pearson(np.array([2.0, -50.0, 4.0, 6.0]), truth) == pytest.approx(1.0)
    assert lip_probe.pearson(np.array([3.0, 1.0, 2.0, 1.0]), truth) == pytest.approx(-1.0)
    assert lip_probe.pearson(np.ones(4), truth) == 0.0


def test_the_probe_finds_the_lips_in_the_audio_and_the_shuffled_control_does_not(
        tiny: TinyRun, tmp_path: Path) -> None:
    assert lip_probe.main([str(tiny.corpus), "--out", str(tmp_path), "--features", "mfcc",
                           "--steps", str(STEPS), "--shuffle-audio"]) == 0
    result = json.loads((tmp_path / "lip_probe.json").read_text())
    real, shuffled = result["rows"]
    assert (real["shuffle_audio"], shuffled["shuffle_audio"]) == (False, True)
    held = real["groups"]["held-out sentences"]
    assert held["sequences"] == len(load_held_out(tiny.corpus, min_frames()))
    assert "held-out voices" not in real["groups"]  # the synthetic corpus holds none out
    # measured: 0.96 with the audio, 0.06 with audio-shuffled pairs (2 sequences)
    assert held["lip_sync"] > 0.6
    assert abs(shuffled["groups"]["held-out sentences"]["lip_sync"]) < 0.3
    assert "| mfcc | audio shuffled |" in (tmp_path / "lip_probe.md").read_text()


def test_a_corpus_without_training_sequences_is_refused(tmp_path: Path, capsys:
                                                        pytest.CaptureFixture[str]) -> None:
    assert lip_probe.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no <speaker>/processed_137.csv" in capsys.readouterr().err


def test_mean_normalisation_removes_each_streams_own_mean_of_every_coefficient() -> None:
    rng = np.random.default_rng(0)
    hops = C.mfcc_context

    def sequence(group: str, offset: float, frames: int = 300) -> lip_probe.ProbeSequence:
        features = rng.standard_normal((frames, hops, 3)) + offset  # 3 coefficients
        return lip_probe.ProbeSequence("v", group, features.reshape(frames, -1).astype(
            np.float32), np.zeros(frames))

    sequences = [sequence("train", 0.0), sequence("held-out voices", 5.0)]
    assert lip_probe.mean_normalise(sequences, "none") is sequences
    whole = lip_probe.mean_normalise(sequences, "sequence")
    for s in whole:  # every coefficient's mean over frames and hops is 0
        np.testing.assert_allclose(s.features.reshape(-1, hops, 3).mean((0, 1)), 0, atol=1e-5)
    # the original offset of the held-out stream is gone; its within-stream variation is not
    assert abs(sequences[1].features.mean() - 5.0) < 0.1
    np.testing.assert_allclose(whole[1].features.std(0), sequences[1].features.std(0), rtol=1e-4)
    # running: a causal mean, started at the training mean, converging to the stream's own
    running = lip_probe.mean_normalise(sequences, "running", seconds=1.0)
    values = sequences[1].features.reshape(-1, hops, 3).mean(1)
    start = sequences[0].features.reshape(-1, hops, 3).mean((0, 1))
    a = 1.0 / C.fps
    first_mean = (1 - a) * start + a * values[0]
    np.testing.assert_allclose(running[1].features.reshape(-1, hops, 3)[0],
                               sequences[1].features.reshape(-1, hops, 3)[0] - first_mean,
                               rtol=1e-5, atol=1e-5)
    late = running[1].features.reshape(-1, hops, 3)[150:]  # 10 time constants in
    assert abs(late.mean()) < 0.2 and abs(running[1].features[:5].mean()) > 3.0
    with pytest.raises(ValueError, match="unknown mean normalisation 'cmn'"):
        lip_probe.mean_normalise(sequences, "cmn")
    with pytest.raises(ValueError, match="time constant must be > 0 s"):
        lip_probe.mean_normalise(sequences, "running", seconds=0.0)
