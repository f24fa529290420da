"""Wire protocol v1 of ``gesturert serve`` (documented for clients in docs/protocol.md).

Pure numpy and json, no network: the server, the Python client and the tests share it.

Client -> server, on one WebSocket at ``/ws``:

* text ``{"type": "start", "protocol": 1, "sample_rate": 16000, "sample_format": "pcm16",
  "channels": 1, "seed": 0, "frame_format": "binary"}`` (optional ``"style"``: one of the
  bundle's gesture styles, listed in ``ready``): first message, exactly once;
* binary audio: interleaved little-endian samples of ``sample_format`` (``pcm16`` int16
  or ``float32``), any whole number of sample frames per message;
* text ``{"type": "end"}``: no more audio; the server sends the tail frames, then ``end``.

Server -> client: ``ready`` (text, after a good start), frames (binary records
:data:`RECORD_HEADER` + keypoints, or text ``{"type": "frames", ...}`` with
``frame_format: "json"``), ``end`` (text, totals; then close 1000), ``error`` (text,
``code`` + ``message``; then a close with :data:`CLOSE_CODES` of the code).

Binary frame record (all little-endian, :func:`record_bytes` long, one or more per message):
``u32 index, f32 time (s), f32 saliency, f32 keypoints[J][2]`` (pixels, x then y).
"""

from __future__ import annotations

import functools
import inspect
import json
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sdk.frames import PoseFrames
from sdk.pose_image import bone_groups, bone_half_widths
from sdk.render import (
    BACKGROUND,
    DRAW_ORDER,
    GROUP_COLORS,
    OTHER_COLOR,
    SALIENCY_HIGH,
    SALIENCY_LOW,
    SALIENCY_TRACK,
    render_video_frames,
)

if TYPE_CHECKING:
    from sdk.streaming import StreamingGenerator

PROTOCOL_VERSION = 1
WEBSOCKET_PATH = "/ws"
SAMPLE_FORMATS: dict[str, np.dtype[Any]] = {"pcm16": np.dtype("<i2"), "float32": np.dtype("<f4")}
FRAME_FORMATS = ("binary", "json")
MAX_CHANNELS = 32  # sdk.stream accepts up to 32 channels (averaged)

# u32 index, f32 time, f32 saliency; keypoints follow as f32 (J, 2).
RECORD_HEADER = np.dtype([("index", "<u4"), ("time", "<f4"), ("saliency", "<f4")])

#: Error code -> WebSocket close code sent after the error message.
CLOSE_CODES = {
    "bad_json": 1008,            # a text message that is not a JSON object
    "bad_start": 1008,           # start message missing/invalid field
    "unknown_style": 1008,       # a style the bundle does not have (ready lists them)
    "unsupported_protocol": 1008,
    "unsupported_format": 1008,  # unknown sample_format or frame_format
    "audio_before_start": 1008,
    "unexpected_message": 1008,  # unknown type, second start, audio after end
    "bad_audio": 1007,           # payload not whole samples, NaN/inf, ...
    "message_too_big": 1009,
    "start_timeout": 1008,
    "slow_consumer": 1008,       # the client stopped reading its frames
    "server_full": 1013,         # at --max-streams: try again later / elsewhere
    "shutting_down": 1001,       # draining: going away
    "internal": 1011,
}


class ProtocolError(Exception):
    """A client broke the protocol: ``code`` (a key of :data:`CLOSE_CODES`) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def close_code(self) -> int:
        return CLOSE_CODES[self.code]

    def to_json(self) -> str:
        return error_message(self.code, self.message)


def error_message(code: str, message: str) -> str:
    """The ``error`` text message."""
    return json.dumps({"type": "error", "code": code, "message": message})


def refusal_for(status: str, max_streams: int) -> tuple[str, str] | None:
    """The error (code, message) a new connection gets from a server whose
    ``LiveServer.status()`` is ``status``; None when it is "ready"."""
    if status == "draining":
        return "shutting_down", "the server is draining; connect to another server"
    if status == "full":
        return "server_full", f"server at capacity ({max_streams} streams); " \
            "try again later or another server"
    if status == "overloaded":
        return "server_full", "server overloaded (model steps fall behind); try again later"
    return None


@dataclass(frozen=True)
class StartRequest:
    """A validated start message."""

    sample_rate: int
    sample_format: str = "pcm16"
    channels: int = 1
    seed: int = 0
    frame_format: str = "binary"
    style: str | None = None  # None: the bundle's default style

    def to_json(self) -> str:
        return json.dumps({"type": "start", "protocol": PROTOCOL_VERSION,
                           "sample_rate": self.sample_rate, "sample_format": self.sample_format,
                           "channels": self.channels, "seed": self.seed,
                           "frame_format": self.frame_format}
                          | ({} if self.style is None else {"style": self.style}))

    @functools.cached_property
    def sample_bytes(self) -> int:
        """Bytes of one sample frame (all channels); computed once (checked per message)."""
        return SAMPLE_FORMATS[self.sample_format].itemsize * self.channels


def parse_json_message(text: str) -> dict[str, Any]:
    """A text message as a dict with a string ``type``; ProtocolError ``bad_json`` otherwise."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"text messages must be JSON objects: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("bad_json", 'text messages must be JSON objects with a "type" string, '
                            f"got {text[:80]!r}")
    return message


def _int_field(message: dict[str, Any], name: str, default: int | None, low: int,
               high: int) -> int:
    value = message.get(name, default)
    if value is None:
        raise ProtocolError("bad_start", f"start needs {name!r} (an int in [{low}, {high}])")
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ProtocolError("bad_start", f"start field {name!r} must be an int in [{low}, "
                            f"{high}], got {value!r:.40}") from None
    if not low <= number <= high:
        raise ProtocolError("bad_start", f"start field {name!r} must be in [{low}, {high}], "
                            f"got {number}")
    return number


def parse_start(message: dict[str, Any]) -> StartRequest:
    """Validate a decoded start message (see the module docstring) into a StartRequest."""
    from sdk.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    if message.get("type") != "start":
        raise ProtocolError("audio_before_start" if message.get("type") == "end"
                            else "bad_start",
                            f'the first message must be {{"type": "start", ...}}, got type '
                            f'{message.get("type")!r}')
    version = message.get("protocol")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_protocol", f"this server speaks protocol "
                            f"{PROTOCOL_VERSION}, the start message says {version!r}")
    sample_format = message.get("sample_format", "pcm16")
    if sample_format not in SAMPLE_FORMATS:
        raise ProtocolError("unsupported_format", f"sample_format {sample_format!r:.40} is not "
                            f"one of {sorted(SAMPLE_FORMATS)}")
    frame_format = message.get("frame_format", "binary")
    if frame_format not in FRAME_FORMATS:
        raise ProtocolError("unsupported_format", f"frame_format {frame_format!r:.40} is not "
                            f"one of {list(FRAME_FORMATS)}")
    return StartRequest(
        sample_rate=_int_field(message, "sample_rate", None, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
        sample_format=sample_format,
        channels=_int_field(message, "channels", 1, 1, MAX_CHANNELS),
        seed=_int_field(message, "seed", 0, 0, 2**63 - 1),
        frame_format=frame_format,
        style=_style_field(message),
    )


def _style_field(message: dict[str, Any]) -> str | None:
    """The optional ``style``: a non-empty string (whether the bundle has it is the
    server's check, error ``unknown_style``)."""
    style = message.get("style")
    if style is not None and (not isinstance(style, str) or not 0 < len(style) <= 200):
        raise ProtocolError("bad_start", f"start field 'style' must be a style name (a "
                            f"string), got {style!r:.60}")
    return style


def decode_audio(payload: bytes, start: StartRequest) -> np.ndarray:
    """A binary audio message as (N, channels) int16 or float32; ProtocolError ``bad_audio``."""
    check_audio(payload, start)
    return np.frombuffer(payload, SAMPLE_FORMATS[start.sample_format]).reshape(
        -1, start.channels)


def check_audio(payload: bytes, start: StartRequest) -> int:
    """Validate a binary audio message without keeping its samples: the number of sample
    frames in it; ProtocolError ``bad_audio`` when it is not whole samples (or, float32,
    not finite). A server checks each message on arrival and decodes many at once later."""
    if len(payload) % start.sample_bytes:
        raise ProtocolError("bad_audio", f"an audio message of {len(payload)} bytes is not a "
                            f"whole number of {start.channels}-channel {start.sample_format} "
                            f"samples ({start.sample_bytes} bytes each)")
    if start.sample_format == "float32" and not np.isfinite(
            np.frombuffer(payload, SAMPLE_FORMATS["float32"])).all():
        raise ProtocolError("bad_audio", "float32 audio holds NaN or infinity")
    return len(payload) // start.sample_bytes


def encode_audio(samples: np.ndarray, sample_format: str) -> bytes:
    """(N, C) or (N,) audio as interleaved little-endian ``sample_format`` bytes.

    float input to pcm16 is scaled by 32767 and clipped; int16 to float32 divided by 32768.
    """
    samples = np.asarray(samples)
    dtype = SAMPLE_FORMATS[sample_format]
    if sample_format == "pcm16" and samples.dtype.kind == "f":
        samples = np.clip(np.rint(samples * 32767.0), -32768, 32767)
    elif sample_format == "float32" and samples.dtype == np.int16:
        samples = samples / np.float32(32768.0)
    return np.ascontiguousarray(samples, dtype=dtype).tobytes()


def ready_fields(generator: StreamingGenerator) -> dict[str, Any]:
    """The ``ready`` message for streams of ``generator`` (without ``stream_id`` and
    ``frame_format``, which are per connection)."""
    skeleton = generator.manifest.skeleton
    widths = inspect.signature(render_video_frames).parameters  # the video's line widths
    return {
        "type": "ready", "protocol": PROTOCOL_VERSION, "fps": generator.fps,
        "lookahead_frames": generator.lookahead_frames,
        "chunk_frames": generator.chunk_frames,
        "algorithmic_latency_ms": round(generator.algorithmic_latency_seconds * 1e3, 3),
        "backend": generator.backend_name, "num_joints": generator.num_joints,
        "styles": list(generator.styles), "default_style": generator.default_style,
        "skeleton": skeleton.to_dict(),
        "image_size": list(generator.manifest.normalization.image_size),
        "frame_record_bytes": record_bytes(generator.num_joints),
        "drawing": {  # sdk.render's look, so the page hard-codes no skeleton or colour
            "bone_groups": list(bone_groups(skeleton)),
            "bone_half_widths": [float(w) for w in bone_half_widths(
                skeleton, widths["half_width"].default, widths["detail_half_width"].default)],
            "group_colors": {g: list(GROUP_COLORS[g]) for g in DRAW_ORDER},
            "other_color": list(OTHER_COLOR), "background": list(BACKGROUND),
            "saliency_track": list(SALIENCY_TRACK), "saliency_low": list(SALIENCY_LOW),
            "saliency_high": list(SALIENCY_HIGH)},
    }


def record_bytes(num_joints: int) -> int:
    """Bytes of one binary frame record for ``num_joints`` joints."""
    return RECORD_HEADER.itemsize + 8 * num_joints


@functools.lru_cache(maxsize=8)
def _record_dtype(num_joints: int) -> np.dtype[Any]:
    """The structured dtype of one binary frame record (made once per joint count: a
    server encodes thousands of messages a second)."""
    return np.dtype([("header", RECORD_HEADER), ("keypoints", "<f4", (num_joints, 2))])


def encode_frames_binary(frames: PoseFrames) -> bytes:
    """PoseFrames as concatenated binary records (see the module docstring)."""
    out = np.empty(len(frames), _record_dtype(frames.num_joints))
    out["header"]["index"] = frames.index
    out["header"]["time"] = frames.time
    out["header"]["saliency"] = frames.saliency
    out["keypoints"] = frames.keypoints
    return out.tobytes()


def decode_frames_binary(payload: bytes, num_joints: int, fps: int) -> PoseFrames:
    """Binary records back into PoseFrames; ``time`` is recomputed exactly as index / fps."""
    size = record_bytes(num_joints)
    if len(payload) % size:
        raise ProtocolError("bad_audio", f"a frames message of {len(payload)} bytes is not a "
                            f"whole number of {size}-byte records")
    record = np.dtype([("header", RECORD_HEADER), ("keypoints", "<f4", (num_joints, 2))])
    data = np.frombuffer(payload, record)
    index = data["header"]["index"].astype(np.int64)
    return PoseFrames(keypoints=data["keypoints"].astype(np.float32),
                      saliency=data["header"]["saliency"].astype(np.float32),
                      time=index / np.float64(fps), index=index)


def encode_frames_json(frames: PoseFrames) -> str:
    """PoseFrames as the ``frames`` text message."""
    return json.dumps({"type": "frames", "frames": [
        {"index": int(k), "time": float(t), "saliency": float(s),
         "keypoints": np.round(p.astype(np.float64), 4).tolist()}
        for k, t, s, p in zip(frames.index, frames.time, frames.saliency, frames.keypoints,
                              strict=True)]})


def decode_frames_json(message: dict[str, Any], num_joints: int, fps: int) -> PoseFrames:
    """A decoded ``frames`` text message back into PoseFrames."""
    items = message["frames"]
    index = np.array([f["index"] for f in items], np.int64)
    keypoints = np.array([f["keypoints"] for f in items], np.float32).reshape(-1, num_joints, 2)
    return PoseFrames(keypoints=keypoints,
                      saliency=np.array([f["saliency"] for f in items], np.float32),
                      time=index / np.float64(fps), index=index)


def last_sample_of_frame(index: int, sample_rate: int, fps: int) -> int:
    """Input sample (at ``sample_rate``) that ends pose frame ``index``: its audio is
    ``[index / fps, (index + 1) / fps)``, so the last sample is ``ceil((index+1)*rate/fps)-1``."""
    return -(-(index + 1) * sample_rate // fps) - 1
