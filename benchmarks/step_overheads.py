"""What surrounds the step (issue 20, run by benchmarks/step_gemm.py): the one-stream
step through the SDK's stepper, where a StreamBatch's time goes, and soxr set-ups at 48 kHz.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.step_timing import (
    FRAME_MS,
    PACKET_MS,
    interleaved,
    iobinding_call,
    ort_session,
    step_feed,
)


def one_stream_rows(root: Path, generator: Any, features: np.ndarray, repeats: int
                    ) -> list[dict[str, Any]]:
    """One stream, one frame per call, A/B in one run: the model call alone (IO binding made
    once), the SDK's stepper (ping-pong state buffers, sdk/runners/resident_state.py) and
    the stepper as it was before them (checked ``infer``, state gathered from and scattered
    to the table every call; git 91e8f82), fp32 and int8."""
    from export.gemm_step import STEP_FILE, STEP_INT8_FILE
    from sdk.runners.base import STATE_OUT, HostStateStepper
    from sdk.runners.onnxrt import OnnxRuntimeRunner

    feed = step_feed(1, 1, generator.state_size, generator.config.noise_dim, features)
    calls: dict[str, Callable[[], Any]] = {}
    steppers = []
    for precision, file in (("fp32", STEP_FILE), ("int8", STEP_INT8_FILE)):
        calls[f"model call ({precision}), IO binding made once"] = iobinding_call(
            ort_session(root / file), feed)
        stepper = HostStateStepper(OnnxRuntimeRunner(root / file, intra_op_num_threads=1,
                                                     reuse_outputs=True),
                                   generator.state_size, "onnxruntime-cpu")
        steppers.append(stepper)
        slot = stepper.allocate_slot()
        calls[f"SDK stepper ({precision}), ping-pong state"] = functools.partial(
            stepper.step, feed["features"], feed["noise"], [slot])
        plain = HostStateStepper(OnnxRuntimeRunner(root / file, intra_op_num_threads=1,
                                                   reuse_outputs=True),
                                 generator.state_size, "onnxruntime-cpu")
        steppers.append(plain)
        plain_slot = plain.allocate_slot()
        calls[f"SDK stepper before ({precision}): infer, gather, scatter"] = functools.partial(
            _plain_step, plain, feed, [plain_slot], STATE_OUT)
    times = interleaved(calls, repeats * 5, block=20)
    for stepper in steppers:
        stepper.close()
    return [{"path": name, "cpu_us_p50": t["cpu_p50_ms"] * 1e3,
             "cpu_us_p25": t["cpu_p25_ms"] * 1e3, "cpu_us_p75": t["cpu_p75_ms"] * 1e3,
             "wall_us_p50": t["p50_ms"] * 1e3, "calls": t["calls"]} for name, t in times.items()]


def _plain_step(stepper: Any, feed: dict[str, np.ndarray], slots: list[int],
                state_out: str) -> None:
    """HostStateStepper.step before the ping-pong buffers (git 91e8f82), line for line."""
    index = np.asarray(slots, dtype=np.int64)
    if np.unique(index).size != len(slots):
        raise ValueError("same slot twice")
    for slot in index:
        stepper._slots.check_live(int(slot))
    table = stepper._table
    outputs = stepper.runner.infer({"features": feed["features"], "noise": feed["noise"],
                                    "state": table[index]})
    table[index] = outputs[state_out]


def front_end_parts(root: Path, count: int, packets: int) -> list[dict[str, Any]]:
    """Where a StreamBatch's time goes, CPU us per stream-frame (int8 step, ``count``
    streams, 20 ms packets): input checks, resampling, MFCC + feature frames, the steps
    (noise, model, pixels)."""
    from sdk.batched_features import as_stream_block
    from sdk.runners.select import BackendConfig
    from sdk.stream_batch import StreamBatch
    from sdk.streaming import GeneratorConfig, StreamingGenerator

    rng = np.random.default_rng(1)
    config = GeneratorConfig(root, BackendConfig("onnxruntime-cpu", intra_op_num_threads=1,
                                                 precision="int8"))
    rows = []
    with StreamingGenerator(config) as gen:
        for rate in (16000, 48000):
            n = rate * PACKET_MS // 1000
            audio = (0.1 * rng.standard_normal((count, n * (packets + 8)))).astype(np.float32)
            parts = dict.fromkeys(("checks", "resample", "mfcc", "steps"), 0.0)
            frames = 0
            with StreamBatch(gen, range(count), rate) as batch:
                for i in range(8 + packets):
                    t0 = time.thread_time()
                    block = as_stream_block(audio[:, i * n:(i + 1) * n], count)
                    t1 = time.thread_time()
                    resampled = batch._resampler.process(block)
                    t2 = time.thread_time()
                    feats = batch._extractor.accept(resampled)
                    t3 = time.thread_time()
                    out = batch._advance(feats)
                    t4 = time.thread_time()
                    if i >= 8:  # after the warm-up (soxr delay, MFCC window, lookahead)
                        frames += len(out)
                        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3),
                                           strict=True):
                            parts[key] += dt
            scale = 1e6 / max(frames * count, 1)
            rows.append({"rate": rate, "streams": count, "frames": frames,
                         **{f"{k}_us": v * scale for k, v in parts.items()},
                         "total_us": sum(parts.values()) * scale})
    return rows


def resampler_rows(count: int, packets: int, rate: int = 48000) -> list[dict[str, Any]]:
    """soxr set-ups for ``count`` streams of 20 ms packets at ``rate`` -> the model's 16 kHz:
    CPU us per stream-frame (66.7 ms of audio) and the output held back after the packets
    (ms: the resampler's streaming delay, part of the end-to-end latency)."""
    import soxr

    from sdk.audio import RESAMPLE_QUALITY
    from sdk.features import DEFAULT_FEATURES

    out_rate = DEFAULT_FEATURES.sample_rate
    n = rate * PACKET_MS // 1000
    rng = np.random.default_rng(2)
    audio = (0.1 * rng.standard_normal((count, n * packets))).astype(np.float32)
    rows = []
    ways: list[tuple[str, str, bool]] = [
        (f"soxr {RESAMPLE_QUALITY}, one multichannel stream (StreamBatch, today)",
         RESAMPLE_QUALITY, True),
        (f"soxr {RESAMPLE_QUALITY}, one stream per speaker (Stream)", RESAMPLE_QUALITY, False),
        ("soxr VHQ, one multichannel stream", "VHQ", True),
        ("soxr LQ, one multichannel stream", "LQ", True)]
    for name, quality, multichannel in ways:
        channels = count if multichannel else 1
        streams = [soxr.ResampleStream(rate, out_rate, channels, dtype="float32",
                                       quality=quality) for _ in range(count // channels)]
        cpu, got = 0.0, 0
        for i in range(packets):
            block = audio[:, i * n:(i + 1) * n]
            t0 = time.thread_time()
            if multichannel:  # (n, N) in, (m, N) out, as BatchedResampler does
                got += np.ascontiguousarray(
                    streams[0].resample_chunk(np.ascontiguousarray(block.T)).T).shape[1]
            else:
                outs = [s.resample_chunk(block[b]) for b, s in enumerate(streams)]
                got += outs[0].size
            cpu += time.thread_time() - t0
        seconds = packets * PACKET_MS / 1000
        rows.append({"way": name, "rate": rate, "streams": count,
                     "us_per_stream_frame": cpu / (count * seconds * 1000 / FRAME_MS) * 1e6,
                     "held_back_ms": (seconds * out_rate - got) / out_rate * 1e3})
    return rows
