"""Wire protocol v1 codecs, OpenPose JSON output, and what importing the live parts loads."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from sdk.cli_commands import register_stream
from sdk.demo import DEFAULT_BUNDLE
from sdk.frames import PoseFrames
from sdk.live.protocol import (
    ProtocolError,
    StartRequest,
    decode_audio,
    decode_frames_binary,
    decode_frames_json,
    encode_audio,
    encode_frames_binary,
    encode_frames_json,
    last_sample_of_frame,
    parse_json_message,
    parse_start,
    record_bytes,
)
from sdk.pose_output import to_openpose_137
from sdk.skeleton import MODEL_SKELETON, OPENPOSE_137


def some_frames(n: int = 3, joints: int = 122) -> PoseFrames:
    rng = np.random.default_rng(0)
    index = np.arange(7, 7 + n, dtype=np.int64)
    return PoseFrames(keypoints=rng.uniform(0, 1280, (n, joints, 2)).astype(np.float32),
                      saliency=rng.uniform(0, 1, n).astype(np.float32),
                      time=index / np.float64(15), index=index)


def test_binary_records_round_trip_exactly_and_reject_a_torn_message() -> None:
    frames = some_frames()
    payload = encode_frames_binary(frames)
    assert len(payload) == 3 * record_bytes(122) == 3 * (12 + 122 * 8)
    got = decode_frames_binary(payload, 122, 15)
    for name in ("keypoints", "saliency", "time", "index"):
        np.testing.assert_array_equal(getattr(got, name), getattr(frames, name))
    with pytest.raises(ProtocolError, match="whole number"):
        decode_frames_binary(payload[:-1], 122, 15)


def test_json_frames_round_trip_within_1e3_px() -> None:
    frames = some_frames()
    got = decode_frames_json(json.loads(encode_frames_json(frames)), 122, 15)
    np.testing.assert_allclose(got.keypoints, frames.keypoints, atol=1e-3, rtol=0)
    np.testing.assert_array_equal(got.index, frames.index)


def test_start_messages_are_validated() -> None:
    good = json.loads(StartRequest(sample_rate=44100, channels=2, seed=4).to_json())
    assert parse_start(good) == StartRequest(sample_rate=44100, channels=2, seed=4)
    styled = json.loads(StartRequest(sample_rate=16000, style="calm").to_json())
    assert parse_start(styled).style == "calm" and "style" not in good
    for change, code in [({"sample_rate": True}, "bad_start"), ({"sample_rate": 1.5}, "bad_start"),
                         ({"sample_rate": 100}, "bad_start"), ({"channels": 0}, "bad_start"),
                         ({"seed": -1}, "bad_start"), ({"protocol": "1"}, "unsupported_protocol"),
                         ({"style": ""}, "bad_start"), ({"style": ["calm"]}, "bad_start"),
                         ({"sample_format": "s24"}, "unsupported_format"),
                         ({"type": "end"}, "audio_before_start")]:
        with pytest.raises(ProtocolError) as info:
            parse_start({**good, **change})
        assert info.value.code == code, change
    for text in ("[1, 2]", "nope", '{"type": 3}'):
        with pytest.raises(ProtocolError, match="JSON objects"):
            parse_json_message(text)


def test_audio_codec_and_its_errors() -> None:
    start = StartRequest(sample_rate=16000, sample_format="float32", channels=2)
    samples = np.array([[0.5, -0.25], [0.0, 1.0]], np.float32)
    np.testing.assert_array_equal(decode_audio(encode_audio(samples, "float32"), start), samples)
    with pytest.raises(ProtocolError, match="whole number"):
        decode_audio(b"\x00" * 12, start)  # 1.5 stereo float32 samples
    with pytest.raises(ProtocolError, match="NaN"):
        decode_audio(np.array([np.nan, 0], np.float32).tobytes(), start)
    pcm = decode_audio(encode_audio(samples[:, 0], "pcm16"), StartRequest(sample_rate=16000))
    assert pcm.dtype == np.int16 and pcm[:, 0].tolist() == [16384, 0]


def test_last_sample_of_frame_is_the_end_of_its_audio() -> None:
    # frame k covers [k/fps, (k+1)/fps): at 16 kHz and 15 fps, frame 0 ends at sample 1066
    assert last_sample_of_frame(0, 16000, 15) == 1066
    assert last_sample_of_frame(2, 16000, 16) == 2999  # exact multiple: 3000 samples, last 2999


def test_openpose_layout_places_each_joint_and_zeroes_the_rest() -> None:
    frames = some_frames(2)
    points = to_openpose_137(frames.keypoints, MODEL_SKELETON)
    assert points.shape == (2, 137, 3)
    src = list(MODEL_SKELETON.source_indices or [])
    np.testing.assert_array_equal(points[:, src, :2], frames.keypoints)
    missing = sorted(set(range(137)) - set(src))
    assert OPENPOSE_137.joint_names[missing[0]] == "mid_hip"
    assert (points[:, missing] == 0).all() and (points[:, src, 2] == 1).all()
    with pytest.raises(ValueError, match="expected keypoints"):
        to_openpose_137(frames.keypoints[:, :121], MODEL_SKELETON)


def test_stream_writes_openpose_json_that_matches_its_npz(tmp_path: Path,
                                                          speech_16k: np.ndarray) -> None:
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, speech_16k[:32000], 16000)

    def stream(*extra: str) -> None:
        parser = argparse.ArgumentParser()
        register_stream(parser.add_subparsers())
        args = parser.parse_args(["stream", str(DEFAULT_BUNDLE), str(wav), "--backend",
                                  "onnxruntime-cpu", *extra])
        assert args.func(args) == 0

    stream("--out", str(tmp_path / "f.npz"))
    stream("--out", str(tmp_path / "poses"), "--format", "openpose-json")
    with np.load(tmp_path / "f.npz") as npz:
        keypoints, index = npz["keypoints"], npz["index"]
        assert list(npz["joint_names"]) == list(MODEL_SKELETON.joint_names)
        np.testing.assert_array_equal(npz["bones"], MODEL_SKELETON.bone_array())
        assert int(npz["fps"]) == 15
    files = sorted((tmp_path / "poses").glob("*.json"))
    assert [f.name for f in files[:1]] == ["poses_000000000000_keypoints.json"]
    assert len(files) == len(index) > 20
    person = json.loads(files[5].read_text())["people"][0]
    assert [len(person[k]) for k in ("pose_keypoints_2d", "face_keypoints_2d",
                                     "hand_left_keypoints_2d", "hand_right_keypoints_2d")] \
        == [75, 210, 63, 63]
    flat = np.concatenate([person[k] for k in ("pose_keypoints_2d", "face_keypoints_2d",
                                               "hand_left_keypoints_2d",
                                               "hand_right_keypoints_2d")]).reshape(137, 3)
    np.testing.assert_allclose(flat, to_openpose_137(keypoints[5:6], MODEL_SKELETON)[0],
                               atol=1e-3)


def test_importing_sdk_or_the_cli_plugin_loads_no_websockets() -> None:
    probe = ("import sdk, sdk.live.cli, sys; "
             "print([m for m in ('websockets', 'onnxruntime', 'sdk.live.server') "
             "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_the_protocol_doc_states_the_servers_default_limits() -> None:
    from sdk.live.config import ServerConfig

    text = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    config = ServerConfig()
    assert f"at most {config.max_message_bytes >> 20} MiB per message" in text
    assert f"more than {config.max_backlog_seconds:g} s of audio" in text
    assert f"at most {config.max_outbound_frames} frames" in text
    assert f"a {config.socket_send_buffer_bytes >> 10} KiB socket" in text
    assert f"within {config.start_timeout_seconds:g} s" in text
    assert f"server's {round(config.tick_seconds * 1e3)} ms stepping tick" in text
