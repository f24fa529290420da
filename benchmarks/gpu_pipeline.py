"""The whole pipeline on one GPU, PyTorch for the models, and its CPU reference.

GPU path (:func:`run_gpu_pipeline`), everything ordered on torch's current CUDA stream::

    audio chunks (host, float32 16 kHz) --host->device once--> CudaMfcc (device ring)
      -> write_features into a torch CUDA tensor (1, Tc, 91)   (__cuda_array_interface__)
      -> TorchGeneratorStepper.step_tensors (state table on the device)
      -> standardised poses -> canonical (torch, on the device)
      -> CudaPoseImager.images into a torch tensor (T, H, W)
      -> MFCC clips and pose clips cut on the device -> TorchPoseSyncRunner
      -> embeddings (T x E floats, the only device->host copy) -> sdk.psd.sweep_embeddings

CPU reference (:func:`run_cpu_reference`): numpy MFCC (:func:`sdk.mfcc.mfcc_offline`), the
bundle's ONNX generator on ONNX Runtime in one step, numpy pose images, ONNX PoseSyncNet:
exactly how export measures the bundle's PSD reference. :func:`compare` gives the max
absolute differences; :data:`TOLERANCES` are what ``tests/test_gpu_pipeline.py`` allows.

``python -m benchmarks.gpu_pipeline --bundle B --generator-checkpoint G
--posesync-checkpoint P [--audio FILE]`` runs both and prints the comparison as JSON
(exit 2 without a CUDA GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from sdk.bundle import Bundle, PoseSyncSpec, load_bundle
from sdk.cuda.launch import KernelRunner
from sdk.features import FeatureConfig
from sdk.mfcc import MfccMatrices, extract_features, mfcc_offline
from sdk.noise import frame_noise
from sdk.pose_image import ImagingConfig
from sdk.psd import (
    DEFAULT_MAX_OFFSET,
    OffsetSweep,
    PoseSyncClipConfig,
    offset_sweep,
    sequence_images,
    sweep_embeddings,
)
from sdk.runners.base import (
    AUDIO_EMB,
    FEATURES,
    MFCC_CLIPS,
    NOISE,
    POSE_EMB,
    POSE_IMAGES,
    POSES,
    SALIENCY,
    STATE,
)

#: Max abs difference GPU pipeline vs CPU reference. MFCC: the kernel tests' bound (the GPU
#: may fuse the DFT's multiply-adds; c0 spans +-600). Poses (standardised units), saliency,
#: images ([0, 1]) and embeddings follow from that through fp32 models (TF32 off).
#: PSD: relative, the bundle's fp32 tolerance is used (``psd_reference.tolerance_fp32``).
TOLERANCES = {"mfcc": 2e-3, "poses": 1e-3, "saliency": 1e-3, "images": 5e-3,
              "audio_emb": 1e-3, "pose_emb": 1e-3}
EMBED_BATCH = 256


@dataclass
class PipelineResult:
    """What either path produced for one clip of N samples (K = num_pose_frames(N)).

    mfcc: float32 (M, 13) time-major, M = num_mfcc_frames(N).
    poses: float32 (K, J, 2) standardised; saliency float32 (K,); canonical float32 (K, J, 2).
    images: float32 (K, H, W) pose images in [0, 1].
    audio_emb, pose_emb: float64 (n, E) embeddings of clips 0 .. n-1.
    sweep: the PSD offset sweep.
    seconds: wall seconds per stage (GPU stages measured with CUDA events).
    """

    mfcc: np.ndarray
    poses: np.ndarray
    saliency: np.ndarray
    canonical: np.ndarray
    images: np.ndarray
    audio_emb: np.ndarray
    pose_emb: np.ndarray
    sweep: OffsetSweep
    seconds: dict[str, float] = field(default_factory=dict)


def _posesync_spec(bundle: Bundle) -> PoseSyncSpec:
    spec = bundle.manifest.posesync
    if spec is None:
        raise ValueError(f"bundle {bundle.root} has no PoseSyncNet; the pipeline needs one")
    return spec


def _check_audio(audio: Any, features: FeatureConfig) -> np.ndarray:
    samples = np.asarray(audio)
    if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.floating) or samples.size == 0:
        raise ValueError(f"audio must be non-empty float mono samples (N,) at "
                         f"{features.sample_rate} Hz, got dtype {samples.dtype} shape "
                         f"{samples.shape}; use sdk.audio.load_audio first")
    return np.ascontiguousarray(samples, dtype=np.float32)


def samples_to_accept(n_samples: int, input_frames: int, features: FeatureConfig) -> int:
    """Samples (audio then zeros) after which MFCC frames 0..num_mfcc_frames(N)-1 and
    feature frames 0..input_frames-1 are final."""
    mfcc_frames = max(features.num_mfcc_frames(n_samples),
                      features.mfcc_frames_needed(input_frames))
    return max(n_samples, features.samples_needed_for_mfcc(mfcc_frames))


class _StageTimer:
    """Marks between stages: CUDA events on ``device``'s current stream, else wall clock."""

    def __init__(self, device: Any) -> None:
        import torch

        self.cuda = device.type == "cuda"
        self._torch = torch
        self.marks: list[Any] = []
        self.begin = time.perf_counter()

    def mark(self) -> None:
        if self.cuda:
            event = self._torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self, names: tuple[str, ...]) -> dict[str, float]:
        """Seconds between consecutive marks by stage name, and ``wall`` (synchronises)."""
        if self.cuda:
            self._torch.cuda.synchronize()
            spans = [a.elapsed_time(b) / 1e3 for a, b in pairwise(self.marks)]
        else:
            spans = [b - a for a, b in pairwise(self.marks)]
        return {**dict(zip(names, spans, strict=True)), "wall": time.perf_counter() - self.begin}


def run_gpu_pipeline(bundle_path: str | Path, generator_checkpoint: str | Path,
                     posesync_checkpoint: str | Path, audio: Any, *, chunk_samples: int = 320,
                     chunk_frames: int | None = None, seed: int = 0,
                     max_offset: int = DEFAULT_MAX_OFFSET, device: str = "cuda",
                     kernel_runner: KernelRunner | None = None) -> PipelineResult:
    """The GPU pipeline on one clip, streamed in ``chunk_samples`` pieces (20 ms default).

    Args:
        audio: float (N,) mono at the bundle's sample rate.
        chunk_frames: feature frames per generator step (None: the manifest's).
        device: the torch device of the models: "cuda" / "cuda:N"; "cpu" only together
            with an emulating ``kernel_runner``.
        kernel_runner: where the CUDA kernels run; None: a :class:`CudaRunner` on torch's
            current stream of ``device``. The tests pass the CPU emulator
            (tests/cuda_emu) with device="cpu": its device memory is host memory, so torch
            CPU tensors are handed to the kernels by address.
    """
    import torch

    from export.torch_runner import (
        TorchGeneratorRunner,
        TorchGeneratorStepper,
        TorchPoseSyncRunner,
        resolve_device,
    )
    from sdk.cuda.mfcc import CudaMfcc
    from sdk.cuda.pose import CudaPoseImager

    bundle = load_bundle(bundle_path)
    manifest, features = bundle.manifest, bundle.manifest.features
    samples = _check_audio(audio, features)
    if chunk_samples <= 0:
        raise ValueError(f"chunk_samples must be > 0, got {chunk_samples}")
    dev = resolve_device(device)
    if dev.type != "cuda" and kernel_runner is None:
        raise ValueError(f"run_gpu_pipeline needs a CUDA device, got {device!r} (a CPU device "
                         "only with an emulating kernel_runner); the CPU path is "
                         "run_cpu_reference")

    def kernel_view(tensor: torch.Tensor) -> Any:  # CAI on CUDA, an address on the emulator
        return tensor if tensor.is_cuda else tensor.data_ptr()

    clip = PoseSyncClipConfig(_posesync_spec(bundle).clip_frames)
    lookahead = manifest.generator.lookahead_frames
    tc = chunk_frames or manifest.generator.chunk_frames
    k = features.num_pose_frames(samples.size)
    inputs = -(-(k + lookahead) // tc) * tc  # feature frames fed, whole steps
    total = samples_to_accept(samples.size, inputs, features)
    m = features.num_mfcc_frames(samples.size)
    imaging = ImagingConfig.from_dict(manifest.imaging)
    with ExitStack() as stack:
        kernels = kernel_runner
        if dev.type == "cuda":
            stack.enter_context(torch.cuda.device(dev))
            if kernels is None:
                from sdk.cuda.launch import CudaRunner

                cuda_runner = CudaRunner(device=dev.index or 0,
                                         stream=torch.cuda.current_stream(dev).cuda_stream)
                stack.callback(cuda_runner.close)
                kernels = cuda_runner
        assert kernels is not None  # checked above: CUDA makes one, CPU was given one
        matrices = MfccMatrices.load(bundle.path(manifest.mfcc_matrices), features)
        mfcc = CudaMfcc(features, matrices, max_streams=1, max_chunk_samples=chunk_samples,
                        history_frames=features.mfcc_frames_needed(inputs) + m, runner=kernels)
        stack.callback(mfcc.close)
        imager = CudaPoseImager(manifest.skeleton, imaging, runner=kernels)
        stack.callback(imager.close)
        stepper = TorchGeneratorStepper(TorchGeneratorRunner(generator_checkpoint,
                                                             bundle=bundle, device=dev))
        stack.callback(stepper.close)
        sync = TorchPoseSyncRunner(posesync_checkpoint, bundle=bundle, device=dev)
        sync.activate()
        stack.callback(sync.deactivate)

        timer = _StageTimer(dev)
        timer.mark()
        slot = stepper.allocate_slot()
        noise = torch.from_numpy(frame_noise(seed, 0, inputs, manifest.generator.noise_dim)
                                 ).to(dev)
        feature_buf = torch.empty(1, tc, features.feature_dim, device=dev)
        poses = torch.empty(inputs, manifest.skeleton.num_joints, 2, device=dev)
        saliency = torch.empty(inputs, device=dev)
        fed = 0
        for first in range(0, total, chunk_samples):
            size = min(chunk_samples, total - first)
            piece = samples[first:first + size]
            if piece.size < size:  # the trailing silence
                piece = np.concatenate([piece, np.zeros(size - piece.size, np.float32)])
            mfcc.accept([0], [piece])
            ready = min(int(mfcc.feature_frames_ready([0])[0]), inputs)
            while fed + tc <= ready:
                mfcc.write_features([0], [fed], tc, kernel_view(feature_buf))
                step_poses, step_saliency = stepper.step_tensors(
                    feature_buf, noise[None, fed:fed + tc], [slot])
                poses[fed:fed + tc] = step_poses[0]
                saliency[fed:fed + tc] = step_saliency[0]
                fed += tc
        if fed != inputs:
            raise RuntimeError(f"only {fed} of {inputs} feature frames became ready")
        mfcc_all = torch.empty(m, features.n_mfcc, device=dev)
        mfcc.write_mfcc([0], [0], m, kernel_view(mfcc_all.unsqueeze(0)))
        timer.mark()
        norm = manifest.normalization
        std = torch.from_numpy(np.asarray(norm.std, np.float32)).to(dev)
        mean = torch.from_numpy(np.asarray(norm.mean, np.float32)).to(dev)
        standardised = poses[lookahead:lookahead + k].contiguous()
        canonical = (standardised * std + mean).contiguous()
        images = torch.empty(k, imaging.height, imaging.width, device=dev)
        imager.images(canonical if canonical.is_cuda else canonical.numpy(),
                      kernel_view(images))
        timer.mark()
        n = clip.num_clips(k, m, features)
        starts = torch.arange(n, device=dev)
        first_mfcc = torch.from_numpy(np.asarray(features.mfcc_start(np.arange(n)),
                                                 np.int64)).to(dev)
        window = torch.arange(clip.clip_mfcc_frames(features), device=dev)
        audio_clips = mfcc_all[first_mfcc[:, None] + window].transpose(1, 2).contiguous()
        pose_clips = images[starts[:, None] + torch.arange(clip.clip_frames, device=dev)]
        audio_emb, pose_emb = [], []
        for lo in range(0, n, EMBED_BATCH):
            out = sync.infer_tensors({MFCC_CLIPS: audio_clips[lo:lo + EMBED_BATCH],
                                      POSE_IMAGES: pose_clips[lo:lo + EMBED_BATCH]})
            audio_emb.append(out[AUDIO_EMB])
            pose_emb.append(out[POSE_EMB])
        timer.mark()
        seconds = timer.seconds(("mfcc_and_generator", "pose_imaging", "posesync"))
        audio_e = torch.cat(audio_emb).double().cpu().numpy()  # E floats per clip cross
        pose_e = torch.cat(pose_emb).double().cpu().numpy()
        return PipelineResult(
            mfcc=mfcc_all.cpu().numpy(), poses=standardised.cpu().numpy(),
            saliency=saliency[lookahead:lookahead + k].cpu().numpy(),
            canonical=canonical.cpu().numpy(), images=images.cpu().numpy(),
            audio_emb=audio_e, pose_emb=pose_e,
            sweep=sweep_embeddings(audio_e, pose_e, max_offset), seconds=seconds)


def run_cpu_reference(bundle_path: str | Path, audio: Any, *, seed: int = 0,
                      max_offset: int = DEFAULT_MAX_OFFSET) -> PipelineResult:
    """numpy MFCC + ONNX Runtime (CPU) on the bundle's models, one generator step."""
    from sdk.runners.onnxrt import OnnxRuntimeRunner

    bundle = load_bundle(bundle_path)
    manifest, features = bundle.manifest, bundle.manifest.features
    samples = _check_audio(audio, features)
    posesync_spec = _posesync_spec(bundle)
    clip = PoseSyncClipConfig(posesync_spec.clip_frames)
    lookahead = manifest.generator.lookahead_frames
    k = features.num_pose_frames(samples.size)
    begin = time.perf_counter()
    matrices = MfccMatrices.load(bundle.path(manifest.mfcc_matrices), features)
    mfcc = mfcc_offline(samples, features, matrices)
    feature_frames = extract_features(samples, features, matrices, k + lookahead)
    generator = OnnxRuntimeRunner(bundle.path(manifest.generator.model.file))
    with generator:
        out = generator.infer({
            FEATURES: feature_frames[None],
            NOISE: frame_noise(seed, 0, k + lookahead, manifest.generator.noise_dim)[None],
            STATE: np.zeros((1, manifest.generator.state_size), np.float32)}
            | ({"style": np.full(1, manifest.generator.style_index(None), np.int32)}
               if manifest.generator.styles else {}))
    poses = out[POSES][0, lookahead:].copy()
    canonical = manifest.normalization.destandardize(poses)
    imaging = ImagingConfig.from_dict(manifest.imaging)
    images = sequence_images(canonical, imaging, manifest.skeleton)
    posesync = OnnxRuntimeRunner(bundle.path(posesync_spec.model.file))
    embedded: dict[str, list[np.ndarray]] = {AUDIO_EMB: [], POSE_EMB: []}

    def embed(mfcc_clips: np.ndarray, pose_clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = posesync.infer({MFCC_CLIPS: mfcc_clips, POSE_IMAGES: pose_clips})
        embedded[AUDIO_EMB].append(result[AUDIO_EMB])
        embedded[POSE_EMB].append(result[POSE_EMB])
        return result[AUDIO_EMB], result[POSE_EMB]

    with posesync:
        sweep = offset_sweep(embed, mfcc, canonical, max_offset, features=features,
                             imaging=imaging, skeleton=manifest.skeleton, clip=clip)
    return PipelineResult(
        mfcc=mfcc, poses=poses, saliency=out[SALIENCY][0, lookahead:].copy(),
        canonical=canonical, images=images,
        audio_emb=np.concatenate(embedded[AUDIO_EMB]).astype(np.float64),
        pose_emb=np.concatenate(embedded[POSE_EMB]).astype(np.float64), sweep=sweep,
        seconds={"wall": time.perf_counter() - begin})


def compare(gpu: PipelineResult, cpu: PipelineResult) -> dict[str, Any]:
    """Max abs differences per array (keys of :data:`TOLERANCES`), PSD relative
    difference, both best offsets, and the stage times."""
    diffs: dict[str, Any] = {}
    for name in TOLERANCES:
        a, b = getattr(gpu, name), getattr(cpu, name)
        if a.shape != b.shape:
            raise ValueError(f"{name}: GPU shape {a.shape} vs CPU shape {b.shape}")
        diffs[name] = float(np.abs(a.astype(np.float64) - b).max(initial=0.0))
    diffs["psd_gpu"], diffs["psd_cpu"] = gpu.sweep.psd, cpu.sweep.psd
    diffs["psd_relative"] = abs(gpu.sweep.psd - cpu.sweep.psd) / abs(cpu.sweep.psd)
    diffs["best_offset_gpu"], diffs["best_offset_cpu"] = (gpu.sweep.best_offset,
                                                          cpu.sweep.best_offset)
    diffs["seconds_gpu"], diffs["seconds_cpu"] = gpu.seconds, cpu.seconds
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_pipeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--generator-checkpoint", required=True)
    parser.add_argument("--posesync-checkpoint", required=True)
    parser.add_argument("--audio", help="audio file (default: the shipped speech sample)")
    parser.add_argument("--chunk-ms", type=float, default=20.0)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    from benchmarks.gpu_preprocessing import gpu_unavailable_reason
    from sdk.audio import load_audio

    reason = gpu_unavailable_reason()
    if reason is not None:
        print(f"gpu_pipeline needs a CUDA GPU: {reason}", file=sys.stderr)
        return 2
    rate = load_bundle(args.bundle).manifest.features.sample_rate
    default = Path(__file__).resolve().parents[1] / "sdk" / "data" / "samples" / "speech_en.flac"
    audio = load_audio(args.audio or default, rate)
    gpu = run_gpu_pipeline(args.bundle, args.generator_checkpoint, args.posesync_checkpoint,
                           audio, chunk_samples=max(1, round(args.chunk_ms * rate / 1000)),
                           device=args.device)
    cpu = run_cpu_reference(args.bundle, audio)
    print(json.dumps({"max_abs_diff": compare(gpu, cpu), "tolerances": TOLERANCES}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
