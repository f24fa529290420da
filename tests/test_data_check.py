"""``gesturert data check``, masked training on imported data, and safe run directories."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sdk.cli import main
from tests.helpers_openpose import ALL_FAULTS, VIDEO_FPS, Faults, write_recording
from tests.helpers_training import TINY_GENERATOR
from train.checkpoint import load_checkpoint
from train.data.check import check_corpus
from train.data.sdt import IndexRow, load_speaker, write_clip, write_index
from train.data.synth import synthesize_corpus

TRAIN_STEPS = 12
LOSSES = ("generation", "reconstruction", "velocity", "total")


def _import(root: Path, name: str, seconds: float, faults: Faults, speaker: str = "alice",
            **kwargs: object) -> Path:
    rec = write_recording(root, name, seconds, faults, **kwargs)  # type: ignore[arg-type]
    corpus = root / f"corpus_{name}"
    assert main(["data", "import-openpose", str(rec.json_dir), str(rec.audio), "--fps",
                 str(VIDEO_FPS), "--speaker", speaker, "--out", str(corpus)]) == 0
    return corpus


def _train(corpus: Path, out: Path, *extra: str) -> int:
    sets = [a for item in TINY_GENERATOR + [f"run.steps={TRAIN_STEPS}", "run.eval_every=0"]
            for a in ("--set", item)]
    return main(["train", "generator", "--data", str(corpus), "--out", str(out),
                 "--no-progress", *sets, *extra])


def test_import_check_and_training_with_missing_joints(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    faulty = _import(tmp_path, "faulty", 40.0, ALL_FAULTS)
    clean = _import(tmp_path, "clean", 40.0, Faults())
    capsys.readouterr()
    assert main(["data", "check", str(faulty)]) == 0
    report = capsys.readouterr().out
    assert "trainable" in report and "dropped for missing joints" in report
    losses = {}
    for name, corpus in (("faulty", faulty), ("clean", clean)):
        assert _train(corpus, tmp_path / f"run_{name}") == 0
        dropped = "dropped for more than 50% missing joints" in capsys.readouterr().err
        assert dropped == (name == "faulty")  # the stretch without anyone
        final = load_checkpoint(tmp_path / f"run_{name}" / "generator.pt").extra["final"]
        losses[name] = {k: final[k] for k in LOSSES}
    for key in LOSSES:
        assert math.isfinite(losses["faulty"][key]), (key, losses)
        assert losses["faulty"][key] <= 1.5 * losses["clean"][key], (key, losses)


def test_a_recording_shorter_than_a_window_is_refused(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    corpus = _import(tmp_path, "short", 2.5, Faults(legs_out=True))
    assert "shorter than one training window (the minimum is 4.27 s)" in capsys.readouterr().err
    assert main(["data", "check", str(corpus)]) == 1
    report = capsys.readouterr().out
    assert "error: speaker alice: no training window: every sequence is shorter than one " \
           "training window" in report and "the minimum is 4.27 s" in report
    checked = check_corpus(corpus)
    assert len(checked.errors) == 1 and "the minimum is 4.27 s" in checked.errors[0]
    assert _train(corpus, tmp_path / "run") == 2
    assert checked.errors[0] in capsys.readouterr().err  # train refuses with the same reason


def test_data_check_on_the_synthetic_corpus_is_clean(tmp_path: Path) -> None:
    synthesize_corpus(tmp_path, speakers=1, minutes=1.0, seed=0)
    checked = check_corpus(tmp_path)
    assert checked.trainable and not checked.warnings, checked.report()
    (speaker,) = checked.speakers
    assert speaker.missing == {"body": 0.0, "hands": 0.0, "face": 0.0, "lips": 0.0}
    assert speaker.jump_frames == 0 and abs(speaker.fps - 15.0) < 0.01


def _corpus_with(root: Path, pose: np.ndarray, audio_s: float | None = None) -> Path:
    """One synthetic clip of ``pose`` (T, 3, 137) with silent audio, as a corpus."""
    n = round(pose.shape[0] * 16000 / 15)
    write_clip(root / "s" / "c.npz", pose, np.zeros(n, np.float32))
    write_index(root / "s", [IndexRow("train", 0, pose.shape[0], "i", "c.npz", "s")])
    return root


@pytest.fixture(scope="module")
def synth_pose(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    root = tmp_path_factory.mktemp("synth")
    synthesize_corpus(root, speakers=1, minutes=0.3, seed=1)
    clips = load_speaker(root, "synth_00")
    px = np.concatenate([c.pose_px for c in clips])
    conf = np.concatenate([c.confidence for c in clips])
    return np.concatenate([px.transpose(0, 2, 1), conf[:, None]], axis=1)  # (T, 3, 137)


def test_check_warns_about_jumps_and_missing_hands(tmp_path: Path, synth_pose: np.ndarray
                                                   ) -> None:
    pose = synth_pose.copy()
    pose[40:, :2, :95] += 400.0  # the body (not the hands) jumps by 400 px: another person
    pose[:, 2, 95:] = 0.0  # no hands detected at all
    checked = check_corpus(_corpus_with(tmp_path, pose))
    assert checked.trainable, checked.report()
    text = "\n".join(checked.warnings)
    assert "1 frame(s) where a body joint moves faster" in text
    assert "100% of hands joints missing" in text


def test_check_refuses_when_every_window_misses_too_much(tmp_path: Path, synth_pose: np.ndarray
                                                         ) -> None:
    pose = synth_pose.copy()
    pose[:, 2, 25:] = 0.0  # body only: face and hands (111 of 121 joints) never seen
    checked = check_corpus(_corpus_with(tmp_path, pose))
    assert not checked.trainable
    assert "have more than 50% of their joints missing" in checked.errors[0]


def test_check_names_an_unreadable_clip_and_a_duration_mismatch(tmp_path: Path) -> None:
    rec = write_recording(tmp_path, "talk", 6.0, Faults())
    long_audio = tmp_path / "long.wav"
    import soundfile

    data, rate = soundfile.read(rec.audio)
    soundfile.write(long_audio, np.concatenate([data, data]), rate)  # 6 s of pose, 12 s audio
    assert main(["data", "import-openpose", str(rec.json_dir), str(long_audio), "--fps", "30",
                 "--speaker", "s", "--out", str(tmp_path / "c")]) == 0
    checked = check_corpus(tmp_path / "c")
    assert any("audio is 6.00 s longer than the pose" in e for e in checked.errors)
    clip = next((tmp_path / "c" / "s" / "clips").iterdir())
    clip.write_bytes(b"not a zip")
    checked = check_corpus(tmp_path / "c")
    assert any(str(clip) in e and "not a readable npz" in e for e in checked.errors)
    assert not zipfile.is_zipfile(clip)


def test_train_refuses_an_existing_run_unless_resume_or_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synthesize_corpus(tmp_path / "corpus", speakers=1, minutes=0.6, seed=0)
    out = tmp_path / "run"
    out.mkdir()
    (out / "generator.pt").write_bytes(b"an earlier run")
    (out / "notes.txt").write_text("mine")
    assert _train(tmp_path / "corpus", out) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "generator.pt").read_bytes() == b"an earlier run"  # nothing touched
    assert _train(tmp_path / "corpus", out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own outputs go
    assert load_checkpoint(out / "generator.pt").extra["final"]
    assert _train(tmp_path / "corpus", out, "--resume") == 0
    assert _train(tmp_path / "corpus", out, "--resume", "--overwrite") == 2


def test_the_docs_state_the_minimum_recording_length_of_the_default_config() -> None:
    from train.cli import default_config_path
    from train.config import load_config
    from train.data.check import min_window_seconds
    from train.generator_training import GeneratorTrainingConfig

    data = load_config(GeneratorTrainingConfig, default_config_path("generator")).data
    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    assert (f"the minimum is {min_window_seconds(data.window_frames):.2f} s: "
            f"{data.window_frames} frames at 15 fps") in text
    assert "more than half their\njoints missing" in text and data.max_missing_fraction == 0.5


@pytest.mark.parametrize("split, trainable", [("test", True), ("val", False)])
def test_a_speaker_held_out_for_test_is_allowed_one_without_train_clips_is_not(
        tmp_path: Path, synth_pose: np.ndarray, split: str, trainable: bool) -> None:
    """A held-out voice (every clip 'test') is evaluated, never trained on: a warning; a
    speaker whose clips are all dev/val is a mistake: an error naming it."""
    _corpus_with(tmp_path, synth_pose)
    n = round(synth_pose.shape[0] * 16000 / 15)
    write_clip(tmp_path / "held" / "c.npz", synth_pose, np.zeros(n, np.float32))
    write_index(tmp_path / "held", [IndexRow(split, 0, synth_pose.shape[0], "i", "c.npz",
                                             "held")])
    checked = check_corpus(tmp_path)
    assert checked.trainable is trainable, checked.report()
    named = checked.warnings if trainable else checked.errors
    assert any(m.startswith("speaker held:") for m in named), checked.report()
