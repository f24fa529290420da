"""A Python client of protocol v1: stream audio to ``gesturert serve``, collect the frames.

Used by ``gesturert client``, the tests and ``gesturert bench --serve``. Audio is sent
as ``float32`` (the file's own samples, so the server sees exactly what ``gesturert
stream`` feeds its stream), in ``chunk_ms`` messages, at the pace of live audio when
``realtime`` (chunk ``i`` leaves when its last sample would have left a microphone).

**Latency** of frame ``k`` (speech-to-pose, client clock): from sending the chunk that
holds the frame's last audio sample (:func:`sdk.live.protocol.last_sample_of_frame`) to
receiving the frame; includes the model's algorithmic latency (lookahead, MFCC window).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sdk.frames import PoseFrames
from sdk.live.protocol import (
    StartRequest,
    decode_frames_binary,
    decode_frames_json,
    encode_audio,
    last_sample_of_frame,
)


class LiveClientError(RuntimeError):
    """The server sent an error or closed the connection before ``end``."""

    def __init__(self, message: str, code: str | None = None,
                 close_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code


@dataclass
class ClientResult:
    """What one streamed file gave.

    Attributes:
        ready: the server's ready message.
        frames: every frame received, in order.
        latencies: float64 (T,) seconds, speech-to-pose per frame (see the module docstring).
        first_frame_at, last_frame_at: monotonic receive times of the first and last frame.
        end: the server's end message.
    """

    ready: dict[str, Any]
    frames: PoseFrames
    latencies: np.ndarray
    first_frame_at: float | None
    last_frame_at: float | None
    end: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float | None:
        """Receive rate over the run ((T - 1) / seconds between the first and last frame)."""
        if self.first_frame_at is None or self.last_frame_at is None \
                or self.last_frame_at <= self.first_frame_at:
            return None
        return (len(self.frames) - 1) / (self.last_frame_at - self.first_frame_at)


async def stream_audio(url: str, audio: np.ndarray, sample_rate: int, *, realtime: bool = False,
                       chunk_ms: float = 20.0, seed: int = 0, frame_format: str = "binary",
                       open_timeout: float = 10.0, style: str | None = None) -> ClientResult:
    """Stream ``audio`` (float32 (N, C) or (N,)) to the server at ``url``; all frames back.
    ``style``: one of the server bundle's gesture styles (None: its default).

    Raises:
        LiveClientError: an error message, or the connection closed before ``end``.
        OSError / TimeoutError: the server cannot be reached.
    """
    audio = np.asarray(audio, np.float32)
    audio = audio[:, None] if audio.ndim == 1 else audio
    total = audio.shape[0]
    chunk = max(1, round(chunk_ms * sample_rate / 1000))
    starts = range(0, total, chunk)
    sent_at = np.zeros(max(len(starts), 1))
    start = StartRequest(sample_rate=sample_rate, sample_format="float32",
                         channels=audio.shape[1], seed=seed, frame_format=frame_format,
                         style=style)
    parts: list[PoseFrames] = []
    received: list[float] = []
    first = last = None
    async with connect(url, max_size=None, compression=None, open_timeout=open_timeout) as ws:
        await ws.send(start.to_json())
        ready = _check(json.loads(await ws.recv()), "ready")
        fps, joints = int(ready["fps"]), int(ready["num_joints"])

        async def send_all() -> None:
            began = time.monotonic()
            for i, offset in enumerate(starts):
                if realtime:
                    due = began + min(offset + chunk, total) / sample_rate
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                sent_at[i] = time.monotonic()
                await ws.send(encode_audio(audio[offset:offset + chunk], "float32"))
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send_all())
        end: dict[str, Any] = {}
        try:
            while True:
                try:
                    message = await ws.recv()
                except ConnectionClosed as exc:
                    raise LiveClientError(f"the server closed the connection before end: {exc}",
                                          close_code=exc.rcvd.code if exc.rcvd else None) from None
                now = time.monotonic()
                if isinstance(message, bytes):
                    got = decode_frames_binary(message, joints, fps)
                else:
                    decoded = json.loads(message)
                    if decoded.get("type") == "end":
                        end = decoded
                        break
                    try:
                        got = decode_frames_json(_check(decoded, "frames"), joints, fps)
                    except LiveClientError as exc:  # the close follows an error: note its code
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(ws.wait_closed(), 5)
                        exc.close_code = ws.close_code
                        raise
                parts.append(got)
                received += [now] * len(got)
                first = first or now
                last = now
        finally:
            if not sender.done():
                sender.cancel()
        await sender
    frames = PoseFrames.concatenate(parts, joints)
    last_chunk = np.array([min(total - 1, last_sample_of_frame(int(k), sample_rate, fps))
                           // chunk for k in frames.index], np.int64)
    latencies = np.asarray(received) - sent_at[np.maximum(last_chunk, 0)] \
        if len(frames) else np.zeros(0)
    return ClientResult(ready, frames, latencies, first, last, end)


def _check(message: dict[str, Any], expected: str) -> dict[str, Any]:
    if message.get("type") == "error":
        raise LiveClientError(f"server error {message.get('code')}: {message.get('message')}",
                              code=message.get("code"))
    if message.get("type") != expected:
        raise LiveClientError(f"expected a {expected!r} message, got {str(message)[:120]}")
    return message
