"""OpenPose JSON import: speaker tracking, gaps, resampling, audio alignment, batch form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sdk.cli import main
from sdk.features import DEFAULT_FEATURES as CFG
from sdk.skeleton import UPPER_BODY_122
from tests.helpers_openpose import ALL_FAULTS, LEGS, VIDEO_FPS, Faults, write_recording
from train.data.openpose import (
    IMPORT_RECORD,
    fill_gaps,
    import_recording,
    read_people,
    resample_keypoints,
    track_speaker,
)
from train.data.sdt import clip_sample_range, load_speaker
from train.data.sequences import join_clips

SECONDS = 24.0


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("openpose")
    rec = write_recording(root, "talk", SECONDS, ALL_FAULTS)
    assert main(["data", "import-openpose", str(rec.json_dir), str(rec.audio), "--fps",
                 str(VIDEO_FPS), "--speaker", "alice", "--out", str(root / "corpus")]) == 0
    return root / "corpus", rec


def test_import_writes_the_sdt_layout_at_the_model_rate(imported: tuple[Path, object]) -> None:
    corpus, rec = imported
    clips = load_speaker(corpus, "alice")
    (seq,) = join_clips(clips)
    frames = int(SECONDS * CFG.fps)
    assert seq.num_frames == frames and clips[0].num_frames == 64
    assert seq.audio.shape[0] == clip_sample_range(0, frames, CFG)[1]
    record = json.loads((corpus / "alice" / IMPORT_RECORD).read_text())["talk"]
    assert abs(record["mismatch_s"]) < 1.0 / CFG.fps and record["video_fps"] == VIDEO_FPS
    # 44.1 kHz stereo in, the speaker's 16 kHz voice out (resampled twice: not bit-equal)
    truth = rec.audio_16k[: seq.audio.shape[0]]  # type: ignore[attr-defined]
    assert np.corrcoef(truth, seq.audio)[0, 1] > 0.99


def test_import_keeps_the_speaker_and_marks_the_stretch_without_anyone(
        imported: tuple[Path, object]) -> None:
    corpus, rec = imported
    (seq,) = join_clips(load_speaker(corpus, "alice"))
    truth = rec.pose_15fps.transpose(0, 2, 1)  # type: ignore[attr-defined]  # (F, 137, 3)
    t = np.arange(seq.num_frames) / CFG.fps
    nobody = (t >= ALL_FAULTS.nobody_s[0]) & (t < ALL_FAULTS.nobody_s[1])  # type: ignore[index]
    assert np.all(seq.confidence[nobody] == 0)  # 3 s > the 0.2 s gap limit: marked
    assert np.all(seq.confidence[:, list(LEGS)] == 0)  # legs out of frame stay missing
    upper = np.asarray(UPPER_BODY_122.source_indices)
    seen = seq.confidence[~nobody][:, upper] > 0
    # 5 % of upper-body joints were undetected at 30 fps; short gaps are filled
    assert seen.mean() > 0.995
    err = np.abs(seq.pose_px[~nobody][:, upper] - truth[~nobody][:, upper, :2])
    # the bystander (listed first in 16 s of frames) is never taken for the speaker
    assert np.max(err[seen]) < 30.0 and np.median(err[seen]) < 0.01


def test_the_track_follows_the_speaker_not_the_largest_newcomer() -> None:
    def person(cx: float, size: float) -> np.ndarray:
        kp = np.zeros((137, 3), np.float32)
        kp[0:8, :2] = np.array([cx, 300.0]) + np.linspace(-size / 2, size / 2, 8)[:, None]
        kp[0:8, 2] = 0.9
        return kp

    speaker, bystander, big_newcomer = person(640, 200), person(1100, 100), person(900, 400)
    frames = [[bystander, speaker]] * 3 + [[big_newcomer, speaker]] * 3 + [[bystander]] * 40
    out, starts = track_speaker(frames, video_fps=30)
    assert np.allclose(out[:6, 0, 0], speaker[0, 0])  # central first, kept when a larger one
    assert np.all(out[6:36, :, 2] == 0)  # speaker gone: nobody, not the bystander, for 1 s
    assert np.allclose(out[36:, 0, 0], bystander[0, 0]) and starts == 2  # then a new track


def test_gaps_up_to_the_limit_are_interpolated_and_longer_ones_marked() -> None:
    kp = np.zeros((20, 1, 3), np.float32)
    kp[:, 0, 0] = np.arange(20)
    kp[:, 0, 2] = 1.0
    kp[3:5] = 0.0  # 2 frames
    kp[10:17] = 0.0  # 7 frames
    filled, n_filled, n_marked = fill_gaps(kp, max_gap=3)
    assert n_filled == 1 and n_marked == 1
    assert np.allclose(filled[3:5, 0, 0], [3, 4]) and np.all(filled[3:5, 0, 2] == 1.0)
    assert np.all(filled[10:17, 0, 2] == 0)


def test_resampling_uses_only_observed_neighbours() -> None:
    kp = np.zeros((4, 1, 3), np.float32)
    kp[:, 0, 0] = [0.0, 10.0, 20.0, 30.0]
    kp[:, 0, 2] = [1.0, 1.0, 0.0, 1.0]
    out = resample_keypoints(kp, video_fps=25.0, fps=15.0, frames=3)  # u = 0, 1.67, 3.33
    assert out[0, 0, 0] == 0.0 and out[0, 0, 2] == 1.0
    assert out[1, 0, 2] == 0.0  # between 10 (seen, farther) and 20 (missing): missing
    assert out[2, 0, 0] == 30.0  # past the end: the last frame


def test_bad_json_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "v_000000000000_keypoints.json"
    bad.write_text(json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": [1.0] * 10}]}))
    with pytest.raises(ValueError, match=r"pose_keypoints_2d.*10 values, expected 75"):
        read_people(bad)


def test_the_same_interval_is_not_imported_twice(imported: tuple[Path, object]) -> None:
    corpus, rec = imported
    with pytest.raises(FileExistsError, match="--overwrite"):
        import_recording(rec.json_dir, rec.audio, VIDEO_FPS, "alice", corpus)  # type: ignore[attr-defined]


def test_batch_form_imports_one_interval_per_video(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_recording(tmp_path, name, 5.0, Faults(legs_out=True), seed=3)
    corpus = tmp_path / "corpus"
    assert main(["data", "import-openpose", str(tmp_path / "json"), str(tmp_path / "audio"),
                 "--fps", "30", "--speaker", "bob", "--out", str(corpus)]) == 0
    clips = load_speaker(corpus, "bob")
    assert sorted({c.interval_id for c in clips}) == ["a", "b"]
    (tmp_path / "audio" / "b.wav").unlink()
    assert main(["data", "import-openpose", str(tmp_path / "json"), str(tmp_path / "audio"),
                 "--fps", "30", "--speaker", "carol", "--out", str(corpus)]) == 2
    assert not (corpus / "carol").exists()  # the pairing is checked before anything is written
