"""Robustness to out-of-corpus audio: the measure, the audio augmentation, the soft clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from sdk.features import DEFAULT_FEATURES as CFG
from sdk.normalization import PoseNormalization
from sdk.pose_range import PoseRange
from sdk.skeleton import MODEL_SKELETON
from train.checkpoint import save_checkpoint
from train.data.sdt import compute_normalization, load_speaker
from train.data.synth import synthesize_corpus
from train.data.windows import AudioAugmentation, WindowDataset
from train.models.generator import GeneratorConfig, SalientPostureGenerator
from train.robustness import (
    ARM_JOINTS,
    BODY_HAND_JOINTS,
    main,
    measure,
    pose_robustness,
)

J = MODEL_SKELETON.num_joints
TINY = GeneratorConfig(
    lookahead_frames=2, noise_dim=3, face_hidden=8, face_dilations=(1,), body_hidden=16,
    body_dilations=(1, 2), embedding_dim=8, pose_hidden=16, pose_dilations=(1,),
    decoder_hidden=16, decoder_dilations=(1,), detector_hidden=4, top_k=4, feature_clip=3.0,
)
UNIT = PoseNormalization(anchor_px=(0.0, 0.0), scale_px=100.0, mean=np.zeros((J, 2)),
                         std=np.ones((J, 2)), image_size=(640, 480))


def test_pose_measures_of_known_poses() -> None:
    z = np.zeros((10, J, 2), np.float32)
    still = pose_robustness(z, np.zeros(10), UNIT, CFG.fps)
    assert still["mean_abs_z"] == 0 and still["beyond_4sd"] == 0 and still["motion"] == 0
    z[:, list(ARM_JOINTS)] = 5.0  # arms far out, the rest at the mean
    z[1::2, list(BODY_HAND_JOINTS), 0] += 0.1  # body/hands jitter 0.1 units per frame in x
    saliency = np.r_[np.ones(3), np.zeros(7)]
    out = pose_robustness(z, saliency, UNIT, CFG.fps)
    share = 2 * len(ARM_JOINTS) / (2 * len(BODY_HAND_JOINTS))
    assert out["salient_fraction"] == pytest.approx(0.3)
    assert out["arm_mean_abs_z"] == pytest.approx(5.0 + 0.1 / 4, abs=1e-5)
    assert out["beyond_4sd"] == pytest.approx(share)
    assert out["motion"] == pytest.approx(0.1 * CFG.fps, rel=1e-4)
    with pytest.raises(ValueError, match="z must be"):
        pose_robustness(np.zeros((10, J - 1, 2)), np.zeros(10), UNIT, CFG.fps)


def test_the_measure_adds_the_training_range_measures_when_given_one() -> None:
    rng = np.random.default_rng(0)
    poses = [rng.normal(size=(400, J, 2))]
    training = PoseRange.from_poses(poses, MODEL_SKELETON)
    one_wrist = poses[0].copy()  # one wrist 1 SD past the highest x in training, one frame
    wrist = BODY_HAND_JOINTS.index(ARM_JOINTS[1])
    one_wrist[7, ARM_JOINTS[1], 0] = training.high[wrist, 0] + 1.0
    measures = pose_robustness(one_wrist, np.zeros(400), UNIT, CFG.fps, training)
    assert measures["largest_excursion"] == pytest.approx(1.0)
    values = 400 * 2 * len(BODY_HAND_JOINTS)
    assert measures["outside_training_range"] == pytest.approx(1 / values)
    assert "largest_excursion" not in pose_robustness(one_wrist, np.zeros(400), UNIT, CFG.fps)


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robust")
    synthesize_corpus(root, speakers=1, minutes=0.5, seed=3)
    return root


@pytest.fixture(scope="module")
def clips(corpus_root: Path) -> list:
    return [c for c in load_speaker(corpus_root, "synth_00") if c.split == "train"]


def test_identity_augmentation_reproduces_the_stream_features(clips: list) -> None:
    norm = compute_normalization(clips)
    clean = WindowDataset(clips, norm, 64, 2, 16)
    identity = AudioAugmentation(gain_db=0.0, tilt=(0.0, 0.0), peak_probability=0.0,
                                 noise_probability=0.0)
    same = WindowDataset(clips, norm, 64, 2, 16, augmentation=identity)
    for k in range(len(clean)):  # windows at sequence starts and inside sequences
        np.testing.assert_array_equal(same[k]["features"], clean[k]["features"])


def test_augmentation_changes_features_reproducibly(clips: list) -> None:
    norm = compute_normalization(clips)
    clean = WindowDataset(clips, norm, 64, 2, 16)
    noisy = WindowDataset(clips, norm, 64, 2, 16, augmentation=AudioAugmentation())
    torch.manual_seed(5)
    first = [noisy[k]["features"] for k in range(4)]
    torch.manual_seed(5)
    again = [noisy[k]["features"] for k in range(4)]
    for a, b, k in zip(first, again, range(4), strict=True):
        np.testing.assert_array_equal(a, b)
        assert np.isfinite(a).all() and a.shape == clean[k]["features"].shape
        assert np.abs(a - clean[k]["features"]).mean() > 0.5  # dB-scale cepstra moved
    np.testing.assert_array_equal(noisy[0]["pose"], clean[0]["pose"])  # targets untouched
    _, std = noisy.feature_statistics()  # of augmented windows: wider level spread
    assert std[0] > clean.feature_statistics()[1][0]


def test_gain_shifts_only_the_energy_coefficient(clips: list) -> None:
    audio = clips[0].audio
    gain = AudioAugmentation(gain_db=12.0, tilt=(0.0, 0.0), peak_probability=0.0,
                             noise_probability=0.0)
    louder = gain.apply(audio, 1.0, CFG.sample_rate, np.random.default_rng(0))
    db = 20 * np.log10(np.sqrt(np.mean(louder.astype(np.float64) ** 2)
                               / np.mean(audio.astype(np.float64) ** 2)))
    assert -12.0 <= db <= 12.0 and abs(db) > 1e-3
    np.testing.assert_allclose(louder, audio * 10 ** (db / 20), rtol=1e-5, atol=1e-7)
    skipped = AudioAugmentation(probability=0.0).apply(audio, 1.0, CFG.sample_rate,
                                                       np.random.default_rng(0))
    np.testing.assert_array_equal(skipped, audio)  # windows not drawn stay clean


def test_soft_clip_bounds_the_encoder_input_and_keeps_streaming_exact() -> None:
    torch.manual_seed(0)
    model = SalientPostureGenerator(TINY).eval()
    g = torch.Generator().manual_seed(1)
    features = torch.randn(1, 20, TINY.feature_dim, generator=g).sign()
    noise = torch.randn(1, 20, TINY.noise_dim, generator=g)
    with torch.no_grad():
        far = model(features * 1e4, noise).poses
        farther = model(features * 1e6, noise).poses  # both saturate at +-c
        torch.testing.assert_close(far, farther)
        state, chunks = model.init_state(1), []
        for a, b in ((0, 7), (7, 8), (8, 20)):
            poses, _, state = model.step(features[:, a:b] * 1e4, noise[:, a:b], state)
            chunks.append(poses)
        torch.testing.assert_close(torch.cat(chunks, 1), far, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="feature_clip"):
        GeneratorConfig(feature_clip=-1.0)


def test_measure_command_on_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    torch.manual_seed(0)
    model = SalientPostureGenerator(TINY).eval()
    from train.config import config_to_dict
    from train.generator_training import GeneratorTrainingConfig

    config = config_to_dict(GeneratorTrainingConfig(model=TINY))
    ckpt = save_checkpoint(tmp_path / "generator.pt", kind="generator", config=config,
                           model=model, features=CFG, normalization=UNIT)
    t = np.arange(int(1.5 * 22050)) / 22050
    wav = tmp_path / "tone.wav"
    soundfile.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 22050)
    result = measure(ckpt, wav)
    assert result["frames"] == CFG.num_pose_frames(int(1.5 * CFG.sample_rate))
    assert all(np.isfinite(v) for v in result.values())
    assert 0 <= result["salient_fraction"] <= 1 and result["feature_mean_abs_z"] > 0
    out = tmp_path / "r.json"
    assert main([str(ckpt), str(wav), "--json", str(out)]) == 0
    assert "tone.wav" in capsys.readouterr().out and out.is_file()
    assert main([str(tmp_path / "missing.pt"), str(wav)]) == 2


def test_measure_against_the_training_corpus(tmp_path: Path, corpus_root: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--corpus adds the measures outside the training range, in the model's own units."""
    from train.posesync_data import load_corpus_sequences
    from train.robustness import corpus_training_range

    sequences = load_corpus_sequences(corpus_root)
    model = SalientPostureGenerator(TINY).eval()
    from train.config import config_to_dict
    from train.generator_training import GeneratorTrainingConfig

    ckpt = save_checkpoint(tmp_path / "generator.pt", kind="generator",
                           config=config_to_dict(GeneratorTrainingConfig(model=TINY)),
                           model=model, features=CFG, normalization=UNIT)
    wav = tmp_path / "tone.wav"
    soundfile.write(wav, (0.3 * np.sin(np.arange(24000) / 10)).astype(np.float32), 16000)
    result = measure(ckpt, wav, training_sequences=sequences)
    expected = corpus_training_range(sequences, UNIT)
    assert result["largest_excursion"] >= 0 and 0 <= result["outside_training_range"] <= 1
    assert "largest_excursion" not in measure(ckpt, wav)
    assert main([str(ckpt), str(wav), "--corpus", str(corpus_root)]) == 0
    assert "largest_excursion" in capsys.readouterr().out
    assert expected.frames == sum(q.num_frames for q in sequences if not q.held_out)
    with pytest.raises(ValueError, match="no training clips"):
        corpus_training_range([q for q in sequences if q.held_out], UNIT)
    assert main([str(ckpt), str(wav), "--corpus", str(tmp_path / "no-corpus")]) == 2
    assert "no-corpus" in capsys.readouterr().err


def test_detector_loss_can_skip_augmented_windows() -> None:
    from train.losses import detector_loss

    scores, labels = torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1.0, 0.0, 0.0])
    plain = detector_loss(scores, labels)
    torch.testing.assert_close(detector_loss(scores, labels, torch.ones(3)), plain)
    clean_only = detector_loss(scores, labels, torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(clean_only, detector_loss(scores[:2], labels[:2]))


def test_windows_say_whether_their_features_were_augmented(clips: list) -> None:
    norm = compute_normalization(clips)
    never = WindowDataset(clips, norm, 64, 2, 16, augmentation=AudioAugmentation(
        probability=0.0))
    always = WindowDataset(clips, norm, 64, 2, 16, augmentation=AudioAugmentation())
    assert never[0]["augmented"] == 0.0 and always[0]["augmented"] == 1.0
    np.testing.assert_array_equal(never[0]["features"], WindowDataset(
        clips, norm, 64, 2, 16)[0]["features"])


def test_warped_windows_get_other_features_and_unwarped_ones_the_same(clips: list) -> None:
    norm = compute_normalization(clips)

    def features(warp: tuple[float, float]) -> np.ndarray:
        torch.manual_seed(0)  # the window's augmentation draws come from torch's generator
        data = WindowDataset(clips, norm, 64, 2, 16, augmentation=AudioAugmentation(warp=warp))
        return np.asarray(data[0]["features"])

    off = features((1.0, 1.0))
    np.testing.assert_array_equal(off, features((1.0, 1.0)))
    assert np.abs(features((1.2, 1.2)) - off).max() > 0.1
