"""GPU preprocessing benchmark (issue 10): CUDA MFCC and pose imaging vs their roofline,
vs torchaudio's MFCC on the same GPU, vs librosa on the CPU.

``python -m benchmarks.gpu_preprocessing --out DIR [--quick] [--device N]`` writes
``gpu_preprocessing.json``, ``gpu_preprocessing.md`` and ``gpu_preprocessing.png`` into
DIR (default ``benchmarks/results/<machine-id>/``). Without a usable CUDA GPU it prints
why and exits 2.

Measured, for chunk sizes x stream counts (one chunk per stream per call):

* ``cuda_mfcc``: ``CudaMfcc.accept_device`` (audio already on the device: both kernels),
  GPU time from CUDA events on the runner's stream, and ``accept`` from host arrays
  (pinned upload included), host wall time until the stream is idle;
* ``feature_gather``: ``write_features`` of one feature frame per stream;
* ``torchaudio``: ``torchaudio.transforms.MFCC`` on the same frames on the GPU (same
  FeatureConfig; its log is AmplitudeToDB), or why it could not run;
* ``librosa``: librosa's MFCC of the same frames on the CPU (multichannel, one call);
* ``pose_imaging``: ``CudaPoseImager.images`` of B PoseSyncNet clips (B x 9 images).

FLOPs and bytes are counted analytically (:mod:`benchmarks.gpu_roofline`); the floor is
the detected GPU's roofline from ``cuDeviceGetAttribute``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import TimingSummary, machine_id, machine_info
from benchmarks.gpu_report import write_report
from benchmarks.gpu_roofline import (
    DeviceSpec,
    feature_gather_cost,
    mfcc_accept_cost,
    pose_imaging_cost,
    roofline_row,
)
from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.pose_image import ImagingConfig
from sdk.skeleton import MODEL_SKELETON

CHUNK_SAMPLES = (160, 320, 1600, 3200, 16000)  # 10 ms .. 1 s at 16 kHz
STREAM_COUNTS = (1, 16, 64, 256, 1024)
POSE_CLIPS = (1, 16, 256)
QUICK_CHUNK_SAMPLES, QUICK_STREAM_COUNTS, QUICK_POSE_CLIPS = (320, 3200), (1, 64), (1, 16)
QUICK_REPEATS, FULL_REPEATS = 10, 50


def gpu_unavailable_reason(device: int = 0) -> str | None:
    """None when CUDA device ``device`` can be used through cuda-python, else why not."""
    try:
        from cuda.bindings import driver
    except ImportError as exc:
        return f"cuda-python is not importable ({exc}); pip install cuda-python"
    try:
        (err,) = driver.cuInit(0)
    except Exception as exc:  # the driver library itself is missing
        return f"no CUDA driver ({exc})"
    if err != driver.CUresult.CUDA_SUCCESS:
        return f"cuInit failed ({err.name}): no usable CUDA GPU"
    err, count = driver.cuDeviceGetCount()
    if err != driver.CUresult.CUDA_SUCCESS or count <= device:
        return f"CUDA device {device} does not exist ({count} device(s))"
    return None


def read_device_spec(runner: Any) -> DeviceSpec:
    """The GPU of a :class:`sdk.cuda.launch.CudaRunner`, from cuDeviceGetAttribute."""
    d, dev = runner.driver, runner.device
    attr = d.CUdevice_attribute

    def get(name: str) -> int:
        return int(runner.check(d.cuDeviceGetAttribute(getattr(attr, name), dev), name))

    raw = runner.check(d.cuDeviceGetName(256, dev), "cuDeviceGetName")
    return DeviceSpec(
        name=bytes(raw).split(b"\0", 1)[0].decode(errors="replace").strip(),
        compute_capability=f"{get('CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR')}."
                           f"{get('CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR')}",
        sm_count=get("CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT"),
        clock_khz=get("CU_DEVICE_ATTRIBUTE_CLOCK_RATE"),
        memory_clock_khz=get("CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE"),
        bus_width_bits=get("CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH"),
        total_memory_bytes=int(runner.check(d.cuDeviceTotalMem(dev), "cuDeviceTotalMem")))


class DeviceBuffer:
    """A runner allocation seen as a C-contiguous array (``__cuda_array_interface__``)."""

    def __init__(self, runner: Any, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
        self.runner, self.shape, self.dtype = runner, tuple(shape), np.dtype(dtype)
        self.ptr = runner.alloc(max(int(np.prod(shape)) * self.dtype.itemsize, 4))

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "version": 3, "strides": None, "stream": None}

    def free(self) -> None:
        self.runner.free(self.ptr)


def time_on_stream(runner: Any, fn: Callable[[], None], repeats: int, warmup: int = 3
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(GPU seconds per call from CUDA events on the runner's stream, host wall seconds per
    call until the stream is idle), each float64 (repeats,)."""
    d = runner.driver
    start = runner.check(d.cuEventCreate(d.CUevent_flags.CU_EVENT_DEFAULT), "cuEventCreate")
    end = runner.check(d.cuEventCreate(d.CUevent_flags.CU_EVENT_DEFAULT), "cuEventCreate")
    try:
        for _ in range(warmup):
            fn()
        runner.synchronize()
        gpu, wall = [], []
        for _ in range(repeats):
            begin = time.perf_counter()
            runner.check(d.cuEventRecord(start, runner.stream), "cuEventRecord")
            fn()
            runner.check(d.cuEventRecord(end, runner.stream), "cuEventRecord")
            runner.check(d.cuEventSynchronize(end), "cuEventSynchronize")
            wall.append(time.perf_counter() - begin)
            ms = runner.check(d.cuEventElapsedTime(start, end), "cuEventElapsedTime")
            gpu.append(float(ms) / 1e3)
        return np.asarray(gpu), np.asarray(wall)
    finally:
        d.cuEventDestroy(start)
        d.cuEventDestroy(end)


def _speech(total: int, rng: np.random.Generator) -> np.ndarray:
    """Random-phase noise shaped like speech levels (the kernels' cost is data-independent)."""
    return (rng.standard_normal(total) * 0.1).astype(np.float32)


def torch_stft_mfcc(config: FeatureConfig) -> Any:
    """The same MFCC with torch.stft and the bundle's matrices on the GPU (the baseline
    when torchaudio is absent, as on the lent image): callable (S, N) -> (S, frames, n_mfcc).
    """
    import torch

    from sdk.mfcc import MfccMatrices

    matrices = MfccMatrices.default() if config == MfccMatrices.default().config else None
    if matrices is None:
        raise ValueError("torch.stft baseline: only the default FeatureConfig's matrices ship")
    window = torch.from_numpy(np.asarray(matrices.window)).to("cuda")
    mel_t = torch.from_numpy(np.ascontiguousarray(matrices.mel.T)).to("cuda")
    dct_t = torch.from_numpy(np.ascontiguousarray(matrices.dct.T)).to("cuda")

    def run(audio: Any) -> Any:
        with torch.inference_mode():
            spectrum = torch.stft(audio, config.n_fft, config.hop_length, window=window,
                                  center=False, return_complex=True)
            power = spectrum.real.square() + spectrum.imag.square()  # (S, n_freqs, frames)
            mel = power.transpose(1, 2) @ mel_t
            return (10.0 * torch.log10(torch.clamp(mel, min=config.amin))) @ dct_t
    return run


def torchaudio_mfcc(config: FeatureConfig) -> tuple[Any, str | None]:
    """(callable (torch CUDA (S, N) float32) -> MFCC, None) or (None, why it is unavailable).
    Without torchaudio the callable is :func:`torch_stft_mfcc` (its ``implementation``
    attribute says which)."""
    try:
        import torch
    except ImportError as exc:
        return None, f"torchaudio and torch are not importable ({exc})"
    if not torch.cuda.is_available():
        return None, (f"torchaudio/torch.stft: torch {torch.__version__} sees no CUDA GPU "
                      "(a CPU-only build?)")
    try:
        import torchaudio
    except ImportError as exc:
        try:
            stft = torch_stft_mfcc(config)
        except ValueError as why:
            return None, f"torchaudio is not importable ({exc}); {why}"
        stft.implementation = "torch.stft + mel/DCT matmuls (torchaudio absent)"
        return stft, None
    transform = torchaudio.transforms.MFCC(
        sample_rate=config.sample_rate, n_mfcc=config.n_mfcc, dct_type=2, norm="ortho",
        log_mels=False, melkwargs={
            "n_fft": config.n_fft, "hop_length": config.hop_length,
            "win_length": config.win_length, "n_mels": config.n_mels, "f_min": config.fmin,
            "f_max": config.fmax, "center": False, "norm": "slaney", "mel_scale": "slaney",
            "power": 2.0}).to("cuda")

    def run(audio: Any) -> Any:
        with torch.inference_mode():
            return transform(audio)
    return run, None


def librosa_mfcc(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """librosa MFCC of (S, N) audio, uncentred: (S, n_mfcc, frames)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=audio, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window="hann", center=False, power=2.0,
        n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax, htk=False, norm="slaney")
    db = librosa.power_to_db(mel, ref=1.0, amin=config.amin, top_db=None)
    return np.asarray(librosa.feature.mfcc(S=db, n_mfcc=config.n_mfcc, dct_type=2,
                                           norm="ortho"))


def _time_torch(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> np.ndarray:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) / 1e3)
    return np.asarray(out)


def bench_mfcc(runner: Any, spec: DeviceSpec, config: FeatureConfig, chunk: int, streams: int,
               repeats: int, rng: np.random.Generator) -> dict[str, Any]:
    """One (chunk, streams) cell: CUDA MFCC, feature gather, torchaudio, librosa."""
    from sdk.cuda.mfcc import CudaMfcc
    from sdk.mfcc import MfccMatrices

    mfcc = CudaMfcc(config, MfccMatrices.default(), max_streams=streams,
                    max_chunk_samples=chunk, history_frames=64, runner=runner)
    ids = np.arange(streams)
    host = _speech(streams * chunk, rng)
    device_audio = DeviceBuffer(runner, (streams * chunk,))
    features = DeviceBuffer(runner, (streams, 1, config.feature_dim))
    runner.upload(device_audio.ptr, host)
    lengths = [chunk] * streams
    chunks = list(host.reshape(streams, chunk))
    try:
        gpu_s, _ = time_on_stream(
            runner, lambda: mfcc.accept_device(ids, device_audio.ptr, lengths), repeats)
        _, host_wall = time_on_stream(runner, lambda: mfcc.accept(ids, chunks), repeats)

        def gather() -> None:
            newest = mfcc.feature_frames_ready(ids) - 1
            mfcc.write_features(ids, newest.tolist(), 1, features)
        gather_s, _ = time_on_stream(runner, gather, repeats)
    finally:
        mfcc.close()
        device_audio.free()
        features.free()
    cell: dict[str, Any] = {
        "chunk_samples": chunk, "chunk_ms": chunk * 1000 / config.sample_rate,
        "streams": streams,
        "cuda_mfcc": {**roofline_row(mfcc_accept_cost(config, streams, chunk), spec,
                                     float(np.median(gpu_s))),
                      "gpu": TimingSummary.of(gpu_s).to_dict(),
                      "host_accept_wall": TimingSummary.of(host_wall).to_dict()},
        "feature_gather": {**roofline_row(feature_gather_cost(config, streams, 1), spec,
                                          float(np.median(gather_s))),
                           "gpu": TimingSummary.of(gather_s).to_dict()},
    }
    # The same frames for the baselines: chunk/hop frames from chunk + n_fft - hop samples.
    span = host[: streams * chunk].reshape(streams, chunk)
    padded = np.concatenate([np.zeros((streams, config.n_fft - config.hop_length), np.float32),
                             span], axis=1)
    run, reason = torchaudio_mfcc(config)
    if run is None:
        cell["torchaudio"] = {"available": False, "reason": reason}
    else:
        import torch

        audio_t = torch.from_numpy(padded).to("cuda")
        times = _time_torch(lambda: run(audio_t), repeats)
        cell["torchaudio"] = {"available": True, "gpu": TimingSummary.of(times).to_dict(),
                              "implementation": getattr(run, "implementation",
                                                        "torchaudio.transforms.MFCC"),
                              "cuda_speedup": float(np.median(times) / np.median(gpu_s))}
    try:
        import librosa  # noqa: F401  (the lent GPU image has none)
    except ImportError as exc:
        cell["librosa_cpu"] = {"available": False, "reason": f"librosa is not importable ({exc})"}
        return cell
    librosa_s = [_wall(lambda: librosa_mfcc(padded, config))
                 for _ in range(max(3, repeats // 10))]
    cell["librosa_cpu"] = {"available": True, "wall": TimingSummary.of(librosa_s).to_dict(),
                           "cuda_speedup": float(np.median(librosa_s) / np.median(gpu_s))}
    return cell


def _wall(fn: Callable[[], Any]) -> float:
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def bench_pose_imaging(runner: Any, spec: DeviceSpec, clips: int, repeats: int,
                       rng: np.random.Generator, imaging: ImagingConfig) -> dict[str, Any]:
    """``clips`` PoseSyncNet clips (9 images each) of random canonical poses."""
    from sdk.cuda.pose import CudaPoseImager

    frames, j = clips * 9, MODEL_SKELETON.num_joints
    imager = CudaPoseImager(MODEL_SKELETON, imaging, runner=runner)
    poses = DeviceBuffer(runner, (frames, j, 2))
    out = DeviceBuffer(runner, (frames, imaging.height, imaging.width))
    runner.upload(poses.ptr, rng.uniform(-1.5, 1.5, (frames, j, 2)).astype(np.float32))
    try:
        gpu_s, _ = time_on_stream(runner, lambda: imager.images(poses, out), repeats)
    finally:
        imager.close()
        poses.free()
        out.free()
    cost = pose_imaging_cost(frames, imaging.height, imaging.width, j,
                             len(MODEL_SKELETON.bone_array()))
    return {"clips": clips, "frames": frames, **roofline_row(cost, spec, float(np.median(gpu_s))),
            "gpu": TimingSummary.of(gpu_s).to_dict()}


def run_benchmark(device: int = 0, *, mode: str = "full", chunks: Sequence[int] = CHUNK_SAMPLES,
                  streams: Sequence[int] = STREAM_COUNTS, clips: Sequence[int] = POSE_CLIPS,
                  repeats: int = FULL_REPEATS, config: FeatureConfig = DEFAULT_FEATURES
                  ) -> dict[str, Any]:
    """Every measurement on CUDA device ``device``; the result dict the report is made of.

    Args:
        chunks: samples per stream per call; streams: stream counts; clips: PoseSyncNet
            clips per imaging call; repeats: timed calls per cell (after 3 warm-up calls);
        mode: a label for the report ("full", "quick").
    """
    from sdk.cuda.launch import CudaRunner

    runner = CudaRunner(device=device)
    rng = np.random.default_rng(0)
    imaging = ImagingConfig()
    try:
        spec = read_device_spec(runner)
        mfcc = [bench_mfcc(runner, spec, config, c, s, repeats, rng)
                for c in chunks for s in streams]
        pose = [bench_pose_imaging(runner, spec, b, repeats, rng, imaging) for b in clips]
    finally:
        runner.close()
    return {"machine": machine_info(), "device": spec.to_dict(), "features": config.to_dict(),
            "imaging": imaging.to_dict(), "mode": mode,
            "repeats": repeats, "mfcc": mfcc, "pose_imaging": pose}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_preprocessing",
                                     description="CUDA MFCC and pose imaging vs roofline, "
                                     "torchaudio (GPU) and librosa (CPU)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default benchmarks/results/<machine-id>/)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device ordinal")
    parser.add_argument("--quick", action="store_true", help="few cells, 10 calls each")
    args = parser.parse_args(argv)
    reason = gpu_unavailable_reason(args.device)
    if reason is not None:
        print(f"gpu_preprocessing needs a CUDA GPU and none is usable here: {reason}. "
              "Run it on a GPU machine; nothing was written.", file=sys.stderr)
        return 2
    if args.quick:
        result = run_benchmark(args.device, mode="quick", chunks=QUICK_CHUNK_SAMPLES,
                               streams=QUICK_STREAM_COUNTS, clips=QUICK_POSE_CLIPS,
                               repeats=QUICK_REPEATS)
    else:
        result = run_benchmark(args.device)
    out = args.out or Path(__file__).resolve().parent / "results" / machine_id(result["machine"])
    try:
        paths = write_report(result, out)
    except ImportError as exc:  # matplotlib for the plot; json and md are written first
        print(f"gpu_preprocessing: no plot ({exc}); JSON and Markdown are in {out}",
              file=sys.stderr)
        paths = sorted(out.glob("gpu_preprocessing.*"))
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
