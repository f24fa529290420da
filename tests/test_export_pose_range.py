"""export --corpus: the bundle carries the training poses' range; stream and demo measure
their output against it (sdk.pose_range) with the SDK alone."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from sdk.bundle import load_bundle, write_bundle_manifest
from sdk.cli import main
from sdk.pose_range import RangeLimits, range_joints
from sdk.skeleton import MODEL_SKELETON
from tests.helpers_bundle import tiny_bundle  # noqa: F401  (fixture)
from tests.helpers_training import TinyRun, make_tiny_run
from train.checkpoint import load_checkpoint
from train.data.sdt import list_speakers, load_speaker

SAMPLE = Path(__file__).resolve().parents[1] / "sdk" / "data" / "samples" / "speech_en.flac"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    return make_tiny_run(tmp_path_factory.mktemp("range_run"))


@pytest.fixture(scope="module")
def bundle(run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("range_bundle") / "bundle"
    assert main(["export", "--generator", str(run.generator), "--posesync", str(run.posesync),
                 "--corpus", str(run.corpus), "--out", str(out), "--quiet"]) == 0
    return out


def test_the_bundle_carries_the_range_of_the_training_split(run: TinyRun, bundle: Path) -> None:
    """Recomputed from the corpus files: each training clip's detected joints, put in the
    generator's units (neck-relative, the speaker's shoulder width, the checkpoint's mean/std)."""
    manifest = load_bundle(bundle).manifest
    carried = manifest.pose_range
    assert carried is not None and carried.limits == RangeLimits()
    norm = load_checkpoint(run.generator, "generator").normalization
    assert norm is not None
    joints = list(range_joints(MODEL_SKELETON))
    assert carried.joints == tuple(joints)
    (speaker,) = list_speakers(run.corpus)
    clips = [c for c in load_speaker(run.corpus, speaker) if c.split == "train"]
    px = np.concatenate([c.model_pixels() for c in clips]).astype(np.float64)
    seen = np.concatenate([c.model_confidence() for c in clips]) > 0
    shoulders = seen[:, 2] & seen[:, 5]
    scale = np.linalg.norm(px[shoulders, 2] - px[shoulders, 5], axis=-1).mean()  # its unit
    zs = []
    for clip in clips:
        px = clip.model_pixels().astype(np.float64)
        z = ((px - px[:, :1]) / scale - norm.mean) / norm.std
        zs.append(np.where((clip.model_confidence() > 0)[..., None], z, np.nan)[:, joints])
    z = np.concatenate(zs)
    assert carried.frames == z.shape[0]
    np.testing.assert_allclose(carried.low, np.nanmin(z, axis=0), atol=2e-3)
    np.testing.assert_allclose(carried.high, np.nanmax(z, axis=0), atol=2e-3)
    raw = json.loads((bundle / "manifest.json").read_text())["pose_range"]
    assert raw["joints"][0] == MODEL_SKELETON.joint_names[joints[0]]  # by name, not index


def test_another_corpus_is_refused_and_no_bundle_is_left(run: TinyRun, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    other = tmp_path / "other"
    assert main(["data", "synth", "--out", str(other), "--minutes", "1.5", "--seed", "7",
                 "--no-progress"]) == 0
    out = tmp_path / "bundle"
    assert main(["export", "--generator", str(run.generator), "--posesync", str(run.posesync),
                 "--corpus", str(other), "--out", str(out), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "is not the corpus this generator was trained on" in err and str(other) in err
    assert not (out / "manifest.json").exists()


def test_stream_and_demo_measure_their_output_against_the_range(
        bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(bundle), str(SAMPLE), "--backend", "onnxruntime-cpu"]
    assert main(["stream", *args, "--out", str(tmp_path / "poses.npz")]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("pose range:")]
    assert len(line) == 1 and "of body/hand values outside the training poses' range" in line[0]
    assert "the bundle's limits (0.5 SD past, mean |z| 1)" in line[0]
    assert main(["demo", "--bundle", str(bundle), "--audio", str(SAMPLE), "--backend",
                 "onnxruntime-cpu", "--out", str(tmp_path / "demo"), "--no-video"]) == 0
    assert [x for x in capsys.readouterr().out.splitlines() if x.startswith("pose range:")]


def test_a_range_narrower_than_the_output_is_reported_past_it(
        bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The known fault: poses beyond the training range (here: the range shrunk to a
    point at the mean, so the output lies past it) must read PAST, naming the joint."""
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    for path in bundle.rglob("*"):
        if path.is_file() and path.name != "manifest.json":
            target = narrow / path.relative_to(bundle)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    manifest = load_bundle(bundle).manifest
    assert manifest.pose_range is not None
    zero = np.zeros_like(manifest.pose_range.low)
    write_bundle_manifest(narrow, dataclasses.replace(
        manifest, pose_range=dataclasses.replace(manifest.pose_range, low=zero, high=zero)))
    assert main(["stream", str(narrow), str(SAMPLE), "--backend", "onnxruntime-cpu",
                 "--out", str(tmp_path / "poses.npz")]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("pose range:")]
    assert ": PAST the bundle's limits" in line and "SD past (" in line


def test_serve_pose_range_refuses_a_bundle_without_the_range(
        tiny_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from sdk.live.config import ServerConfig
    from sdk.live.server import LiveServer
    from sdk.streaming import StreamingGenerator

    assert main(["serve", str(tiny_bundle), "--port", "0", "--pose-range"]) == 2
    assert "carries no training pose range" in capsys.readouterr().err
    with StreamingGenerator(tiny_bundle, backend="onnxruntime-cpu") as generator, \
            pytest.raises(ValueError, match="export it with `gesturert export --corpus`"):
        LiveServer(generator, ServerConfig(port=0, pose_range=True))
