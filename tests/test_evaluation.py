"""``gesturert evaluate``: the table end to end on a tiny corpus, baselines, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_training import TINY_GENERATOR, TinyRun, make_tiny_run

from sdk.cli import main
from train.evaluation import (
    METHODS,
    HeldOutSequence,
    load_eval_models,
    load_generator_checkpoint,
    load_held_out,
    min_sequence_frames,
    shuffled_audio,
)
from train.evaluation_report import acceptance_checks


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def shuffled_generator(tiny: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny generator's config trained on shuffled audio-pose pairs (the baseline)."""
    out = tmp_path_factory.mktemp("shuffled")
    sets = [a for item in [*TINY_GENERATOR, "run.steps=3", "data.shuffle_audio_pairs=true"]
            for a in ("--set", item)]
    assert main(["train", "generator", "--data", str(tiny.corpus), "--out", str(out),
                 "--no-progress", *sets]) == 0
    return out / "generator.pt"


@pytest.fixture(scope="module")
def report(tiny: TinyRun, shuffled_generator: Path,
           tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval")
    assert main(["evaluate", "--generator", str(tiny.generator), "--posesync", str(tiny.posesync),
                 "--fgd", str(tiny.fgd), "--data", str(tiny.corpus), "--out", str(out),
                 "--shuffled-generator", str(shuffled_generator)]) == 0
    markdown = (out / "evaluation.md").read_text()
    for method in METHODS:
        assert f"| {method} |" in markdown
    assert "PoseSyncNet on held-out ground truth: ROC AUC" in markdown
    return json.loads((out / "evaluation.json").read_text())


def test_evaluate_writes_every_metric_for_every_method(report: dict) -> None:
    assert report["sequences"] == 2  # the dev+val pairs of the 1.5-minute corpus
    for method in METHODS:
        row = report["methods"][method]
        for key in ("fgd", "bc", "bc_chance", "bc_all_joints", "psd", "offset_at_zero",
                    "diversity", "l1", "pck", "lip_sync"):
            assert np.isfinite(row[key]), (method, key)
    assert 0.0 <= report["methods"]["generator"]["detector_auc"] <= 1.0
    assert 0.0 <= report["posesync"]["auc"] <= 1.0
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    assert {c["criterion"] for c in report["acceptance"]} and all(
        isinstance(c["passed"], bool) for c in report["acceptance"])


def test_ground_truth_and_mean_pose_rows_have_their_exact_values(report: dict) -> None:
    truth, still = report["methods"]["ground_truth"], report["methods"]["mean_pose"]
    assert truth["l1"] == 0.0 and truth["pck"] == 1.0
    assert truth["lip_sync"] == pytest.approx(1.0)
    assert truth["fgd"] == pytest.approx(0.0, abs=1e-6)  # the reference set itself
    # a pose held still has no motion beat, no lip motion, no spread
    assert still["bc"] == still["bc_chance"] == still["bc_all_joints"] == 0.0
    assert still["lip_sync"] == pytest.approx(0.0, abs=1e-9)
    assert still["diversity"] == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(still["detector_auc"])


def test_other_audio_changes_what_the_generator_makes(report: dict) -> None:
    gen, other = report["methods"]["generator"], report["methods"]["other_audio"]
    assert gen["l1"] != other["l1"] or gen["lip_sync"] != other["lip_sync"]


def test_audio_shuffled_row_is_the_shuffled_pairs_model(report: dict,
                                                        shuffled_generator: Path) -> None:
    gen, shuffled = report["methods"]["generator"], report["methods"]["audio_shuffled"]
    assert report["checkpoints"]["shuffled_generator"] == str(shuffled_generator)
    assert gen["l1"] != shuffled["l1"] and np.isfinite(shuffled["detector_auc"])
    assert set(report["methods"]) == set(METHODS)
    criteria = [c["criterion"] for c in report["acceptance"]]
    assert "generator FGD below the audio-shuffled model" in criteria
    assert not any("not measured" in c for c in criteria)


def test_without_a_shuffled_generator_its_checks_say_not_measured(
        tiny: TinyRun, tmp_path: Path) -> None:
    assert main(["evaluate", "--generator", str(tiny.generator), "--posesync", str(tiny.posesync),
                 "--fgd", str(tiny.fgd), "--data", str(tiny.corpus), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert "audio_shuffled" not in report["methods"]
    missing = [c for c in report["acceptance"] if "not measured" in c["criterion"]]
    assert len(missing) == 3 and not any(c["passed"] for c in missing)  # FGD, BC, PSD


def test_shuffled_audio_comes_from_the_next_sequence_at_the_right_length() -> None:
    def seq(audio: np.ndarray) -> HeldOutSequence:
        return HeldOutSequence("s", audio, np.zeros((3, 122, 2), np.float32), None,
                               None)  # type: ignore[arg-type]

    a, b = np.arange(10, dtype=np.float32), -np.arange(6, dtype=np.float32) - 1
    assert np.array_equal(shuffled_audio([seq(a), seq(b)], 0), np.pad(b, (0, 4)))
    assert np.array_equal(shuffled_audio([seq(a), seq(b)], 1), a[:6])
    assert np.array_equal(shuffled_audio([seq(a)], 0), np.roll(a, 5))


def test_acceptance_checks_compare_against_every_baseline() -> None:
    good = {"fgd": 1.0, "bc": 0.5, "psd": 0.5, "detector_auc": 0.9, "offset_at_zero": 1.0}
    rows = {"generator": good, "ground_truth": good,
            "mean_pose": {**good, "fgd": 5.0, "bc": 0.0, "psd": 0.9},
            "audio_shuffled": {**good, "fgd": 0.8, "bc": 0.4, "psd": 0.7},
            "other_audio": {**good, "fgd": 0.1, "bc": 0.6, "psd": 0.4}}
    checks = {c["criterion"]: c["passed"] for c in acceptance_checks({"auc": 0.97}, rows)}
    assert checks["generator FGD below mean pose"] is True
    assert checks["generator FGD below the audio-shuffled model"] is False  # 1.0 > 0.8
    assert checks["generator BC above the audio-shuffled model"] is True
    assert checks["generator PSD below other audio"] is False  # 0.5 > 0.4
    # equal by construction (FGD) / blind to timing on the corpus (BC): not compared
    assert "generator FGD below other audio" not in checks
    assert "generator BC above other audio" not in checks
    assert checks["PoseSyncNet held-out ROC AUC >= 0.95"] is True
    # FGD equal up to round-off is a tie, not a win
    rows["audio_shuffled"] = {**rows["audio_shuffled"], "fgd": 1.0 + 1e-5}
    checks = {c["criterion"]: c["passed"] for c in acceptance_checks({"auc": 0.97}, rows)}
    assert checks["generator FGD below the audio-shuffled model"] is False


def test_generated_sequences_cover_the_held_out_frames(tiny: TinyRun) -> None:
    from train.evaluation import generate

    models = load_eval_models(tiny.posesync, tiny.fgd)
    sequences = load_held_out(tiny.corpus, min_sequence_frames(models))
    model, normalization = load_generator_checkpoint(tiny.generator)
    poses, saliency = generate(model, normalization, sequences[0].audio, sequences[0].num_frames)
    assert poses.shape == sequences[0].canonical.shape and saliency.shape == (poses.shape[0],)
    assert np.all(poses[:, 0] == 0.0)  # root exactly at the neck in canonical units


def test_missing_checkpoint_is_a_clear_error(tiny: TinyRun, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--generator", str(tmp_path / "nope.pt"), "--posesync",
                 str(tiny.posesync), "--fgd", str(tiny.fgd), "--data", str(tiny.corpus)]) == 2
    assert "--generator" in capsys.readouterr().err
    assert main(["evaluate", "--generator", str(tiny.generator), "--posesync",
                 str(tiny.posesync), "--fgd", str(tiny.fgd), "--data", str(tiny.corpus),
                 "--shuffled-generator", str(tmp_path / "nope.pt")]) == 2
    assert "--shuffled-generator" in capsys.readouterr().err


def test_checkpoints_of_the_wrong_kind_are_refused(tiny: TinyRun,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--generator", str(tiny.generator), "--posesync", str(tiny.fgd),
                 "--fgd", str(tiny.posesync), "--data", str(tiny.corpus)]) == 2
    assert "gesturert evaluate:" in capsys.readouterr().err


def test_a_metric_at_its_chance_level_is_not_informative_never_passed() -> None:
    good = {"fgd": 1.0, "bc": 0.75, "bc_chance": 0.75, "psd": 0.5, "detector_auc": 0.9,
            "offset_at_zero": 1.0}
    rows = {"generator": good, "ground_truth": good,
            "mean_pose": {**good, "fgd": 5.0, "bc": 0.0, "bc_chance": 0.0, "psd": 0.9},
            "audio_shuffled": {**good, "fgd": 5.0, "bc": 0.25, "bc_chance": 0.23, "psd": 0.9},
            "other_audio": {**good, "psd": 0.9}}
    at_chance = {c["criterion"]: c for c in acceptance_checks({"auc": 0.97}, rows)}
    bc = at_chance["generator BC above the audio-shuffled model"]
    assert bc["status"] == "not informative (chance 0.750)" and bc["passed"] is False
    assert at_chance["generator BC above mean pose"]["passed"] is False
    assert at_chance["generator FGD below mean pose"]["status"] == "passed"  # no chance level
    rows["generator"] = {**good, "bc": 0.9}  # clearly above its chance level 0.75
    above = {c["criterion"]: c for c in acceptance_checks({"auc": 0.97}, rows)}
    assert above["generator BC above the audio-shuffled model"]["status"] == "passed"
    assert above["generator BC above the audio-shuffled model"]["passed"] is True


def test_committed_evaluation_report_is_what_the_report_code_writes_from_its_json() -> None:
    from train.evaluation_report import evaluation_markdown

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "training"
    report = json.loads((results / "evaluation.json").read_text())
    assert report["acceptance"] == acceptance_checks(report["posesync"], report["methods"]), (
        "evaluation.json's acceptance is stale: python -m train.evaluation_report "
        "benchmarks/results/training/evaluation.json")
    assert (results / "evaluation.md").read_text() == evaluation_markdown(report)
