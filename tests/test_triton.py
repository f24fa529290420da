"""Triton model repository: configs valid for Triton's ModelConfig and true to the ONNX graphs."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

pytest.importorskip("tritonclient", reason="Triton's ModelConfig schema ships in tritonclient")

from export.onnx_export import read_model_spec
from export.triton import (
    TritonConfigError,
    check_config_against_onnx,
    export_triton_repository,
    generator_config,
    parse_config,
    render_pbtxt,
)
from sdk.bundle import EngineRecord, load_bundle, write_bundle_manifest
from sdk.cli import main as gesturert


def test_repository_configs_parse_and_match_the_onnx_models(tiny_bundle: Path,  # noqa: F811
                                                            tmp_path: Path) -> None:
    assert gesturert(["export-triton", str(tiny_bundle), "--out", str(tmp_path)]) == 0
    manifest = load_bundle(tiny_bundle).manifest
    gen = parse_config((tmp_path / "gesturert_generator_onnx" / "config.pbtxt").read_text())
    assert gen.platform == "onnxruntime_onnx"
    assert gen.max_batch_size == manifest.generator.batch_profile[2]
    assert [t.name for t in gen.input] == ["features", "noise"]
    assert [t.name for t in gen.output] == ["poses", "saliency"]
    assert list(gen.input[0].dims) == [-1, 91] and list(gen.output[0].dims) == [-1, 122, 2]
    (state,) = gen.sequence_batching.state
    assert (state.input_name, state.output_name) == ("state", "state_out")
    assert list(state.dims) == [manifest.generator.state_size]
    assert state.initial_state[0].zero_data and not gen.sequence_batching.control_input
    assert (tmp_path / "gesturert_generator_onnx" / "1" / "model.onnx").read_bytes() == (
        tiny_bundle / "generator.onnx").read_bytes()
    sync = parse_config((tmp_path / "gesturert_posesync_onnx" / "config.pbtxt").read_text())
    assert sync.HasField("dynamic_batching") and not sync.HasField("sequence_batching")
    assert [t.name for t in sync.input] == ["mfcc", "pose_images"]
    assert not (tmp_path / "gesturert_generator_trt").exists()  # no engines in this bundle


def test_engines_give_tensorrt_plan_variants_per_compute_capability(
        tiny_bundle: Path, tmp_path: Path) -> None:  # noqa: F811
    bundle_dir = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    bundle = load_bundle(bundle_dir)
    plans = {"9.0": "engines/generator.sm90.trt10.13.0.plan",
             "8.9": "engines/generator.sm89.trt10.13.0.plan"}
    (bundle_dir / "engines").mkdir()
    records = []
    for cc, file in plans.items():
        (bundle_dir / file).write_bytes(b"not a real engine: configs only")
        records.append(EngineRecord("generator", file, cc, "10.13.0", "fp32", (1, 16, 256),
                                    "2026-11-24T00:00:00+00:00"))
    write_bundle_manifest(bundle_dir, dataclasses.replace(bundle.manifest,
                                                          engines=tuple(records)))
    export_triton_repository(bundle_dir, tmp_path / "repo")
    trt_dir = tmp_path / "repo" / "gesturert_generator_trt"
    config = parse_config((trt_dir / "config.pbtxt").read_text())
    assert config.platform == "tensorrt_plan"
    assert dict(config.cc_model_filenames) == {cc: Path(f).name for cc, f in plans.items()}
    assert all((trt_dir / "1" / Path(f).name).is_file() for f in plans.values())
    assert config.sequence_batching.state[0].input_name == "state"


def test_config_that_disagrees_with_the_graph_is_rejected(tiny_bundle: Path) -> None:  # noqa: F811
    bundle = load_bundle(tiny_bundle)
    spec = read_model_spec(tiny_bundle / "generator.onnx")
    good = generator_config(bundle, "g", "onnxruntime_onnx")
    check_config_against_onnx(parse_config(render_pbtxt(good)), spec, "good")

    wrong_dims = generator_config(bundle, "g", "onnxruntime_onnx")
    wrong_dims["input"][0]["dims"] = [-1, 90]
    with pytest.raises(TritonConfigError, match=r"'features' has dims \[-1, 90\]"):
        check_config_against_onnx(parse_config(render_pbtxt(wrong_dims)), spec, "x")

    renamed_state = generator_config(bundle, "g", "onnxruntime_onnx")
    renamed_state["sequence_batching"]["state"][0]["output_name"] = "next_state"
    with pytest.raises(TritonConfigError, match="'next_state' is not a tensor"):
        check_config_against_onnx(parse_config(render_pbtxt(renamed_state)), spec, "x")

    dropped = generator_config(bundle, "g", "onnxruntime_onnx")
    del dropped["sequence_batching"]
    with pytest.raises(TritonConfigError, match=r"\['state', 'state_out'\]"):
        check_config_against_onnx(parse_config(render_pbtxt(dropped)), spec, "x")


def test_text_that_is_not_a_model_config_is_rejected() -> None:
    with pytest.raises(TritonConfigError, match="no field named \"sequence_batcher\""):
        parse_config('name: "g"\nsequence_batcher { }\n')
    with pytest.raises(TritonConfigError, match=r"config\.pbtxt"):
        parse_config('name: "g"\nmax_batch_size: "many"\n')
