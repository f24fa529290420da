"""Tampered and mismatched bundles: every listed file changed or missing, manifests newer,
edited or malformed, engines for another GPU or TensorRT build, broken models loaded
without verification, a backend failing mid-run. Each ends in an error naming the file
and what to do, never a crash or silent wrong output; ONNX Runtime replaces a mismatched
engine only when asked to."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

import sdk.bundle as sdk_bundle
import sdk.runners.tensorrt as trt_module
from export.bundle_writer import GENERATOR_FILE, MFCC_FILE, POSESYNC_FILE
from reliability.make_bad_inputs import speechlike
from sdk import StreamingGenerator
from sdk.bundle import (
    FORMAT_VERSION,
    MANIFEST_HASH_KEY,
    MANIFEST_NAME,
    BundleError,
    EngineRecord,
    load_bundle,
    manifest_digest,
    write_bundle_manifest,
)
from sdk.golden import AUDIO_FILE, GOLDEN_FILE
from sdk.runners import select
from sdk.runners.base import RunnerError
from sdk.runners.onnxrt import CPU_PROVIDER
from sdk.runners.select import BackendConfig, BackendError
from sdk.streaming import GeneratorConfig

REPO = Path(__file__).resolve().parents[2]
FOREIGN_GPU, FOREIGN_TRT = "8.6", "10.3.0.26"  # what the fake engine claims to be built for
ENGINE_FILE = f"engines/generator.sm{FOREIGN_GPU}.fp16.plan"
BUNDLE_FILES = (GENERATOR_FILE, POSESYNC_FILE, MFCC_FILE, ENGINE_FILE, GOLDEN_FILE, AUDIO_FILE)


@pytest.fixture()
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:  # noqa: F811
    """A copy of the tiny bundle plus a fake generator engine for sm8.6 / TensorRT 10.3."""
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    (root / "engines").mkdir()
    (root / ENGINE_FILE).write_bytes(np.random.default_rng(0).bytes(4096))
    record = EngineRecord("generator", ENGINE_FILE, FOREIGN_GPU, FOREIGN_TRT, "fp16",
                          (1, 16, 64), "2026-01-01T00:00:00+00:00")
    write_bundle_manifest(root, dataclasses.replace(load_bundle(root).manifest,
                                                    engines=(record,)))
    return root


def open_cpu(root: Path, **config: Any) -> StreamingGenerator:
    return StreamingGenerator(GeneratorConfig(root, BackendConfig("onnxruntime-cpu"), **config))


def read_manifest(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / MANIFEST_NAME).read_text())
    return data


def write_manifest(root: Path, data: dict[str, Any], rehash: bool = False) -> None:
    if rehash:
        data[MANIFEST_HASH_KEY] = manifest_digest(data)
    (root / MANIFEST_NAME).write_text(json.dumps(data, indent=1))


# ---- files ----
def test_the_cases_cover_every_file_the_manifest_lists(bundle: Path) -> None:
    assert set(load_bundle(bundle).manifest.files) == set(BUNDLE_FILES)


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_a_changed_byte_in_any_file_is_refused_naming_it(bundle: Path, name: str) -> None:
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the manifest") as info:
        open_cpu(bundle)
    assert str(bundle / name) in str(info.value) and "re-export" in str(info.value)


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_a_missing_file_is_refused_naming_it(bundle: Path, name: str) -> None:
    (bundle / name).unlink()
    with pytest.raises(BundleError, match="listed in the manifest but missing; re-export") as info:
        open_cpu(bundle)
    assert str(bundle / name) in str(info.value)


def test_a_broken_model_loaded_without_verification_fails_cleanly_in_a_subprocess(
        bundle: Path) -> None:
    """verify_bundle=False skips the checksums: a truncated model must still end in a
    clear error (onnxruntime's parser), not a crash."""
    model = bundle / GENERATOR_FILE
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 3])
    code = (
        "import sys\n"
        "from sdk.streaming import StreamingGenerator, GeneratorConfig\n"
        "from sdk.runners.base import RunnerError\n"
        "from sdk.bundle import BundleError\n"
        "try:\n"
        f"    StreamingGenerator(GeneratorConfig({str(bundle)!r}, verify_bundle=False),\n"
        "                       backend='onnxruntime-cpu')\n"
        "except (RunnerError, BundleError) as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and GENERATOR_FILE in done.stdout, done.stdout


def test_a_corrupt_bundle_tar_is_refused(tmp_path: Path) -> None:
    tar = tmp_path / "bundle.tar"
    tar.write_bytes(np.random.default_rng(1).bytes(10240))
    with pytest.raises(BundleError, match="cannot unpack the bundle tar"):
        open_cpu(tar)


def _tar(root: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname="bundle")
    return out


def test_a_tar_bundle_leaves_no_unpacked_copy_behind(
        bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A generator's unpacked copy lives while the generator object does (files stay
    readable after close) and goes with it; a refused tar leaves nothing."""
    made: list[Path] = []
    mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: Any, **kwargs: Any) -> str:
        made.append(Path(mkdtemp(*args, **kwargs)))
        return str(made[-1])

    monkeypatch.setattr(sdk_bundle.tempfile, "mkdtemp", recording_mkdtemp)
    tar = _tar(bundle, tmp_path / "bundle.tar")
    with open_cpu(tar) as gen:
        assert gen.bundle.unpacked_dir == made[0] and made[0].is_dir()
        assert len(gen.generate(np.zeros(16000, np.float32), 16000)) == gen.fps
    assert gen.bundle.path(POSESYNC_FILE).is_file()  # closed, still readable
    del gen
    gc.collect()
    assert not made[0].exists()
    dropped = open_cpu(tar)  # never closed
    assert made[1].is_dir()
    del dropped
    gc.collect()
    assert not made[1].exists()
    data = bytearray((bundle / MFCC_FILE).read_bytes())
    data[100] ^= 0xFF
    (bundle / MFCC_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the manifest"):
        open_cpu(_tar(bundle, tmp_path / "tampered.tar"))
    assert len(made) == 3 and not made[2].exists()


def test_an_engine_without_a_checksum_is_refused(bundle: Path) -> None:
    data = read_manifest(bundle)
    del data["files"][ENGINE_FILE]
    write_manifest(bundle, data, rehash=True)
    with pytest.raises(BundleError, match=re.escape(f"files {[ENGINE_FILE]} are not listed "
                                                    "with a checksum")):
        open_cpu(bundle)


# ---- manifest ----
def test_a_manifest_from_a_newer_format_says_to_upgrade_or_re_export(bundle: Path) -> None:
    data = read_manifest(bundle)
    data["format_version"] = FORMAT_VERSION + 1
    data["some_new_section"] = {"written by": "a newer gesturert"}
    write_manifest(bundle, data, rehash=True)
    with pytest.raises(BundleError, match=f"bundle format {FORMAT_VERSION + 1} is newer than "
                       f"this sdk understands .*upgrade gesturert or re-export") as info:
        open_cpu(bundle)
    assert str(bundle / MANIFEST_NAME) in str(info.value)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[key] = value
    return edit


# Edits that change what the runtime computes yet fit the models' input shapes: without
# the manifest's own checksum these would be silent wrong output.
SILENT_EDITS = {
    "lookahead": _set("generator.lookahead_frames", 3),
    "normalization-scale": _set("normalization.scale_px", 75.0),
    "chunk-frames": _set("generator.chunk_frames", 4),
    "engine-claims-this-gpu": _set("engines", []),
}


@pytest.mark.parametrize("edit", SILENT_EDITS.values(), ids=SILENT_EDITS.keys())
def test_an_edited_manifest_is_refused(bundle: Path, edit: Callable[[dict[str, Any]], None]
                                       ) -> None:
    data = read_manifest(bundle)
    edit(data)
    write_manifest(bundle, data)
    with pytest.raises(BundleError, match=f"do not match its {MANIFEST_HASH_KEY}.*edited after "
                       "export.*re-export") as info:
        open_cpu(bundle)
    assert str(bundle / MANIFEST_NAME) in str(info.value)


def test_a_re_hashed_edit_is_still_caught_by_the_model_and_feature_checks(bundle: Path) -> None:
    data = read_manifest(bundle)
    data["generator"]["state_size"] += 1
    write_manifest(bundle, data, rehash=True)
    with pytest.raises(BundleError, match=r"input state has last axis .* re-export"):
        open_cpu(bundle)
    data = read_manifest(bundle)
    data["generator"]["state_size"] -= 1
    data["features"]["fps"] = 30
    write_manifest(bundle, data, rehash=True)
    with pytest.raises(BundleError, match=r"feature_hash .* the manifest was edited: re-export"):
        open_cpu(bundle)


@pytest.mark.parametrize("text, message", [
    ("{ not json", "not valid JSON"),
    ("[1, 2, 3]", "holds JSON list, not a manifest object"),
    ("{}", "no integer format_version"),
    ('{"format_version": 1}', "malformed manifest"),
    ('{"format_version": 1, "features": 7}', "malformed manifest"),
], ids=["not-json", "json-list", "empty", "only-version", "wrong-types"])
def test_a_malformed_manifest_is_refused(bundle: Path, text: str, message: str) -> None:
    (bundle / MANIFEST_NAME).write_text(text)
    with pytest.raises(BundleError, match=message) as info:
        open_cpu(bundle)
    assert str(bundle / MANIFEST_NAME) in str(info.value)


# ---- engines ----
@pytest.fixture()
def machine(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Pretend this machine has a GPU of compute capability ``cc`` and TensorRT ``version``
    (ONNX Runtime keeps only its CPU provider)."""
    def pretend(cc: str, version: str) -> None:
        monkeypatch.setattr(trt_module, "tensorrt_version", lambda: version)
        monkeypatch.setattr(trt_module, "cuda_compute_capability", lambda device=0: cc)
        monkeypatch.setattr(select, "available_providers", lambda: [CPU_PROVIDER])
    return pretend


@pytest.mark.parametrize("cc, version, says", [
    ("9.0", FOREIGN_TRT, "no generator engine for sm9.0 with TensorRT 10.3.0.26"),
    (FOREIGN_GPU, "10.13.0.35", "no generator engine for sm8.6 with TensorRT 10.13.0.35"),
], ids=["other-gpu", "other-tensorrt"])
def test_an_engine_for_another_gpu_or_tensorrt_is_refused_saying_what_to_do(
        bundle: Path, machine: Callable[[str, str], None], cc: str, version: str, says: str
) -> None:
    machine(cc, version)
    with pytest.raises(BackendError) as info:
        StreamingGenerator(bundle, backend="tensorrt")
    message = str(info.value)
    assert says in message
    assert f"the bundle has sm{FOREIGN_GPU}/TensorRT {FOREIGN_TRT}" in message
    assert "rebuild with gesturert build-engine" in message
    assert "fallback_to_onnxruntime" in message


def test_onnxruntime_replaces_a_mismatched_engine_only_when_asked(
        bundle: Path, machine: Callable[[str, str], None],
        caplog: pytest.LogCaptureFixture) -> None:
    machine("9.0", "10.13.0.35")
    audio = speechlike(16000, 2.0)[:, 0]
    with open_cpu(bundle) as reference:
        want = reference.generate(audio, 16000, seed=3)
    config = BackendConfig("tensorrt", fallback_to_onnxruntime=True)
    with caplog.at_level(logging.WARNING, logger="sdk.runners"), \
            StreamingGenerator(bundle, backend=config) as fallback:
        got = fallback.generate(audio, 16000, seed=3)
        assert fallback.backend_name == "onnxruntime-cpu"
        assert "sm9.0" in fallback.backend.rejected["tensorrt"]
    assert "falling back to onnxruntime" in caplog.text and "sm9.0" in caplog.text
    np.testing.assert_array_equal(got.keypoints, want.keypoints)  # the same model, same numbers
    with StreamingGenerator(bundle, backend="auto") as auto:  # auto never raises for engines
        assert auto.backend_name == "onnxruntime-cpu"
        assert "rebuild with gesturert build-engine" in auto.describe()


@pytest.mark.tensorrt
def test_a_garbage_engine_claiming_this_gpu_fails_cleanly_in_a_subprocess(bundle: Path) -> None:
    """Real TensorRT: a plan that matches by its record but is not an engine must end in
    RunnerError naming the file (deserialisation refused), not a crash."""
    from sdk.runners.tensorrt import cuda_compute_capability, tensorrt_version

    cc, version = cuda_compute_capability(0), tensorrt_version()
    name = f"engines/generator.sm{cc}.fp32.plan"
    (bundle / name).write_bytes(np.random.default_rng(2).bytes(65536))
    record = EngineRecord("generator", name, cc, version, "fp32", (1, 16, 64), "")
    write_bundle_manifest(bundle, dataclasses.replace(load_bundle(bundle).manifest,
                                                      engines=(record,)))
    code = (
        "from sdk.streaming import StreamingGenerator\n"
        "from sdk.runners.base import RunnerError\n"
        "try:\n"
        f"    StreamingGenerator({str(bundle)!r}, backend='tensorrt')\n"
        "except RunnerError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "rebuild it" in done.stdout, done.stdout


# ---- backend faults ----
def test_a_failed_inference_changes_no_stream_and_a_retry_gives_the_same_frames(
        bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend raising mid-run (a lost GPU, a driver error) propagates as RunnerError;
    no stream moves, so stepping again gives the frames of a run without the fault."""
    audio = speechlike(16000, 3.0)[:, 0]
    with open_cpu(bundle) as gen:
        want = [gen.generate(audio, 16000, seed=s) for s in (1, 2)]
        runner = gen._stepper.runner
        infer = runner.infer
        calls = {"n": 0}

        def flaky(feeds: Any) -> Any:
            calls["n"] += 1
            if calls["n"] % 7 == 0:
                raise RunnerError(f"{runner.name}: inference failed: simulated device loss")
            return infer(feeds)

        bind = runner.bind

        def flaky_bind(inputs: Any, outputs: Any) -> Any:  # the stepper's ping-pong calls
            call = bind(inputs, outputs)

            def flaky_call() -> None:
                calls["n"] += 1
                if calls["n"] % 7 == 0:
                    raise RunnerError(f"{runner.name}: inference failed: simulated device loss")
                call()
            return flaky_call

        monkeypatch.setattr(runner, "infer", flaky)
        monkeypatch.setattr(runner, "bind", flaky_bind)
        streams = [gen.create_stream(seed=s) for s in (1, 2)]
        for stream in streams:
            stream.accept_waveform(audio, 16000)
            stream.input_finished()
        failures = 0
        while any(gen.is_ready(s) for s in streams):
            ready = [s for s in streams if gen.is_ready(s)]
            before = [(s.num_frames_emitted, s._fed) for s in ready]
            try:
                gen.step(ready)
            except RunnerError as exc:
                assert "simulated device loss" in str(exc)
                assert [(s.num_frames_emitted, s._fed) for s in ready] == before
                failures += 1
        assert failures > 3
        for stream, expected in zip(streams, want, strict=True):
            got = stream.pop_frames()
            np.testing.assert_array_equal(got.index, expected.index)
            np.testing.assert_array_equal(got.keypoints, expected.keypoints)
            stream.close()
