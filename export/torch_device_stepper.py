"""The PyTorch-CUDA generator step fed by the runtime's CUDA MFCC on the device.

:class:`TorchDeviceStepper` is a :class:`export.torch_runner.TorchGeneratorStepper` with the
device-features interface of :class:`sdk.device_front_end.DeviceFeatureStepper`: its
``features_binding`` is a float32 torch tensor on the model's device, its ``kernel_runner``
launches on torch's current CUDA stream, so :class:`sdk.streaming.StreamingGenerator`
gives it to its :class:`~sdk.device_front_end.DeviceFrontEnd`: the streams' audio goes to
the GPU once, the CUDA MFCC writes the feature frames into that tensor, and the step reads
them there (state stays in the stepper's device table)::

    runner = TorchGeneratorRunner("generator.pt", bundle="bundle/", device="cuda")
    with StreamingGenerator("bundle/", backend=TorchDeviceStepper(runner)) as gen:
        ...

The kernels and torch's work are ordered by sharing the stream that was current when the
stepper was made; step from threads that keep that stream current (torch's default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from export.torch_runner import TorchGeneratorRunner, TorchGeneratorStepper
from sdk.runners.base import FEATURES, RunnerError, RunnerInputError, StepOutputs


class TorchDeviceStepper(TorchGeneratorStepper):
    """A torch generator step whose features are written on the device.

    Args:
        runner: the generator on a CUDA device (a CPU device only with ``kernel_runner``
            whose "device" memory is host memory: the CPU emulator in the tests).
        kernel_runner: where the CUDA MFCC runs (None: a
            :class:`sdk.cuda.launch.CudaRunner` on torch's current stream of the device;
            closed with the stepper).
        max_batch, max_frames: streams per model call and frames per step the features
            tensor holds (float32 max_batch x max_frames x feature_dim).
    """

    def __init__(self, runner: TorchGeneratorRunner, kernel_runner: Any = None,
                 max_batch: int = 1024, max_frames: int = 64) -> None:
        super().__init__(runner)
        device = self.device
        self._owns_kernel_runner = kernel_runner is None
        if kernel_runner is None:
            if device.type != "cuda":
                self.runner.deactivate()
                raise RunnerError(f"TorchDeviceStepper needs the generator on a CUDA device, "
                                  f"got {device}; use TorchGeneratorStepper on the CPU")
            from sdk.cuda.launch import CudaRunner

            stream = torch.cuda.current_stream(device).cuda_stream
            kernel_runner = CudaRunner(device=device.index or 0, stream=int(stream))
        self.kernel_runner = kernel_runner
        self.feature_dim = int(self.runner.get_input_metadata()[FEATURES].shape[-1])
        self._capacity = (max_batch, max_frames)
        self._features = torch.empty(max_batch * max_frames * self.feature_dim,
                                     dtype=torch.float32, device=device)

    @property
    def max_batch(self) -> int | None:
        return self._capacity[0]

    @property
    def features_binding(self) -> int:
        """Device address of the features tensor: (batch, frames, feature_dim) float32,
        C-contiguous, for a step of ``batch`` streams and ``frames`` frames."""
        return int(self._features.data_ptr())

    def step_device_features(self, noise: np.ndarray, slots: Sequence[int],
                             styles: np.ndarray | None = None) -> StepOutputs:
        """A step on the features written into :attr:`features_binding` (rows
        0..len(slots)-1 on the kernel runner's stream); ``noise`` float32 (B, frames, N)."""
        if not isinstance(noise, np.ndarray) or noise.ndim != 3 or noise.dtype != np.float32:
            raise RunnerInputError(f"{self.runner.name}: noise must be a float32 (batch, "
                                   f"frames, noise_dim) array")
        batch, frames = int(noise.shape[0]), int(noise.shape[1])
        if batch > self._capacity[0] or frames > self._capacity[1]:
            raise RunnerInputError(f"{self.runner.name}: the features tensor holds "
                                   f"{self._capacity} (batch, frames), got ({batch}, {frames})")
        features = self._features[:batch * frames * self.feature_dim].view(
            batch, frames, self.feature_dim)
        poses, saliency = self.step_tensors(features, torch.from_numpy(noise).to(self.device),
                                            slots, styles)
        return StepOutputs(poses=poses.to("cpu").numpy(), saliency=saliency.to("cpu").numpy())

    def close(self) -> None:
        """Wait for the kernels, close a kernel runner made here, deactivate. Idempotent."""
        if self.runner.is_active:
            self.kernel_runner.synchronize()
            if self._owns_kernel_runner:
                self.kernel_runner.close()
        super().close()
