"""StreamingGenerator invariants on ONNX Runtime CPU: chunking, batching, seeds, frame
accounting, bad input, reset, threads and clean-up."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)
from helpers_streaming import run_chunks, step_and_pop

from sdk import StreamingGenerator
from sdk.audio import resample
from sdk.feature_frames import StreamingFeatureExtractor
from sdk.frames import PoseFrames
from sdk.mfcc import MfccMatrices, extract_features
from sdk.noise import frame_noise
from sdk.runners.select import BackendConfig
from sdk.streaming import GeneratorConfig, Stream, StreamError, model_rate_samples

TOLERANCE = 1e-5  # canonical units (shoulder widths) and saliency


@pytest.fixture(scope="module")
def gen(tiny_bundle: Path) -> Iterator[StreamingGenerator]:  # noqa: F811
    config = GeneratorConfig(tiny_bundle, BackendConfig("onnxruntime-cpu", intra_op_num_threads=1))
    with StreamingGenerator(config) as generator:
        yield generator


def stream_in_chunks(gen: StreamingGenerator, audio: np.ndarray, rate: int,
                     sizes: Sequence[int], seed: int = 0) -> PoseFrames:
    """Feed ``audio`` in chunks of ``sizes`` (cycled), stepping whenever ready."""

    def chunks() -> Iterator[tuple[np.ndarray, int]]:
        first, i = 0, 0
        while first < len(audio):
            size = sizes[i % len(sizes)]
            yield audio[first:first + size], rate
            first, i = first + size, i + 1

    return run_chunks(gen, chunks(), seed)


def assert_same_frames(gen: StreamingGenerator, got: PoseFrames, want: PoseFrames,
                       tol: float = TOLERANCE) -> None:
    np.testing.assert_array_equal(got.index, want.index)
    np.testing.assert_array_equal(got.time, want.time)
    norm = gen.manifest.normalization
    canon = np.abs(norm.pixels_to_canonical(got.keypoints) - norm.pixels_to_canonical(
        want.keypoints)).max(initial=0.0)
    sal = np.abs(got.saliency - want.saliency).max(initial=0.0)
    assert canon <= tol and sal <= tol, f"max diff: canonical {canon:.2e}, saliency {sal:.2e}"


def random_chunk_sizes(rng: np.random.Generator, rate: int, count: int) -> list[int]:
    """Log-uniform sizes from 1 sample to 10 s, with a run of 1..3-sample chunks."""
    sizes = np.exp(rng.uniform(0.0, np.log(10 * rate), count)).astype(int).tolist()
    return [int(s) for s in rng.integers(1, 4, 300)] + sizes


# ---- chunk invariance ----
@pytest.mark.parametrize("rate", [16000, 48000, 22050])
def test_any_chunking_gives_the_offline_frames(gen: StreamingGenerator, speech_16k: np.ndarray,
                                               rate: int) -> None:
    audio = speech_16k if rate == 16000 else resample(speech_16k, 16000, rate)
    offline = gen.generate(audio, rate, seed=3)
    assert len(offline) == gen.manifest.features.num_pose_frames(
        model_rate_samples(len(audio), rate, 16000))
    rng = np.random.default_rng(rate)
    for _ in range(2):
        streamed = stream_in_chunks(gen, audio, rate, random_chunk_sizes(rng, rate, 40), seed=3)
        assert_same_frames(gen, streamed, offline)


def test_steps_of_several_frames_give_the_same_frames(tiny_bundle: Path,  # noqa: F811
                                                      speech_16k: np.ndarray) -> None:
    audio = speech_16k[: 5 * 16000]
    results = []
    for chunk_frames in (1, 4, 7):
        config = GeneratorConfig(tiny_bundle, BackendConfig("onnxruntime-cpu"),
                                 chunk_frames=chunk_frames)
        with StreamingGenerator(config) as g:
            results.append((g, g.generate(audio, 16000, seed=1)))
    for g, frames in results[1:]:
        assert_same_frames(g, frames, results[0][1])


def test_frames_follow_the_step_contract(gen: StreamingGenerator, tiny_bundle: Path,  # noqa: F811
                                        speech_16k: np.ndarray) -> None:
    """Reference: the whole clip through the ONNX model in one call, by the contract."""
    import onnxruntime as ort

    manifest = gen.manifest
    features, spec, norm = manifest.features, manifest.generator, manifest.normalization
    audio = np.concatenate([speech_16k, speech_16k[: 10 * 16000]])  # > 256 frames: noise blocks
    total = features.num_pose_frames(len(audio))
    inputs = total + spec.lookahead_frames
    matrices = MfccMatrices.load(tiny_bundle / manifest.mfcc_matrices, features)
    session = ort.InferenceSession(str(tiny_bundle / spec.model.file),
                                   providers=["CPUExecutionProvider"])
    poses, saliency, _ = session.run(None, {
        "features": extract_features(audio, features, matrices, inputs)[None],
        "noise": frame_noise(11, 0, inputs, spec.noise_dim)[None],
        "state": np.zeros((1, spec.state_size), np.float32),
    })
    lag = spec.lookahead_frames
    want = PoseFrames(norm.canonical_to_pixels(norm.destandardize(poses[0, lag:])),
                      saliency[0, lag:], np.arange(total) / features.fps, np.arange(total))
    assert_same_frames(gen, gen.generate(audio, 16000, seed=11), want)


# ---- batching invariance ----
def test_one_batched_step_over_64_streams_equals_single_stream_runs(
        gen: StreamingGenerator, speech_16k: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    count = 64
    clips = []
    for _ in range(count):
        start = int(rng.integers(0, len(speech_16k) - 48000))
        clips.append(speech_16k[start:start + int(rng.integers(16000, 48000))])
    singles = [gen.generate(clip, 16000, seed=i) for i, clip in enumerate(clips)]
    streams = [gen.create_stream(seed=i) for i in range(count)]
    parts: list[list[PoseFrames]] = [[] for _ in range(count)]
    # Staggered starts: stream i receives its audio from round i // 4, so positions differ.
    fed = [0] * count
    batch_sizes = []
    for round_ in range(200):
        for i, stream in enumerate(streams):
            if round_ >= i // 4 and fed[i] < len(clips[i]):
                size = int(rng.integers(200, 3000))
                stream.accept_waveform(clips[i][fed[i]:fed[i] + size], 16000)
                fed[i] += size
                if fed[i] >= len(clips[i]):
                    stream.input_finished()
        ready = [s for s in streams if gen.is_ready(s)]
        if not ready and all(s.is_input_finished for s in streams):
            break
        if ready:
            batch_sizes.append(len(ready))
            gen.step(ready)
        for i, stream in enumerate(streams):
            parts[i].append(stream.pop_frames())
    assert max(batch_sizes) == count, "some step should hold every stream"
    for i, stream in enumerate(streams):
        assert stream.is_done
        assert_same_frames(gen, PoseFrames.concatenate(parts[i], gen.num_joints), singles[i])
        stream.close()


def test_streams_at_different_positions_in_one_step(gen: StreamingGenerator,
                                                    speech_16k: np.ndarray) -> None:
    a, b = gen.create_stream(seed=1), gen.create_stream(seed=2)
    a.accept_waveform(speech_16k[:32000], 16000)
    while gen.is_ready(a):
        gen.step([a])
    b.accept_waveform(speech_16k[8000:20000], 16000)
    assert gen.is_ready(a) is False and gen.is_ready(b)
    a.accept_waveform(speech_16k[32000:40000], 16000)
    gen.step([a, b])  # a is ~28 frames in, b at frame 0
    got_a, got_b = a.pop_frames(), b.pop_frames()
    want_a = gen.generate(speech_16k[:40000], 16000, seed=1)
    want_b = gen.generate(speech_16k[8000:20000], 16000, seed=2)
    assert_same_frames(gen, got_a, PoseFrames(*(x[: len(got_a)] for x in (
        want_a.keypoints, want_a.saliency, want_a.time, want_a.index))))
    assert len(got_b) == 0  # its first output is frame -L: dropped
    a.close(), b.close()
    assert len(want_b) > 0


# ---- determinism ----
def test_same_seed_same_frames_different_seed_different_frames(gen: StreamingGenerator,
                                                               speech_16k: np.ndarray) -> None:
    audio = speech_16k[:48000]
    first, again = gen.generate(audio, 16000, seed=5), gen.generate(audio, 16000, seed=5)
    np.testing.assert_array_equal(first.keypoints, again.keypoints)
    np.testing.assert_array_equal(first.saliency, again.saliency)
    other = gen.generate(audio, 16000, seed=6)
    assert np.abs(first.keypoints - other.keypoints).max() > 1e-2


# ---- frame accounting ----
@pytest.mark.parametrize("rate", [16000, 48000, 44100, 8000])
@pytest.mark.parametrize("n", [0, 1, 1066, 1067, 2134, 16000, 16001, 37123])
def test_frame_count_and_timestamps_are_exact(gen: StreamingGenerator, rate: int, n: int) -> None:
    audio = np.random.default_rng(n).uniform(-0.3, 0.3, n).astype(np.float32)
    frames = stream_in_chunks(gen, audio, rate, [777])
    features = gen.manifest.features
    expected = features.num_pose_frames(model_rate_samples(n, rate, features.sample_rate))
    assert len(frames) == expected
    np.testing.assert_array_equal(frames.index, np.arange(expected))
    np.testing.assert_array_equal(frames.time, np.arange(expected) / features.fps)
    assert frames.keypoints.shape == (expected, gen.num_joints, 2)
    assert frames.keypoints.dtype == np.float32 and frames.time.dtype == np.float64


def test_model_rate_samples_is_what_the_resampler_gives() -> None:
    for rate in (8000, 22050, 44100, 48000, 96000, 32000):
        for n in (0, 1, 2, 3, 5, 99, 12345):
            assert len(resample(np.zeros(n, np.float32), rate, 16000)) == model_rate_samples(
                n, rate, 16000), (rate, n)


def test_output_lags_the_features_by_the_manifest_lookahead(
        gen: StreamingGenerator, tiny_bundle: Path, speech_16k: np.ndarray) -> None:  # noqa: F811
    lookahead = gen.manifest.generator.lookahead_frames
    assert gen.lookahead_frames == lookahead
    features = gen.manifest.features
    for n in (3000, 5000, 16000, 33333):
        matrices = MfccMatrices.load(tiny_bundle / gen.manifest.mfcc_matrices, features)
        extractor = StreamingFeatureExtractor(features, matrices)
        ready = len(extractor.accept(speech_16k[:n]))
        with gen.create_stream() as stream:
            stream.accept_waveform(speech_16k[:n], 16000)
            while gen.is_ready(stream):
                gen.step([stream])
            assert stream.num_frames_emitted == max(0, ready - lookahead), n


def test_each_frame_is_out_within_the_algorithmic_latency(gen: StreamingGenerator) -> None:
    """Fed one sample at a time: frame k appears exactly when the worst case says."""
    rate = gen.manifest.features.sample_rate
    latency = gen.algorithmic_latency_seconds
    assert 0 < latency < (gen.lookahead_frames + gen.chunk_frames + 1) / gen.fps
    out_at = []  # samples received when frame k came out
    with gen.create_stream() as stream:
        for n in range(1, rate // 2):
            stream.accept_waveform(np.zeros(1, np.float32), rate)
            while gen.is_ready(stream):
                gen.step([stream])
            out_at += [n] * (stream.num_frames_emitted - len(out_at))
    waits = [n / rate - (k + 1) / gen.fps for k, n in enumerate(out_at)]
    assert len(waits) >= 3 * gen.chunk_frames  # a whole period of the MFCC/frame pattern
    assert max(waits) == pytest.approx(latency, abs=1.0 / rate)


# ---- bad input ----
BAD_INPUTS = [
    (np.zeros(100, np.int8), 16000, "dtype int8"),
    (np.zeros(100, np.uint8), 16000, "dtype uint8"),
    (np.zeros(100, np.complex64), 16000, "dtype complex64"),
    (np.array(["a", "b"]), 16000, "dtype <U1"),
    (np.zeros((10, 2, 2), np.float32), 16000, "shape (10, 2, 2)"),
    (np.zeros((2, 48000), np.float32), 16000, "pass samples.T"),
    (np.zeros(()), 16000, "shape ()"),
    (np.array([0.1, np.nan, 0.2], np.float32), 16000, "NaN or Inf"),
    (np.array([0.1, 0.2, np.inf], np.float64), 16000, "first at sample 2"),
    (np.zeros(100, np.float32), 0, "positive integer"),
    (np.zeros(100, np.float32), -16000, "positive integer"),
    (np.zeros(100, np.float32), 16000.5, "positive integer"),
    (np.zeros(100, np.float32), True, "positive integer"),
    (np.zeros(100, np.float32), 22050, "sample_rate changed from 16000 to 22050"),
    (16000, np.zeros(100, np.float32), "takes the audio first"),  # sherpa-onnx's order
    (np.zeros(100, np.float32), np.zeros(100, np.float32), "got an array of shape (100,)"),
    (np.zeros(100, np.float32), [16000], "got a list of length 1"),
]


def test_bad_input_raises_a_clear_error_and_loses_nothing(gen: StreamingGenerator,
                                                         speech_16k: np.ndarray) -> None:
    audio = speech_16k[:40000]
    want = gen.generate(audio, 16000, seed=9)
    with gen.create_stream(seed=9) as stream:
        stream.accept_waveform(audio[:12345], 16000)
        for samples, rate, message in BAD_INPUTS:
            with pytest.raises(StreamError, match=message.replace("(", r"\(").replace(")", r"\)")):
                stream.accept_waveform(samples, rate)
            assert stream.num_samples_accepted == 12345
        stream.accept_waveform(np.zeros(0, np.float32), 16000)  # empty: accepted, no effect
        stream.accept_waveform(np.zeros((0, 2), np.int16), 16000)
        stream.accept_waveform(audio[12345:], 16000)
        stream.input_finished()
        with pytest.raises(StreamError, match="after input_finished"):
            stream.accept_waveform(audio[:10], 16000)
        while gen.is_ready(stream):
            gen.step([stream])
        assert_same_frames(gen, stream.pop_frames(), want, tol=0.0)


def test_multichannel_and_integer_audio_are_mixed_and_scaled(gen: StreamingGenerator,
                                                             speech_16k: np.ndarray) -> None:
    audio = np.clip(speech_16k[:24000], -1.0, 32767 / 32768)
    pcm = np.round(audio * 32768).astype(np.int16)
    as_float = gen.generate(pcm.astype(np.float32) / 32768, 16000)
    assert_same_frames(gen, gen.generate(pcm, 16000), as_float)
    stereo = np.stack([pcm, pcm], axis=1)  # (N, 2), identical channels
    assert_same_frames(gen, gen.generate(stereo, 16000), as_float)
    pcm32 = pcm.astype(np.int32) << 16
    assert_same_frames(gen, gen.generate(pcm32, 16000), as_float)


@pytest.mark.slow
def test_a_ten_minute_chunk_is_accepted_whole(gen: StreamingGenerator,
                                              speech_16k: np.ndarray) -> None:
    rate = gen.manifest.features.sample_rate
    audio = np.tile(speech_16k, int(np.ceil(600 * rate / len(speech_16k))))[: 600 * rate]
    with gen.create_stream(seed=2) as stream:
        stream.accept_waveform(audio, rate)
        stream.input_finished()
        steps = 0
        while gen.is_ready(stream):
            gen.step([stream])
            steps += 1
        frames = stream.pop_frames()
    assert len(frames) == 600 * gen.fps
    head = gen.generate(audio[: 10 * rate], rate, seed=2)
    count = len(head) - gen.lookahead_frames - 2  # away from the short clip's silent tail
    assert_same_frames(gen, PoseFrames(frames.keypoints[:count], frames.saliency[:count],
                                       frames.time[:count], frames.index[:count]),
                       PoseFrames(head.keypoints[:count], head.saliency[:count],
                                  head.time[:count], head.index[:count]))


def test_step_refuses_unready_or_foreign_streams_and_changes_nothing(
        gen: StreamingGenerator, speech_16k: np.ndarray) -> None:
    ready, empty = gen.create_stream(), gen.create_stream()
    ready.accept_waveform(speech_16k[:8000], 16000)
    before = ready.num_frames_emitted
    with pytest.raises(StreamError, match="stream 1 of 2 is not ready"):
        gen.step([ready, empty])
    with pytest.raises(StreamError, match="same stream twice"):
        gen.step([ready, ready])
    with pytest.raises(StreamError, match="made by this generator"):
        gen.step([object()])  # type: ignore[list-item]
    assert ready.num_frames_emitted == before and gen.is_ready(ready)
    gen.step([])  # nothing to do
    ready.close(), empty.close()
    with pytest.raises(StreamError, match="closed"):
        ready.accept_waveform(speech_16k[:10], 16000)


def test_seed_must_be_a_non_negative_int(gen: StreamingGenerator) -> None:
    for seed in (-1, 2**63, 1.5, "0", None):
        with pytest.raises(StreamError, match="seed"):
            gen.create_stream(seed)  # type: ignore[arg-type]


# ---- reset, threads, clean-up ----
def test_reset_starts_the_stream_over(gen: StreamingGenerator, speech_16k: np.ndarray) -> None:
    audio = speech_16k[:30000]
    with gen.create_stream(seed=4) as stream:
        stream.accept_waveform(speech_16k[50000:90000], 48000)
        while gen.is_ready(stream):
            gen.step([stream])
        gen.reset(stream)
        assert stream.num_samples_accepted == 0 and len(stream.pop_frames()) == 0
        stream.accept_waveform(audio, 16000)  # a new rate is fine after reset
        stream.input_finished()
        while gen.is_ready(stream):
            gen.step([stream])
        assert_same_frames(gen, stream.pop_frames(), gen.generate(audio, 16000, seed=4), 0.0)


def test_feeding_from_one_thread_while_stepping_in_another(gen: StreamingGenerator,
                                                           speech_16k: np.ndarray) -> None:
    audio = speech_16k[:64000]
    stream = gen.create_stream(seed=8)

    def produce() -> None:
        for first in range(0, len(audio), 1234):
            stream.accept_waveform(audio[first:first + 1234], 16000)
        stream.input_finished()

    producer = threading.Thread(target=produce)
    producer.start()
    parts = []
    while producer.is_alive() or gen.is_ready(stream):
        if gen.is_ready(stream):
            gen.step([stream])
        parts.append(stream.pop_frames())
    producer.join()
    parts.append(step_and_pop(gen, stream))
    stream.close()
    assert_same_frames(gen, PoseFrames.concatenate(parts, gen.num_joints),
                       gen.generate(audio, 16000, seed=8))


def test_slots_are_reused_after_close_and_after_garbage_collection(
        gen: StreamingGenerator) -> None:
    with gen.create_stream() as stream:
        slot = stream._slot
    again = gen.create_stream()
    assert again._slot == slot
    del again
    gc.collect()
    assert gen.create_stream()._slot == slot


def test_closed_generator_refuses_work(tiny_bundle: Path) -> None:  # noqa: F811
    with StreamingGenerator(tiny_bundle, backend="onnxruntime-cpu") as g:
        stream: Stream = g.create_stream()
        stream.accept_waveform(np.zeros(8000, np.float32), 16000)
    with pytest.raises(StreamError, match="closed"):
        g.step([stream])
    with pytest.raises(StreamError, match="closed"):
        g.create_stream()
    stream.close()  # still fine

