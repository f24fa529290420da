"""Counter-based random numbers: a frame's noise depends only on (seed, frame index).

The generator takes a small noise vector per feature frame. Drawing it from a
sequential RNG would make the output depend on how audio was chunked; instead every
value is a pure function of ``(seed, frame, channel)`` through the splitmix64 mixer and
Box-Muller. Training draws with the same function (train imports sdk), so serving sees
the distribution training saw.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def frame_noise(seed: int, first_frame: int, num_frames: int, dim: int) -> np.ndarray:
    """Standard-normal noise for frames first_frame .. first_frame+num_frames-1.

    Args:
        seed: stream seed, any int in [0, 2**63).
        first_frame: index of the first feature frame (>= 0).
        num_frames: number of frames (>= 0).
        dim: values per frame (>= 0).
    Returns:
        float32 array (num_frames, dim); row i depends only on (seed, first_frame + i).
    """
    if seed < 0 or first_frame < 0 or num_frames < 0 or dim < 0:
        raise ValueError(
            f"frame_noise needs non-negative seed/first_frame/num_frames/dim, got "
            f"{seed}, {first_frame}, {num_frames}, {dim}"
        )
    return _noise(np.uint64(seed), first_frame, num_frames, dim)


def frame_noise_streams(seeds: np.ndarray, first_frame: int, num_frames: int, dim: int
                        ) -> np.ndarray:
    """:func:`frame_noise` of many streams at the same frames, in one call.

    Args:
        seeds: int (N,) stream seeds in [0, 2**63).
    Returns:
        float32 (N, num_frames, dim); row n equals ``frame_noise(seeds[n], ...)`` exactly.
    """
    seeds = np.asarray(seeds)
    if seeds.ndim != 1 or (seeds.size and (seeds.dtype.kind not in "iu" or seeds.min() < 0)):
        raise ValueError(f"seeds must be a 1-D array of non-negative ints, got {seeds!r:.80}")
    if first_frame < 0 or num_frames < 0 or dim < 0:
        raise ValueError(f"frame_noise_streams needs non-negative first_frame/num_frames/dim, "
                         f"got {first_frame}, {num_frames}, {dim}")
    return _noise(seeds.astype(np.uint64)[:, None, None], first_frame, num_frames, dim)


def frame_noise_at(seeds: np.ndarray, first_frames: np.ndarray, num_frames: int, dim: int
                   ) -> np.ndarray:
    """:func:`frame_noise` of many streams, each at its own frames, in one call.

    Args:
        seeds: int (N,) stream seeds in [0, 2**63).
        first_frames: int (N,) first feature frame of each stream (>= 0).
    Returns:
        float32 (N, num_frames, dim); row n equals
        ``frame_noise(seeds[n], first_frames[n], num_frames, dim)`` exactly.
    """
    seeds, first_frames = np.asarray(seeds), np.asarray(first_frames)
    if seeds.ndim != 1 or first_frames.shape != seeds.shape or (seeds.size and (
            seeds.dtype.kind not in "iu" or first_frames.dtype.kind not in "iu"
            or seeds.min() < 0 or first_frames.min() < 0)):
        raise ValueError(f"frame_noise_at needs 1-D non-negative int seeds and first_frames of "
                         f"one shape, got {seeds!r:.60} and {first_frames!r:.60}")
    if num_frames < 0 or dim < 0:
        raise ValueError(f"frame_noise_at needs non-negative num_frames/dim, got {num_frames}, "
                         f"{dim}")
    frames = first_frames.astype(np.uint64)[:, None] + np.arange(num_frames, dtype=np.uint64)
    return _draw(seeds.astype(np.uint64)[:, None, None], frames[:, :, None], dim)


def _noise(seed: np.ndarray | np.uint64, first_frame: int, num_frames: int, dim: int
           ) -> np.ndarray:
    """The Box-Muller draw of ``frame_noise``; ``seed`` broadcasts against (T, dim)."""
    frames = np.arange(first_frame, first_frame + num_frames, dtype=np.uint64)[:, None]
    return _draw(seed, frames, dim)


def _draw(seed: np.ndarray | np.uint64, frames: np.ndarray, dim: int) -> np.ndarray:
    """Noise of (seed, frame, channel): ``seed`` and ``frames`` (..., 1) broadcast against
    the channels (1, dim)."""
    chans = np.arange(dim, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        key = _splitmix64(seed * np.uint64(0xD1B54A32D192ED03) + frames)
        base = key * np.uint64(2 * max(dim, 1)) + chans * np.uint64(2)
        u1 = _splitmix64(base)
        u2 = _splitmix64(base + np.uint64(1))
    scale = 1.0 / float(2**53)
    a = ((u1 >> np.uint64(11)).astype(np.float64) + 0.5) * scale  # (0, 1)
    b = (u2 >> np.uint64(11)).astype(np.float64) * scale
    z = np.sqrt(-2.0 * np.log(a)) * np.cos(2.0 * np.pi * b)
    return z.astype(np.float32)
