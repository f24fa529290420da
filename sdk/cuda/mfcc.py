"""Streaming MFCC on the GPU for many streams: :class:`CudaMfcc` (kernels in ``mfcc.cu``).

Equal to :class:`sdk.mfcc.StreamingMfcc` / :func:`sdk.mfcc.mfcc_offline` (the spec) for
any chunking. Device state per stream slot: samples received, the last ``n_fft`` samples,
and a ring of the last ``ring_frames`` MFCC frames. Gathers read that ring and write the
generator's feature frames, or MFCC clips, straight into any device buffer (an engine
input binding, a CuPy/PyTorch tensor): audio goes host -> device once, nothing comes back.

Usage::

    mfcc = CudaMfcc(config, MfccMatrices.default(), max_streams=64, stream=handle)
    mfcc.accept([0, 3], [chunk_a, chunk_b])           # host float32 chunks, any lengths
    n = mfcc.feature_frames_ready([0, 3])              # int64 (2,)
    mfcc.write_features([0, 3], first_frames=[k0, k1], num_frames=tc, out=engine_input)

Everything is enqueued on one CUDA stream (``stream``): call it the generator's stream
and the engine sees the features in order, without a synchronisation.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np

from sdk.cuda import nvrtc
from sdk.cuda.interop import device_array
from sdk.cuda.launch import KernelRunner, pointer
from sdk.features import FeatureConfig
from sdk.mfcc import MfccMatrices

SOURCE = "mfcc.cu"
FRAME_THREADS = 128  # threads per MFCC frame block (n_fft 512: one butterfly per stage each)
GATHER_THREADS = 256
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y: streams per launch
DEFAULT_SHARED_BYTES = 48 * 1024  # what a kernel may use without opting in


def uses_fft(config: FeatureConfig) -> bool:
    """mfcc_frames computes the power spectrum with a real FFT when n_fft is a power of two
    (>= 8), else with a direct DFT (see mfcc.cu)."""
    n = config.n_fft
    return n >= 8 and n & (n - 1) == 0


def mfcc_frames_shared_bytes(config: FeatureConfig) -> int:
    """Dynamic shared memory of one ``mfcc_frames`` block, bytes (the layout in mfcc.cu):
    FFT: complex z[M], twiddles[M], power[M + 1], log_mel[n_mels] with M = n_fft / 2;
    DFT: frame, cos, sin [n_fft] each, power[n_freqs], log_mel[n_mels]."""
    if uses_fft(config):
        m = config.n_fft // 2
        floats = 2 * m + 2 * m + (m + 1) + config.n_mels
    else:
        floats = 3 * config.n_fft + config.n_freqs + config.n_mels
    return 4 * floats
_F32 = np.dtype(np.float32)
StreamIds = Sequence[int] | np.ndarray


class CudaMfcc:
    """Streaming MFCC and feature stacking for ``max_streams`` stream slots on one CUDA stream.

    Args:
        config: the bundle's FeatureConfig; its numbers are compiled into the kernels.
        matrices: MfccMatrices for ``config`` (window, mel, dct), uploaded once.
        max_streams: number of stream slots (ids ``0 .. max_streams-1``).
        max_chunk_samples: samples per stream handled by one launch; longer chunks are
            split (any length is accepted). Sizes the device audio buffer
            (``max_streams * max_chunk_samples`` float32).
        history_frames: MFCC frames kept per stream behind the newest one for gathers
            (>= the context a caller reads back; PoseSyncNet clips need 60).
        stream: CUDA stream handle (int) to launch on; None makes a private stream.
            Ignored when ``runner`` is given.
        runner: where kernels run; None creates a :class:`sdk.cuda.launch.CudaRunner`.
    """

    def __init__(self, config: FeatureConfig, matrices: MfccMatrices, max_streams: int, *,
                 max_chunk_samples: int = 16000, history_frames: int = 256,
                 stream: int | None = None, runner: KernelRunner | None = None) -> None:
        if matrices.config != config:
            raise ValueError(
                f"MfccMatrices were made for FeatureConfig hash {matrices.config.config_hash()}"
                f", not for the config given ({config.config_hash()}); use matching matrices"
            )
        for name, value in (("max_streams", max_streams), ("max_chunk_samples",
                            max_chunk_samples), ("history_frames", history_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"CudaMfcc: {name} must be a positive int, got {value!r}")
        if max_streams > MAX_GRID_Y:
            raise ValueError(f"CudaMfcc: max_streams must be <= {MAX_GRID_Y} (one grid row "
                             f"per stream), got {max_streams}; use several CudaMfcc objects")
        self._owns_runner = runner is None
        if runner is None:
            from sdk.cuda.launch import CudaRunner

            runner = CudaRunner(stream=stream)
        self.config = config
        self.max_streams = max_streams
        self.max_chunk_samples = max_chunk_samples
        #: MFCC frames per slot in the device ring: the history plus one launch's output.
        self.ring_frames = history_frames + max_chunk_samples // config.hop_length + 1
        self.runner = runner
        self.module = runner.load(SOURCE, nvrtc.feature_defines(config))
        #: dynamic shared memory of each mfcc_frames block (bytes)
        self.frame_shared_bytes = mfcc_frames_shared_bytes(config)
        if self.frame_shared_bytes > DEFAULT_SHARED_BYTES:
            limit = getattr(runner, "max_shared_optin", None)
            if limit is not None and self.frame_shared_bytes > limit:
                raise ValueError(
                    f"CudaMfcc: n_fft={config.n_fft} needs {self.frame_shared_bytes} B of "
                    f"shared memory per frame block, over this GPU's {limit} B")
            self.module.set_max_dynamic_shared("mfcc_frames", self.frame_shared_bytes)
        self._pos = np.zeros(max_streams, dtype=np.int64)  # host mirror of stream_pos
        n_fft, n_mfcc = config.n_fft, config.n_mfcc
        self._buffers: dict[str, int] = {}
        sizes = {
            "window": n_fft * 4,
            "mel": config.n_mels * config.n_freqs * 4,
            "dct": n_mfcc * config.n_mels * 4,
            "stream_pos": max_streams * 8,
            "audio_ring": max_streams * n_fft * 4,
            "mfcc_ring": max_streams * self.ring_frames * n_mfcc * 4,
            "audio": max_streams * max_chunk_samples * 4,
            "accept_items": max_streams * 3 * 8,
            "gather_items": max_streams * 2 * 8,
        }
        for name, nbytes in sizes.items():
            self._buffers[name] = runner.alloc(nbytes)
        runner.upload(self._buffers["window"], matrices.window)
        runner.upload(self._buffers["mel"], matrices.mel)
        runner.upload(self._buffers["dct"], matrices.dct)
        runner.upload(self._buffers["stream_pos"], self._pos)
        # audio_ring needs no clearing: samples before position 0 are read as zeros.

    # ---- stream bookkeeping ----
    def _slots(self, stream_ids: StreamIds, what: str) -> np.ndarray:
        ids = np.asarray(stream_ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"{what}: stream_ids must be a 1-D sequence of ints, got {ids!r}")
        ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.max_streams):
            raise ValueError(
                f"{what}: stream ids must be in 0..{self.max_streams - 1}, got {ids.tolist()}"
            )
        if np.unique(ids).size != ids.size:
            raise ValueError(f"{what}: each stream id may appear once per call, got {ids.tolist()}")
        return ids

    def mfcc_frames_ready(self, stream_ids: StreamIds) -> np.ndarray:
        """int64 (n,): MFCC frames computed so far per stream (frames 0 .. n-1 are final)."""
        pos = self._pos[self._slots(stream_ids, "mfcc_frames_ready")]
        half = self.config.n_fft // 2
        return np.where(pos >= half, (pos - half) // self.config.hop_length + 1, 0)

    def feature_frames_ready(self, stream_ids: StreamIds) -> np.ndarray:
        """int64 (n,): feature frames computable so far per stream (k with
        ``mfcc_start(k) + mfcc_context <= mfcc_frames_ready``)."""
        return np.asarray(
            self.config.feature_frames_ready(self.mfcc_frames_ready(stream_ids)), dtype=np.int64
        ).reshape(-1)

    def samples_received(self, stream_ids: StreamIds) -> np.ndarray:
        """int64 (n,): samples accepted so far per stream."""
        return self._pos[self._slots(stream_ids, "samples_received")].copy()

    def copy_streams_from(self, other: CudaMfcc) -> None:
        """Take over the state of ``other``'s stream slots (``other.max_streams`` <=
        ``max_streams``, same config and ring): positions, audio tails and MFCC rings, through
        the host (for growing the slot count; rare)."""
        if other.max_streams > self.max_streams or other.ring_frames != self.ring_frames \
                or other.config != self.config:
            raise ValueError("copy_streams_from: the other CudaMfcc must have as many or fewer "
                             "slots, the same config and the same ring")
        n = other.max_streams
        c = self.config
        for name, shape in (("audio_ring", (n, c.n_fft)),
                            ("mfcc_ring", (n, self.ring_frames, c.n_mfcc))):
            host = np.empty(shape, dtype=np.float32)
            other.runner.download(host, other._buffers[name])
            self.runner.upload(self._buffers[name], host)
        self._pos[:n] = other._pos
        self.runner.upload(self._buffers["stream_pos"], self._pos)

    def reset(self, stream_ids: StreamIds) -> None:
        """Start the given slots over (position 0; their old samples read as zeros)."""
        self._pos[self._slots(stream_ids, "reset")] = 0
        self.runner.upload(self._buffers["stream_pos"], self._pos)

    # ---- accepting audio ----
    def accept(self, stream_ids: StreamIds, chunks: Sequence[Any]) -> None:
        """Append host audio: ``chunks[i]`` (float (n_i,) mono, any n_i >= 0) to stream
        ``stream_ids[i]``. Enqueued on the stream; the caller may reuse the arrays at once."""
        slots = self._slots(stream_ids, "accept")
        if len(chunks) != slots.size:
            raise ValueError(f"accept: {slots.size} stream ids but {len(chunks)} chunks")
        arrays = []
        for i, chunk in enumerate(chunks):
            array = np.asarray(chunk)
            if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
                raise ValueError(
                    f"accept: chunk {i} must be float mono samples (n,), got dtype "
                    f"{array.dtype} shape {array.shape}"
                )
            array = np.ascontiguousarray(array, dtype=np.float32)
            if not np.isfinite(array).all():
                raise ValueError(f"accept: chunk {i} contains NaN or Inf")
            arrays.append(array)
        step = self.max_chunk_samples
        longest = max((a.size for a in arrays), default=0)
        for start in range(0, longest, step):
            pieces = [(int(s), a[start:start + step]) for s, a in zip(slots, arrays, strict=True)
                      if a.size > start]
            lengths = np.array([p.size for _, p in pieces], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            audio = np.concatenate([p for _, p in pieces])
            self.runner.upload(self._buffers["audio"], audio)
            self._launch_accept(np.array([s for s, _ in pieces], dtype=np.int64), offsets,
                                lengths, self._buffers["audio"])

    def accept_device(self, stream_ids: StreamIds, audio: Any,
                      lengths: Sequence[int]) -> None:
        """Append audio already on the device: ``audio`` float32 (sum(lengths),) holds the
        chunks of ``stream_ids`` back to back (any ``__cuda_array_interface__``/DLPack
        array, or an int address). No copy is made; the kernels read it in place."""
        slots = self._slots(stream_ids, "accept_device")
        sizes = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if sizes.size != slots.size or (sizes.size and sizes.min() < 0):
            raise ValueError(
                f"accept_device: need one length >= 0 per stream id ({slots.size}), got "
                f"{np.asarray(lengths).tolist()}"
            )
        total = int(sizes.sum())
        view = device_array(audio, np.float32, (total,), "accept_device audio",
                            self.runner_stream)
        self.runner.wait_for(view.stream)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        step = self.max_chunk_samples
        for start in range(0, int(sizes.max(initial=0)), step):
            keep = sizes > start
            pieces = np.minimum(sizes[keep] - start, step)
            self._launch_accept(slots[keep], starts[keep] + start, pieces, view.ptr)
        self.runner.keep_alive(view)  # the kernels still read it after we return

    @property
    def runner_stream(self) -> int | None:
        return getattr(self.runner, "stream_handle", None)

    def _launch_accept(self, slots: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                       audio_ptr: int) -> None:
        """Upload (slot, offset, length) items and launch mfcc_frames + mfcc_commit."""
        items = np.stack([slots, offsets, lengths], axis=1).astype(np.int64)
        self.runner.upload(self._buffers["accept_items"], items)
        self.launch_accept_items(len(items), int(lengths.max()), audio_ptr)
        self._pos[slots] += lengths

    def launch_accept_items(self, n_items: int, max_length: int, audio_ptr: int) -> None:
        """The two accept launches for items already in the device ``accept_items`` buffer
        (``(n_items, 3)`` int64: slot, offset into ``audio_ptr``, length <= max_length).

        No host bookkeeping and no uploads: this is what a CUDA graph captures. Positions
        live on the device, so a replay continues each stream where it stands; the host
        mirror (ready counts) is advanced by :meth:`advance_host` once per replay.
        """
        if n_items == 0:
            return
        b = self._buffers
        frames_bound = max_length // self.config.hop_length + 1  # new frames per item, max
        self.module.launch(
            "mfcc_frames", (frames_bound, n_items, 1), (FRAME_THREADS, 1, 1),
            [pointer(b["accept_items"]), pointer(audio_ptr), pointer(b["audio_ring"]),
             pointer(b["stream_pos"]), pointer(b["mfcc_ring"]), ctypes.c_int(self.ring_frames),
             pointer(b["window"]), pointer(b["mel"]), pointer(b["dct"])],
            shared_bytes=self.frame_shared_bytes,
        )
        self.module.launch(
            "mfcc_commit", (n_items, 1, 1), (GATHER_THREADS, 1, 1),
            [pointer(b["accept_items"]), pointer(audio_ptr), pointer(b["audio_ring"]),
             pointer(b["stream_pos"])],
        )

    def upload_accept_items(self, stream_ids: StreamIds, offsets: Sequence[int],
                            lengths: Sequence[int]) -> None:
        """Write the items :meth:`launch_accept_items` reads (for graph capture)."""
        slots = self._slots(stream_ids, "upload_accept_items")
        sizes = np.asarray(lengths, dtype=np.int64)
        if sizes.size and sizes.max() > self.max_chunk_samples:
            raise ValueError(f"lengths must be <= max_chunk_samples={self.max_chunk_samples}")
        items = np.stack([slots, np.asarray(offsets, np.int64), sizes], axis=1)
        self.runner.upload(self._buffers["accept_items"], items)

    def advance_host(self, stream_ids: StreamIds, lengths: Sequence[int]) -> None:
        """Advance the host mirror of stream positions after a graph replay."""
        self._pos[self._slots(stream_ids, "advance_host")] += np.asarray(lengths, np.int64)

    # ---- gathers into caller buffers ----
    def _check_frames(self, slots: np.ndarray, first_mfcc: np.ndarray, end_mfcc: np.ndarray,
                      what: str) -> None:
        ready = self.mfcc_frames_ready(slots)
        oldest = ready - self.ring_frames
        late = end_mfcc > ready
        gone = first_mfcc < np.maximum(oldest, 0)
        if late.any() or gone.any():
            i = int(np.flatnonzero(late | gone)[0])
            raise ValueError(
                f"{what}: stream {int(slots[i])} needs MFCC frames {int(first_mfcc[i])}.."
                f"{int(end_mfcc[i]) - 1} but holds {max(int(oldest[i]), 0)}..{int(ready[i]) - 1}"
                f"; wait until enough audio arrived, or raise history_frames"
            )

    def write_features(self, stream_ids: StreamIds, first_frames: Sequence[int],
                       num_frames: int, out: Any) -> None:
        """``out[b, t] =`` feature frame ``first_frames[b] + t`` of stream ``stream_ids[b]``.

        Args:
            out: float32 device array (len(stream_ids), num_frames, feature_dim), C-contiguous
                (the engine's ``features`` input), as CAI/DLPack array or int address.
        """
        c = self.config
        slots, first = self._gather_rows(stream_ids, first_frames, num_frames, "write_features")
        if slots.size == 0 or num_frames == 0:
            return
        view = device_array(out, _F32, (slots.size, num_frames, c.feature_dim),
                            "write_features out", self.runner_stream, writable=True)
        self.runner.wait_for(view.stream)
        self._check_frames(slots, c.mfcc_start(first),
                           c.mfcc_start(first + num_frames - 1) + c.mfcc_context,
                           "write_features")
        self._launch_gather("gather_feature_frames", slots, first, num_frames,
                            num_frames * c.feature_dim, [pointer(view.ptr)])
        self.runner.keep_alive(view)

    def write_mfcc(self, stream_ids: StreamIds, first_frames: Sequence[int],
                   num_frames: int, out: Any, coefficient_major: bool = False) -> None:
        """MFCC frames ``first_frames[b] .. + num_frames`` of each stream into ``out``.

        Args:
            out: float32 device array, C-contiguous: (n, num_frames, n_mfcc) time-major, or
                with ``coefficient_major`` (n, n_mfcc, num_frames) (PoseSyncNet's ``mfcc``).
        """
        c = self.config
        slots, first = self._gather_rows(stream_ids, first_frames, num_frames, "write_mfcc")
        if slots.size == 0 or num_frames == 0:
            return
        shape = ((slots.size, c.n_mfcc, num_frames) if coefficient_major
                 else (slots.size, num_frames, c.n_mfcc))
        view = device_array(out, _F32, shape, "write_mfcc out", self.runner_stream,
                            writable=True)
        self.runner.wait_for(view.stream)
        self._check_frames(slots, first, first + num_frames, "write_mfcc")
        stride_t, stride_c = (1, num_frames) if coefficient_major else (c.n_mfcc, 1)
        self._launch_gather("gather_mfcc", slots, first, num_frames, num_frames * c.n_mfcc,
                            [pointer(view.ptr), ctypes.c_longlong(num_frames * c.n_mfcc),
                             ctypes.c_longlong(stride_t), ctypes.c_longlong(stride_c)])
        self.runner.keep_alive(view)

    def _gather_rows(self, stream_ids: StreamIds, first_frames: Sequence[int],
                     num_frames: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Slots and first frames, int64 (n,) each, of a ``what`` request; checked."""
        slots = self._slots(stream_ids, what)
        first = np.asarray(first_frames, dtype=np.int64).reshape(-1)
        if first.size != slots.size or (first.size and first.min() < 0) or num_frames < 0:
            raise ValueError(f"{what}: one first frame >= 0 per stream and num_frames >= 0 "
                             f"needed, got {first.tolist()}, {num_frames}")
        return slots, first

    def _launch_gather(self, kernel: str, slots: np.ndarray, first: np.ndarray,
                       num_frames: int, values_per_stream: int, out_args: list[Any]) -> None:
        """Launch gather ``kernel`` over (slot, first frame) rows: one block row per stream,
        ``GATHER_THREADS`` threads per block over its ``values_per_stream`` floats; the
        kernel's arguments after the MFCC ring are ``out_args``."""
        self.runner.upload(self._buffers["gather_items"], np.stack([slots, first], axis=1))
        blocks = -(-values_per_stream // GATHER_THREADS)
        self.module.launch(
            kernel, (blocks, slots.size, 1), (GATHER_THREADS, 1, 1),
            [pointer(self._buffers["gather_items"]), ctypes.c_int(num_frames),
             pointer(self._buffers["mfcc_ring"]), ctypes.c_int(self.ring_frames), *out_args],
        )

    def close(self) -> None:
        """Free the device buffers (after the enqueued work finished); a runner made here
        (no ``runner`` given) is closed too: its stream, pinned staging buffers, module and
        context hold. Idempotent."""
        if not self._buffers:
            return
        self.runner.synchronize()
        for ptr in self._buffers.values():
            self.runner.free(ptr)
        self._buffers = {}
        if self._owns_runner:
            close = getattr(self.runner, "close", None)
            if close is not None:
                close()
