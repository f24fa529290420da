"""StreamingGenerator.generate: offline, or fed in given chunk sizes as a live source."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from helpers_bundle import tiny_bundle  # noqa: F401  (session fixture)

from sdk import StreamingGenerator


def test_generate_in_chunks_equals_offline_and_refuses_bad_sizes(
        tiny_bundle: Path) -> None:  # noqa: F811
    audio = np.random.default_rng(3).standard_normal(16000).astype(np.float32) * 0.1
    with StreamingGenerator(tiny_bundle) as gen:
        offline = gen.generate(audio, 16000, seed=5)
        chunked = gen.generate(audio, 16000, seed=5,
                               chunk_samples=itertools.cycle([1, 333, 4000]))
        np.testing.assert_allclose(chunked.keypoints, offline.keypoints, atol=1e-3)
        assert len(chunked) == len(offline)
        with pytest.raises(ValueError, match="covering the audio"):
            gen.generate(audio, 16000, chunk_samples=[100, 200])
        with pytest.raises(ValueError, match="sizes >= 1"):
            gen.generate(audio, 16000, chunk_samples=itertools.repeat(0))
