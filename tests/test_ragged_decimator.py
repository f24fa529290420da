"""sdk.ragged_decimator: independently fed streams decimated in shared products, against the
filter formula and the lockstep Decimator."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.decimator import Decimator
from sdk.ragged_decimator import MAX_ROWS, RaggedDecimator
from tests.test_decimator import _formula


def _ragged_run(factor: int, signals: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Feed each signal in its own random chunks, interleaved, ``make`` after random
    rounds over whichever streams were fed; flush at each signal's end."""
    rng = np.random.default_rng(seed)
    ragged = RaggedDecimator(factor)
    inputs = [ragged.open() for _ in signals]
    cuts = [np.sort(rng.integers(0, len(x), rng.integers(1, 40))) for x in signals]
    chunks = [np.split(x, c) for x, c in zip(signals, cuts, strict=True)]
    outs: list[list[np.ndarray]] = [[] for _ in signals]
    while any(chunks):
        fed = [i for i, c in enumerate(chunks) if c and rng.random() < 0.7]
        for i in fed:
            ragged.append(inputs[i], chunks[i].pop(0))
        if fed and rng.random() < 0.8:
            for i, out in zip(fed, ragged.make([inputs[i] for i in fed]), strict=True):
                outs[i].append(out)
        for i in fed:
            if not chunks[i]:  # the end: pending blocks, then the tail
                outs[i] += [*ragged.make([inputs[i]]), ragged.flush(inputs[i])]
    return [np.concatenate(o) for o in outs]


@pytest.mark.parametrize("factor", [2, 3, 6])
def test_ragged_streams_give_the_filter_formula(factor: int) -> None:
    """Measured <= 2e-6 from the float64 formula (float32 rounding); a delay off by one
    output sample is ~0.1 away, so the check sees alignment and length."""
    rng = np.random.default_rng(factor)
    signals = [rng.standard_normal(n).astype(np.float32) for n in (1, 2, 47, 700, 5003, 9000)]
    for seed in range(3):
        for x, got in zip(signals, _ragged_run(factor, signals, seed), strict=True):
            want = _formula(x, factor)[0]
            assert got.shape == want.shape, (len(x), got.shape, want.shape)
            np.testing.assert_allclose(got, want, rtol=0, atol=5e-6)
    x = signals[-1]
    late = _formula(x, factor, shift=31)[0]
    assert np.abs(late - _formula(x, factor)[0]).max() > 100 * 5e-6


def test_ragged_equals_the_lockstep_decimator_and_its_input_needed() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 4801)).astype(np.float32)
    ragged = RaggedDecimator(3)
    stream = ragged.open()
    ragged.append(stream, x[0])
    got = np.concatenate([*ragged.make([stream]), ragged.flush(stream)])
    lockstep = Decimator(3, 1)
    want = np.concatenate([lockstep.process(x), lockstep.flush()], axis=1)[0]
    assert got.shape == want.shape == (1600,)
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-6)
    for outputs in (1, 16, 17, 1067):
        need = ragged.input_needed(outputs)
        assert need == Decimator(3, 1).input_needed(outputs)
        for feed, enough in ((need - 1, False), (need, True)):
            s = ragged.open()
            ragged.append(s, np.zeros(feed, np.float32))
            assert (ragged.make([s])[0].size >= outputs) == enough, (outputs, feed)


def test_many_streams_split_into_products_of_at_most_max_rows() -> None:
    """More blocks than MAX_ROWS in one make: several products, the same outputs as one
    stream at a time (to float32 rounding)."""
    rng = np.random.default_rng(5)
    ragged = RaggedDecimator(3)
    signals = rng.standard_normal((40, 3200)).astype(np.float32)  # 40 x 64 blocks > MAX_ROWS
    assert 40 * 64 > MAX_ROWS
    inputs = [ragged.open() for _ in signals]
    for s, x in zip(inputs, signals, strict=True):
        ragged.append(s, x)
    together = ragged.make(inputs)
    for x, got in zip(signals, together, strict=True):
        alone = ragged.open()
        ragged.append(alone, x)
        np.testing.assert_allclose(got, ragged.make([alone])[0], rtol=0, atol=5e-6)
        assert got.size == 64 * 16  # (3200 + 96 lead - W 238) // 48 + 1 blocks


def test_misuse_and_memory() -> None:
    ragged = RaggedDecimator(3)
    s = ragged.open()
    ragged.append(s, np.zeros(48000 * 60, np.float32))
    ragged.make([s])
    ragged.append(s, np.zeros(960, np.float32))
    assert s.buffer.nbytes < 100_000  # the minute's buffer was given back
    ragged.flush(s)
    with pytest.raises(RuntimeError, match="after flush"):
        ragged.append(s, np.zeros(3, np.float32))
    with pytest.raises(RuntimeError, match="twice"):
        ragged.flush(s)
    with pytest.raises(ValueError, match="factor"):
        RaggedDecimator(17)
