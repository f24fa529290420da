"""``make bundle`` (scripts/make_default_bundle.py) end to end with tiny models on a small
voiced corpus, two trainings at once: every stage runs, the bundle lands in --dest, and the
evaluation has the audio-shuffled baseline row."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_scripts import load_script
from helpers_training import TINY_FGD, TINY_GENERATOR, TINY_POSESYNC

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_make_default_bundle_trains_exports_and_evaluates_with_the_baseline(
        tmp_path: Path) -> None:
    sets = [f"{model}:{item}" for model, items in (
        ("posesync", TINY_POSESYNC), ("fgd", TINY_FGD),
        # a value with a space (the default's face dilations): the recorded command quotes it
        ("generator", [*TINY_GENERATOR, "run.steps=3", "model.face_dilations=[1, 1]"]))
        for item in items]
    command = [sys.executable, str(REPO / "scripts" / "make_default_bundle.py"),
               "--minutes", "1.5", "--voices", "espeak-en-us-m1,espeak-en-us-f2,flite-awb",
               "--held-out-voices", "flite-awb", "--styles", "2", "--jobs", "2",
               "--work", str(tmp_path / "work"),
               "--dest", str(tmp_path / "bundle"), "--results", str(tmp_path / "results"),
               "--validation-results", str(tmp_path / "validation"),
               "--evaluate", "--shuffled-baseline", "--quiet",
               *[a for item in sets for a in ("--set", item)]]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "bundle" / "manifest.json").is_file()
    assert json.loads((tmp_path / "validation" / "validate.json").read_text())["passed"]
    # export --corpus wrote the training pose range, and export-step's rewrite kept it
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["pose_range"]["frames"] > 0 and manifest["step_models"]
    timing = json.loads((tmp_path / "results" / "default_training.json").read_text())
    assert timing["compared_with_replaced"] is None  # --dest held no bundle
    assert shlex.split(timing["command"])[2:] == command[2:]  # the run, as a shell runs it
    assert {"synth", "train posesync", "train fgd", "train generator", "export", "export-step",
            "train shuffled baseline", "evaluate"} <= set(timing["seconds"])
    assert timing["jobs"] == 2 and timing["voices"].endswith("flite-awb")
    voices = json.loads((tmp_path / "results" / "training_voices.json").read_text())
    assert voices["flite-awb"]["held_out"] and "licence" in voices["espeak-en-us-m1"]
    # two lanes at once: the lanes' wall time is less than their stages' sum
    assert timing["training_wall_seconds"] < sum(
        timing["seconds"][k] for k in ("train posesync", "train fgd", "train generator",
                                       "train shuffled baseline"))
    shuffled = tmp_path / "work" / "generator_shuffled" / "generator.pt"
    import torch

    assert torch.load(shuffled, weights_only=False)["config"]["data"]["shuffle_audio_pairs"]
    evaluation = json.loads((tmp_path / "results" / "evaluation.json").read_text())
    assert evaluation["checkpoints"]["shuffled_generator"] == str(shuffled)
    assert {"generator", "audio_shuffled", "other_audio", "mean_pose",
            "ground_truth"} == set(evaluation["methods"])
    # --export-only: the same checkpoints again, the work directory only read
    again = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_default_bundle.py"), "--export-only",
         "--work", str(tmp_path / "work"), "--dest", str(tmp_path / "bundle"),
         "--validation-results", str(tmp_path / "validation2"), "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "generator.onnx identical" in again.stdout and "golden.npz identical" in again.stdout
    assert json.loads((tmp_path / "validation2" / "validate.json").read_text())["passed"]


def _load_script():  # type: ignore[no-untyped-def]
    return load_script("make_default_bundle")


def test_a_rebuild_says_which_files_match_the_bundle_it_replaced(tmp_path: Path) -> None:
    script = _load_script()
    old, new = tmp_path / "old", tmp_path / "new"
    for root, files in ((old, {"a.onnx": b"1", "b.onnx": b"2", "gone.npz": b"3"}),
                        (new, {"a.onnx": b"1", "b.onnx": b"X", "added.plan": b"4"})):
        root.mkdir()
        (root / "manifest.json").write_text(f'{{"created_at": "{root.name}"}}')
        for name, data in files.items():
            (root / name).write_bytes(data)
    assert script.compare_bundles(old, new) == {
        "a.onnx": "identical", "added.plan": "added", "b.onnx": "differs",
        "gone.npz": "removed"}
    assert script.compare_bundles(tmp_path / "absent", new) is None
    machine = {"cpu": "x", "cores": 1, "load_average": [0.0, 0.0, 0.0], "date_utc": "d",
               "torch": "t"}
    report = {"command": "c", "revision": "r", "machine": machine, "seconds": {"synth": 1.0},
              "training_seconds": 0.0, "total_seconds": 1.0, "speakers": 1, "minutes": 1,
              "seed": 0, "bundle_bytes": 1, "files": {},
              "compared_with_replaced": {"a.onnx": "identical", "b.onnx": "differs"}}
    assert "b.onnx differs; the rest identical." in script.timing_markdown(report)


def test_reuse_takes_the_earlier_runs_stages_and_times(tmp_path: Path) -> None:
    script = _load_script()
    earlier, results = tmp_path / "earlier", tmp_path / "results"
    results.mkdir()
    seconds = {"synth": 10.0, "train posesync": 20.0, "train fgd": 5.0, "train generator": 60.0}
    (results / "default_training.json").write_text(json.dumps(
        {"command": f"python scripts/make_default_bundle.py --work {earlier}",
         "seconds": seconds}))
    assert script.earlier_seconds(earlier, results) == {
        "synth": 10.0, "train posesync": 20.0, "train fgd": 5.0}
    with pytest.raises(SystemExit, match="not the report of the run"):  # another run's report
        script.earlier_seconds(tmp_path / "other", results)
    # `make bundle` names no --work: its report is the default work directory's, only its
    (results / "default_training.json").write_text(json.dumps(
        {"command": "python scripts/make_default_bundle.py --voices all", "seconds": seconds}))
    assert script.earlier_seconds(script.DEFAULT_WORK.resolve(), results)["synth"] == 10.0
    with pytest.raises(SystemExit, match="not the report of the run"):
        script.earlier_seconds(earlier, results)
    (results / "default_training.json").write_text(json.dumps(
        {"command": f"python scripts/make_default_bundle.py --work {earlier}",
         "seconds": seconds}))
    with pytest.raises(SystemExit, match="missing"):  # nothing to copy yet
        script.copy_reused(earlier, tmp_path / "work")
    for part in ("corpus/speaker/a.csv", "posesync/posesync.pt", "fgd/fgd.pt"):
        (earlier / part).parent.mkdir(parents=True, exist_ok=True)
        (earlier / part).write_text(part)
    (tmp_path / "work").mkdir()
    script.copy_reused(earlier, tmp_path / "work")
    copied = tmp_path / "work" / "corpus" / "speaker" / "a.csv"
    assert copied.read_text() == "corpus/speaker/a.csv"
    machine = {"cpu": "x", "cores": 1, "load_average": [0.0, 0.0, 0.0], "date_utc": "d",
               "torch": "t"}
    report = {"command": "c", "revision": "r", "machine": machine, "seconds": seconds,
              "training_seconds": 85.0, "total_seconds": 95.0, "speakers": 1, "minutes": 1,
              "seed": 0, "bundle_bytes": 1, "files": {}, "compared_with_replaced": None,
              "reused": {"from": str(earlier), "stages": list(script.REUSED_STAGES)}}
    markdown = script.timing_markdown(report)
    assert "| train fgd | 5.0 (reused: measured in the earlier run) |" in markdown
    assert "| train generator | 60.0 |" in markdown and "reused from" in markdown
