"""trtexec: commands whose shapes come from the manifest, and the performance-summary parser."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

from export.trtexec import TrtexecError, parse_performance_summary, plan_commands
from sdk.bundle import load_bundle
from sdk.cli import main as gesturert

# The end of a TensorRT 10 trtexec run, in the layout trtexec prints (log prefix, then the
# "=== Performance summary ===" block, then the explanations). Numbers are made up.
TRTEXEC_OUTPUT = """\
[11/24/2026-10:15:02] [I] === Trace details ===
[11/24/2026-10:15:02] [I] Trace averages of 10 runs:
[11/24/2026-10:15:02] [I] Average on 10 runs - GPU latency: 0.0452 ms - Host latency: 0.0452 ms \
(enqueue 0.0121 ms)
[11/24/2026-10:15:12] [I]
[11/24/2026-10:15:12] [I] === Performance summary ===
[11/24/2026-10:15:12] [I] Throughput: 21834.6 qps
[11/24/2026-10:15:12] [I] Latency: min = 0.0419922 ms, max = 0.112305 ms, mean = 0.0448151 ms, \
median = 0.0441895 ms, percentile(90%) = 0.046875 ms, percentile(95%) = 0.0478516 ms, \
percentile(99%) = 0.0527344 ms
[11/24/2026-10:15:12] [I] Enqueue Time: min = 0.00878906 ms, max = 0.0654297 ms, \
mean = 0.0119871 ms, median = 0.0114746 ms, percentile(90%) = 0.0136719 ms, \
percentile(95%) = 0.0146484 ms, percentile(99%) = 0.0205078 ms
[11/24/2026-10:15:12] [I] H2D Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, \
percentile(90%) = 0 ms, percentile(95%) = 0 ms, percentile(99%) = 0 ms
[11/24/2026-10:15:12] [I] GPU Compute Time: min = 0.0419922 ms, max = 0.112305 ms, \
mean = 0.0448151 ms, median = 0.0441895 ms, percentile(90%) = 0.046875 ms, \
percentile(95%) = 0.0478516 ms, percentile(99%) = 0.0527344 ms
[11/24/2026-10:15:12] [I] D2H Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, \
percentile(90%) = 0 ms, percentile(95%) = 0 ms, percentile(99%) = 0 ms
[11/24/2026-10:15:12] [I] Total Host Walltime: 10.0001 s
[11/24/2026-10:15:12] [I] Total GPU Compute Time: 9.78523 s
[11/24/2026-10:15:12] [W] * GPU compute time is unstable, with coefficient of variance = 6.1%.
[11/24/2026-10:15:12] [I] Explanations of the performance metrics are printed in the verbose logs.
[11/24/2026-10:15:12] [I]
&&&& PASSED TensorRT.trtexec [TensorRT v101300] [b35] # trtexec --loadEngine=g.plan
""".replace("\\\n", "")


def test_summary_is_parsed_into_benchmark_numbers() -> None:
    summary = parse_performance_summary(TRTEXEC_OUTPUT)
    assert summary["throughput_qps"] == pytest.approx(21834.6)
    assert summary["latency_ms"] == pytest.approx({
        "min": 0.0419922, "max": 0.112305, "mean": 0.0448151, "median": 0.0441895,
        "p90": 0.046875, "p95": 0.0478516, "p99": 0.0527344})
    assert summary["gpu_compute_time_ms"]["p99"] == pytest.approx(0.0527344)
    assert summary["enqueue_time_ms"]["max"] == pytest.approx(0.0654297)
    assert summary["h2d_latency_ms"]["mean"] == 0.0
    assert summary["total_host_walltime_s"] == pytest.approx(10.0001)
    assert summary["total_gpu_compute_time_s"] == pytest.approx(9.78523)
    assert set(summary) == {"throughput_qps", "latency_ms", "enqueue_time_ms", "h2d_latency_ms",
                            "gpu_compute_time_ms", "d2h_latency_ms", "total_host_walltime_s",
                            "total_gpu_compute_time_s"}


def test_seconds_are_converted_and_fractional_percentiles_kept() -> None:
    text = ("=== Performance summary ===\nThroughput: 10 qps\n"
            "Latency: min = 1.5 s, max = 2 s, mean = 1.75 s, median = 1.7 s, "
            "percentile(99.9%) = 2 s\n")
    summary = parse_performance_summary(text)
    assert summary["latency_ms"] == {"min": 1500.0, "max": 2000.0, "mean": 1750.0,
                                     "median": 1700.0, "p99.9": 2000.0}


def test_output_without_summary_is_an_error() -> None:
    with pytest.raises(TrtexecError, match="Performance summary"):
        parse_performance_summary("[I] Engine built in 3.2 s.\n&&&& PASSED\n")


def _flag(argv: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def _parse_shapes(text: str) -> dict[str, tuple[int, ...]]:
    pairs = (item.rsplit(":", 1) for item in text.split(","))
    return {name: tuple(int(d) for d in dims.split("x")) for name, dims in pairs}


def test_commands_use_the_manifest_shapes_for_every_input(tiny_bundle: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    gen = bundle.manifest.generator
    plans = {p.model: p for p in plan_commands(bundle, tmp_path)}
    assert set(plans) == {"generator", "posesync"}
    b, f = gen.batch_profile, gen.frames_profile
    build = plans["generator"].build
    for i, flag in enumerate(("minShapes", "optShapes", "maxShapes")):
        assert _parse_shapes(_flag(build, flag)) == {
            "features": (b[i], f[i], 91), "noise": (b[i], f[i], gen.noise_dim),
            "state": (b[i], gen.state_size)}
    assert "--stronglyTyped" in build and "--skipInference" in build
    assert "--noTF32" in build  # TensorRT's TF32 default would make "fp32" plans drift
    assert _flag(build, "onnx") == str(tiny_bundle / "generator.onnx")
    bench = plans["generator"].benchmark
    assert _parse_shapes(_flag(bench, "shapes")) == {
        "features": (b[1], gen.chunk_frames, 91), "noise": (b[1], gen.chunk_frames, gen.noise_dim),
        "state": (b[1], gen.state_size)}
    assert {"--useCudaGraph", "--noDataTransfers"} <= set(bench)
    assert _flag(bench, "loadEngine") == _flag(build, "saveEngine")
    assert _flag(bench, "exportTimes").startswith(str(tmp_path))
    sync = bundle.manifest.posesync
    assert sync is not None
    max_shapes = _parse_shapes(_flag(plans["posesync"].build, "maxShapes"))
    assert max_shapes == {t.name: (b[2], *t.shape[1:]) for t in sync.model.inputs}


def test_fp16_commands_use_an_fp16_graph_with_fp32_io(tiny_bundle: Path,  # noqa: F811
                                                      tmp_path: Path) -> None:
    import onnx

    plans = plan_commands(load_bundle(tiny_bundle), tmp_path, fp16=True, models=("generator",))
    onnx_path = Path(_flag(plans[0].build, "onnx"))
    assert onnx_path.parent == tmp_path and "--stronglyTyped" in plans[0].build
    graph = onnx.load(str(onnx_path)).graph
    assert {v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)} == {
        onnx.TensorProto.FLOAT}
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    legacy = plan_commands(load_bundle(tiny_bundle), tmp_path, fp16=True, legacy_fp16=True,
                           models=("generator",))
    assert "--fp16" in legacy[0].build and _flag(legacy[0].build, "onnx").endswith(
        "/generator.onnx")


def test_cli_prints_commands_and_run_without_trtexec_exits_2(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert gesturert(["trtexec", str(tiny_bundle), "--out", str(tmp_path)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trtexec")]
    assert len(printed) == 4 and all(shlex.split(line)[0] == "trtexec" for line in printed)
    monkeypatch.setenv("PATH", str(tmp_path))  # no trtexec anywhere
    assert gesturert(["trtexec", str(tiny_bundle), "--out", str(tmp_path), "--run"]) == 2
    assert "trtexec is not on PATH" in capsys.readouterr().err


def test_run_executes_build_then_benchmark_and_writes_the_summary_json(
        tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A stand-in trtexec on PATH: logs its argv, prints the sample summary when benchmarking."""
    import json

    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    (tmp_path / "summary.txt").write_text(TRTEXEC_OUTPUT)
    fake = bin_dir / "trtexec"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.log"}\n'
                    f'case "$*" in *--loadEngine=*) cat {tmp_path / "summary.txt"};; esac\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert gesturert(["trtexec", str(tiny_bundle), "--out", str(out), "--run"]) == 0
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [("--skipInference" in c, "--loadEngine=" in c) for c in calls] == [
        (True, False), (False, True)] * 2
    records = json.loads((out / "trtexec_summary.json").read_text())
    assert [r["model"] for r in records] == ["generator", "posesync"]
    assert records[0]["throughput_qps"] == pytest.approx(21834.6)
    assert records[0]["latency_ms"]["p99"] == pytest.approx(0.0527344)
    gen = load_bundle(tiny_bundle).manifest.generator
    assert records[0]["shapes"]["state"] == [gen.batch_profile[1], gen.state_size]
