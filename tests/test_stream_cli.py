"""`gesturert stream` and the example app examples/stream_wav.py."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

from sdk import StreamingGenerator
from sdk.audio import resample
from sdk.bundle import load_bundle
from sdk.cli import ENTRY_POINT_GROUP
from sdk.cli_commands import register_stream

REPO = Path(__file__).resolve().parents[1]


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gesturert")
    register_stream(parser.add_subparsers())
    args = parser.parse_args(["stream", *argv])
    return int(args.func(args))


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory: pytest.TempPathFactory, speech_16k: np.ndarray) -> Path:
    """4 s of the speech sample as a 48 kHz stereo 16-bit wav."""
    mono = resample(speech_16k[: 4 * 16000], 16000, 48000)
    path = tmp_path_factory.mktemp("audio") / "speech48k.wav"
    soundfile.write(path, np.stack([mono, 0.5 * mono], axis=1), 48000, subtype="PCM_16")
    return path


def test_stream_is_a_gesturert_command() -> None:
    commands = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert commands.get("stream") == "sdk.cli_commands:register_stream"


def test_stream_writes_the_offline_frames_and_reports_latency(
        tiny_bundle: Path, stereo_wav: Path, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "poses.npz"
    assert run_cli([str(tiny_bundle), str(stereo_wav), "--out", str(out), "--chunk-ms", "20",
                    "--backend", "onnxruntime-cpu", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "backend: onnxruntime-cpu" in printed
    assert "step latency (compute): p50" in printed and "p99" in printed
    assert "end-to-end latency: p50" in printed and f"wrote {out}" in printed
    assert "pose range: not measured (the bundle carries no training pose range" in printed
    audio, rate = soundfile.read(stereo_wav, dtype="int16")
    with StreamingGenerator(tiny_bundle, backend="onnxruntime-cpu") as gen:
        want = gen.generate(audio, rate, seed=3)
    with np.load(out) as got:
        np.testing.assert_array_equal(got["index"], want.index)
        np.testing.assert_array_equal(got["time"], want.time)
        np.testing.assert_allclose(got["keypoints"], want.keypoints, atol=1e-3)  # pixels
        np.testing.assert_allclose(got["saliency"], want.saliency, atol=1e-5)
        assert str(got["backend"]) == "onnxruntime-cpu" and int(got["fps"]) == 15


def test_stream_realtime_takes_the_audio_duration(tiny_bundle: Path, tmp_path: Path,  # noqa: F811
                                                  speech_16k: np.ndarray,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "short.wav"
    soundfile.write(wav, speech_16k[:9600], 16000)  # 0.6 s
    begin = time.perf_counter()
    assert run_cli([str(tiny_bundle), str(wav), "--out", str(tmp_path / "p.npz"), "--realtime",
                    "--chunk-ms", "50", "--backend", "onnxruntime-cpu"]) == 0
    assert time.perf_counter() - begin >= 0.55
    assert "real time" in capsys.readouterr().out


@pytest.mark.parametrize(("which", "message"), [
    ("audio", "cannot read audio"),
    ("bundle", "no such bundle"),
    ("chunk", "--chunk-ms must be > 0"),
])
def test_stream_explains_unusable_arguments(tiny_bundle: Path, stereo_wav: Path,  # noqa: F811
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            which: str, message: str) -> None:
    bundle = tmp_path / "absent" if which == "bundle" else tiny_bundle
    audio = tmp_path / "absent.wav" if which == "audio" else stereo_wav
    chunk = "0" if which == "chunk" else "20"
    code = run_cli([str(bundle), str(audio), "--out", str(tmp_path / "p.npz"), "--chunk-ms",
                    chunk, "--backend", "onnxruntime-cpu"])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "p.npz").exists()


def test_stream_runs_the_int8_step_model_when_asked(
        tmp_path: Path, speech_16k: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped bundle carries an int8 step model: --precision int8 runs it (the printed
    backend names it) and its frames are within the int8 tolerance of fp32's."""
    bundle = REPO / "sdk" / "data" / "default_bundle"
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, speech_16k[: 3 * 16000], 16000)
    outs = {}
    for precision in ("fp32", "int8"):
        outs[precision] = tmp_path / f"{precision}.npz"
        assert run_cli([str(bundle), str(wav), "--out", str(outs[precision]), "--backend",
                        "onnxruntime-cpu", "--precision", precision]) == 0
        assert f"({precision})" in capsys.readouterr().out
    norm = load_bundle(bundle).manifest.normalization
    record = next(r for r in load_bundle(bundle).manifest.step_models if r.precision == "int8")
    with np.load(outs["fp32"]) as fp32, np.load(outs["int8"]) as int8:
        assert fp32["keypoints"].shape == int8["keypoints"].shape
        diff = np.abs(norm.pixels_to_canonical(fp32["keypoints"])
                      - norm.pixels_to_canonical(int8["keypoints"]))
        assert 0 < diff.max() <= record.tolerances["keypoints_max_abs"]  # quantised, within


def test_stream_refuses_int8_it_cannot_serve(tiny_bundle: Path, stereo_wav: Path,  # noqa: F811
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli([str(tiny_bundle), str(stereo_wav), "--out", str(tmp_path / "p.npz"),
                    "--backend", "onnxruntime-cpu", "--precision", "int8"])
    assert code == 2 and "int8" in capsys.readouterr().err
    assert not (tmp_path / "p.npz").exists()


def test_example_app_streams_a_file(tiny_bundle: Path, stereo_wav: Path) -> None:  # noqa: F811
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "stream_wav.py"), str(tiny_bundle),
         str(stereo_wav), "--fast", "--backend", "onnxruntime-cpu"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    frames = [line for line in lines if line.startswith("frame ")]
    assert len(frames) == 60 and lines[-1] == "60 frames for 4.00 s of audio"
    assert "saliency=" in frames[0] and "right wrist=(" in frames[0]
