"""Decimation of streams that are fed different amounts: a server's connections.

:class:`sdk.decimator.Decimator` takes N streams in lockstep, (N, n) samples per call. A
server's connections are not in lockstep: each tick brings each one whatever audio
arrived. Decimated one at a time (a one-stream Decimator each), 48 kHz connections cost
~25-30 CPU us per stream-frame, mostly per-call work on small products, where one soxr
stream costs ~10. Here each stream keeps its own input buffer (:class:`DecimatorInput`),
:meth:`RaggedDecimator.append` copies audio into it, and :meth:`RaggedDecimator.make`
makes every block that the streams' input completes -- of all the streams given -- as the
rows of one ``(rows, W) @ T (W, P)`` product (several, of at most ``MAX_ROWS`` rows, when
there are many): the filter, block layout, delay and output count of the Decimator (see
:mod:`sdk.decimator`), the same outputs to float32 rounding.

Not bit-identical over chunkings, unlike the Decimator: a block's row in its product
depends on what the other streams brought, and the BLAS may sum another row in another
order (~1e-7 of the signal). Streams whose frames must not depend on other streams' audio
at all use the Decimator (``sdk.audio.StreamingResampler``).

Shapes: float32 (n,) mono in, float32 (m,) out per stream. Not thread-safe.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sdk.decimator import (
    BLOCK_OUTPUTS,
    DELAY_OUTPUT_SAMPLES,
    MAX_FACTOR,
    block_matrix,
    buffer_with_room,
    input_needed,
    output_count,
)

MAX_ROWS = 1024
"""Most blocks in one product: (1024, W) float32 is ~1 MB at M = 3, a core's L2. Append and
make of 256 / 1024 streams fed 3200 samples (a pose frame at 48 kHz) each: 10.0 / 12.3 CPU
us per stream-frame at 1024 rows, 18.0 / 22.2 in one product of all blocks; 512-4096 rows
alike, 128 rows 13-15 (one core of the 2-core AMD EPYC, median of 5 turns)."""


class DecimatorInput:
    """One stream's input not yet made into blocks: ``buffer[:fill]`` from the window start of
    its next block on (at the start: the shift's ``D M`` leading zeros).
    ``samples_in`` / ``samples_out``: input taken and output given so far."""

    __slots__ = ("buffer", "fill", "flushed", "samples_in", "samples_out")

    def __init__(self, width: int, lead: int) -> None:
        self.buffer = np.zeros(4 * width, np.float32)
        self.fill = lead
        self.samples_in = 0
        self.samples_out = 0
        self.flushed = False


class RaggedDecimator:
    """Decimation by an integer ``factor`` of any number of independently fed streams.

    ``open()`` a :class:`DecimatorInput` per stream; ``append`` its audio; ``make`` the
    outputs now complete of many streams in one product; ``flush`` one stream at its end.
    """

    def __init__(self, factor: int) -> None:
        if not 2 <= factor <= MAX_FACTOR:
            raise ValueError(f"decimation factor must be in [2, {MAX_FACTOR}], got {factor}")
        self.factor = factor
        self._toeplitz = block_matrix(factor)  # (W, P)
        self._width = self._toeplitz.shape[0]
        self._step = factor * BLOCK_OUTPUTS

    def open(self) -> DecimatorInput:
        """A new stream's input: the next sample is its first."""
        return DecimatorInput(self._width, DELAY_OUTPUT_SAMPLES * self.factor)

    def input_needed(self, outputs: int) -> int:
        """Input samples of a stream, from its start, after which :meth:`make` has returned
        at least ``outputs`` of its output samples (the Decimator's count)."""
        return input_needed(self.factor, outputs)

    def append(self, stream: DecimatorInput, samples: np.ndarray) -> None:
        """Copy float32 (n,) ``samples`` into the stream's buffer (the caller may reuse its
        array at once); nothing is made until :meth:`make`."""
        if stream.flushed:
            raise RuntimeError("RaggedDecimator.append after flush of this stream")
        self._put(stream, samples)
        stream.samples_in += samples.shape[0]

    def _put(self, stream: DecimatorInput, samples: np.ndarray) -> None:
        """Copy ``samples`` after the stream's buffered input (growing, or shrinking a
        buffer far bigger than it holds)."""
        n = samples.shape[0]
        stream.buffer = buffer_with_room(stream.buffer, stream.fill, n, self._width)
        stream.buffer[stream.fill:stream.fill + n] = samples
        stream.fill += n

    def make(self, streams: Sequence[DecimatorInput]) -> list[np.ndarray]:
        """Every block the (distinct) streams' input completes: float32 (16 k,) per stream,
        in order (k = 0 for a stream whose next block is not complete)."""
        width, step = self._width, self._step
        counts = [max(0, (s.fill - width) // step + 1) for s in streams]
        outputs: list[np.ndarray] = []
        first = 0
        while first < len(streams):  # streams [first, last) in one product
            last, rows = first, 0
            while last < len(streams) and (last == first or rows + counts[last] <= MAX_ROWS):
                rows += counts[last]
                last += 1
            if rows:
                windows = [np.ndarray((k, width), np.float32, s.buffer,
                                      strides=(step * 4, 4))
                           for s, k in zip(streams[first:last], counts[first:last], strict=True)
                           if k]
                product = np.concatenate(windows) @ self._toeplitz  # (rows, P)
                made = product.reshape(-1)
            else:
                made = np.zeros(0, np.float32)
            at = 0
            for s, k in zip(streams[first:last], counts[first:last], strict=True):
                outputs.append(made[at:at + k * BLOCK_OUTPUTS])
                at += k * BLOCK_OUTPUTS
                self._consumed(s, k)
            first = last
        return outputs

    def _consumed(self, stream: DecimatorInput, blocks: int) -> None:
        if not blocks:
            return
        used = blocks * self._step
        rest = stream.fill - used
        stream.buffer[:rest] = stream.buffer[used:stream.fill]
        stream.fill = rest
        stream.samples_out += blocks * BLOCK_OUTPUTS

    def flush(self, stream: DecimatorInput) -> np.ndarray:
        """End the stream's input: its remaining float32 (m,) outputs, up to
        ``floor(samples_in / factor + 1/2)`` in all (zeros after the end, as the
        Decimator). Make its pending blocks first, or they come out here."""
        if stream.flushed:
            raise RuntimeError("RaggedDecimator.flush called twice for a stream")
        stream.flushed = True
        missing = output_count(self.factor, stream.samples_in) - stream.samples_out
        if missing <= 0:
            return np.zeros(0, np.float32)
        blocks = -(-missing // BLOCK_OUTPUTS)
        need = (blocks - 1) * self._step + self._width - stream.fill
        if need > 0:  # the zeros after the end (padding, not input)
            self._put(stream, np.zeros(need, np.float32))
        windows = np.ndarray((blocks, self._width), np.float32, stream.buffer,
                             strides=(self._step * 4, 4))
        out = (np.ascontiguousarray(windows) @ self._toeplitz).reshape(-1)[:missing]
        stream.samples_out += out.size
        stream.fill = 0
        return out
