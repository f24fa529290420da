"""gesturert bench: the quick run's files and numbers, the latency simulation, the real-time
stream count, and the sliding-window baseline (receptive field, same frames)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

from benchmarks.common import TimingSummary
from benchmarks.report import goal_rows
from benchmarks.runtime import ScalingPoint, chunk_latency, speech_audio, streams_in_real_time
from benchmarks.sliding_window import WindowGenerator, receptive_field
from sdk.cli import main as gesturert
from sdk.runners.select import BackendConfig
from sdk.streaming import GeneratorConfig, StreamingGenerator
from train.models.generator import GeneratorConfig as ModelConfig
from train.models.generator import SalientPostureGenerator

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_bench_writes_json_table_and_plots_with_positive_numbers(
        tiny_bundle: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "results"
    assert gesturert(["bench", "--quick", "--out", str(out), "--bundle", str(tiny_bundle)]) == 0
    result = json.loads((out / "bench.json").read_text())
    for key in ("machine", "mode", "bundle", "chunks", "scaling", "mfcc", "imaging", "posesync",
                "cold_start", "cli_start", "trtexec", "goals", "backends_unavailable"):
        assert key in result, key
    machine = result["machine"]
    for key in ("cpu_model", "cpu_cores", "gpus", "libraries", "git_sha", "timestamp",
                "load_average"):
        assert key in machine, key
    assert result["mode"] == "quick"
    assert {c["chunk_ms"] for c in result["chunks"]} >= {20.0, 200.0, 1000.0}
    for chunk in result["chunks"]:
        assert chunk["step_ms"]["p50_ms"] > 0 and chunk["end_to_end_ms"]["p99_ms"] > 0
        assert chunk["real_time_factor"] > 0 and chunk["frames"] > 0
    for curve in result["scaling"]:
        assert [p["streams"] for p in curve["points"]] == [1, 16, 256]
        assert all(p["frames_per_second"] > 0 for p in curve["points"])
    mfcc = result["mfcc"]
    assert mfcc["per_chunk_ms"]["sdk_numpy"]["p50_ms"] > 0
    assert mfcc["speedup_per_chunk"]["librosa"] > 0
    assert "torchaudio" in mfcc["per_chunk_ms"] or mfcc["torchaudio"].startswith("unavailable")
    assert result["imaging"]["clips_per_second"] > 0
    assert result["posesync"]["clips_per_second"] > 0
    assert result["cold_start"]["wall_s_median"] > 0
    assert set(result["cli_start"]["wall_s_median"]) == {
        "import sdk", "gesturert --help", "gesturert stream --help"}
    assert all(s > 0 for s in result["cli_start"]["wall_s_median"].values())
    assert result["trtexec"]["status"].startswith(("skipped", "ran", "failed"))
    assert {g["status"] for g in result["goals"]} <= {"met", "missed", "not measured"}
    table = (out / "bench.md").read_text()
    assert "## Goals" in table and "| onnxruntime-cpu |" in table
    assert "start of `gesturert --help` (fresh process)" in table
    for name in ("latency_vs_streams.png", "latency_histogram.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC


def test_bench_rejects_a_directory_without_a_bundle(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert gesturert(["bench", "--quick", "--out", str(tmp_path), "--bundle",
                      str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_end_to_end_latency_includes_the_lookahead(tiny_bundle: Path) -> None:  # noqa: F811
    config = GeneratorConfig(tiny_bundle, BackendConfig("onnxruntime-cpu",
                                                        intra_op_num_threads=1))
    with StreamingGenerator(config) as generator:
        run = chunk_latency(generator, speech_audio(2.0), chunk_ms=20.0)
        lookahead_ms = 1000.0 * generator.lookahead_frames / generator.fps
        algorithmic_ms = generator.algorithmic_latency_seconds * 1000.0
    assert run.frames == generator.manifest.features.num_pose_frames(32000)
    # frames before the tail wait for L frames of future audio (the tail is flushed at once)
    assert run.end_to_end.p50_ms >= lookahead_ms
    assert run.end_to_end.p50_ms <= algorithmic_ms + 20.0 + 50.0  # + chunk + generous compute
    assert run.step.count >= run.frames


def _point(streams: int, p50_ms: float) -> ScalingPoint:
    summary = TimingSummary.of(np.full(3, p50_ms / 1e3))
    return ScalingPoint(streams, summary, streams / (p50_ms / 1e3), p50_ms < 66.7)


def test_streams_in_real_time_interpolates_between_measured_counts() -> None:
    points = [_point(1, 1.0), _point(64, 30.0), _point(256, 130.0)]
    found = streams_in_real_time(points, period_ms=66.7)
    assert found["measured"] == 64
    assert found["estimated"] == int(64 + (66.7 - 30.0) / (100.0 / 192))
    assert streams_in_real_time([_point(1, 100.0)], 66.7) == {"measured": 0, "estimated": None}
    with_features = streams_in_real_time(points, 66.7, per_stream_extra_ms=0.5)
    assert with_features["estimated"] < found["estimated"]


def test_goal_rows_compare_against_the_target() -> None:
    rows = goal_rows({"cold_start_s": (0.5, "here"), "streams_in_real_time": (150.0, "here"),
                      "one_stream_step_p99_ms": (None, "not run")})
    assert [r["status"] for r in rows] == ["met", "missed", "not measured"]


def _small_generator(lookahead: int) -> SalientPostureGenerator:
    torch.manual_seed(0)
    config = ModelConfig(lookahead_frames=lookahead, face_hidden=8, body_hidden=16,
                         embedding_dim=8, pose_hidden=8, decoder_hidden=16, detector_hidden=4,
                         body_dilations=(1, 2, 4), decoder_dilations=(1, 2))
    return SalientPostureGenerator(config).eval()


def test_receptive_field_is_exactly_what_the_last_output_depends_on() -> None:
    model = _small_generator(2)
    window = receptive_field(model)
    assert window == (1 + 2 * 7) + (1 + 2 * 3) - 1  # body encoder + decoder
    frames = window + 5
    features = torch.randn(1, frames, model.config.feature_dim)
    noise = torch.randn(1, frames, model.config.noise_dim)
    with torch.no_grad():
        base = WindowGenerator(model)(features, noise)[0]
        for t, changes in ((frames - window - 1, False), (frames - window, True)):
            moved = features.clone()
            moved[0, t] += 5.0
            diff = float((WindowGenerator(model)(moved, noise)[0] - base).abs().max())
            assert (diff > 1e-4) == changes, (t, diff)


def test_sliding_window_equals_stateful_steps_frame_by_frame() -> None:
    model = _small_generator(4)
    window = receptive_field(model)
    frames = 2 * window + 3
    features = torch.randn(1, frames, model.config.feature_dim)
    noise = torch.randn(1, frames, model.config.noise_dim)
    state = model.init_state(1)
    with torch.no_grad():
        for t in range(frames):
            poses, _, state = model.step(features[:, t:t + 1], noise[:, t:t + 1], state)
            first = max(0, t - window + 1)
            w_poses, _ = WindowGenerator(model)(features[:, first:t + 1], noise[:, first:t + 1])
            assert float((poses[:, 0] - w_poses).abs().max()) <= 1e-5


TRTEXEC_SUMMARY = """\
[11/24/2026-10:15:12] [I] === Performance summary ===
[11/24/2026-10:15:12] [I] Throughput: 1234.5 qps
[11/24/2026-10:15:12] [I] Latency: min = 0.5 ms, max = 2 ms, mean = 0.8 ms, median = 0.75 ms, \
percentile(99%) = 1.5 ms
[11/24/2026-10:15:12] [I] Total Host Walltime: 10 s
"""


def test_trtexec_numbers_are_merged_when_trtexec_is_on_path(
        tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from benchmarks.runtime import trtexec_numbers

    monkeypatch.setenv("PATH", str(tmp_path))  # no trtexec anywhere
    assert trtexec_numbers(tiny_bundle, tmp_path / "none") == {
        "status": "skipped: trtexec not found"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "summary.txt").write_text(TRTEXEC_SUMMARY)
    fake = bin_dir / "trtexec"  # a stand-in: prints the summary when benchmarking an engine
    fake.write_text(f'#!/bin/sh\ncase "$*" in *--loadEngine=*) cat {tmp_path / "summary.txt"};;'
                    " esac\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    numbers = trtexec_numbers(tiny_bundle, tmp_path / "trtexec")
    assert numbers["status"] == "ran"
    assert [r["model"] for r in numbers["records"]] == ["generator", "posesync"]
    assert numbers["records"][0]["throughput_qps"] == pytest.approx(1234.5)
    assert numbers["records"][0]["latency_ms"]["p99"] == pytest.approx(1.5)


def test_machine_state_says_idle_or_loaded_from_the_load_average() -> None:
    from benchmarks.common import machine_state

    assert machine_state((0.3, 1.0, 2.0)).startswith("idle (load average 0.30")
    assert machine_state((9.6, 9.0, 7.0)).startswith("shared and loaded (load average 9.60")
    assert "unknown" in machine_state(None)


def test_a_stated_commit_is_recorded_as_stated(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lent GPU machine's tree carries stale git metadata: the commit is stated instead."""
    from benchmarks.common import GIT_SHA_ENV, git_sha

    monkeypatch.delenv(GIT_SHA_ENV, raising=False)
    found = git_sha()
    assert found is not None and re.fullmatch(r"[0-9a-f]{40}(-dirty)?", found)
    monkeypatch.setenv(GIT_SHA_ENV, "e3cdcd6")
    assert git_sha() == "e3cdcd6 (stated)"
