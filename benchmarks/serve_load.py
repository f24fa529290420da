"""Load generator for ``gesturert bench --serve``: N simulated real-time clients, one process.

    python -m benchmarks.serve_load URL CLIENTS SECONDS [--chunk-ms 20] [--seed 0]

Each client sends ``SECONDS`` of the shipped speech sample (looped) as 16 kHz ``pcm16``
messages of ``--chunk-ms``, each when its last sample would have left a microphone
(clients connect spread over the first second), then ``end``, and reads every frame.
Per frame it records the speech-to-pose latency (send of the chunk holding the frame's
last sample -> frame received, as :mod:`sdk.live.client`). Prints one JSON line:
``{"clients": [{"frames", "fps", "latency_ms": [...], "error"}, ...], "cpu_seconds": s}``
(``cpu_seconds``: this process's CPU from after its imports to the end of the run).

**Cheap by construction**, because it shares the cores with the server it measures: a
plain :class:`asyncio.Protocol` speaks the client side of RFC 6455 (handshake, masked
frames out, unmasked frames in, ping, close) instead of a WebSocket library; every audio
message is framed and masked once, before the run, and sending it is one
``transport.write``; one pacing task sends every client's due chunks each
``PACE_SECONDS`` (the send time recorded is the actual one), so there is no task or timer
per client or message; a frames message costs one small numpy read of its indices.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import struct
import time
from typing import Any

import numpy as np

from sdk.audio import load_audio
from sdk.demo import DATA_DIR
from sdk.live.protocol import WEBSOCKET_PATH, StartRequest, encode_audio, last_sample_of_frame

RATE = 16000
CHUNK_MS = 20.0  # audio message length: what the browser page (app.js) and `gesturert client` send
START_SPREAD_SECONDS = 1.0  # clients connect spread over this, as people arrive (no burst)
PACE_SECONDS = 0.005  # the pacing task's period: a chunk leaves at most this late
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def chunks_of_speech(seconds: float, chunk_ms: float, rate: int = RATE) -> list[bytes]:
    """``seconds`` of the speech sample (looped) at ``rate`` Hz as pcm16 messages of
    ``chunk_ms``."""
    speech = load_audio(DATA_DIR / "samples" / "speech_en.flac", rate)
    total = int(seconds * rate)
    audio = np.resize(speech, total)
    step = round(chunk_ms * rate / 1000)
    return [encode_audio(audio[i:i + step], "pcm16") for i in range(0, total, step)]


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (RFC 6455 5.2) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    data = np.frombuffer(payload, np.uint8)
    key = np.resize(np.frombuffer(mask, np.uint8), n)
    return header + mask + np.bitwise_xor(data, key).tobytes()


class LoadClient(asyncio.Protocol):
    """One simulated client: handshake, start, then frames in until the server's close."""

    def __init__(self, host: str, path: str, start: bytes, chunk_of_frame: np.ndarray,
                 chunks: int) -> None:
        self.host, self.path, self.start = host, path, start
        self.chunk_of_frame = chunk_of_frame  # frame index -> chunk holding its last sample
        self.sent_at = np.zeros(chunks)
        self.next_chunk = 0
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.key = base64.b64encode(os.urandom(16))
        self.upgraded = False
        self.ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.latencies: list[np.ndarray] = []
        self.frames = 0
        self.first: float | None = None
        self.last: float | None = None
        self.record_words = 0  # 4-byte words per binary frame record, from ready
        self.error: str | None = None
        self.ended = False

    # ---- asyncio.Protocol ----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: "
                        b"Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        % (self.path.encode(), self.host.encode(), self.key))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[:end + 4]
            accept = base64.b64encode(hashlib.sha1(self.key + _ACCEPT_GUID).digest()).decode()
            if not head.startswith("HTTP/1.1 101") or accept not in head:
                self._fail(f"handshake refused: {head.splitlines()[0]!r}")
                return
            self.upgraded = True
            self.send(_TEXT, self.start)
        self._frames(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended and self.error is None:
            self.error = f"connection lost before end ({exc})"
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(self.error or "connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)

    # ---- frames ----
    def send(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(opcode, payload))

    def _frames(self, now: float) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            first, length = buf[0], buf[1] & 0x7F
            start = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, start = struct.unpack_from("!H", buf, 2)[0], 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, start = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < start + length:
                return
            payload = bytes(buf[start:start + length])
            del buf[:start + length]
            if not first & 0x80:
                self._fail("a fragmented message (the server sends whole messages)")
                return
            self._message(first & 0x0F, payload, now)

    def _message(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode == _BINARY:
            index = np.frombuffer(payload, "<u4").reshape(-1, self.record_words)[:, 0]
            chunk = self.chunk_of_frame[np.minimum(index, len(self.chunk_of_frame) - 1)]
            self.latencies.append(now - self.sent_at[chunk])
            self.frames += len(index)
            self.first = self.first or now
            self.last = now
        elif opcode == _TEXT:
            message = json.loads(payload)
            kind = message.get("type")
            if kind == "ready" and not self.ready.done():
                self.record_words = int(message["frame_record_bytes"]) // 4
                self.ready.set_result(message)
            elif kind == "end":
                self.ended = True
            elif kind == "error":
                self._fail(f"server error {message.get('code')}: {message.get('message')}")
        elif opcode == _PING:
            self.send(_PONG, payload)
        elif opcode == _CLOSE:
            self.send(_CLOSE, payload[:2])  # echo the code (RFC 6455 5.5.1)
            if self.transport is not None:
                self.transport.close()

    def _fail(self, error: str) -> None:
        self.error = self.error or error[:200]
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(self.error))
        if self.transport is not None:
            self.transport.close()


async def run(url: str, clients: int, seconds: float, chunk_ms: float, seed: int,
              rate: int = RATE) -> list[dict[str, Any]]:
    """Connect ``clients`` spread over START_SPREAD_SECONDS, pace their audio (at ``rate``
    Hz), collect."""
    loop = asyncio.get_running_loop()
    host_port, _, path = url.removeprefix("ws://").partition("/")
    host, _, port = host_port.partition(":")
    chunks = chunks_of_speech(seconds, chunk_ms, rate)
    framed = [client_frame(_BINARY, c) for c in chunks]
    end = client_frame(_TEXT, json.dumps({"type": "end"}).encode())
    step = round(chunk_ms * rate / 1000)
    total = len(chunks) * step
    fps = 15  # replaced by the ready message's below; sizes the table generously
    frames_max = total * 60 // rate + 2
    table = {fps: np.array([min(total - 1, last_sample_of_frame(k, rate, fps)) // step
                            for k in range(frames_max)], np.int64)}
    began = time.monotonic()
    period = chunk_ms / 1000
    clients_: list[LoadClient] = []
    schedule: list[tuple[float, LoadClient]] = []  # (time chunk 0 is due, client)

    async def connect(i: int) -> None:
        await asyncio.sleep(max(0.0, began + START_SPREAD_SECONDS * i / max(clients, 1)
                                - time.monotonic()))
        start = StartRequest(sample_rate=rate, seed=seed + i).to_json().encode()
        client = LoadClient(host_port, "/" + path if path else WEBSOCKET_PATH, start,
                            table[fps], len(chunks))
        clients_.append(client)
        try:
            await loop.create_connection(lambda: client, host, int(port or 80))
            ready = await asyncio.wait_for(client.ready, 30)
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            client.error = client.error or f"{type(exc).__name__}: {exc}"[:200]
            return
        frame_rate = int(ready["fps"])
        if frame_rate not in table:
            table[frame_rate] = np.array(
                [min(total - 1, last_sample_of_frame(k, rate, frame_rate)) // step
                 for k in range(total * frame_rate // rate + 2)], np.int64)
        client.chunk_of_frame = table[frame_rate]
        schedule.append((time.monotonic() + period, client))

    async def pace() -> None:
        """Every PACE_SECONDS: each connected client's chunks that are due, then ``end``."""
        while len(clients_) < clients or any(
                c.next_chunk <= len(chunks) and c.error is None for c in clients_):
            now = time.monotonic()
            for due, client in schedule:
                if client.error is not None or client.transport is None:
                    continue
                while client.next_chunk < len(chunks) and due + client.next_chunk * period <= now:
                    client.sent_at[client.next_chunk] = time.monotonic()
                    client.transport.write(framed[client.next_chunk])
                    client.next_chunk += 1
                if client.next_chunk == len(chunks):
                    client.transport.write(end)
                    client.next_chunk += 1
            if now - began > START_SPREAD_SECONDS + seconds + 120:
                break  # bounded: a stuck client cannot hang the benchmark
            await asyncio.sleep(PACE_SECONDS)

    await asyncio.gather(*[connect(i) for i in range(clients)], pace())
    for client in clients_:
        try:
            await asyncio.wait_for(asyncio.shield(client.closed), 60)
        except asyncio.TimeoutError:
            client.error = client.error or "no close within 60 s of the end"
            if client.transport is not None:
                client.transport.close()
    return [_result(c) for c in clients_]


def _result(client: LoadClient) -> dict[str, Any]:
    span = (client.last or 0) - (client.first or 0)
    latencies = np.concatenate(client.latencies) if client.latencies else np.zeros(0)
    return {"frames": client.frames,
            "fps": (client.frames - 1) / span if span > 0 else None,
            "latency_ms": np.round(latencies * 1e3, 2).tolist(), "error": client.error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("clients", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--chunk-ms", type=float, default=CHUNK_MS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=int, default=RATE, help="the clients' audio rate, Hz")
    args = parser.parse_args()
    cpu_before = time.process_time()  # after the imports: the run's own cost
    results = asyncio.run(run(args.url, args.clients, args.seconds, args.chunk_ms, args.seed,
                              args.rate))
    print(json.dumps({"clients": results, "cpu_seconds": time.process_time() - cpu_before}))


if __name__ == "__main__":
    main()
