"""Front-end and PSD-path benchmarks: MFCC vs librosa (vs torchaudio), pose imaging, PoseSyncNet.

MFCC, measured in the same run on the same speech audio (the shipped sample, looped):

* **per 200 ms chunk** (3200 samples): ``sdk.mfcc.StreamingMfcc.accept`` of the next
  chunk of a running stream (20 new MFCC frames) vs librosa computing the *same* 20
  frames from the chunk plus the ``n_fft - hop`` samples of context it needs
  (``center=False``; the call of sdk/features.py otherwise), i.e. what a streaming
  front end built on librosa has to do per chunk. The sdk's output equals librosa's to
  ~1e-6 relative (tests/test_mfcc.py), so this is the same work.
* **per minute of audio**: ``sdk.mfcc.mfcc_offline`` on 60 s vs librosa's whole-clip call
  (``center=True``), and the sdk stream over the same minute in 200 ms chunks.
* torchaudio: measured with ``torchaudio.transforms.MFCC`` when importable; otherwise
  recorded as unavailable with the reason.

Pose imaging: ``sdk.pose_image.pose_images`` on batches of 9-frame clips of a synthetic
speaker's poses (train.data.synth), clips/s. PoseSyncNet: the bundle's ``posesync.onnx``
through ONNX Runtime on batches of clips (MFCC clip + pose images), clips/s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import TimingSummary, best_of, time_calls
from benchmarks.runtime import speech_audio
from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.mfcc import MfccMatrices, StreamingMfcc, mfcc_offline
from sdk.pose_image import ImagingConfig, pose_images
from sdk.psd import DEFAULT_CLIP, audio_clips
from sdk.skeleton import MODEL_SKELETON

CHUNK_MS = 200.0
SWEEP_CHUNK_MS = (20.0, 200.0, 1000.0)
TORCHAUDIO_UNAVAILABLE = ("torchaudio is not installed: no torchaudio build matches torch "
                          "2.13 in this environment")


def _librosa_mfcc(audio: np.ndarray, config: FeatureConfig, center: bool) -> np.ndarray:
    """librosa's MFCC with the FeatureConfig's settings (sdk/features.py): (n_mfcc, M)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=audio, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window="hann", center=center, pad_mode="constant",
        power=2.0, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax, htk=False,
        norm="slaney")
    db = librosa.power_to_db(mel, ref=1.0, amin=config.amin, top_db=None)
    return librosa.feature.mfcc(S=db, n_mfcc=config.n_mfcc, dct_type=2, norm="ortho")


def _torchaudio_mfcc(config: FeatureConfig) -> Any:
    """A callable (float32 numpy (N,), center) -> MFCC, or a str saying why there is none."""
    try:
        import torch
        import torchaudio
    except ImportError:
        return TORCHAUDIO_UNAVAILABLE
    transforms = {}
    for center in (False, True):
        transforms[center] = torchaudio.transforms.MFCC(
            sample_rate=config.sample_rate, n_mfcc=config.n_mfcc, dct_type=2, norm="ortho",
            log_mels=False, melkwargs={
                "n_fft": config.n_fft, "hop_length": config.hop_length,
                "win_length": config.win_length, "n_mels": config.n_mels, "f_min": config.fmin,
                "f_max": config.fmax, "center": center, "pad_mode": "constant",
                "norm": "slaney", "mel_scale": "slaney", "power": 2.0})

    def run(audio: np.ndarray, center: bool) -> Any:
        with torch.no_grad():
            return transforms[center](torch.from_numpy(audio))
    return run


def mfcc_benchmark(seconds_per_minute: float = 60.0, chunks: int = 200,
                   config: FeatureConfig = DEFAULT_FEATURES) -> dict[str, Any]:
    """MFCC timings and ratios (see the module docstring).

    Args:
        seconds_per_minute: audio length of the "per minute" case (60 s; less in quick
            runs, the result is then scaled to a minute).
        chunks: 200 ms chunks timed per implementation.
    """
    matrices = MfccMatrices.default()
    rate = config.sample_rate
    chunk = round(CHUNK_MS * rate / 1000)
    context = config.n_fft - config.hop_length
    audio = speech_audio(max(seconds_per_minute, (chunks + 2) * CHUNK_MS / 1000))
    stream = StreamingMfcc(config, matrices)
    stream.accept(audio[:chunk])
    position = [chunk]

    def sdk_chunk() -> None:
        first = position[0] % (len(audio) - chunk)
        stream.accept(audio[first:first + chunk])
        position[0] += chunk

    def librosa_chunk() -> None:
        first = chunk + position[0] % (len(audio) - 2 * chunk)
        _librosa_mfcc(audio[first - context:first + chunk], config, center=False)
        position[0] += chunk

    per_chunk = {"sdk_numpy": TimingSummary.of(time_calls(sdk_chunk, chunks, warmup=5))}
    position[0] = chunk
    per_chunk["librosa"] = TimingSummary.of(time_calls(librosa_chunk, chunks, warmup=5))

    minute = audio[:round(seconds_per_minute * rate)]
    scale = 60.0 / seconds_per_minute

    def sdk_stream_minute() -> None:
        s = StreamingMfcc(config, matrices)
        for first in range(0, len(minute), chunk):
            s.accept(minute[first:first + chunk])
        s.finish()

    per_minute = {
        "sdk_numpy_offline": best_of(lambda: mfcc_offline(minute, config, matrices), 3) * scale,
        "sdk_numpy_stream_200ms": best_of(sdk_stream_minute, 3) * scale,
        "librosa": best_of(lambda: _librosa_mfcc(minute, config, center=True), 3) * scale,
    }
    torchaudio = _torchaudio_mfcc(config)
    result: dict[str, Any] = {"chunk_ms": CHUNK_MS, "chunk_samples": chunk,
                              "minute_measured_seconds": seconds_per_minute}
    if isinstance(torchaudio, str):
        result["torchaudio"] = f"unavailable: {torchaudio}"
    else:
        piece = audio[:chunk + context]
        per_chunk["torchaudio"] = TimingSummary.of(
            time_calls(lambda: torchaudio(piece, False), chunks, warmup=5))
        per_minute["torchaudio"] = best_of(lambda: torchaudio(minute, True), 3) * scale
    result["chunk_size_sweep"] = _chunk_size_sweep(audio, config, matrices, max(10, chunks // 10))
    result["per_chunk_ms"] = {k: v.to_dict() for k, v in per_chunk.items()}
    result["per_minute_s"] = per_minute
    sdk_p50 = per_chunk["sdk_numpy"].p50_ms
    result["speedup_per_chunk"] = {k: v.p50_ms / sdk_p50 for k, v in per_chunk.items()
                                   if k != "sdk_numpy"}
    result["speedup_per_minute"] = {k: v / per_minute["sdk_numpy_offline"]
                                    for k, v in per_minute.items() if k != "sdk_numpy_offline"}
    return result


def _chunk_size_sweep(audio: np.ndarray, config: FeatureConfig, matrices: MfccMatrices,
                      repeats: int) -> list[dict[str, float]]:
    """p50 ms per chunk of the sdk stream and of librosa for 20 ms, 200 ms and 1 s chunks:
    how each cost splits into a fixed per-call part and a per-frame part."""
    rows = []
    context = config.n_fft - config.hop_length
    for chunk_ms in SWEEP_CHUNK_MS:
        n = round(chunk_ms * config.sample_rate / 1000)
        stream = StreamingMfcc(config, matrices)
        position = [0]

        def sdk_chunk(n: int = n, stream: StreamingMfcc = stream,
                      position: list[int] = position) -> None:
            first = position[0] % (len(audio) - n)
            stream.accept(audio[first:first + n])
            position[0] += n

        def librosa_chunk(piece: np.ndarray = audio[:n + context]) -> None:
            _librosa_mfcc(piece, config, center=False)

        sdk = TimingSummary.of(time_calls(sdk_chunk, repeats, warmup=3)).p50_ms
        ref = TimingSummary.of(time_calls(librosa_chunk, repeats, warmup=2)).p50_ms
        rows.append({"chunk_ms": chunk_ms, "sdk_numpy_p50_ms": sdk, "librosa_p50_ms": ref,
                     "speedup": ref / sdk})
    return rows


def synthetic_canonical_poses(frames: int, seed: int = 0) -> np.ndarray:
    """Canonical poses of a synthetic speaker (train.data.synth): float32 (frames, 122, 2)."""
    from train.data.synth import synthesize_interval
    from train.data.synth_script import make_speaker_profile

    profile = make_speaker_profile(seed, 0)
    # at least 10 s: very short intervals may hold no gesture (and then fail to render)
    length = max(frames, 10 * DEFAULT_FEATURES.fps)
    motion = synthesize_interval(profile, length, seed, 0, 0).motion
    pixels = MODEL_SKELETON.from_openpose(motion.pose[:frames, :2].transpose(0, 2, 1))
    return ((pixels - pixels[:, :1]) / np.float32(profile.scale_px)).astype(np.float32)


def pose_clips(count: int, clip_frames: int = DEFAULT_CLIP.clip_frames) -> np.ndarray:
    """``count`` clips of consecutive synthetic frames: float32 (count, clip_frames, 122, 2)."""
    poses = synthetic_canonical_poses(count + clip_frames)
    index = np.arange(count)[:, None] + np.arange(clip_frames)
    return poses[index]


def imaging_benchmark(batch: int = 64, repeats: int = 5,
                      imaging: ImagingConfig | None = None) -> dict[str, Any]:
    """sdk.pose_image.pose_images throughput on (batch, 9, 122, 2) clips."""
    imaging = imaging or ImagingConfig()
    clips = pose_clips(batch)
    seconds = time_calls(lambda: pose_images(clips, MODEL_SKELETON, imaging), repeats, warmup=1)
    summary = TimingSummary.of(seconds)
    return {"batch_clips": batch, "image": [imaging.height, imaging.width],
            "call_ms": summary.to_dict(), "clips_per_second": batch / (summary.p50_ms / 1e3)}


def posesync_benchmark(bundle: str | Path, batch: int = 64, repeats: int = 10,
                       threads: int = 0) -> dict[str, Any]:
    """The bundle's posesync.onnx through ONNX Runtime CPU on ``batch`` clips: clips/s."""
    from sdk.bundle import load_bundle
    from sdk.runners.onnxrt import OnnxRuntimeRunner

    loaded = load_bundle(bundle, verify=False)
    spec = loaded.manifest.posesync
    if spec is None:
        return {"status": "skipped: the bundle has no posesync model"}
    imaging = ImagingConfig.from_dict(loaded.manifest.imaging)
    images = pose_images(pose_clips(batch, spec.clip_frames), MODEL_SKELETON, imaging)
    seconds = (batch + spec.clip_frames) / DEFAULT_FEATURES.fps + 1.0
    mfcc = audio_clips(mfcc_offline(speech_audio(seconds), DEFAULT_FEATURES,
                                    MfccMatrices.default()), range(batch))
    with OnnxRuntimeRunner(loaded.path(spec.model.file), intra_op_num_threads=threads) as runner:
        feed = {"mfcc": mfcc, "pose_images": images}
        summary = TimingSummary.of(time_calls(lambda: runner.infer(feed), repeats, warmup=2))
    return {"backend": "onnxruntime-cpu", "batch_clips": batch, "call_ms": summary.to_dict(),
            "clips_per_second": batch / (summary.p50_ms / 1e3)}
