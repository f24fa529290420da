"""Soak: one hour of audio through each of 16 concurrent streams, as fast as the CPU goes.

Audio is made chunk by chunk (a 10 s speech-like table, rolled and scaled per stream and
chunk), so the test holds ~10 s of audio per stream at a time. Checked: every stream
yields exactly ``num_pose_frames`` frames, indices 0, 1, ... with ``time == index / fps``
(no drift after 54 000 frames), resident memory after warm-up grows by less than
``RSS_GROWTH_BOUND_MIB``, and no file descriptor or thread is left behind.

Throughput: the step is cheap (the tiny model); the per-stream MFCC front end (numpy
rfft) takes about 80 % of the time, see RELIABILITY.md. ``CHUNK_FRAMES`` is raised from
the manifest's 1 to 60 feature frames (4 s) per step, which cuts model calls 60-fold.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

from reliability.make_bad_inputs import speechlike
from sdk import StreamingGenerator
from sdk.runners.select import BackendConfig
from sdk.streaming import GeneratorConfig, Stream, model_rate_samples

SOAK_SECONDS = 3600  # of audio per stream: the acceptance is one hour
STREAMS = 16
CHUNK_FRAMES = 60  # feature frames per step
WARM_UP_SECONDS = 300  # memory is measured from here to the end
RSS_GROWTH_BOUND_MIB = 16.0
# stream i: its input rate and chunk length in samples (odd sizes: never whole frames)
RATES = [16000] * 14 + [48000, 22050]


def chunk_samples(rate: int, i: int) -> int:
    return 10 * rate + 37 * i + 1


def proc_status(field: str) -> int:
    """An integer field of /proc/self/status (VmRSS in kB, Threads)."""
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+)", text, re.MULTILINE)
    assert match is not None, f"/proc/self/status has no {field}"
    return int(match.group(1))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class AudioSource:
    """Stream i's audio, generated chunk by chunk: ``next()`` gives float32 (n,) at ``rate``."""

    def __init__(self, table: np.ndarray, rate: int, total: int, chunk: int, seed: int) -> None:
        self.table, self.rate, self.total, self.chunk = table, rate, total, chunk
        self.position = 0
        self.rng = np.random.default_rng(seed)

    @property
    def finished(self) -> bool:
        return self.position >= self.total

    def next(self) -> np.ndarray:
        n = min(self.chunk, self.total - self.position)
        reps = -(-n // len(self.table)) + 1
        start = int(self.rng.integers(0, len(self.table)))
        gain = np.float32(self.rng.uniform(0.05, 1.0))
        self.position += n
        return np.tile(self.table, reps)[start:start + n] * gain


@pytest.mark.slow
def test_one_hour_through_16_streams(tiny_bundle: Path) -> None:  # noqa: F811
    fds_before, threads_before = open_fds(), threading.active_count()
    os_threads_before = proc_status("Threads")
    config = GeneratorConfig(tiny_bundle, BackendConfig("onnxruntime-cpu", intra_op_num_threads=1),
                             chunk_frames=CHUNK_FRAMES)
    tables = {rate: speechlike(rate, 10.0, seed=rate)[:, 0].astype(np.float32)
              for rate in set(RATES)}
    sources = [AudioSource(tables[rate], rate, SOAK_SECONDS * rate, chunk_samples(rate, i), i)
               for i, rate in enumerate(RATES)]
    timings = {"audio": 0.0, "accept": 0.0, "step": 0.0, "pop": 0.0}
    started = time.perf_counter()
    gen = StreamingGenerator(config)
    fps = np.float64(gen.fps)
    streams: list[Stream] = [gen.create_stream(seed=i) for i in range(STREAMS)]
    counts = [0] * STREAMS
    rss_warm = fds_warm = threads_warm = os_threads_warm = None
    steps = 0
    while not all(s.is_done for s in streams):
        for source, stream in zip(sources, streams, strict=True):
            if source.finished:
                continue
            t0 = time.perf_counter()
            audio = source.next()
            t1 = time.perf_counter()
            stream.accept_waveform(audio, source.rate)
            if source.finished:
                stream.input_finished()
            t2 = time.perf_counter()
            timings["audio"] += t1 - t0
            timings["accept"] += t2 - t1
        t0 = time.perf_counter()
        ready = [s for s in streams if gen.is_ready(s)]
        while ready:
            gen.step(ready)
            steps += 1
            ready = [s for s in streams if gen.is_ready(s)]
        t1 = time.perf_counter()
        for i, stream in enumerate(streams):
            frames = stream.pop_frames()
            expected = np.arange(counts[i], counts[i] + len(frames))
            np.testing.assert_array_equal(frames.index, expected)
            np.testing.assert_array_equal(frames.time, expected / fps)  # k / fps, not a sum
            counts[i] += len(frames)
        timings["pop"] += time.perf_counter() - t1
        timings["step"] += t1 - t0
        if rss_warm is None and min(s.position / s.rate for s in sources) >= WARM_UP_SECONDS:
            rss_warm, fds_warm = proc_status("VmRSS"), open_fds()
            threads_warm, os_threads_warm = threading.active_count(), proc_status("Threads")
    rss_end, fds_end = proc_status("VmRSS"), open_fds()
    threads_end, os_threads_end = threading.active_count(), proc_status("Threads")
    features = gen.manifest.features
    for i, (source, stream) in enumerate(zip(sources, streams, strict=True)):
        want = features.num_pose_frames(model_rate_samples(source.total, source.rate,
                                                           features.sample_rate))
        assert want == SOAK_SECONDS * gen.fps
        assert counts[i] == stream.num_frames_emitted == stream.num_frames_total == want, i
        assert stream.num_samples_accepted == source.total
        stream.close()
    gen.close()
    elapsed = time.perf_counter() - started
    growth_mib = (rss_end - (rss_warm or 0)) / 1024
    print(f"\nsoak: {STREAMS} x {SOAK_SECONDS} s of audio in {elapsed:.1f} s "
          f"({STREAMS * SOAK_SECONDS / elapsed:.0f}x real time), {steps} steps; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
          + f"; RSS {rss_warm / 1024 if rss_warm else 0:.1f} MiB after warm-up -> "
          f"{rss_end / 1024:.1f} MiB at the end (+{growth_mib:.2f} MiB); fds {fds_warm} -> "
          f"{fds_end}; threads {threads_warm}/{os_threads_warm} -> {threads_end}/"
          f"{os_threads_end}")
    assert rss_warm is not None
    assert growth_mib < RSS_GROWTH_BOUND_MIB
    assert (fds_end, threads_end, os_threads_end) == (fds_warm, threads_warm, os_threads_warm)
    assert (open_fds(), threading.active_count()) == (fds_before, threads_before)
    assert proc_status("Threads") <= os_threads_before
