"""Pose imaging on the GPU: :class:`CudaPoseImager` (kernels in ``pose_image.cu``).

``images`` equals :func:`sdk.pose_image.pose_images` and ``preview`` equals
:func:`sdk.render.render_video_frames`, bit for bit on the CPU emulation (the kernels use
explicitly rounded float operations). Inputs may be host arrays (uploaded) or device
arrays (``__cuda_array_interface__`` / DLPack / int address), outputs are device arrays,
so generated poses can go from the generator's output buffer to PoseSyncNet's input
without leaving the GPU.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk.cuda.interop import DeviceArray, device_array
from sdk.cuda.launch import KernelArg, KernelRunner, pointer
from sdk.pose_image import ImagingConfig, bone_groups, bone_half_widths
from sdk.render import (
    BACKGROUND,
    DRAW_ORDER,
    GROUP_COLORS,
    OTHER_COLOR,
    RGB,
    SALIENCY_HIGH,
    SALIENCY_LOW,
    SALIENCY_TRACK,
)
from sdk.skeleton import Skeleton

SOURCE = "pose_image.cu"
PIXEL_THREADS = 256
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y: frames per launch (longer calls are split)


def frame_chunks(n_frames: int) -> list[tuple[int, int]]:
    """(first frame, count) of the launches covering ``n_frames`` frames, one grid row per
    frame and at most :data:`MAX_GRID_Y` rows each."""
    return [(f, min(MAX_GRID_Y, n_frames - f)) for f in range(0, n_frames, MAX_GRID_Y)]


class CudaPoseImager:
    """Limb images and RGB previews of one skeleton on one CUDA stream.

    Args:
        skeleton: the joint layout (its bones are drawn).
        imaging: window, size and line widths of the PoseSyncNet images.
        stream: CUDA stream handle to launch on (None: a private stream); ignored when
            ``runner`` is given.
        runner: where kernels run; None creates a :class:`sdk.cuda.launch.CudaRunner`.
    """

    def __init__(self, skeleton: Skeleton, imaging: ImagingConfig, *,
                 stream: int | None = None, runner: KernelRunner | None = None) -> None:
        self._owns_runner = runner is None
        if runner is None:
            from sdk.cuda.launch import CudaRunner

            runner = CudaRunner(stream=stream)
        self.skeleton = skeleton
        self.imaging = imaging
        self.runner = runner
        self.module = runner.load(SOURCE, {})
        bones = skeleton.bone_array().astype(np.int32)
        reach = bone_half_widths(skeleton, imaging.half_width, imaging.detail_half_width)
        self._bones = self._upload(bones)
        self._reach = self._upload(reach + np.float32(0.5))
        self._n_bones = len(bones)
        self._scratch: dict[str, tuple[int, int]] = {}  # name -> (ptr, capacity bytes)

    def _upload(self, array: np.ndarray) -> int:
        ptr = self.runner.alloc(max(array.nbytes, 4))
        self.runner.upload(ptr, array)
        return ptr

    def _scratch_upload(self, name: str, array: np.ndarray) -> int:
        ptr, capacity = self._scratch.get(name, (0, 0))
        if capacity < array.nbytes:
            if ptr:
                self.runner.synchronize()  # a launch may still read the old buffer
                self.runner.free(ptr)
            capacity = max(array.nbytes, 4)
            ptr = self.runner.alloc(capacity)
            self._scratch[name] = (ptr, capacity)
        self.runner.upload(ptr, array)
        return ptr

    def _points(self, points: Any, what: str) -> DeviceArray:
        """Device view of (..., J, 2) float32 points (host ones get uploaded)."""
        j = self.skeleton.num_joints
        if isinstance(points, np.ndarray):
            array = np.ascontiguousarray(points, dtype=np.float32)
            view = DeviceArray(0, array.shape, array.dtype)
        else:
            view = device_array(points, np.float32, None, what,
                                getattr(self.runner, "stream_handle", None))
            self.runner.wait_for(view.stream)
        if len(view.shape) < 2 or view.shape[-2:] != (j, 2):
            raise ValueError(f"{what}: expected shape (..., {j}, 2) for skeleton "
                             f"{self.skeleton.name!r}, got {view.shape}")
        if not view.ptr:
            view = DeviceArray(self._scratch_upload(what, array), view.shape, view.dtype)
        return view

    def images(self, canonical: Any, out: Any) -> None:
        """``out`` = pose_images(canonical): float32 (..., H, W) device array in [0, 1].

        Args:
            canonical: float32 (..., J, 2) canonical poses (host numpy array or device array);
                NaN joints draw nothing. A PoseSyncNet batch is (B, 9, J, 2).
            out: float32 device array of shape (..., H, W), C-contiguous.
        """
        canonical_view = self._points(canonical, "canonical")
        ptr, shape = canonical_view.ptr, canonical_view.shape
        c = self.imaging
        n_frames = int(np.prod(shape[:-2], dtype=np.int64))
        target = device_array(out, np.float32, (*shape[:-2], c.height, c.width), "images out",
                              getattr(self.runner, "stream_handle", None), writable=True)
        self.runner.wait_for(target.stream)
        if n_frames == 0:
            return
        sx, sy = c.pixels_per_unit
        blocks = -(-c.height * c.width // PIXEL_THREADS)
        j = self.skeleton.num_joints
        for first, count in frame_chunks(n_frames):
            self.module.launch(
                "pose_images", (blocks, count, 1), (PIXEL_THREADS, 1, 1),
                [pointer(ptr + first * j * 2 * 4), ctypes.c_int(j), pointer(self._bones),
                 pointer(self._reach), ctypes.c_int(self._n_bones),
                 ctypes.c_float(float(np.float32(c.x_min))),
                 ctypes.c_float(float(np.float32(c.y_min))),
                 ctypes.c_float(float(sx)), ctypes.c_float(float(sy)), ctypes.c_int(c.height),
                 ctypes.c_int(c.width), pointer(target.ptr + first * c.height * c.width * 4)],
            )
        self.runner.keep_alive(canonical_view, target)

    def images_to_host(self, canonical: Any) -> np.ndarray:
        """:meth:`images` into a scratch device buffer, downloaded: float32 (..., H, W)
        (the PSD's per-frame images when the PoseSyncNet embedding runs on the host)."""
        shape = (canonical.shape if isinstance(canonical, np.ndarray)
                 else device_array(canonical, np.float32, None, "canonical").shape)
        c = self.imaging
        host = np.empty((*shape[:-2], c.height, c.width), dtype=np.float32)
        if host.size == 0:
            return host
        ptr, capacity = self._scratch.get("images_out", (0, 0))
        if capacity < host.nbytes:
            if ptr:
                self.runner.synchronize()
                self.runner.free(ptr)
            ptr, capacity = self.runner.alloc(host.nbytes), host.nbytes
            self._scratch["images_out"] = (ptr, capacity)
        self.images(canonical, ptr)  # an int address: the shape images() expects is trusted
        self.runner.download(host, ptr)
        return host

    def preview(self, pixels: Any, size: tuple[int, int], out: Any, *,
                saliency: np.ndarray | None = None, half_width: float = 1.5,
                detail_half_width: float = 0.75, colors: Mapping[str, RGB] | None = None,
                background: RGB = BACKGROUND) -> None:
        """``out`` = render_video_frames(pixels, skeleton, size, ...): uint8 (T, H, W, 3).

        Same arguments and layering as :func:`sdk.render.render_video_frames`; ``pixels``
        (T, J, 2) canvas coordinates on host or device, ``saliency`` a host (T,) array.
        """
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise ValueError(f"size must be two positive ints (width, height), got {size!r}")
        if not (half_width > 0 and detail_half_width > 0):
            raise ValueError(f"line half widths must be > 0 pixels, got {half_width} and "
                             f"{detail_half_width}")
        pixels_view = self._points(pixels, "pixels")
        ptr, shape = pixels_view.ptr, pixels_view.shape
        if len(shape) != 3:
            raise ValueError(f"pixels: expected (T, J, 2), got {shape}")
        n_frames = shape[0]
        target = device_array(out, np.uint8, (n_frames, height, width, 3), "preview out",
                              getattr(self.runner, "stream_handle", None), writable=True)
        self.runner.wait_for(target.stream)
        # Layers exactly as render_video_frames builds them.
        palette = {**GROUP_COLORS, **(colors or {})}
        groups = np.array(bone_groups(self.skeleton))
        widths = bone_half_widths(self.skeleton, half_width, detail_half_width)
        uncoloured = sorted(set(groups.tolist()) - set(palette))
        layers = [(uncoloured, OTHER_COLOR)] + [([g], palette[g]) for g in DRAW_ORDER]
        layers += [([g], palette[g]) for g in palette if g not in DRAW_ORDER]
        order, ends, colours = [], [], []
        for names, colour in layers:
            pick = np.flatnonzero(np.isin(groups, names))
            order.extend(pick.tolist())
            ends.append(len(order))
            colours.append(colour)
        bones = self.skeleton.bone_array()[order].astype(np.int32)
        reach = widths[order] + np.float32(0.5)
        rgb = np.asarray(colours, dtype=np.float32)
        if rgb.shape != (len(layers), 3) or not np.all((rgb >= 0) & (rgb <= 255)):
            raise ValueError(f"colours must be (R, G, B) triples of 0..255, got {colours}")
        bar = np.asarray([SALIENCY_LOW, SALIENCY_HIGH, SALIENCY_TRACK], dtype=np.float32)
        saliency_ptr = 0
        if saliency is not None:
            scores = np.asarray(saliency, dtype=np.float32).reshape(-1)
            if scores.shape != (n_frames,) or not np.all((scores >= 0) & (scores <= 1)):
                raise ValueError(f"saliency must be {n_frames} scores in [0, 1], got {scores}")
            saliency_ptr = self._scratch_upload("saliency", scores)
        if n_frames == 0:
            return
        blocks = -(-height * width // PIXEL_THREADS)
        j = self.skeleton.num_joints
        constants: list[KernelArg] = [
            pointer(self._scratch_upload("bones", bones)),
            pointer(self._scratch_upload("reach", reach)),
            pointer(self._scratch_upload("layer_end", np.asarray(ends, np.int32))),
            ctypes.c_int(len(layers)), pointer(self._scratch_upload("layer_rgb", rgb)),
            pointer(self._scratch_upload("background", np.asarray(background, np.float32))),
        ]
        bar_rgb = pointer(self._scratch_upload("bar_rgb", bar))
        for first, count in frame_chunks(n_frames):
            self.module.launch(
                "preview_rgb", (blocks, count, 1), (PIXEL_THREADS, 1, 1),
                [pointer(ptr + first * j * 2 * 4), ctypes.c_int(j), *constants,
                 pointer(saliency_ptr + first * 4 if saliency_ptr else 0), bar_rgb,
                 ctypes.c_int(max(2, height // 32)), ctypes.c_int(height),
                 ctypes.c_int(width), pointer(target.ptr + first * height * width * 3)],
            )
        self.runner.keep_alive(pixels_view, target)

    def close(self) -> None:
        """Free the device buffers; a runner made here (no ``runner`` given) is closed too
        (its stream, pinned buffers, module and context hold). Idempotent."""
        if not self._bones:
            return
        self.runner.synchronize()
        for ptr in (self._bones, self._reach, *(p for p, _ in self._scratch.values())):
            self.runner.free(ptr)
        self._bones = self._reach = 0
        self._scratch = {}
        if self._owns_runner:
            close = getattr(self.runner, "close", None)
            if close is not None:
                close()
