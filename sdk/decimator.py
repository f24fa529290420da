"""Integer-factor decimation of many streams as matrix products (48 kHz -> 16 kHz and kin).

Taking N lockstep streams from 48 kHz to the model's 16 kHz through one multichannel soxr
stream cost ~18-21 CPU us per stream-frame (66.7 ms of audio), about as much as the rest of
a stream's front end and step together (benchmarks/results/step_gemm/), and held 21 ms of
output back. When the input rate is an integer multiple ``M`` of the output rate, resampling
is a low-pass FIR filter followed by keeping every M-th sample, and every output sample is
one dot product::

    y[n] = sum_{t=0}^{L-1} h[t] u[M n + t],     u[j] = x[j - D M]  (x[j < 0] = 0)

with ``h`` symmetric, ``L = 2 D M + 1`` taps: the filter's delay of ``D M`` input samples is
exactly ``D`` output samples, taken off by the shift, so ``y[n]`` lies at the time of
``x[M n]`` as soxr's output does. ``n_in`` input samples give ``floor(n_in / M + 1/2)``
outputs (the rule :func:`sdk.audio.resample` keeps for every rate); the last ``D`` need the
zeros after the end that :meth:`Decimator.flush` supplies.

**GEMM shape.** Outputs are made in blocks of ``P = BLOCK_OUTPUTS``: block ``b`` reads the
window ``u[b M P : b M P + W]``, ``W = M (P - 1) + L``, of every stream, a strided view of the
stream buffer (no copy), and is one matrix product ``(N, W) @ T (W, P)`` with
``T[M p + t, p] = h[t]``: all N streams in one call per block, at the BLAS's rate (fewer
than ``MIN_ROWS`` streams: a group of blocks per call, see there). Every call of a
decimator has one shape and every block the same row of its call, whatever the chunking,
so any chunking gives the same outputs bit for bit. Both matter: a call over as many blocks
as had arrived varied its row count with the chunking, and a block at another row of the
same shape fell into another tile of the BLAS kernel; either summed in another order
(~4e-7 apart). N streams in one decimator and one stream alone agree to float32 rounding.

**Filter** (:func:`decimation_filter`): Kaiser-windowed sinc (``scipy.signal.firwin``'s),
cutoff at ``CUTOFF`` of the output's Nyquist frequency, ``beta = KAISER_BETA``,
``D = DELAY_OUTPUT_SAMPLES``; every factor gets the same response on the output's frequency
axis. At M = 3 (L = 193): flat to 7 kHz (< 0.001 dB), -1.1 dB at 7.5 kHz, -13 dB at 8 kHz,
below -100 dB from 8.8 kHz. On the shipped speech sample brought to 48 kHz, its MFCCs differ
from soxr HQ's by at most 0.41 (mean 0.035) on a range of 730, less than soxr's own differ
from the native 16 kHz audio's (1.14); with noise at 8.5-20 kHz added, 0.61 (mean 0.09),
where keeping every third sample unfiltered is 19.6 off on average
(tests/test_decimator.py measures each).

Shapes: float32 (N, n) stream-major in, float32 (N, m) out. Not thread-safe.
"""

from __future__ import annotations

import numpy as np

DELAY_OUTPUT_SAMPLES = 32
"""The filter's half length in output samples (2 ms at 16 kHz): L = 2 D M + 1 taps."""
CUTOFF = 0.975
"""The filter's cutoff (-6 dB), as a fraction of the output's Nyquist frequency."""
KAISER_BETA = 10.0
"""Kaiser window shape: ~100 dB stopband attenuation."""
BLOCK_OUTPUTS = 16
"""Output samples per matrix product (P). 16 and 32 took alike at 256-1024 streams; 16
multiplies fewer zeros (W / L = 1.23 at M = 3) and holds less output back."""
MIN_ROWS = 16
"""Fewest rows of a matrix product: with fewer streams, a group of ``ceil(MIN_ROWS / N)``
blocks of each goes into one product (copied to a scratch buffer). One stream's 20 ms
packets at 48 kHz took ~190 CPU us per stream-frame as one-row products, 45-60 as 16-row ones
(8 to 64 rows measured alike: the cost per call dominates); soxr took ~40 for one stream,
so the one-stream path pays for the many-stream one's speed."""
_SHRINK_AT = 16
"""A buffer wider than this many windows, and over 4x what it holds, is made smaller."""
MAX_FACTOR = 16
"""Largest decimation factor taken (768 kHz -> 48 kHz); beyond, soxr resamples."""


def decimation_factor(in_rate: int, out_rate: int) -> int | None:
    """``in_rate // out_rate`` when it is an integer in [2, MAX_FACTOR], else None."""
    if out_rate <= 0 or in_rate % out_rate:
        return None
    factor = in_rate // out_rate
    return factor if 2 <= factor <= MAX_FACTOR else None


def decimation_filter(factor: int) -> np.ndarray:
    """The low-pass FIR taps for decimation by ``factor``: float64 (2 D factor + 1,), unit
    gain at 0 Hz, symmetric (see the module docstring).

    ``scipy.signal.firwin(taps, CUTOFF / factor, window=("kaiser", KAISER_BETA))`` (the
    test holds the two equal), written with numpy's sinc and Kaiser window: importing
    scipy.signal took 0.55 s, which the first 48 kHz stream of a server would have stalled
    every other stream for."""
    taps = 2 * DELAY_OUTPUT_SAMPLES * factor + 1
    cutoff = CUTOFF / factor  # a fraction of the input's Nyquist frequency
    offsets = np.arange(taps) - (taps - 1) / 2
    ideal = cutoff * np.sinc(cutoff * offsets)  # the brick-wall low-pass, centred
    windowed = ideal * np.kaiser(taps, KAISER_BETA)
    return np.asarray(windowed / windowed.sum(), dtype=np.float64)


def output_count(factor: int, samples_in: int) -> int:
    """Outputs in all of ``samples_in`` input samples once flushed: ``floor(n / M + 1/2)``
    (``sdk.streaming.model_rate_samples`` at an integer ratio)."""
    return (2 * samples_in + factor) // (2 * factor)


def buffer_with_room(buffer: np.ndarray, fill: int, n: int, width: int) -> np.ndarray:
    """``buffer`` float32 (..., capacity), holding ``fill`` samples per row, if ``n`` more
    fit; else a new one with those samples and room to spare. A buffer over ``_SHRINK_AT``
    windows of ``width`` and over 4x what it will hold is made smaller: after a long chunk
    the memory goes back (a stream fed 10 min of 48 kHz audio at once kept 115 MB)."""
    capacity, need = buffer.shape[-1], fill + n
    if need <= capacity and not (capacity > _SHRINK_AT * width and 4 * need < capacity):
        return buffer
    fitted = np.zeros((*buffer.shape[:-1], max(4 * width, 2 * need)), np.float32)
    fitted[..., :fill] = buffer[..., :fill]
    return fitted


def block_matrix(factor: int) -> np.ndarray:
    """T, float32 (W, P): ``T[M p + t, p] = h[t]``, so that a block's window (W input
    samples) @ T is its P output samples (module docstring)."""
    taps = decimation_filter(factor)
    width = factor * (BLOCK_OUTPUTS - 1) + taps.size
    toeplitz = np.zeros((width, BLOCK_OUTPUTS), np.float32)
    for p in range(BLOCK_OUTPUTS):
        toeplitz[factor * p:factor * p + taps.size, p] = taps[::-1]
    return toeplitz


def input_needed(factor: int, outputs: int) -> int:
    """Input samples of a stream, from its start, whose blocks hold its first ``outputs``
    output samples (0 for ``outputs <= 0``): block ``ceil(outputs / P) - 1`` needs its
    whole window, less the ``D M`` leading zeros of the shift."""
    if outputs <= 0:
        return 0
    last = -(-outputs // BLOCK_OUTPUTS) - 1
    width = factor * (BLOCK_OUTPUTS - 1) + 2 * DELAY_OUTPUT_SAMPLES * factor + 1
    return max(0, last * factor * BLOCK_OUTPUTS + width - DELAY_OUTPUT_SAMPLES * factor)


class Decimator:
    """Streaming decimation of ``num_streams`` lockstep streams by an integer ``factor``.

    ``process`` (N, n) -> (N, m) float32: the outputs whose windows are complete;
    ``flush()`` the rest (the input ended: zeros after it); ``reset()`` starts over.
    """

    def __init__(self, factor: int, num_streams: int) -> None:
        if not 2 <= factor <= MAX_FACTOR:
            raise ValueError(f"decimation factor must be in [2, {MAX_FACTOR}], got {factor}")
        if num_streams < 1:
            raise ValueError(f"num_streams must be >= 1, got {num_streams}")
        self.factor = factor
        self.num_streams = num_streams
        self._toeplitz = block_matrix(factor)
        self._step = factor * BLOCK_OUTPUTS  # input samples per block
        self._width = self._toeplitz.shape[0]  # W
        self._group = -(-MIN_ROWS // num_streams)  # blocks per product
        rows = num_streams if self._group > 1 else 0  # group 1 reads the buffer in place
        self._scratch = np.zeros((rows, self._group, self._width), np.float32)
        self._rows = self._scratch.reshape(rows * self._group, self._width)
        self._product = np.empty((rows * self._group, BLOCK_OUTPUTS), np.float32)
        self._products = self._product.reshape(rows, self._group, BLOCK_OUTPUTS)
        self._buffer = np.zeros((num_streams, 4 * self._width), np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget all input: the next sample is a stream's first."""
        self._fill = DELAY_OUTPUT_SAMPLES * self.factor  # u's leading zeros (the shift)
        self._buffer[:, :self._fill] = 0.0
        self._first_block = 0  # the block whose window starts at buffer column 0
        self._made = 0  # blocks made (their outputs returned)
        self.samples_in = 0
        self.samples_out = 0
        self._flushed = False

    def _append(self, block: np.ndarray) -> None:
        n = block.shape[1]
        self._buffer = buffer_with_room(self._buffer, self._fill, n, self._width)
        self._buffer[:, self._fill:self._fill + n] = block
        self._fill += n

    def _blocks(self) -> np.ndarray:
        """Every block not yet made whose window is in the buffer: float32 (N, blocks * P).

        Buffer column 0 is the window start of block ``_first_block`` (a multiple of the
        group size G): block b is always row ``b % G`` of its group's product, so it is
        made by the same arithmetic whatever the chunking (a group whose later blocks have
        not arrived is made with those rows zero, and made again once they have)."""
        group, step, width = self._group, self._step, self._width
        ready = (self._fill - width) // step + 1 if self._fill >= width else 0
        end = self._first_block + ready  # blocks < end are computable
        if end <= self._made:
            return np.zeros((self.num_streams, 0), np.float32)
        buffer = self._buffer  # (N, ready, W) overlapping windows, a view (as_strided's
        # arithmetic without its per-call Python: this runs per packet per stream)
        windows = np.ndarray((self.num_streams, ready, width), np.float32, buffer,
                             strides=(buffer.strides[0], step * buffer.itemsize,
                                      buffer.itemsize))
        out = np.empty((self.num_streams, end - self._made, BLOCK_OUTPUTS), np.float32)
        if group == 1:  # one product per block over all streams, read in place
            for b in range(self._made, end):
                out[:, b - self._made] = windows[:, b - self._first_block] @ self._toeplitz
        else:  # few streams: a group of blocks per product, through the scratch rows
            scratch, made = self._scratch, self._made
            for first in range(made - made % group, end, group):
                k = min(group, end - first)
                at = first - self._first_block
                scratch[:, :k] = windows[:, at:at + k]
                if k < group:
                    scratch[:, k:] = 0.0
                np.matmul(self._rows, self._toeplitz, out=self._product)
                keep = max(first, made)
                out[:, keep - made:first + k - made] = self._products[:, keep - first:k]
        self._made = end
        start = end - end % group  # the first block of the group still open
        used = (start - self._first_block) * step
        rest = self._fill - used
        self._buffer[:, :rest] = self._buffer[:, used:self._fill]
        self._fill, self._first_block = rest, start
        return out.reshape(self.num_streams, -1)

    def input_needed(self, outputs: int) -> int:
        """Input samples per stream, counted from the start, after which :meth:`process` has
        returned at least ``outputs`` output samples (0 for ``outputs <= 0``): block
        ``ceil(outputs / P) - 1`` is made once its window is in, whatever the chunking."""
        return input_needed(self.factor, outputs)

    def process(self, block: np.ndarray) -> np.ndarray:
        """float32 (N, n) input samples -> float32 (N, m) output samples now final."""
        if self._flushed:
            raise RuntimeError("Decimator.process after flush(); call reset() first")
        if block.ndim != 2 or block.shape[0] != self.num_streams:
            raise ValueError(f"expected shape ({self.num_streams}, n), got {block.shape}")
        self._append(block)
        self.samples_in += block.shape[1]
        out = self._blocks()
        self.samples_out += out.shape[1]
        return out

    def flush(self) -> np.ndarray:
        """End the input: the remaining float32 (N, m) outputs, up to
        ``floor(samples_in / factor + 1/2)`` in all."""
        if self._flushed:
            raise RuntimeError("Decimator.flush called twice; call reset() first")
        self._flushed = True
        missing = output_count(self.factor, self.samples_in) - self.samples_out
        if missing <= 0:
            return np.zeros((self.num_streams, 0), np.float32)
        blocks = -(-missing // BLOCK_OUTPUTS)
        last = self._made + blocks - 1  # the last block flush makes
        need = (last - self._first_block) * self._step + self._width - self._fill
        self._append(np.zeros((self.num_streams, max(0, need)), np.float32))
        out = self._blocks()[:, :missing]
        self.samples_out += out.shape[1]
        return np.ascontiguousarray(out)
