"""Threads on one shared StreamingGenerator give the numbers a single thread gives.

1. 8 threads, each creating, feeding, stepping and reading its own 2 streams.
2. The pattern sdk/streaming.py documents for the batched step: producer threads feeding
   streams, one thread stepping every ready stream in one batched call, consumer threads
   popping frames.
3. Streams created and closed from many threads at once: slots neither leak nor collide.
4. Streams and the generator closed while other threads feed and step them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

from reliability.make_bad_inputs import speechlike
from sdk import StreamingGenerator
from sdk.frames import PoseFrames
from sdk.runners.select import BackendConfig
from sdk.streaming import GeneratorConfig, Stream, StreamError

THREADS = 8
TOLERANCE = 0.0  # measured bit-identical on ONNX Runtime CPU, batched or not


@pytest.fixture(scope="module")
def gen(tiny_bundle: Path) -> Iterator[StreamingGenerator]:  # noqa: F811
    config = GeneratorConfig(tiny_bundle, BackendConfig("onnxruntime-cpu", intra_op_num_threads=1),
                             chunk_frames=2)
    with StreamingGenerator(config) as generator:
        yield generator


@pytest.fixture(scope="module")
def clips() -> list[tuple[np.ndarray, int]]:
    """16 clips of 1.5-3 s at mixed rates and dtypes."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(2 * THREADS):
        rate = (16000, 48000, 22050, 44100)[i % 4]
        audio = speechlike(rate, float(rng.uniform(1.5, 3.0)), channels=1 + i % 2, seed=i)
        out.append(((audio * 32767).astype(np.int16) if i % 3 == 0 else audio, rate))
    return out


def run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(k)`` in ``count`` threads started together; re-raise the first error."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def body(k: int) -> None:
        try:
            barrier.wait()
            work(k)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def assert_same(gen: StreamingGenerator, got: PoseFrames, want: PoseFrames) -> None:
    np.testing.assert_array_equal(got.index, want.index)
    np.testing.assert_array_equal(got.time, want.time)
    norm = gen.manifest.normalization
    diff = np.abs(norm.pixels_to_canonical(got.keypoints)
                  - norm.pixels_to_canonical(want.keypoints)).max(initial=0.0)
    assert diff <= TOLERANCE and np.abs(got.saliency - want.saliency).max(initial=0) <= TOLERANCE


def chunks_of(audio: np.ndarray, seed: int) -> list[np.ndarray]:
    sizes = np.random.default_rng(seed).integers(1, 6000, 400)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [audio[a:b] for a, b in itertools.pairwise(bounds) if a < len(audio)]


def test_8_threads_each_driving_their_own_streams(
        gen: StreamingGenerator, clips: list[tuple[np.ndarray, int]]) -> None:
    singles = [gen.generate(audio, rate, seed=i) for i, (audio, rate) in enumerate(clips)]
    results: dict[int, PoseFrames] = {}

    def drive(k: int) -> None:
        mine = [2 * k, 2 * k + 1]
        streams = {i: gen.create_stream(seed=i) for i in mine}
        pending = {i: chunks_of(clips[i][0], i) for i in mine}
        parts: dict[int, list[PoseFrames]] = {i: [] for i in mine}
        while any(not s.is_done for s in streams.values()):
            for i, stream in streams.items():
                if pending[i]:
                    stream.accept_waveform(pending[i].pop(0), clips[i][1])
                    if not pending[i]:
                        stream.input_finished()
            ready = [s for s in streams.values() if gen.is_ready(s)]
            if ready:
                gen.step(ready)
            for i, stream in streams.items():
                parts[i].append(stream.pop_frames())
        for i, stream in streams.items():
            stream.close()
            results[i] = PoseFrames.concatenate(parts[i], gen.num_joints)

    run_threads(THREADS, drive)
    for i, want in enumerate(singles):
        assert_same(gen, results[i], want)


def test_producers_one_stepping_thread_and_consumers(
        gen: StreamingGenerator, clips: list[tuple[np.ndarray, int]]) -> None:
    """4 producers feed 4 streams each; 1 thread steps all ready streams batched; 2
    consumers pop; the main thread only waits."""
    singles = [gen.generate(audio, rate, seed=100 + i) for i, (audio, rate) in enumerate(clips)]
    streams: list[Stream] = [gen.create_stream(seed=100 + i) for i in range(len(clips))]
    parts: list[list[PoseFrames]] = [[] for _ in clips]
    batch_sizes: list[int] = []
    producers_done = threading.Event()

    def produce(k: int) -> None:
        for i in range(4 * k, 4 * k + 4):
            audio, rate = clips[i]
            for chunk in chunks_of(audio, i):
                streams[i].accept_waveform(chunk, rate)
            streams[i].input_finished()

    def step_all() -> None:
        while True:
            ready = [s for s in streams if gen.is_ready(s)]
            if ready:
                gen.step(ready)
                batch_sizes.append(len(ready))
            elif producers_done.is_set():
                return
            else:
                time.sleep(0.0005)  # nothing ready: let the producers hold the GIL

    def consume(k: int) -> None:
        while True:
            finished = all(s.is_done for s in streams[k::2])
            for i in range(k, len(streams), 2):
                parts[i].append(streams[i].pop_frames())
            if finished:
                return
            time.sleep(0.001)

    stepper = threading.Thread(target=step_all)
    consumers = [threading.Thread(target=consume, args=(k,)) for k in range(2)]
    stepper.start()
    for consumer in consumers:
        consumer.start()
    run_threads(4, produce)
    producers_done.set()
    stepper.join(timeout=120)
    for consumer in consumers:
        consumer.join(timeout=120)
    assert not stepper.is_alive() and not any(c.is_alive() for c in consumers)
    assert max(batch_sizes) > 1, "the stepping thread should have batched streams"
    for i, want in enumerate(singles):
        assert streams[i].is_done
        assert_same(gen, PoseFrames.concatenate(parts[i], gen.num_joints), want)
        streams[i].close()


def test_streams_created_and_closed_from_many_threads_reuse_their_slots(
        gen: StreamingGenerator) -> None:
    slots: list[set[int]] = [set() for _ in range(THREADS)]

    def churn(k: int) -> None:
        for _ in range(100):
            with gen.create_stream(seed=k) as stream:
                slots[k].add(stream._slot)
                stream.accept_waveform(np.zeros(3000, np.float32), 16000)
                if gen.is_ready(stream):
                    gen.step([stream])

    run_threads(THREADS, churn)
    used = set().union(*slots)
    assert len(used) <= THREADS, f"{len(used)} slots used by {THREADS} live streams at most"
    with gen.create_stream() as stream:
        assert stream._slot in used


def test_closing_streams_and_the_generator_under_other_threads_ends_cleanly(
        tiny_bundle: Path) -> None:  # noqa: F811
    """Steppers and feeders racing with close(): every failure is a StreamError saying
    the stream or generator is closed; nothing hangs, nothing else is raised."""
    config = GeneratorConfig(tiny_bundle, BackendConfig("onnxruntime-cpu", intra_op_num_threads=1))
    gen = StreamingGenerator(config)
    streams = [gen.create_stream(seed=i) for i in range(THREADS)]
    audio = speechlike(16000, 0.25)[:, 0].astype(np.float32)
    refusals: list[str] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        stream = streams[k]
        for round_ in range(200):
            try:
                if k % 2 == 0 and round_ == 20 + 10 * k:
                    stream.close()  # half the streams close themselves mid-run
                if k == THREADS - 1 and round_ == 150:
                    gen.close()  # and one thread closes the generator under everyone
                stream.accept_waveform(audio, 16000)
                ready = [s for s in streams if gen.is_ready(s)]
                if ready:
                    gen.step(ready)
                stream.pop_frames()
            except StreamError as exc:
                assert "closed" in str(exc) or "not ready" in str(exc), exc
                with lock:
                    refusals.append(str(exc))

    run_threads(THREADS, work)
    assert gen._closed and any("StreamingGenerator is closed" in r for r in refusals)
    assert any("closed stream" in r for r in refusals)
    for stream in streams:
        stream.close()  # still fine after everything
