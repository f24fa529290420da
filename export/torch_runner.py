"""PyTorch runners: the bundle's models from their checkpoints, on a CUDA GPU or the CPU.

For GPU machines with PyTorch but no TensorRT. The runners implement sdk's runner
interface (:class:`sdk.runners.base.Runner`: same tensor names, shapes, dtypes and
checks as the ONNX Runtime runner) and add a device-resident path:

* :class:`TorchGeneratorRunner` — ``generator.step`` of a ``generator`` checkpoint;
* :class:`TorchPoseSyncRunner` — PoseSyncNet of a ``posesync`` checkpoint;
* :class:`TorchGeneratorStepper` — a :class:`~sdk.runners.base.GeneratorStepper` whose
  state table is a tensor on the runner's device: per-stream state never leaves the GPU.

``infer(feed)`` takes and returns numpy arrays (fresh arrays each call, so the output
buffer contract holds trivially); ``infer_tensors(feed)`` takes and returns torch tensors
on the runner's device, without copies or synchronisation.

Plugging into :class:`sdk.streaming.StreamingGenerator` (``backend=`` takes a stepper)::

    runner = TorchGeneratorRunner("generator.pt", bundle="bundle/", device="cuda")
    with StreamingGenerator("bundle/", backend=TorchGeneratorStepper(runner)) as gen:
        frames = gen.generate(audio, 16000)

Given a ``bundle``, the checkpoint must match it (features hash, lookahead, noise and
state sizes; PoseSyncNet clip and image sizes) and the input axis names come from the
manifest. A bundle names the checkpoints it came from (file name, sha256) but holds no
path, so ``checkpoint`` is required.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export.bundle_writer import load_generator, load_posesync
from sdk.bundle import Bundle, ModelSpec, load_bundle
from sdk.runners.base import (
    AUDIO_EMB,
    FEATURES,
    GENERATOR_OUTPUTS,
    MFCC_CLIPS,
    NOISE,
    POSE_EMB,
    POSE_IMAGES,
    POSES,
    POSESYNC_OUTPUTS,
    SALIENCY,
    STATE,
    STATE_OUT,
    STYLE,
    GeneratorStepper,
    Runner,
    RunnerError,
    SlotAllocator,
    StepOutputs,
    TensorMeta,
    check_feed,
)
from train.models.generator import SalientPostureGenerator
from train.models.posesync import PoseSyncNet

PathLike = str | os.PathLike[str]
BundleSource = PathLike | Bundle
BATCH_AXIS, FRAMES_AXIS = "batch", "frames"
_F32 = np.dtype(np.float32)


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device; RunnerError when it names CUDA and none is usable."""
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RunnerError(f"device {device!r}: this PyTorch sees no CUDA GPU (torch "
                          f"{torch.__version__}, CUDA build {torch.version.cuda}); use "
                          f"device='cpu' or install a CUDA build of PyTorch on a GPU machine")
    if resolved.type not in ("cuda", "cpu"):
        raise RunnerError(f"device must be 'cuda', 'cuda:N' or 'cpu', got {device!r}")
    return resolved


def _open_bundle(bundle: BundleSource | None) -> Bundle | None:
    if bundle is None or isinstance(bundle, Bundle):
        return bundle
    return load_bundle(bundle)


def _checkpoint_path(checkpoint: PathLike | None, bundle: Bundle | None, kind: str) -> Path:
    """The checkpoint given; ValueError naming the bundle's recorded one when None."""
    if checkpoint is not None:
        return Path(checkpoint)
    if bundle is None:
        raise ValueError(f"a {kind} checkpoint is needed: pass checkpoint=PATH (and "
                         f"optionally bundle=DIR to check it against a bundle)")
    recorded = bundle.manifest.training.get("checkpoints", {}).get(kind, {})
    raise ValueError(f"a {kind} checkpoint is needed: bundle {bundle.root} records which one "
                     f"it was exported from ({recorded.get('file')!r}, sha256 "
                     f"{str(recorded.get('sha256'))[:12]}...) but, like every bundle, no path on "
                     f"a machine; pass checkpoint=PATH")


def _meta_from_spec(spec: ModelSpec) -> dict[str, TensorMeta]:
    return {t.name: TensorMeta(t.name, np.dtype(t.dtype), tuple(t.shape)) for t in spec.inputs}


def _mismatch(what: str, checkpoint: Path, bundle: Bundle, pairs: dict[str, tuple[Any, Any]]
              ) -> None:
    bad = {k: v for k, v in pairs.items() if v[0] != v[1]}
    if bad:
        text = ", ".join(f"{k}: checkpoint {a}, bundle {b}" for k, (a, b) in bad.items())
        raise RunnerError(f"{what} checkpoint {checkpoint} does not match bundle {bundle.root} "
                          f"({text}); use the checkpoint the bundle was exported from")


@contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for cuDNN convolutions and CUDA matmuls inside (torch's flags are
    process-wide: restored on exit). torch turns cuDNN TF32 on by default; measured on an
    H200 (benchmarks/results/nvidia-h200/gpu-check/pytest.log), that moves the tiny test
    generator's keypoints 1.25e-2 px from ONNX Runtime's fp32, against 1.2e-4 px with it off."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class TorchRunner(Runner):
    """A torch module behind the runner interface (``no_grad``/``inference_mode``, eval).

    The model runs in fp32 with TF32 off (:func:`exact_fp32`), as the TensorRT engines are
    built and as the bundle's fp32 tolerances assume; set ``allow_tf32 = True`` on a runner
    to let torch's defaults trade that parity for tensor-core speed.
    """

    output_names: tuple[str, ...] = ()
    allow_tf32: bool = False

    def __init__(self, name: str, model: nn.Module, input_metadata: dict[str, TensorMeta],
                 device: str | torch.device) -> None:
        super().__init__(name)
        self.model = model.eval()
        self._metadata = input_metadata
        self._requested_device = device
        self.device = torch.device(device)

    def _activate(self) -> None:
        self.device = resolve_device(self._requested_device)
        self.model.to(self.device)

    def _deactivate(self) -> None:
        self.model.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _read_input_metadata(self) -> dict[str, TensorMeta]:
        return dict(self._metadata)

    @abstractmethod
    def _forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The model on its inputs in metadata order; outputs in ``output_names`` order."""

    def infer_tensors(self, feed: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run on tensors already on ``self.device`` (float32, shapes as the metadata says).

        Returns the outputs as tensors on the device; work is enqueued on torch's current
        stream and nothing is synchronised. Only names are checked here.
        """
        meta = self._require_active()
        missing = [n for n in meta if n not in feed]
        if missing:
            raise RunnerError(f"{self.name}: infer_tensors misses inputs {missing}")
        with torch.inference_mode(), nullcontext() if self.allow_tf32 else exact_fp32():
            outputs = self._forward([feed[name] for name in meta])
        return dict(zip(self.output_names, outputs, strict=True))

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {name: torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
                   for name, array in feed.items()}
        try:
            outputs = self.infer_tensors(tensors)
        except (RuntimeError, ValueError) as exc:
            raise RunnerError(f"{self.name}: inference failed: {exc}") from exc
        return {name: tensor.detach().to("cpu").numpy() for name, tensor in outputs.items()}


class TorchGeneratorRunner(TorchRunner):
    """``SalientPostureGenerator.step`` as a runner: features, noise, state -> poses,
    saliency, state_out (see the step contract in docs/architecture.md).

    Args:
        checkpoint: a ``generator`` checkpoint (None: the one the bundle's manifest records).
        bundle: a bundle directory / :class:`Bundle` to check the checkpoint against.
        device: "cuda", "cuda:N" or "cpu" (checked at activation).
        model: an already-built generator instead of a checkpoint (tests, training loops).
    """

    output_names = GENERATOR_OUTPUTS

    def __init__(self, checkpoint: PathLike | None = None, *, bundle: BundleSource | None = None,
                 device: str | torch.device = "cuda",
                 model: SalientPostureGenerator | None = None) -> None:
        opened = _open_bundle(bundle)
        if model is None:
            path = _checkpoint_path(checkpoint, opened, "generator")
            model, loaded = load_generator(path)
            features_hash = loaded.features.config_hash()
        else:  # a model in memory carries no feature hash: only the sizes are checked
            path, features_hash = Path("<model>"), None
        config = model.config
        if opened is not None:
            spec = opened.manifest.generator
            _mismatch("generator", path, opened, {
                "lookahead_frames": (config.lookahead_frames, spec.lookahead_frames),
                "noise_dim": (config.noise_dim, spec.noise_dim),
                "state_size": (model.state_size, spec.state_size),
                "feature_dim": (config.feature_dim, opened.manifest.features.feature_dim),
                "features_hash": (features_hash or opened.manifest.features.config_hash(),
                                  opened.manifest.features.config_hash()),
                "styles": ((list(config.styles), config.default_style),
                           (list(spec.styles), spec.default_style)),
            })
            meta = _meta_from_spec(spec.model)
        else:
            meta = {
                FEATURES: TensorMeta(FEATURES, _F32, (BATCH_AXIS, FRAMES_AXIS,
                                                      config.feature_dim)),
                NOISE: TensorMeta(NOISE, _F32, (BATCH_AXIS, FRAMES_AXIS, config.noise_dim)),
                STATE: TensorMeta(STATE, _F32, (BATCH_AXIS, model.state_size)),
            }
            if config.styles:
                meta[STYLE] = TensorMeta(STYLE, np.dtype(np.int32), (BATCH_AXIS,))
        super().__init__(f"torch:{path.name}", model, meta, device)
        self.generator = model
        self.state_size = model.state_size
        self.lookahead_frames = config.lookahead_frames

    def _forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        features, noise, state, *style = inputs  # style: (B,) int32 when the model has styles
        return self.generator.step(features, noise, state, style[0] if style else None)


class TorchPoseSyncRunner(TorchRunner):
    """PoseSyncNet as a runner: mfcc (B, 13, 60), pose_images (B, 9, H, W) -> audio_emb,
    pose_emb (B, E). Arguments as :class:`TorchGeneratorRunner`; the checkpoint's features
    must be the bundle's when a bundle is given."""

    output_names = POSESYNC_OUTPUTS

    def __init__(self, checkpoint: PathLike | None = None, *, bundle: BundleSource | None = None,
                 device: str | torch.device = "cuda",
                 model: PoseSyncNet | None = None) -> None:
        opened = _open_bundle(bundle)
        if model is None:
            path = _checkpoint_path(checkpoint, opened, "posesync")
            features = opened.manifest.features if opened is not None else None
            if features is None:
                from train.checkpoint import load_checkpoint

                features = load_checkpoint(path, "posesync").features
            model, _, _ = load_posesync(path, features)
        else:
            path = Path("<model>")
        if opened is not None and opened.manifest.posesync is not None:
            spec = opened.manifest.posesync
            _mismatch("posesync", path, opened, {
                "clip_frames": (model.config.clip_frames, spec.clip_frames),
                "clip_mfcc_frames": (model.mfcc_shape[1], spec.clip_mfcc_frames),
                "embedding_dim": (model.config.embedding_dim, spec.embedding_dim),
                "image_shape": (list(model.image_shape), [opened.manifest.imaging["height"],
                                                          opened.manifest.imaging["width"]]),
            })
            meta = _meta_from_spec(spec.model)
        else:
            meta = {
                MFCC_CLIPS: TensorMeta(MFCC_CLIPS, _F32, (BATCH_AXIS, *model.mfcc_shape)),
                POSE_IMAGES: TensorMeta(POSE_IMAGES, _F32, (BATCH_AXIS, model.config.clip_frames,
                                                            *model.image_shape)),
            }
        super().__init__(f"torch:{path.name}", model, meta, device)
        self.posesync = model

    def _forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        mfcc, images = inputs
        return self.posesync(mfcc, images)

    def embed(self, mfcc_clips: np.ndarray, pose_clips: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """:data:`sdk.psd.EmbedFn`: numpy clips in, (audio_emb, pose_emb) numpy out."""
        out = self.infer({MFCC_CLIPS: np.ascontiguousarray(mfcc_clips, dtype=np.float32),
                          POSE_IMAGES: np.ascontiguousarray(pose_clips, dtype=np.float32)})
        return out[AUDIO_EMB], out[POSE_EMB]


class TorchGeneratorStepper(GeneratorStepper):
    """Generator steps with the per-stream state table on the runner's device.

    The table is float32 (capacity, S) on ``runner.device``, grown by doubling; gather
    and scatter are device index operations. :meth:`step` takes host arrays and returns
    host arrays (poses, saliency: one device->host copy each); :meth:`step_tensors` takes
    device tensors and returns device tensors (nothing crosses). ``backend`` is
    "torch-cuda" or "torch-cpu". Activates the runner; :meth:`close` deactivates it.
    """

    def __init__(self, runner: TorchGeneratorRunner) -> None:
        self.runner = runner.activate()
        self._torch_runner = runner
        self.state_size = runner.state_size
        self.backend = f"torch-{runner.device.type}"
        self._slots = SlotAllocator()
        self._table = torch.zeros(8, self.state_size, dtype=torch.float32, device=runner.device)

    @property
    def device(self) -> torch.device:
        return self._torch_runner.device

    @property
    def launch_bound(self) -> bool:
        """On a CUDA device (GeneratorStepper.launch_bound)."""
        return self.device.type == "cuda"

    def allocate_slot(self) -> int:
        slot = self._slots.allocate()
        if slot >= self._table.shape[0]:
            grown = self._table.new_zeros(2 * self._table.shape[0], self.state_size)
            grown[: self._table.shape[0]] = self._table
            self._table = grown
        self._table[slot] = 0.0
        return slot

    def release_slot(self, slot: int) -> None:
        self._slots.release(slot)

    def reset_slot(self, slot: int) -> None:
        self._slots.check_live(slot)
        self._table[slot] = 0.0

    def read_state(self, slot: int) -> np.ndarray:
        self._slots.check_live(slot)
        return self._table[slot].to("cpu").numpy().copy()

    def step_tensors(self, features: torch.Tensor, noise: torch.Tensor, slots: Sequence[int],
                     styles: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on device tensors: features (B, Tc, F), noise (B, Tc, N) float32 on
        ``self.device``, styles int32 (B,) host indices (see ``GeneratorStepper.step``)
        -> poses (B, Tc, J, 2), saliency (B, Tc) on the device."""
        index = self._check_slots(slots, features.shape[0])
        styled = STYLE in self.runner.get_input_metadata()
        style_feed = {k: torch.from_numpy(v).to(self.device)
                      for k, v in self._style_feed(styled, styles, index.size).items()}
        for slot in index:
            self._slots.check_live(int(slot))
        rows = torch.as_tensor(index, device=self.device)
        outputs = self._torch_runner.infer_tensors(
            {FEATURES: features, NOISE: noise, STATE: self._table.index_select(0, rows)}
            | style_feed)
        state_out = outputs[STATE_OUT]
        if tuple(state_out.shape) != (index.size, self.state_size):
            raise RunnerError(f"{self.runner.name}: state_out has shape "
                              f"{tuple(state_out.shape)}, expected ({index.size}, "
                              f"{self.state_size})")
        self._table.index_copy_(0, rows, state_out)
        return outputs[POSES], outputs[SALIENCY]

    def step(self, features: np.ndarray, noise: np.ndarray, slots: Sequence[int],
             styles: np.ndarray | None = None) -> StepOutputs:
        meta = self.runner.get_input_metadata()
        state_meta = {n: m for n, m in meta.items() if n not in (STATE, STYLE)}
        check_feed(self.runner.name, state_meta, {FEATURES: features, NOISE: noise})
        device = self.device
        poses, saliency = self.step_tensors(torch.from_numpy(features).to(device),
                                            torch.from_numpy(noise).to(device), slots, styles)
        return StepOutputs(poses=poses.to("cpu").numpy(), saliency=saliency.to("cpu").numpy())

    def close(self) -> None:
        self.runner.deactivate()
