"""Runner interface, state steppers, engine matching and backend selection.

The TensorRT cases need TensorRT and a GPU (marker ``tensorrt``): they build an fp32
engine from the tiny bundle's ONNX and check it against ONNX Runtime.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers_bundle import TINY_GENERATOR, tiny_bundle  # noqa: F401  (session fixture)

from sdk.bundle import Bundle, EngineRecord, load_bundle, write_bundle_manifest
from sdk.features import DEFAULT_FEATURES
from sdk.runners import select
from sdk.runners.base import RunnerError, RunnerInputError
from sdk.runners.host_stepper import HostStateStepper
from sdk.runners.onnxrt import CPU_PROVIDER, CUDA_PROVIDER, OnnxRuntimeRunner
from sdk.runners.select import BackendConfig, BackendError, choose_backend, create_stepper
from sdk.runners.tensorrt_graph import batch_buckets
from train.models.generator import SalientPostureGenerator

F = DEFAULT_FEATURES.feature_dim
N, S = TINY_GENERATOR.noise_dim, SalientPostureGenerator(TINY_GENERATOR).state_size


def feed(batch: int, frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "features": rng.normal(0, 30, (batch, frames, F)).astype(np.float32),
        "noise": rng.normal(0, 1, (batch, frames, N)).astype(np.float32),
        "state": rng.normal(0, 0.5, (batch, S)).astype(np.float32),
    }


def test_sizes_are_the_bundles(tiny_bundle: Path) -> None:  # noqa: F811
    spec = load_bundle(tiny_bundle).manifest.generator
    assert (spec.noise_dim, spec.state_size) == (N, S)


@pytest.fixture()
def runner(tiny_bundle: Path) -> OnnxRuntimeRunner:  # noqa: F811
    return OnnxRuntimeRunner(tiny_bundle / "generator.onnx", intra_op_num_threads=1)


# ---- the runner interface (ONNX Runtime) ----
def test_runner_is_a_context_manager_with_metadata_and_timing(runner: OnnxRuntimeRunner) -> None:
    with pytest.raises(RunnerError, match="not active"):
        runner.infer(feed(1, 1))
    with runner as active:
        assert active is runner and runner.is_active
        meta = runner.get_input_metadata()
        assert list(meta) == ["features", "noise", "state"]
        assert meta["features"].shape == ("batch", "frames", F)
        assert meta["state"].dtype == np.float32
        assert runner.last_inference_time() is None
        out = runner.infer(feed(3, 5))
        assert out["poses"].shape == (3, 5, 122, 2) and out["saliency"].shape == (3, 5)
        assert out["state_out"].shape == (3, S)
        assert np.all(out["poses"][:, :, 0] == 0.0)  # root exactly 0
        assert (runner.last_inference_time() or 0.0) > 0.0
        assert runner.providers == [CPU_PROVIDER]
    assert not runner.is_active


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.pop("noise"), r"missing \['noise'\]"),
    (lambda f: f.update(extra=np.zeros(1, np.float32)), r"unexpected \['extra'\]"),
    (lambda f: f.update(state=f["state"].astype(np.float64)), "must be float32, got float64"),
    (lambda f: f.update(features=f["features"][..., :90]), r"shape \(batch, frames, 91\)"),
    (lambda f: f.update(state=f["state"][0]), rf"shape \(batch, {S}\), got \({S},\)"),
    (lambda f: f.update(noise=[[0.0] * N]), "must be a numpy array"),
])
def test_runner_checks_every_feed_against_the_inputs(runner: OnnxRuntimeRunner, change: object,
                                                     message: str) -> None:
    bad = feed(2, 3)
    change(bad)  # type: ignore[operator]
    with runner, pytest.raises(RunnerInputError, match=message):
        runner.infer(bad)


def test_missing_model_file_is_a_runner_error(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="could not load"):
        OnnxRuntimeRunner(tmp_path / "absent.onnx").activate()


# ---- the host state stepper ----
def test_host_stepper_gathers_and_scatters_state_by_slot(runner: OnnxRuntimeRunner) -> None:
    stepper = HostStateStepper(runner, S, "onnxruntime-cpu")
    slots = [stepper.allocate_slot() for _ in range(3)]
    assert slots == [0, 1, 2]
    first = feed(3, 2, seed=1)
    stepper.step(first["features"], first["noise"], slots)
    states = [stepper.read_state(s) for s in slots]
    # A second step for slots 2 and 0 only (rows in another order) equals a plain infer.
    second = feed(2, 3, seed=2)
    out = stepper.step(second["features"], second["noise"], [2, 0])
    poses, saliency = out.poses.copy(), out.saliency.copy()
    want = runner.infer({"features": second["features"], "noise": second["noise"],
                         "state": np.stack([states[2], states[0]])})
    np.testing.assert_array_equal(poses, want["poses"])
    np.testing.assert_array_equal(saliency, want["saliency"])
    np.testing.assert_array_equal(stepper.read_state(2), want["state_out"][0])
    np.testing.assert_array_equal(stepper.read_state(0), want["state_out"][1])
    np.testing.assert_array_equal(stepper.read_state(1), states[1])  # untouched
    stepper.reset_slot(2)
    assert not stepper.read_state(2).any()
    with pytest.raises(ValueError, match="same slot twice"):
        stepper.step(second["features"], second["noise"], [1, 1])
    stepper.release_slot(1)
    with pytest.raises(ValueError, match="not allocated"):
        stepper.read_state(1)
    assert stepper.allocate_slot() == 1 and not stepper.read_state(1).any()
    for _ in range(20):  # grows the table past its first size, keeping the rows
        stepper.allocate_slot()
    np.testing.assert_array_equal(stepper.read_state(0), want["state_out"][1])
    stepper.close()
    assert not runner.is_active


# ---- engines and backend choice ----
def engine(cc: str = "9.0", version: str = "10.13.0.35", precision: str = "fp16",
           model: str = "generator") -> EngineRecord:
    return EngineRecord(model=model, file=f"engines/{model}.sm{cc}.{precision}.plan",
                        compute_capability=cc, tensorrt_version=version, precision=precision,
                        batch_profile=(1, 16, 64), created_at="")


def test_engines_match_on_compute_capability_and_tensorrt_build() -> None:
    found, why = select.match_engine([], "9.0", "10.13.0.35")
    assert found is None and "no generator engine" in why
    records = [engine("8.6"), engine("9.0", "10.12.0.36"), engine("9.0", precision="fp32"),
               engine("9.0", precision="fp16"), engine("9.0", model="posesync")]
    found, why = select.match_engine(records, "9.0", "10.13.0.40")  # same major.minor.patch
    assert found == records[3] and "matches sm9.0" in why  # fp16 preferred
    found, _ = select.match_engine(records, "9.0", "10.13.0.35", precision="fp32")
    assert found == records[2]
    found, why = select.match_engine(records, "8.9", "10.13.0.35")
    assert found is None and "sm8.9" in why and "sm8.6/TensorRT 10.13.0.35" in why
    found, why = select.match_engine(records[:1], "8.6", "10.13.0.35", precision="fp32")
    assert found is None and "no fp32 generator engine" in why


def test_gather_runs_and_batch_buckets() -> None:
    assert batch_buckets(1, 64) == (1, 2, 4, 8, 16, 32, 64)
    assert batch_buckets(1, 48) == (1, 2, 4, 8, 16, 32, 48)
    assert batch_buckets(4, 4) == (4,)


def test_auto_on_a_cpu_machine_picks_onnxruntime_cpu_and_says_why(
        tiny_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    bundle = load_bundle(tiny_bundle)
    with caplog.at_level(logging.INFO, logger="sdk.runners"):
        stepper, choice = create_stepper(bundle, BackendConfig("auto"))
    stepper.close()
    assert choice.backend == "onnxruntime-cpu" and choice.providers == (CPU_PROVIDER,)
    assert set(choice.rejected) == {"tensorrt", "onnxruntime-gpu"}
    assert "onnxruntime-cpu" in caplog.text and "tensorrt:" in caplog.text


def test_tensorrt_without_an_engine_fails_or_falls_back_when_asked(
        tiny_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    bundle = load_bundle(tiny_bundle)
    with pytest.raises(BackendError, match="fallback_to_onnxruntime"):
        choose_backend(bundle, BackendConfig("tensorrt"))
    with caplog.at_level(logging.WARNING, logger="sdk.runners"):
        choice = choose_backend(bundle, BackendConfig("tensorrt", fallback_to_onnxruntime=True))
    assert choice.backend == "onnxruntime-cpu" and "falling back" in caplog.text
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        choose_backend(bundle, BackendConfig("onnxruntime-gpu"))
    with pytest.raises(ValueError, match="backend must be one of"):
        BackendConfig("cuda")


def test_auto_prefers_a_matching_engine_then_the_cuda_provider(
        tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Selection logic with the machine probes replaced (no GPU here)."""
    import sdk.runners.tensorrt as trt_module

    loaded = load_bundle(tiny_bundle)
    bundle = Bundle(loaded.root, dataclasses.replace(
        loaded.manifest, engines=(engine("8.6"), engine("9.0", precision="fp32"))))
    monkeypatch.setattr(trt_module, "tensorrt_version", lambda: "10.13.0.35")
    monkeypatch.setattr(trt_module, "cuda_compute_capability", lambda device=0: "9.0")
    monkeypatch.setattr(select, "available_providers", lambda: [CUDA_PROVIDER, CPU_PROVIDER])
    choice = choose_backend(bundle, BackendConfig("auto"))
    assert choice.backend == "tensorrt" and choice.engine == bundle.manifest.engines[1]
    monkeypatch.setattr(trt_module, "cuda_compute_capability", lambda device=0: "8.9")
    choice = choose_backend(bundle, BackendConfig("auto"))
    assert choice.backend == "onnxruntime-gpu"
    assert choice.providers == (CUDA_PROVIDER, CPU_PROVIDER)
    assert "sm8.9" in choice.rejected["tensorrt"]


# ---- TensorRT (real engines; skipped without TensorRT and a GPU) ----
@pytest.fixture(scope="module")
def trt_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The tiny bundle plus an fp32 generator engine for this GPU (TF32 off)."""
    from sdk.runners.tensorrt import cuda_compute_capability, tensorrt_version

    try:  # a bare `tensorrt` namespace (stubs only) imports but holds no TensorRT
        tensorrt_version()
    except RunnerError as exc:
        pytest.skip(str(exc))
    import tensorrt as trt

    root = tmp_path_factory.mktemp("trt_bundle")
    shutil.copytree(tiny_bundle, root, dirs_exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(root / "generator.onnx")), parser.get_error(0)
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for name, last in (("features", (F,)), ("noise", (N,))):
        profile.set_shape(name, trt.Dims([1, 1, *last]), trt.Dims([16, 1, *last]),
                          trt.Dims([64, 8, *last]))
    profile.set_shape("state", trt.Dims([1, S]), trt.Dims([16, S]), trt.Dims([64, S]))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    cc = cuda_compute_capability(0)
    record = EngineRecord("generator", f"engines/generator.sm{cc}.fp32.plan", cc,
                          str(trt.__version__), "fp32", (1, 16, 64), "")
    (root / "engines").mkdir(exist_ok=True)
    (root / record.file).write_bytes(bytes(plan))
    manifest = load_bundle(root).manifest
    write_bundle_manifest(root, dataclasses.replace(manifest, engines=(record,)))
    return root


@pytest.mark.tensorrt
def test_tensorrt_runner_matches_onnxruntime(trt_bundle: Path) -> None:
    from sdk.runners.tensorrt import TensorRTRunner

    record = load_bundle(trt_bundle).manifest.engines[0]
    data = feed(5, 3, seed=4)
    with OnnxRuntimeRunner(trt_bundle / "generator.onnx") as ort_runner:
        want = {k: v.copy() for k, v in ort_runner.infer(data).items()}
    with TensorRTRunner(trt_bundle / record.file) as trt_runner:
        got = trt_runner.infer(data)
        assert trt_runner.get_input_metadata()["state"].shape[1] == S
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-4, rtol=1e-4)


@pytest.mark.tensorrt
def test_tensorrt_stepper_keeps_state_on_the_device_like_the_host_stepper(
        trt_bundle: Path) -> None:
    from sdk.runners.tensorrt import TensorRTRunner
    from sdk.runners.tensorrt_stepper import TensorRTStepper

    record = load_bundle(trt_bundle).manifest.engines[0]
    host = HostStateStepper(OnnxRuntimeRunner(trt_bundle / "generator.onnx"), S, "ort")
    device = TensorRTStepper(TensorRTRunner(trt_bundle / record.file), S)
    try:
        for stepper in (host, device):
            for _ in range(40):
                stepper.allocate_slot()
        rng = np.random.default_rng(0)
        for step in range(12):  # varying batch sizes (buckets) and slot orders
            batch = int(rng.integers(1, 40))
            slots = [int(s) for s in rng.permutation(40)[:batch]]
            data = feed(batch, 1, seed=step)
            want = host.step(data["features"], data["noise"], slots)
            got = device.step(data["features"], data["noise"], slots)
            np.testing.assert_allclose(got.poses, want.poses, atol=1e-4, rtol=1e-4)
            np.testing.assert_allclose(got.saliency, want.saliency, atol=1e-4, rtol=1e-4)
        for slot in range(40):
            np.testing.assert_allclose(device.read_state(slot), host.read_state(slot),
                                       atol=1e-4, rtol=1e-4)
        device.reset_slot(3)
        assert not device.read_state(3).any()
    finally:
        host.close()
        device.close()


@pytest.mark.tensorrt
def test_streaming_on_tensorrt_matches_onnxruntime(trt_bundle: Path,
                                                   speech_16k: np.ndarray) -> None:
    from sdk import StreamingGenerator

    audio = speech_16k[: 4 * 16000]
    with StreamingGenerator(trt_bundle, backend="tensorrt") as on_trt, \
            StreamingGenerator(trt_bundle, backend="onnxruntime-cpu") as on_ort:
        assert on_trt.backend_name == "tensorrt"
        got, want = on_trt.generate(audio, 16000, seed=2), on_ort.generate(audio, 16000, seed=2)
    np.testing.assert_array_equal(got.index, want.index)
    np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-2)  # pixels
    np.testing.assert_allclose(got.saliency, want.saliency, atol=1e-4)
