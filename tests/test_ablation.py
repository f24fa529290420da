"""``gesturert ablate topk|modules|lookahead`` end to end on a tiny corpus with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers_training import TINY_GENERATOR, TinyRun, make_tiny_run

from sdk.cli import main
from sdk.features import DEFAULT_FEATURES
from train.ablation import algorithmic_latency_ms, module_variants
from train.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    return make_tiny_run(tmp_path_factory.mktemp("tiny"), generator=False)


def _ablate(tiny: TinyRun, out: Path, *what: str) -> dict:
    sets = [a for item in TINY_GENERATOR for a in ("--set", item)]
    assert main(["ablate", *what, "--data", str(tiny.corpus), "--posesync", str(tiny.posesync),
                 "--fgd", str(tiny.fgd), "--out", str(out), "--runs", str(out / "runs"),
                 "--steps", "2", *sets]) == 0
    stem = f"ablation_{what[0]}"
    markdown = (out / f"{stem}.md").read_text()
    report = json.loads((out / f"{stem}.json").read_text())
    for name in report["variants"]:
        assert f"| {name} |" in markdown
    assert report["steps"] == 2 and "run.steps=2" in report["shared_overrides"]
    return report


def test_modules_ablation_trains_the_three_variants_and_compares_lip_sync(
        tiny: TinyRun, tmp_path: Path) -> None:
    report = _ablate(tiny, tmp_path, "modules")
    assert list(report["variants"]) == [v.name for v in module_variants()]
    assert "lip-sync correlation" in (tmp_path / "ablation_modules.md").read_text()
    single = load_checkpoint(tmp_path / "runs" / "modules" / "without_separate_branch" /
                             "generator.pt", "generator")
    assert single.model_config["separate_branches"] is False
    no_detector = load_checkpoint(tmp_path / "runs" / "modules" / "without_detector" /
                                  "generator.pt", "generator")
    assert no_detector.config["loss"]["detector_weight"] == 0.0
    assert no_detector.config["loss"]["saliency_alpha"] == 0.0


def test_topk_ablation_sets_k_per_variant(tiny: TinyRun, tmp_path: Path) -> None:
    report = _ablate(tiny, tmp_path, "topk", "--k", "2", "8")
    assert list(report["variants"]) == ["k=2", "k=8"]
    for k in (2, 8):
        ckpt = load_checkpoint(tmp_path / "runs" / "topk" / f"k{k}" / "generator.pt", "generator")
        assert ckpt.model_config["top_k"] == k
    # one seed, one corpus: the variants differ only through k (top-k changes the gradient)
    states = [torch.load(tmp_path / "runs" / "topk" / f"k{k}" / "generator.pt",
                         weights_only=False)["model"] for k in (2, 8)]
    assert any(not torch.equal(states[0][n], states[1][n]) for n in states[0])


def test_lookahead_ablation_plots_quality_against_latency(tiny: TinyRun, tmp_path: Path) -> None:
    report = _ablate(tiny, tmp_path, "lookahead", "--frames", "0", "3")
    rows = report["variants"]
    assert rows["L=3"]["latency_ms"] - rows["L=0"]["latency_ms"] == pytest.approx(200.0)
    png = (tmp_path / "ablation_lookahead.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_algorithmic_latency_is_lookahead_plus_the_mfcc_reach() -> None:
    base = algorithmic_latency_ms(0)
    # feature frame k needs 7 MFCC frames from mfcc_start(k), the last one's window ending
    # n_fft/2 samples past its centre: at most one frame period past the frame's end
    assert 0.0 < base < 1e3 / DEFAULT_FEATURES.fps
    for frames in (1, 2, 8):
        assert algorithmic_latency_ms(frames) == pytest.approx(
            base + 1e3 * frames / DEFAULT_FEATURES.fps)


def test_bad_values_are_clear_errors(tiny: TinyRun, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--data", str(tiny.corpus), "--posesync", str(tiny.posesync), "--fgd",
              str(tiny.fgd), "--out", str(tmp_path)]
    assert main(["ablate", "topk", "--k", "0", *common]) == 2
    assert "--k values must be >= 1" in capsys.readouterr().err
    assert main(["ablate", "lookahead", "--frames", "-1", *common]) == 2
    assert main(["ablate", "modules", *common, "--steps", "0"]) == 2
    assert main(["ablate", "modules", "--data", str(tiny.corpus), "--posesync",
                 str(tmp_path / "missing.pt"), "--fgd", str(tiny.fgd)]) == 2
    assert "--posesync" in capsys.readouterr().err
