"""The runtime's GPU path on the CPU emulator: StreamingGenerator with the TensorRT stepper.

With a device-features stepper the generator's :class:`sdk.device_front_end.DeviceFrontEnd`
takes every stream's audio to the "device" once, runs the CUDA MFCC and writes the feature
frames into the engine's input binding (fixtures and checks: tests/helpers_device_path.py).
Reference: the CPU path on the same audio; features <= 1e-3, poses <= 1e-3 px.
"""
# ruff: noqa: F811  (the fixtures imported from helpers_device_path are parameters here)

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from cuda_emu.fake_driver import FakeDriver
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)
from helpers_device_path import (  # noqa: F401  (fixtures)
    POSE_ATOL_PX,
    FeatureSpy,
    assert_features_like_the_cpu,
    assert_same_frames,
    cpu,
    fake,
    gpu,
    library,
    speech,
)

from sdk import device_front_end
from sdk.features import DEFAULT_FEATURES
from sdk.frames import PoseFrames
from sdk.runners.tensorrt import TensorRTRunner
from sdk.runners.tensorrt_stepper import TensorRTStepper
from sdk.streaming import GeneratorConfig, StreamError, StreamingGenerator


def test_the_tensorrt_stepper_gets_the_device_front_end_and_the_cpu_path_does_not(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray) -> None:
    assert gpu.device_front_end is not None and cpu.device_front_end is None
    gpu.generate(speech(speech_16k, 1.0), 16000)
    stepper = gpu._stepper
    assert isinstance(stepper, TensorRTStepper)
    assert stepper._graphs and all(key[2] for key in stepper._graphs)  # no features copy
    assert "mfcc_frames" in gpu.device_front_end.runner.driver.launched  # type: ignore


@pytest.mark.parametrize("sizes", [[1], [1, 7, 1067, 3, 5000], [16000 // 15 + 1]],
                         ids=["1-sample", "ragged", "one-frame"])
def test_generate_equals_the_cpu_path_for_any_chunking(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray,
        sizes: list[int]) -> None:
    audio = speech(speech_16k, 0.6 if sizes == [1] else 2.0)
    staged = gpu._stepper.runner.tensors["features"].host.array  # type: ignore[attr-defined]
    staged[:] = np.nan  # were the graph to copy host features, NaN would reach the engine
    got = gpu.generate(audio, 16000, seed=3, chunk_samples=itertools.cycle(sizes))
    assert len(got) == DEFAULT_FEATURES.num_pose_frames(len(audio))
    assert_same_frames(got, cpu.generate(audio, 16000, seed=3))
    assert_features_like_the_cpu(gpu.spy, audio)  # type: ignore[attr-defined]


def test_a_chunk_longer_than_the_device_ring_waits_on_the_host(
        gpu: StreamingGenerator, cpu: StreamingGenerator) -> None:
    """40 s in one chunk: the device ring holds ~0.1 s of MFCC frames; the rest of the
    audio goes up step by step, each sample once."""
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(40 * 16000)).astype(np.float32)
    front = gpu.device_front_end
    assert front is not None and front.mfcc.ring_frames * 160 < 16000
    got = gpu.generate(audio, 16000, seed=1)
    assert_same_frames(got, cpu.generate(audio, 16000, seed=1))
    assert_features_like_the_cpu(gpu.spy, audio)  # type: ignore[attr-defined]


def test_a_10_minute_chunk_is_accepted_at_once_and_stepped_from_the_host_backlog(
        gpu: StreamingGenerator, cpu: StreamingGenerator) -> None:
    """10 minutes in one accept_waveform: both paths count the same frames; the first
    10 s of them, stepped, are the same (the whole clip on the emulator takes minutes;
    the 40 s case above runs to the end)."""
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(600 * 16000)).astype(np.float32)
    a, b = gpu.create_stream(seed=7), cpu.create_stream(seed=7)
    for stream in (a, b):
        stream.accept_waveform(audio, 16000)
    assert a.num_feature_frames_queued == b.num_feature_frames_queued > 8990
    queue = a._queue
    assert isinstance(queue, device_front_end.DeviceFeatureQueue) and queue.on_device == 0
    for _ in range(150):
        gpu.step([a])
        cpu.step([b])
    assert queue.on_device < 12 * 16000  # the rest still waits on the host
    assert_same_frames(a.pop_frames(), b.pop_frames())
    assert_features_like_the_cpu(gpu.spy, audio[:12 * 16000])  # type: ignore[attr-defined]


def test_multichannel_int16_at_44100_hz(gpu: StreamingGenerator, cpu: StreamingGenerator,
                                        speech_16k: np.ndarray) -> None:
    """Resampling stays on the host (soxr, the same for both paths); the device gets the
    model-rate mono samples."""
    rng = np.random.default_rng(2)
    n = int(1.5 * 44100)
    stereo = (rng.integers(-8000, 8000, (n, 2))).astype(np.int16)
    got = gpu.generate(stereo, 44100, seed=5, chunk_samples=itertools.cycle([441, 1, 4410, 777]))
    assert_same_frames(got, cpu.generate(stereo, 44100, seed=5))


def run_streams(gen: StreamingGenerator, clips: list[np.ndarray], finish_at: dict[int, int],
                chunk: int = 1067) -> list[PoseFrames]:
    """Feed every clip in ``chunk``-sample pieces, one tick at a time, and step all ready
    streams in one call per tick; stream i gets input_finished after ``finish_at[i]``
    samples (its clip is cut there), mid-batch of the others."""
    streams = [gen.create_stream(seed=i) for i in range(len(clips))]
    frames: list[list[PoseFrames]] = [[] for _ in clips]
    ends = [finish_at.get(i, len(c)) for i, c in enumerate(clips)]
    for start in range(0, max(ends) + chunk, chunk):
        for i, stream in enumerate(streams):
            if start < ends[i]:
                stream.accept_waveform(clips[i][start:min(start + chunk, ends[i])], 16000)
            elif not stream.is_input_finished:
                stream.input_finished()
        while ready := [s for s in streams if gen.is_ready(s)]:
            gen.step(ready)
        for i, stream in enumerate(streams):
            frames[i].append(stream.pop_frames())
    for stream in streams:
        assert stream.is_done
        stream.close()
    return [PoseFrames.concatenate(f, gen.num_joints) for f in frames]


def test_many_streams_in_one_batch_one_finishing_mid_batch(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """20 streams: more than a model call's batch of 8 (the step splits) and than the
    device MFCC's first 4 slots (it grows, keeping the streams' state); stream 5 ends
    after 0.4 s while the others go on, and a new stream then reuses its slot."""
    front = gpu.device_front_end
    assert front is not None
    front.mfcc.close()
    front.mfcc = front._make_mfcc(4)
    gpu.max_batch = 8
    clips = [np.roll(speech(speech_16k, 1.0), 997 * i) for i in range(20)]
    got = run_streams(gpu, clips, finish_at={5: 6400})
    assert front.mfcc.max_streams == 32
    assert {s.shape[0] for s in gpu.spy.steps} >= {8, 4}  # type: ignore[attr-defined]
    for i in (0, 5, 17, 19):
        clip = clips[i][:6400] if i == 5 else clips[i]
        assert_same_frames(got[i], cpu.generate(clip, 16000, seed=i), f"stream {i}")
    again = gpu.generate(clips[1], 16000, seed=1)  # a reused slot starts from silence
    assert_same_frames(again, cpu.generate(clips[1], 16000, seed=1))


def test_reset_starts_a_stream_over_on_the_device(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray) -> None:
    audio = speech(speech_16k, 1.0)
    with gpu.create_stream(seed=2) as stream:
        stream.accept_waveform(speech_16k[30000:40000], 16000)
        while gpu.is_ready(stream):
            gpu.step([stream])
        stream.accept_waveform(speech_16k[:500], 16000)  # in the backlog, never stepped
        gpu.reset(stream)
        stream.accept_waveform(audio, 16000)
        stream.input_finished()
        while gpu.is_ready(stream):
            gpu.step([stream])
        assert_same_frames(stream.pop_frames(), cpu.generate(audio, 16000, seed=2))


def test_ready_counts_equal_the_cpu_path_chunk_by_chunk(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray) -> None:
    a, b = gpu.create_stream(), cpu.create_stream()
    for size in (1, 255, 256, 1, 159, 160, 1067, 3000, 7):
        chunk = speech_16k[:size]
        a.accept_waveform(chunk, 16000)
        b.accept_waveform(chunk, 16000)
        assert a.num_feature_frames_queued == b.num_feature_frames_queued, size
    a.input_finished()
    b.input_finished()
    assert a.num_feature_frames_queued == b.num_feature_frames_queued


def test_bad_input_is_refused_and_nothing_accepted_is_lost(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray) -> None:
    audio = speech(speech_16k, 0.8)
    with gpu.create_stream(seed=4) as stream:
        stream.accept_waveform(audio[:5000], 16000)
        with pytest.raises(StreamError, match="sample_rate changed"):
            stream.accept_waveform(audio[5000:], 8000)
        with pytest.raises(StreamError):
            stream.accept_waveform(np.full(10, np.nan, np.float32), 16000)
        stream.accept_waveform(audio[5000:], 16000)
        stream.input_finished()
        while gpu.is_ready(stream):
            gpu.step([stream])
        assert_same_frames(stream.pop_frames(), cpu.generate(audio, 16000, seed=4))


def test_device_front_end_false_keeps_the_host_mfcc(fake: FakeDriver, tiny_bundle: Path,
                                                     tmp_path: Path) -> None:
    stepper = TensorRTStepper(TensorRTRunner(tmp_path / "generator.plan"),
                              fake.state_size)  # type: ignore[attr-defined]
    with StreamingGenerator(GeneratorConfig(tiny_bundle, device_front_end=False),
                            backend=stepper) as gen:
        assert gen.device_front_end is None
        gen.generate(np.zeros(4000, np.float32), 16000)
        assert all(not key[2] for key in stepper._graphs)  # features copied from the host


# ---- the parity check can fail ----


def test_a_stream_batch_keeps_no_view_of_the_callers_buffer(
        gpu: StreamingGenerator, cpu: StreamingGenerator, speech_16k: np.ndarray) -> None:
    """A server refills one packet buffer for every tick: samples the batch has not yet
    taken to the device must be its own copy, not a view the next packet overwrites."""
    from sdk.stream_batch import StreamBatch

    clips = np.stack([np.roll(speech(speech_16k, 1.0), 997 * i) for i in range(3)])
    n = 1000  # not a whole number of frames: samples wait in the host backlog
    packets = clips.shape[1] // n
    reused = np.empty((3, n), np.float32)
    with StreamBatch(gpu, seeds=range(3), sample_rate=16000) as batch:
        got = []
        for i in range(packets):
            reused[:] = clips[:, i * n:(i + 1) * n]
            got.append(batch.accept(reused).keypoints)
            reused[:] = np.nan  # the caller's buffer, between ticks
        got.append(batch.finish().keypoints)
    with StreamBatch(cpu, seeds=range(3), sample_rate=16000) as batch:
        want = [batch.accept(clips[:, i * n:(i + 1) * n]).keypoints for i in range(packets)]
        want.append(batch.finish().keypoints)
    mine, theirs = np.concatenate(got, axis=1), np.concatenate(want, axis=1)
    assert mine.shape == theirs.shape and np.isfinite(mine).all()
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=POSE_ATOL_PX)
