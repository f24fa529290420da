"""The SDT layout loader: round trip with the writer, clear errors, normalisation stats."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from train.data.sdt import (
    INDEX_NAME,
    STD_FLOOR,
    compute_normalization,
    list_speakers,
    load_speaker,
    read_index,
    write_clip,
)
from train.data.synth import synthesize_corpus, synthesize_interval
from train.data.synth_script import make_speaker_profile

SEED = 11


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sdt")
    synthesize_corpus(root, speakers=1, minutes=0.75, seed=SEED)  # 10 clips
    return root


@pytest.fixture()
def speaker_copy(corpus: Path, tmp_path: Path) -> Path:
    """A private copy of the corpus's speaker directory to break."""
    return Path(shutil.copytree(corpus / "synth_00", tmp_path / "synth_00"))


def _rewrite_index(speaker_dir: Path, edit) -> None:
    path = speaker_dir / INDEX_NAME
    path.write_text(edit(path.read_text()))


def test_loader_round_trips_what_the_writer_wrote(corpus: Path) -> None:
    assert list_speakers(corpus) == ["synth_00"]
    clips = load_speaker(corpus, "synth_00")
    assert [c.split for c in clips] == ["train"] * 8 + ["dev", "val"]
    rendered = synthesize_interval(make_speaker_profile(SEED, 0), 10 * 64, SEED, 0, 0)
    pose = rendered.motion.pose  # (F, 3, 137)
    for i, clip in enumerate(clips):
        frames = slice(64 * i, 64 * (i + 1))
        assert (clip.start, clip.end, clip.num_frames) == (64 * i, 64 * (i + 1), 64)
        np.testing.assert_array_equal(clip.pose_px, pose[frames, :2].transpose(0, 2, 1))
        np.testing.assert_array_equal(clip.confidence, pose[frames, 2])
        np.testing.assert_array_equal(clip.saliency, rendered.motion.saliency[frames])
        np.testing.assert_array_equal(clip.posture, rendered.motion.posture[frames])
        assert clip.audio.dtype == np.float32 and clip.pose_px.shape == (64, 137, 2)
    np.testing.assert_array_equal(np.concatenate([c.audio for c in clips]), rendered.audio)
    assert len(load_speaker(corpus, "synth_00", splits=["dev"])) == 1


def test_absolute_pose_paths_are_used_as_is(speaker_copy: Path) -> None:
    _rewrite_index(speaker_copy, lambda t: t.replace(",clips/", f",{speaker_copy}/clips/", 1))
    assert read_index(speaker_copy)[0].pose_fn.startswith(str(speaker_copy))
    assert len(load_speaker(speaker_copy.parent, "synth_00")) == 10


def test_missing_index_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "nobody").mkdir()
    with pytest.raises(FileNotFoundError, match=r"nobody/processed_137\.csv"):
        load_speaker(tmp_path, "nobody")


def test_index_without_a_column_names_file_and_column(speaker_copy: Path) -> None:
    _rewrite_index(speaker_copy, lambda t: t.replace("dataset,", "split,", 1))
    with pytest.raises(ValueError, match=r"processed_137\.csv: missing columns \['dataset'\]"):
        read_index(speaker_copy)


def test_index_with_a_non_integer_frame_names_the_line(speaker_copy: Path) -> None:
    _rewrite_index(speaker_copy, lambda t: t.replace("train,64,128", "train,1.5s,128", 1))
    with pytest.raises(ValueError, match=r"processed_137\.csv, line 3: start/end must be"):
        read_index(speaker_copy)


def test_missing_npz_names_the_file(speaker_copy: Path) -> None:
    victim = sorted((speaker_copy / "clips").glob("*.npz"))[3]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        load_speaker(speaker_copy.parent, "synth_00")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"pose": np.zeros((3, 137, 64), np.float32)}, r"'pose' has shape \(3, 137, 64\)"),
        ({"pose": np.zeros((64, 137, 3), np.float32)}, r"expected \(T, 3, 137\)"),
        ({"pose": np.zeros((60, 3, 137), np.float32)}, r"60 frames but the index says"),
        ({"audio": np.zeros(int(64 / 15 * 44100), np.float32)}, r"is it 16 kHz"),
        ({"audio": np.zeros((2, 68267), np.float32)}, r"1-D float waveform"),
        ({"saliency": np.zeros(63, np.float32)}, r"'saliency' has shape \(63,\)"),
        ({"pose": np.full((64, 3, 137), np.nan, np.float32)}, r"NaN"),
    ],
)
def test_malformed_clip_arrays_name_the_file(speaker_copy: Path, arrays: dict, message: str
                                             ) -> None:
    victim = sorted((speaker_copy / "clips").glob("*.npz"))[2]
    with np.load(victim) as data:
        content = {k: data[k] for k in data.files}
    content.update(arrays)
    write_clip(victim, content["pose"], content["audio"], content.get("saliency"))
    with pytest.raises(ValueError, match=message) as info:
        load_speaker(speaker_copy.parent, "synth_00")
    assert str(victim) in str(info.value)


def test_npz_without_audio_or_not_a_zip_names_the_file(speaker_copy: Path) -> None:
    victim = sorted((speaker_copy / "clips").glob("*.npz"))[1]
    np.savez(victim, pose=np.zeros((64, 3, 137), np.float32))
    with pytest.raises(ValueError, match=rf"{victim.name}: no 'audio' array"):
        load_speaker(speaker_copy.parent, "synth_00")
    victim.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=rf"{victim.name}: not a readable npz"):
        load_speaker(speaker_copy.parent, "synth_00")


def test_normalization_statistics(corpus: Path) -> None:
    clips = load_speaker(corpus, "synth_00", splits=["train"])
    profile = make_speaker_profile(SEED, 0)
    norm = compute_normalization(clips)
    assert norm.mean.shape == norm.std.shape == (122, 2)
    assert abs(norm.scale_px - profile.scale_px) < 0.02 * profile.scale_px
    assert np.allclose(norm.anchor_px, profile.neck_px, atol=0.1 * profile.scale_px)
    assert np.all(norm.mean[0] == 0.0) and np.all(norm.std[0] == 1.0)
    assert np.all(norm.std >= np.float32(STD_FLOOR))
    standardised = np.concatenate([norm.standardize(c.canonical(norm)) for c in clips])
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(standardised.std(axis=0)[1:], 1.0, atol=1e-3)
    assert np.all(standardised[:, 0] == 0.0)


def test_normalization_leaves_out_undetected_joints(corpus: Path) -> None:
    clips = load_speaker(corpus, "synth_00", splits=["train"])
    reference = compute_normalization(clips)
    broken = clips[0]
    broken.confidence[:5, 4] = 0.0  # OpenPose wrist not detected ...
    broken.pose_px[:5, 4] = 0.0  # ... is written as (0, 0)
    patched = compute_normalization(clips)
    wrist = 4  # OpenPose right wrist 4 is model joint 4
    np.testing.assert_allclose(patched.mean[wrist], reference.mean[wrist], atol=0.01)
