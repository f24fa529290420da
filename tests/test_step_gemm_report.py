"""The issue-20 benchmark report: the docs passage (docs/step_cpu.md, between
``step-gemm-goals:start`` and ``step-gemm-goals:end``) is the committed results' and goals
fail."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks.step_gemm_report import (
    DOC,
    DOC_END,
    DOC_START,
    RESULTS,
    doc_passage,
    goals,
    markdown,
)


def _result() -> dict:
    return json.loads(RESULTS.read_text())


def test_docs_passage_is_generated_from_the_committed_results() -> None:
    text = DOC.read_text()
    block = text.split(DOC_START, 1)[1].split(DOC_END, 1)[0]
    assert block.strip() == doc_passage(_result()).strip(), \
        "regenerate: .venv/bin/python -m benchmarks.step_gemm_report"


def test_a_slow_step_is_reported_missed() -> None:
    result = copy.deepcopy(_result())
    for row in result["models"]:
        if row["model"] == "step fp32 (GEMM)":
            row["percent_of_sgemm"], row["cpu_us_per_frame"] = 5.0, 500.0
    for row in result["front_end"]:
        row["streams_per_core"] = 10.0
    for row in result["one_stream"]:
        row["cpu_us_p50"] = 500.0
    statuses = {g[0]: g[2] for g in goals(result)}
    assert statuses[">= 40 % of single-thread sgemm at batch 64 (fp32 step)"] == "**missed**"
    assert statuses["batch-1 step <= 60 us per frame (fp32 step, run as the SDK runs it)"] \
        == "**missed**"
    for precision in ("fp32", "int8"):
        assert statuses[f"batch-1 step <= 60 us per frame through the SDK ({precision} step, "
                        "HostStateStepper)"] == "**missed**"
    assert all(v == "**missed**" for k, v in statuses.items() if "streams per core" in k)


def test_int8_out_of_tolerance_is_reported_missed() -> None:
    result = copy.deepcopy(_result())
    for record in result["bundle"]["step_models"]:
        if record["precision"] == "int8":
            record["measured"]["keypoints_max_abs"] = 1.0
    statuses = {g[0]: g[2] for g in goals(result)}
    assert statuses["int8 within its validate tolerances"] == "**missed**"


def test_the_int8_layers_kept_fp32_and_their_sensitivity_are_reported() -> None:
    result = copy.deepcopy(_result())
    for record in result["bundle"]["step_models"]:
        if record["precision"] == "int8":
            record["measured"]["fp32_layers"] = ["dec_proj_gemm"]
            record["measured"]["layer_sensitivity"] = {"in_proj_gemm": 0.3,
                                                       "dec_proj_gemm": 0.9}
    text = markdown(result)
    assert "| dec_proj_gemm | 0.9 | yes |" in text and "| in_proj_gemm | 0.3 |  |" in text
    assert text.index("dec_proj_gemm | 0.9") < text.index("in_proj_gemm | 0.3")


@pytest.mark.slow
def test_the_benchmark_rebuilds_the_shipped_bundles_generator_with_its_styles(
        tmp_path: Path) -> None:
    """Without a checkpoint the benchmark rebuilds the torch generator from generator.onnx:
    with the bundle's style table, or the step models cannot be made from it."""
    from benchmarks.step_gemm import prepare_bundle
    from sdk.bundle import load_bundle

    root, generator = prepare_bundle(None, None, tmp_path)
    manifest = load_bundle(root).manifest
    assert generator.config.styles == manifest.generator.styles
    assert {s.precision for s in manifest.step_models} == {"fp32", "int8"}


def test_each_run_s_goals_are_reported_with_how_many_runs_met_them() -> None:
    from benchmarks.step_gemm_report import goals_in_each_run, run_summary

    fast = _result()
    slow = copy.deepcopy(fast)
    for row in slow["one_stream"]:
        row["cpu_us_p50"] = 500.0
    result = {**fast, "runs": [run_summary(fast), run_summary(slow), run_summary(fast)]}
    lines = goals_in_each_run(result)
    row = next(line for line in lines if "(fp32 step, run as the SDK runs it)" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    bound = next(r for r in fast["one_stream"] if r["path"].startswith("model call (fp32)"))
    met_in_fast = bound["cpu_us_p50"] <= 60
    assert cells[2] == "500" and cells[-1] == f"{2 if met_in_fast else 0} of 3"
    assert float(cells[4]) == pytest.approx(bound["cpu_us_p50"], abs=1e-3)  # the median
    assert "## Goals in each of 3 runs" in markdown(result)
    assert goals_in_each_run({**fast, "runs": [run_summary(fast)]}) == []
