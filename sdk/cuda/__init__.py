"""Custom CUDA preprocessing: streaming MFCC and pose imaging kernels, NVRTC-compiled.

- :class:`sdk.cuda.mfcc.CudaMfcc`: streaming MFCC for many streams, feature frames and
  MFCC clips written straight into device buffers (engine inputs).
- :class:`sdk.cuda.pose.CudaPoseImager`: PoseSyncNet limb images and RGB previews.
- :mod:`sdk.cuda.nvrtc`: compilation (``compile_source``) with an on-disk cubin cache.
- :mod:`sdk.cuda.launch`: the ``KernelRunner`` interface and ``CudaRunner`` (driver API).
- :mod:`sdk.cuda.interop`: ``__cuda_array_interface__`` / DLPack arrays as kernel operands.

The CUDA C sources (``*.cu``) live next to these modules. Each has a numpy reference
(:mod:`sdk.mfcc`, :mod:`sdk.pose_image`, :mod:`sdk.render`) that it must match; the CPU
tests run the same sources through a host emulation (``tests/cuda_emu``).
Importing this package loads no CUDA library: cuda-python is imported on first use.
"""

from sdk.cuda.nvrtc import SUPPORTED_ARCHS, compile_source, feature_defines

__all__ = ["SUPPORTED_ARCHS", "compile_source", "feature_defines"]
