"""Compute the MFCC front end's constant matrices with librosa (the reference we match).

The runtime (``sdk/mfcc.py``) is numpy only; its window, mel filterbank and DCT come from
here, computed by exactly these calls (``c`` is the FeatureConfig)::

    window = librosa.util.pad_center(
        librosa.filters.get_window("hann", c.win_length, fftbins=True), size=c.n_fft)
    mel = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels,
                              fmin=c.fmin, fmax=c.fmax, htk=False, norm="slaney",
                              dtype=np.float32)
    dct = scipy.fft.dct(np.eye(c.n_mels), type=2, norm="ortho", axis=0)[:c.n_mfcc]

These are the window ``librosa.stft`` builds, the filterbank ``melspectrogram`` builds,
and the transform ``librosa.feature.mfcc`` applies (``get_fftlib().dct(S, axis=-2,
type=2, norm="ortho")``, which is scipy.fft.dct: column i of dct(eye) is the DCT of the
unit vector e_i, so ``dct @ S == scipy.fft.dct(S, axis=0)[:n_mfcc]``). The library
versions are recorded in the file's ``provenance`` string.

Regenerate the shipped file::

    python -m export.feature_matrices --out sdk/data/mfcc_default.npz
"""

from __future__ import annotations

import argparse
from importlib.metadata import version
from pathlib import Path

import numpy as np
import scipy.fft

from sdk.features import DEFAULT_FEATURES, FeatureConfig
from sdk.mfcc import DEFAULT_MATRICES_PATH, MfccMatrices


def _provenance(config: FeatureConfig) -> str:
    c = config
    return (
        f"librosa {version('librosa')}, scipy {version('scipy')}, numpy {version('numpy')}; "
        f"window = librosa.util.pad_center(librosa.filters.get_window('hann', {c.win_length}, "
        f"fftbins=True), size={c.n_fft}); "
        f"mel = librosa.filters.mel(sr={c.sample_rate}, n_fft={c.n_fft}, n_mels={c.n_mels}, "
        f"fmin={c.fmin}, fmax={c.fmax}, htk=False, norm='slaney', dtype=np.float32); "
        f"dct = scipy.fft.dct(np.eye({c.n_mels}), type=2, norm='ortho', axis=0)[:{c.n_mfcc}]; "
        f"FeatureConfig {c.to_dict()} (hash {c.config_hash()})"
    )


def compute_mfcc_matrices(config: FeatureConfig = DEFAULT_FEATURES) -> MfccMatrices:
    """Window (n_fft,), mel (n_mels, n_freqs) and DCT (n_mfcc, n_mels) for ``config``, float32.

    Without librosa (the lent GPU image has none) the default config's matrices are the
    shipped ones, which this function wrote with librosa (their provenance says so); any
    other config needs librosa.
    """
    try:
        import librosa
    except ImportError as exc:
        if config == DEFAULT_FEATURES:
            return MfccMatrices.default()
        raise ImportError(f"MFCC matrices for a non-default FeatureConfig need librosa "
                          f"(pip install librosa): {exc}") from exc
    window = librosa.util.pad_center(
        librosa.filters.get_window("hann", config.win_length, fftbins=True), size=config.n_fft
    )
    mel = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin,
        fmax=config.fmax, htk=False, norm="slaney", dtype=np.float32,
    )
    dct = scipy.fft.dct(np.eye(config.n_mels), type=2, norm="ortho", axis=0)[: config.n_mfcc]
    return MfccMatrices(config, window, mel, dct, provenance=_provenance(config))


def librosa_mfcc(audio: np.ndarray, config: FeatureConfig = DEFAULT_FEATURES) -> np.ndarray:
    """``librosa.feature.mfcc`` of float32 mono ``audio`` with ``config``'s parameters, the call
    sdk/features.py writes out (the spec ``sdk.mfcc`` matches); float32 (M, n_mfcc) time-major."""
    import librosa  # only where the reference is computed (not on the lent GPU image)

    mel_power = librosa.feature.melspectrogram(
        y=audio, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window="hann", center=True, pad_mode="constant",
        power=2.0, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax, htk=False,
        norm="slaney",
    )
    db = librosa.power_to_db(mel_power, ref=1.0, amin=config.amin, top_db=None)
    mfcc = librosa.feature.mfcc(S=db, n_mfcc=config.n_mfcc, dct_type=2, norm="ortho")
    return np.ascontiguousarray(mfcc.T, dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.feature_matrices",
        description="Write the MFCC window/mel/DCT matrices for the default FeatureConfig.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_MATRICES_PATH,
                        help=f"output .npz (default: {DEFAULT_MATRICES_PATH})")
    args = parser.parse_args(argv)
    compute_mfcc_matrices(DEFAULT_FEATURES).save(args.out)
    print(f"wrote {args.out} for FeatureConfig hash {DEFAULT_FEATURES.config_hash()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
