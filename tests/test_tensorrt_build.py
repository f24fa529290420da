"""build-engine: profiles from the manifest, fp16 graphs, the stubs patch, and real builds.

CPU tests cover everything up to the TensorRT calls (and the clear "no TensorRT" error);
``tensorrt``-marked tests build real engines where TensorRT and a GPU exist.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

from export.tensorrt_build import (
    TensorRTUnavailable,
    build_bundle_engines,
    convert_to_fp16,
    engine_file_name,
    model_profiles,
    parse_profile,
    tensorrt_version,
)
from sdk.bundle import load_bundle
from sdk.cli import main as gesturert
from sdk.runners.tensorrt_graph import tensor_dims

REPO = Path(__file__).resolve().parents[1]


def test_batch_profile_parsing() -> None:
    assert parse_profile("1:16:256") == (1, 16, 256)
    for bad in ("16", "0:1:2", "4:2:8", "1:x:8", "1:2:3:4"):
        with pytest.raises(ValueError, match="MIN:OPT:MAX"):
            parse_profile(bad)


def test_profiles_cover_every_input_from_the_manifest(tiny_bundle: Path) -> None:  # noqa: F811
    bundle = load_bundle(tiny_bundle)
    gen = bundle.manifest.generator
    _, shapes = model_profiles(bundle, "generator", (2, 8, 32))
    f = gen.frames_profile
    assert shapes == {
        "features": ((2, f[0], 91), (8, f[1], 91), (32, f[2], 91)),
        "noise": ((2, f[0], gen.noise_dim), (8, f[1], gen.noise_dim), (32, f[2], gen.noise_dim)),
        "state": ((2, gen.state_size), (8, gen.state_size), (32, gen.state_size))}
    _, sync = model_profiles(bundle, "posesync")
    assert sync["mfcc"] == ((1, 13, 60), (16, 13, 60), (256, 13, 60))
    with pytest.raises(ValueError, match="no model 'fgd'"):
        model_profiles(bundle, "fgd")


def test_engine_names_carry_precision_compute_capability_and_version() -> None:
    assert engine_file_name("generator", "fp32", "9.0", "10.13.0") == (
        "generator.sm90.trt10.13.0.plan")
    assert engine_file_name("posesync", "fp16", "8.9", "11.0.1") == (
        "posesync-fp16.sm89.trt11.0.1.plan")


def test_fp16_graph_keeps_fp32_io_and_close_outputs(tiny_bundle: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    import onnxruntime as ort

    fp16 = convert_to_fp16(tiny_bundle / "generator.onnx", tmp_path / "g16.onnx")
    graph = onnx.load(str(fp16)).graph
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
               for v in (*graph.input, *graph.output))
    # the input normalisation reads the fp32 features directly (no cast to fp16 before it)
    assert any(n.op_type == "Sub" and n.input[0] == "features" for n in graph.node)
    gen = load_bundle(tiny_bundle).manifest.generator
    rng = np.random.default_rng(0)
    feed = {"features": rng.normal(-20, 40, (2, 5, 91)).astype(np.float32),
            "noise": rng.standard_normal((2, 5, gen.noise_dim)).astype(np.float32),
            "state": np.zeros((2, gen.state_size), np.float32)}
    full = ort.InferenceSession(str(tiny_bundle / "generator.onnx")).run(None, feed)
    half = ort.InferenceSession(str(fp16)).run(None, feed)
    for a, b in zip(full, half, strict=True):
        assert b.dtype == np.float32
        np.testing.assert_allclose(b, a, atol=0.05, rtol=0.02)


def test_without_tensorrt_build_engine_exits_2_with_a_clear_message(
        tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
        tensorrt_version()
    manifest_before = (tiny_bundle / "manifest.json").read_bytes()
    assert gesturert(["build-engine", str(tiny_bundle), "--fp16"]) == 2
    err = capsys.readouterr().err
    assert "gesturert build-engine: TensorRT is not installed" in err
    assert "NVIDIA GPU" in err
    assert (tiny_bundle / "manifest.json").read_bytes() == manifest_before


def test_stub_patch_fixes_the_syntax_errors_of_the_shipped_stubs() -> None:
    spec = importlib.util.spec_from_file_location("patch_trt_stubs",
                                                  REPO / "scripts" / "patch_trt_stubs.py")
    assert spec is not None and spec.loader is not None
    patch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(patch)
    shipped = (
        "class IPluginV2:\n"
        "    def configure_plugin(self, in: list[int], out: list[int]) -> None: ...\n"
        "class INetworkDefinition:\n"
        "    def add_scale_nd(self, input: int, mode: int, shift: Weights = None, "
        "scale: Weights = None, power: Weights = None, channel_axis: int) -> int: ...\n"
        "    # the docs may say: in: the input\n")
    with pytest.raises(SyntaxError):
        ast.parse(shipped)
    fixed = patch.patch_text(shipped)
    ast.parse(fixed)
    assert fixed.startswith("# mypy: ignore-errors\n")
    assert "def configure_plugin(self, in_: list[int]" in fixed
    assert "channel_axis: int = ...)" in fixed
    assert "# the docs may say: in: the input" in fixed  # comments and docstrings untouched
    assert patch.patch_text(fixed) == fixed


@pytest.mark.tensorrt
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_real_engines_are_built_saved_and_recorded(tiny_bundle: Path, tmp_path: Path,  # noqa: F811
                                                    fp16: bool) -> None:
    import tensorrt as trt

    bundle_dir = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    cache = tmp_path / "timing.cache"
    records = build_bundle_engines(bundle_dir, fp16=fp16, batch=(1, 4, 8), timing_cache=cache)
    assert [r.model for r in records] == ["generator", "posesync"]
    assert cache.is_file() and cache.stat().st_size > 0
    bundle = load_bundle(bundle_dir)  # checksums of the engines verified
    assert {e.file for e in bundle.manifest.engines} == {r.file for r in records}
    gen = bundle.manifest.generator
    record = records[0]
    assert record.precision == ("fp16" if fp16 else "fp32")
    assert f".trt{trt.__version__}.plan" in record.file and record.batch_profile == (1, 4, 8)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
        bundle.path(record.file).read_bytes())
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    assert names == {"features", "noise", "state", "poses", "saliency", "state_out"}
    low, _, high = engine.get_tensor_profile_shape("state", 0)
    assert tensor_dims(low) == (1, gen.state_size) and tensor_dims(high) == (8, gen.state_size)
    assert engine.get_tensor_dtype("features") == trt.DataType.FLOAT


def test_engines_are_built_with_tf32_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT turns TF32 on by default; the builder config must clear it (a fake tensorrt
    module records the calls: no TensorRT is needed)."""
    from unittest import mock

    from export import tensorrt_build

    trt = mock.MagicMock(__version__="10.13.0.35")
    builder = trt.Builder.return_value
    builder.create_network.return_value.num_inputs = 0
    builder.build_serialized_network.return_value = b"plan"
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    plan = tensorrt_build.build_serialized_engine(tmp_path / "m.onnx", {})
    assert plan == b"plan"
    config = builder.create_builder_config.return_value
    config.clear_flag.assert_any_call(trt.BuilderFlag.TF32)
    assert mock.call(trt.BuilderFlag.TF32) not in config.set_flag.call_args_list
