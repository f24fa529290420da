"""Load generator for ``gesturert bench --serve``: N simulated real-time clients, one process.

    python -m benchmarks.serve_load URL CLIENTS SECONDS [--chunk-ms 20] [--seed 0]

Each client sends ``SECONDS`` of the shipped speech sample (looped) as 16 kHz ``pcm16``
messages of ``--chunk-ms``, each when its last sample would have left a microphone
(clients connect spread over the first second), then ``end``, and reads every frame.
Per frame it records the speech-to-pose latency (send of the chunk holding the frame's
last sample -> frame received, as :mod:`sdk.live.client`). Prints one JSON line:
``{"clients": [{"frames", "expected", "fps", "latency_ms": [...], "error"}, ...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import numpy as np
from websockets.asyncio.client import connect

from sdk.audio import load_audio
from sdk.demo import DATA_DIR
from sdk.live.protocol import StartRequest, encode_audio, last_sample_of_frame

RATE = 16000
START_SPREAD_SECONDS = 1.0  # clients connect spread over this, as people arrive (no burst)


def chunks_of_speech(seconds: float, chunk_ms: float) -> list[bytes]:
    """``seconds`` of the speech sample (looped) as pcm16 messages of ``chunk_ms``."""
    speech = load_audio(DATA_DIR / "samples" / "speech_en.flac", RATE)
    total = int(seconds * RATE)
    audio = np.resize(speech, total)
    step = round(chunk_ms * RATE / 1000)
    return [encode_audio(audio[i:i + step], "pcm16") for i in range(0, total, step)]


async def one_client(url: str, chunks: list[bytes], chunk_ms: float, delay: float,
                     seed: int) -> dict[str, Any]:
    await asyncio.sleep(delay)
    step = round(chunk_ms * RATE / 1000)
    sent_at = np.zeros(len(chunks))
    latencies: list[float] = []
    frames, first, last = 0, None, None
    try:
        async with connect(url, compression=None, max_size=None, open_timeout=30) as ws:
            await ws.send(StartRequest(sample_rate=RATE, seed=seed).to_json())
            ready = json.loads(await ws.recv())
            if ready.get("type") != "ready":
                return {"error": str(ready)[:200], "frames": 0}
            fps, size = int(ready["fps"]), int(ready["frame_record_bytes"])

            async def send() -> None:
                began = time.monotonic()
                for i, chunk in enumerate(chunks):
                    await asyncio.sleep(max(0.0, began + (i + 1) * chunk_ms / 1000
                                            - time.monotonic()))
                    sent_at[i] = time.monotonic()
                    await ws.send(chunk)
                await ws.send(json.dumps({"type": "end"}))

            sender = asyncio.create_task(send())
            total = len(chunks) * step
            async for message in ws:
                now = time.monotonic()
                if isinstance(message, str):
                    if json.loads(message).get("type") == "end":
                        break
                    continue
                index = np.frombuffer(message, "<u4").reshape(-1, size // 4)[:, 0]
                for k in index:
                    sample = min(total - 1, last_sample_of_frame(int(k), RATE, fps))
                    latencies.append(now - sent_at[sample // step])
                frames += len(index)
                first = first or now
                last = now
            await sender
    except Exception as exc:  # a refused or dropped client is a result, not a crash
        return {"error": f"{type(exc).__name__}: {exc}"[:200], "frames": frames}
    span = (last or 0) - (first or 0)
    return {"frames": frames, "fps": (frames - 1) / span if span > 0 else None,
            "latency_ms": [round(v * 1e3, 2) for v in latencies], "error": None}


async def run(url: str, clients: int, seconds: float, chunk_ms: float, seed: int
              ) -> list[dict[str, Any]]:
    chunks = chunks_of_speech(seconds, chunk_ms)
    return list(await asyncio.gather(*[
        one_client(url, chunks, chunk_ms, START_SPREAD_SECONDS * i / max(clients, 1), seed + i)
        for i in range(clients)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("clients", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--chunk-ms", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = asyncio.run(run(args.url, args.clients, args.seconds, args.chunk_ms, args.seed))
    print(json.dumps({"clients": results}))


if __name__ == "__main__":
    main()
