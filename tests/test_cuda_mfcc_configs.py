"""The MFCC kernel (real FFT for power-of-two n_fft, direct DFT otherwise, dynamic shared
memory) against the numpy reference for FeatureConfigs other than the default, on the CPU
emulator. Matrices are synthetic (any window / mel / DCT: the kernel multiplies what it is
given, and so does the reference), so no librosa is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cuda_emu.emulator import EmulatedRunner, LaunchError, build_emulator
from test_cuda_compile import OTHER_CONFIGS

from sdk.cuda import nvrtc
from sdk.cuda.mfcc import DEFAULT_SHARED_BYTES, CudaMfcc, mfcc_frames_shared_bytes, uses_fft
from sdk.features import FeatureConfig
from sdk.mfcc import MfccMatrices, mfcc_offline


def synthetic_matrices(config: FeatureConfig, rng: np.random.Generator) -> MfccMatrices:
    n = config.win_length
    window = np.zeros(config.n_fft, np.float32)
    left = (config.n_fft - n) // 2
    window[left:left + n] = np.hanning(n + 1)[:n]
    mel = rng.uniform(0, 1, (config.n_mels, config.n_freqs)) / config.n_freqs
    m = np.arange(config.n_mels)
    dct = np.cos(np.pi / config.n_mels * (m[None, :] + 0.5) * np.arange(config.n_mfcc)[:, None])
    return MfccMatrices(config, window, mel, dct * np.sqrt(2 / config.n_mels))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OTHER_CONFIGS))
def test_mfcc_of_other_configs_matches_the_reference(
        name: str, tmp_path: Path, rng: np.random.Generator, speech_16k: np.ndarray) -> None:
    config = OTHER_CONFIGS[name]
    matrices = synthetic_matrices(config, rng)
    runner = EmulatedRunner(build_emulator(nvrtc.feature_defines(config), tmp_path))
    gpu = CudaMfcc(config, matrices, max_streams=2, max_chunk_samples=6000,
                   history_frames=400, runner=runner)
    audio = np.resize(speech_16k[:24000], config.sample_rate)  # 1 s at the config's rate
    for start in range(0, audio.size, 7000):  # chunks over max_chunk_samples: split
        gpu.accept([1], [audio[start:start + 7000]])
    frames = int(gpu.mfcc_frames_ready([1])[0])
    got = np.full((1, frames, config.n_mfcc), np.nan, np.float32)
    gpu.write_mfcc([1], [0], frames, got.ctypes.data)
    want = mfcc_offline(audio, config, matrices, frames)
    scale = float(np.abs(want).max())
    assert np.abs(got[0] - want).max() <= 2e-6 * scale + 1e-4, name
    assert uses_fft(config) == (config.n_fft != 400)
    over = mfcc_frames_shared_bytes(config) > DEFAULT_SHARED_BYTES
    assert over == (config.n_fft == 8192)  # the 8192 config opted in to more
    gpu.close()


def test_a_big_fft_without_the_shared_memory_opt_in_fails_on_the_emulator(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """What CudaMfcc's cuFuncSetAttribute call prevents: 82 KB of shared memory per block
    without the opt-in is refused at launch."""
    from sdk.cuda import mfcc

    config = OTHER_CONFIGS["48k-8192"]
    runner = EmulatedRunner(build_emulator(nvrtc.feature_defines(config), tmp_path))
    monkeypatch.setattr(mfcc, "DEFAULT_SHARED_BYTES", 1 << 30)  # skip the opt-in
    gpu = CudaMfcc(config, synthetic_matrices(config, rng), max_streams=1,
                   max_chunk_samples=9000, runner=runner)
    with pytest.raises(LaunchError, match="shared memory exceed"):
        gpu.accept([0], [np.zeros(9000, np.float32)])
