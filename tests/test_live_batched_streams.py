"""BatchedStreams (the server's vectorised pass) gives StreamingGenerator.generate's frames."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from helpers_live import DECIMATED_TOLERANCE_PX, TOLERANCE_PX

from sdk.audio import load_audio
from sdk.demo import DATA_DIR, DEFAULT_BUNDLE
from sdk.frames import PoseFrames
from sdk.live.batched_streams import BatchedStreams
from sdk.noise import frame_noise, frame_noise_at
from sdk.stream import StreamError
from sdk.streaming import StreamingGenerator


@pytest.fixture(scope="module")
def generator() -> Iterator[StreamingGenerator]:
    with StreamingGenerator(DEFAULT_BUNDLE, backend="onnxruntime-cpu") as gen:
        yield gen


def _speech(rate: int, seconds: float) -> np.ndarray:
    return load_audio(DATA_DIR / "samples" / "speech_en.flac", rate)[:int(seconds * rate)]


def _as_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(audio * 32767), -32768, 32767).astype(np.int16)[:, None]


@pytest.mark.parametrize("rates", [[16000], [44100], [48000], [48000, 16000, 32000, 44100, 96000]],
                         ids=["16k", "44k1", "48k", "mixed"])
def test_ragged_chunks_of_many_streams_give_the_offline_frames(
        generator: StreamingGenerator, rates: list[int]) -> None:
    """Streams at one rate each (identity, soxr per stream, the ragged decimator over all
    streams of a factor; "mixed": all at once), fed ragged chunks and idle ticks."""
    rate_of = [rates[i % len(rates)] for i in range(6)]
    speech = {rate: _speech(rate, 2.4) for rate in rates}
    # lengths that end at different places in a hop, a frame, and one too short for a frame
    clips = [speech[rate_of[i]][:len(speech[rate_of[i]]) - 37 * i] for i in range(4)] \
        + [speech[rate_of[4]][:5], speech[rate_of[5]][:0]]
    batch = BatchedStreams(generator)
    streams = [batch.open(seed, rate_of[seed]) for seed in range(len(clips))]
    rng = np.random.default_rng(7)
    sent = [0] * len(clips)
    got: list[list[PoseFrames]] = [[] for _ in clips]
    for _ in range(10_000):  # bounded; ends when every stream is done
        if all(s.is_done for s in streams):
            break
        for i, (stream, clip) in enumerate(zip(streams, clips, strict=True)):
            if stream.is_finished:
                continue
            if sent[i] >= len(clip):
                batch.finish(stream)
                continue
            size = 0 if rng.random() < 0.3 else int(rng.integers(1, 2000))  # idle ticks too
            part = clip[sent[i]:sent[i] + size]
            batch.feed(stream, _as_pcm16(part) if i % 2 else part)
            sent[i] += size
        batch.advance()
        for i, stream in enumerate(streams):
            got[i].append(batch.pop_frames(stream))
    for i, clip in enumerate(clips):
        frames = PoseFrames.concatenate(got[i], generator.num_joints)
        want = generator.generate(_as_pcm16(clip) if i % 2 else clip, rate_of[i], seed=i)
        np.testing.assert_array_equal(frames.index, want.index)
        np.testing.assert_array_equal(frames.time, want.time)
        tolerance = DECIMATED_TOLERANCE_PX if rate_of[i] % 16000 == 0 and rate_of[i] > 16000 \
            else TOLERANCE_PX
        np.testing.assert_allclose(frames.keypoints, want.keypoints, rtol=0, atol=tolerance)
        np.testing.assert_allclose(frames.saliency, want.saliency, rtol=0, atol=1e-4)
        batch.close(streams[i])
    assert not batch.streams


@pytest.mark.parametrize("rate", [16000, 48000])
def test_fed_audio_is_copied_before_the_caller_reuses_its_buffer(
        generator: StreamingGenerator, rate: int) -> None:
    """A server refills its packet buffer before the next advance(): the frames must be the
    audio's as fed, not what the buffer holds later (16 kHz float32 was kept as a view)."""
    speech = _speech(rate, 1.0)
    batch = BatchedStreams(generator)
    stream = batch.open(3, rate)
    packet = np.empty(rate // 50, np.float32)  # 20 ms, reused
    frames = []
    for first in range(0, len(speech), len(packet)):
        part = speech[first:first + len(packet)]
        packet[:len(part)] = part
        batch.feed(stream, packet[:len(part)])
        packet[:] = np.nan  # the caller's next use of its buffer
        batch.advance()
        frames.append(batch.pop_frames(stream))
    batch.finish(stream)
    batch.advance()
    frames.append(batch.pop_frames(stream))
    got = PoseFrames.concatenate(frames, generator.num_joints)
    want = generator.generate(speech, rate, seed=3)
    assert np.isfinite(got.keypoints).all()
    np.testing.assert_allclose(got.keypoints, want.keypoints, rtol=0,
                               atol=DECIMATED_TOLERANCE_PX if rate != 16000 else TOLERANCE_PX)
    batch.close(stream)


def test_a_wrong_seed_is_caught(generator: StreamingGenerator) -> None:
    """The comparison above can fail: a stream whose noise is another seed's differs."""
    speech = _speech(16000, 1.5)
    batch = BatchedStreams(generator)
    stream = batch.open(1, 16000)
    batch.feed(stream, speech)
    batch.finish(stream)
    batch.advance()
    frames = batch.pop_frames(stream)
    batch.close(stream)
    want = generator.generate(speech, 16000, seed=0)
    assert np.abs(frames.keypoints - want.keypoints).max() > 100 * TOLERANCE_PX


def test_bad_audio_is_refused_and_changes_nothing(generator: StreamingGenerator) -> None:
    speech = _speech(16000, 1.5)
    batch = BatchedStreams(generator)
    stream = batch.open(0, 16000)
    batch.feed(stream, speech[:8000])
    bad = speech[8000:9000].copy()
    bad[10] = np.nan
    for wrong in (bad, speech[:10].astype(np.complex64), np.zeros((2, 3, 4), np.float32)):
        with pytest.raises(StreamError):
            batch.feed(stream, wrong)
    batch.feed(stream, speech[8000:])
    batch.finish(stream)
    with pytest.raises(StreamError, match="finished"):
        batch.feed(stream, speech[:10])
    batch.advance()
    frames = batch.pop_frames(stream)
    batch.close(stream)
    batch.close(stream)  # idempotent
    want = generator.generate(speech, 16000, seed=0)
    np.testing.assert_allclose(frames.keypoints, want.keypoints, rtol=0, atol=TOLERANCE_PX)
    with pytest.raises(StreamError, match="closed"):
        batch.finish(stream)
    with pytest.raises(StreamError, match="seed"):
        batch.open(-1, 16000)
    with pytest.raises(StreamError, match="sample_rate"):
        batch.open(0, 10)


def test_frame_noise_at_equals_frame_noise_per_stream() -> None:
    seeds = np.array([0, 5, 2**62], np.int64)
    first = np.array([0, 17, 3], np.int64)
    got = frame_noise_at(seeds, first, 4, 3)
    for n in range(3):
        np.testing.assert_array_equal(got[n], frame_noise(int(seeds[n]), int(first[n]), 4, 3))
    assert not np.array_equal(got[1], frame_noise(5, 16, 4, 3))  # the frame index matters
    with pytest.raises(ValueError):
        frame_noise_at(np.array([-1]), np.array([0]), 1, 1)
    with pytest.raises(ValueError):
        frame_noise_at(np.array([1, 2]), np.array([0]), 1, 1)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_samples_for_next_step_is_exactly_when_a_stream_can_step(
        generator: StreamingGenerator, rate: int) -> None:
    """One sample short of ``samples_for_next_step``, advance steps nothing; at it, it steps
    (so a server that waits for it adds no latency), at the model rate and at 48 kHz
    (decimated: its output count is known in advance); unknown (None) for audio soxr
    resamples (44.1 kHz)."""
    speech = _speech(rate, 2.0)
    batch = BatchedStreams(generator)
    stream = batch.open(0, rate)
    fed = 0
    for _ in range(12):
        need = batch.samples_for_next_step(stream)
        assert need is not None and need > fed
        steps = stream.fed
        batch.feed(stream, speech[fed:need - 1])
        batch.advance()
        assert stream.fed == steps  # one sample short: no step
        batch.feed(stream, speech[need - 1:need])
        fed = need
        batch.advance()
        assert stream.fed >= steps + generator.chunk_frames
    assert len(batch.pop_frames(stream)) == stream.fed - generator.lookahead_frames > 0
    assert batch.samples_for_next_step(batch.open(0, 44100)) is None


@pytest.mark.parametrize(("launch_bound", "calls"), [(False, [64, 36]), (True, [100])],
                         ids=["cpu-step", "gpu-step"])
def test_a_gpu_step_gets_every_ready_stream_in_one_call(
        generator: StreamingGenerator, monkeypatch: pytest.MonkeyPatch,
        launch_bound: bool, calls: list[int]) -> None:
    """The server's batching follows the step: a CPU step gets STEP_BATCH (64) streams per
    call, a GPU step (``launch_bound``: about as costly for 1 stream as for thousands)
    every ready stream at once."""
    stepper = generator._stepper
    monkeypatch.setattr(type(stepper), "launch_bound", property(lambda self: launch_bound))
    sizes: list[int] = []
    step = stepper.step

    def spy(features: np.ndarray, *rest: object) -> object:
        sizes.append(len(features))
        return step(features, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(stepper, "step", spy)
    batch = BatchedStreams(generator)
    streams = [batch.open(seed, 16000) for seed in range(100)]
    speech = _speech(16000, 0.5)
    for stream in streams:
        batch.feed(stream, speech)
    batch.advance()
    assert sizes[:len(calls)] == calls and set(sizes) == set(calls)
    for stream in streams:
        batch.close(stream)
