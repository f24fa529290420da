"""``gesturert ablate topk|modules|lookahead`` end to end on a tiny corpus with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_training import TINY_GENERATOR, TinyRun, make_tiny_run

from sdk.cli import main
from sdk.features import DEFAULT_FEATURES
from train.ablation import algorithmic_latency_ms, mean_row, module_variants
from train.ablation_report import (
    face_branch_verdict,
    ordered_variants,
    paired_differences,
    plot_lookahead,
    reference_variant,
)
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


def test_training_seeds_train_each_variant_per_seed_in_worker_processes(
        tiny: TinyRun, tmp_path: Path) -> None:
    report = _ablate(tiny, tmp_path, "modules", "--train-seeds", "3", "5", "--jobs", "2")
    assert report["train_seeds"] == [3, 5] and report["jobs"] == 2
    runs = tmp_path / "runs" / "modules"
    states = []
    for seed in (3, 5):
        ckpt = load_checkpoint(runs / "full" / f"seed{seed}" / "generator.pt", "generator")
        assert ckpt.config["run"]["seed"] == seed
        states.append(ckpt.model)
    assert any(not torch.equal(states[0][n], states[1][n]) for n in states[0])
    full = report["variants"]["full"]
    assert set(full["per_seed"]) == {"3", "5"}
    assert full["lip_sync"] == pytest.approx(
        (full["per_seed"]["3"]["lip_sync"] + full["per_seed"]["5"]["lip_sync"]) / 2)
    markdown = (tmp_path / "ablation_modules.md").read_text()
    assert "## Per training seed" in markdown and "## Seed-paired differences" in markdown
    assert "means over 2 training seeds" in markdown


def _seeded(what: str, values: dict[str, list[float]]) -> dict:
    variants = {name: {"per_seed": {str(i): {"lip_sync": v, "fgd": 10.0 * v}
                                    for i, v in enumerate(vals)}}
                for name, vals in values.items()}
    for row in variants.values():
        row.update(mean_row(row["per_seed"]))
    return {"what": what, "train_seeds": list(range(len(next(iter(values.values()))))),
            "variants": variants}


def test_paired_differences_follow_each_metrics_direction() -> None:
    report = _seeded("modules", {"without separate branch": [0.90, 0.95, 0.97],
                                 "full": [0.92, 0.94, 0.99]})
    assert reference_variant(report) == "full"
    lip = paired_differences(report, "lip_sync", "without separate branch", "full")
    assert lip["mean"] == pytest.approx(-0.01) and lip["reference_ahead"] == 2
    assert lip["std"] == pytest.approx(float(np.std([-0.02, 0.01, -0.02], ddof=1)))
    fgd = paired_differences(report, "fgd", "without separate branch", "full")
    assert fgd["reference_ahead"] == 1  # lower FGD is better: full has the lower one once
    verdict = face_branch_verdict(report)
    assert "does NOT consistently improve" in verdict and "ahead in 2 of 3 seeds" in verdict
    report = _seeded("modules", {"full": [0.92, 0.96, 0.99],
                                 "without separate branch": [0.90, 0.95, 0.97]})
    assert face_branch_verdict(report).startswith("The separate face branch improves")
    assert reference_variant(_seeded("topk", {"k=4": [1.0], "k=16": [1.0]})) == "k=16"
    assert reference_variant(_seeded("topk", {"k=4": [1.0], "k=8": [1.0]})) == "k=4"


def test_variants_keep_their_order_through_json_and_seeded_plots_draw(tmp_path: Path) -> None:
    report = _seeded("topk", {"k=32": [1.0, 2.0], "k=4": [1.0, 2.0], "k=16": [1.0, 2.0]})
    assert list(ordered_variants(report)) == ["k=4", "k=16", "k=32"]  # natural order
    report["variant_order"] = ["k=32", "k=4", "k=16"]
    assert list(ordered_variants(report)) == ["k=32", "k=4", "k=16"]
    seeded = _seeded("lookahead", {"L=0": [0.5, 0.7], "L=2": [0.6, 0.9]})
    for name, row in seeded["variants"].items():
        extra = {"bc": 0.5, "psd": 0.2, "detector_auc": 0.8, "latency_ms": 9.0 + 10 * int(
            name[2:]), "lookahead_frames": int(name[2:])}
        row.update(extra)
        for seed_row in row["per_seed"].values():
            seed_row.update(extra)
    seeded.update(steps=2, sequences=3)
    plot_lookahead(seeded, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


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


def test_reuse_trained_scores_finished_trainings_and_retrains_changed_ones(
        tiny: TinyRun, tmp_path: Path) -> None:
    first = _ablate(tiny, tmp_path, "topk", "--k", "2", "8")
    ckpt = tmp_path / "runs" / "topk" / "k2" / "generator.pt"
    trained = ckpt.read_bytes()
    again = _ablate(tiny, tmp_path, "topk", "--k", "2", "8", "--reuse-trained")
    assert ckpt.read_bytes() == trained  # not trained again
    for name in ("k=2", "k=8"):
        assert again["variants"][name]["reused"] is True
        for key in ("fgd", "bc", "psd", "lip_sync", "train_seconds"):
            assert again["variants"][name][key] == pytest.approx(first["variants"][name][key])
    assert "2 of the trainings were reused" in (tmp_path / "ablation_topk.md").read_text()
    # another config (one more step) is no finished training of it: trained anew
    sets = [a for item in TINY_GENERATOR for a in ("--set", item)]
    assert main(["ablate", "topk", "--k", "2", "--data", str(tiny.corpus), "--posesync",
                 str(tiny.posesync), "--fgd", str(tiny.fgd), "--out", str(tmp_path),
                 "--runs", str(tmp_path / "runs"), "--steps", "3", "--reuse-trained",
                 *sets]) == 0
    report = json.loads((tmp_path / "ablation_topk.json").read_text())
    assert report["variants"]["k=2"]["reused"] is False
    assert load_checkpoint(ckpt, "generator").step == 3


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
    assert main(["ablate", "modules", *common, "--train-seeds", "1", "1"]) == 2
    assert "--train-seeds must be distinct" in capsys.readouterr().err
    assert main(["ablate", "modules", *common, "--jobs", "0"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err
    assert main(["ablate", "modules", "--data", str(tiny.corpus), "--posesync",
                 str(tmp_path / "missing.pt"), "--fgd", str(tiny.fgd)]) == 2
    assert "--posesync" in capsys.readouterr().err
