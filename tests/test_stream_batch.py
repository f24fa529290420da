"""StreamBatch and the batched front end: the same frames as one Stream per speaker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdk.audio import StreamingResampler
from sdk.batched_features import BatchedFeatureExtractor, BatchedResampler
from sdk.feature_frames import StreamingFeatureExtractor
from sdk.features import DEFAULT_FEATURES
from sdk.mfcc import MfccMatrices
from sdk.noise import frame_noise, frame_noise_streams
from sdk.runners.select import BackendConfig
from sdk.stream import StreamError
from sdk.stream_batch import StreamBatch
from sdk.streaming import GeneratorConfig, StreamingGenerator
from tests.helpers_bundle import tiny_bundle  # noqa: F401  (fixture)


def _speakers(speech: np.ndarray, count: int, samples: int) -> np.ndarray:
    """(count, samples) float32: the speech sample at different offsets and gains."""
    return np.stack([np.roll(speech, 3001 * i)[:samples] * (0.5 + 0.2 * i)
                     for i in range(count)]).astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])  # identity, soxr, sdk.decimator
def test_batched_front_end_equals_one_extractor_per_stream(rate: int) -> None:
    rng = np.random.default_rng(0)
    n, blocks = 1470, 9
    audio = (0.1 * rng.standard_normal((3, n * blocks))).astype(np.float32)
    matrices = MfccMatrices.default()
    resampler = BatchedResampler(rate, 16000, 3)
    extractor = BatchedFeatureExtractor(DEFAULT_FEATURES, matrices, 3)
    got = [extractor.accept(resampler.process(audio[:, i * n:(i + 1) * n]))
           for i in range(blocks)]
    got.append(extractor.accept(resampler.flush()))
    total = DEFAULT_FEATURES.num_pose_frames(extractor.samples_received) + 2
    got.append(extractor.finish(total))
    batched = np.concatenate(got, axis=1)
    for b in range(3):
        one = StreamingResampler(rate, 16000)
        own = StreamingFeatureExtractor(DEFAULT_FEATURES, matrices)
        parts = [own.accept(one.process(audio[b, i * n:(i + 1) * n])) for i in range(blocks)]
        parts.append(own.accept(one.flush()))
        parts.append(own.finish(DEFAULT_FEATURES.num_pose_frames(own.samples_received) + 2))
        want = np.concatenate(parts)
        assert batched[b].shape == want.shape
        assert np.abs(batched[b] - want).max() <= 1e-6 * np.abs(want).max()


def test_batched_features_give_memory_back_after_a_long_block() -> None:
    """60 s in one block, then 20 ms blocks: the same features as 20 ms blocks throughout,
    and the buffer the long block needed is not kept (before: 15.4 MB held for 2 streams)."""
    import tracemalloc

    rng = np.random.default_rng(2)
    audio = (0.1 * rng.standard_normal((2, 16000 * 61))).astype(np.float32)
    matrices = MfccMatrices.default()
    cut = 16000 * 60
    small = BatchedFeatureExtractor(DEFAULT_FEATURES, matrices, 2)
    want = np.concatenate([small.accept(audio[:, i:i + 320])
                           for i in range(0, audio.shape[1], 320)], axis=1)
    big = BatchedFeatureExtractor(DEFAULT_FEATURES, matrices, 2)
    tracemalloc.start()
    try:
        parts = [big.accept(audio[:, :cut])]
        parts += [big.accept(audio[:, i:i + 320]) for i in range(cut, audio.shape[1], 320)]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    got = np.concatenate(parts, axis=1)
    assert held - sum(part.nbytes for part in parts) < 1_000_000, held
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_noise_of_many_seeds_equals_one_seed_at_a_time() -> None:
    seeds = np.array([0, 7, 2**62 + 5])
    got = frame_noise_streams(seeds, 11, 4, 3)
    for i, seed in enumerate(seeds):
        np.testing.assert_array_equal(got[i], frame_noise(int(seed), 11, 4, 3))
    with pytest.raises(ValueError, match="non-negative"):
        frame_noise_streams(np.array([-1]), 0, 1, 1)


@pytest.mark.parametrize("rate,block,chunk", [(16000, 320, 1), (48000, 3200, 3)])
def test_stream_batch_gives_the_frames_of_one_stream_each(tiny_bundle: Path,  # noqa: F811
                                                          speech_16k: np.ndarray, rate: int,
                                                          block: int, chunk: int) -> None:
    from sdk.audio import resample

    speech = resample(speech_16k[:16000 * 2], 16000, rate) if rate != 16000 else speech_16k
    audio = _speakers(speech, 3, (len(speech_16k[:32000]) * rate // 16000 // block) * block)
    config = GeneratorConfig(tiny_bundle, BackendConfig("onnxruntime-cpu"), chunk_frames=chunk)
    with StreamingGenerator(config) as gen:
        with StreamBatch(gen, seeds=[4, 5, 6], sample_rate=rate) as batch:
            parts = [batch.accept(audio[:, i:i + block]) for i in range(0, audio.shape[1],
                                                                         block)]
            parts.append(batch.finish())
            with pytest.raises(StreamError, match="after finish"):
                batch.accept(audio[:, :block])
        keypoints = np.concatenate([p.keypoints for p in parts], axis=1)
        index = np.concatenate([p.index for p in parts])
        for b, seed in enumerate([4, 5, 6]):
            want = gen.generate(audio[b], rate, seed=seed)
            np.testing.assert_array_equal(index, want.index)
            canon = gen.manifest.normalization.pixels_to_canonical
            assert np.abs(canon(keypoints[b]) - canon(want.keypoints)).max() <= 1e-4


def test_stream_batch_refuses_bad_blocks_and_keeps_going(tiny_bundle: Path) -> None:  # noqa: F811
    with StreamingGenerator(tiny_bundle, backend="onnxruntime-cpu") as gen:
        with StreamBatch(gen, seeds=[0, 1], sample_rate=16000) as batch:
            with pytest.raises(StreamError, match=r"expected shape \(2, n\)"):
                batch.accept(np.zeros((3, 100), np.float32))
            bad = np.zeros((2, 100), np.float32)
            bad[1, 5] = np.nan
            with pytest.raises(StreamError, match="NaN"):
                batch.accept(bad)
            out = batch.accept(np.zeros((2, 16000), np.float32))
            assert out.keypoints.shape[:2] == (2, len(out)) and len(out) > 0
        with pytest.raises(StreamError, match="seeds"):
            StreamBatch(gen, seeds=[], sample_rate=16000)
