"""What the integer-ratio decimator (sdk.decimator) changes against soxr HQ, which it replaced.

    python -m benchmarks.resampler_quality [--out DIR]

The SDK resamples 48, 32 and 96 kHz input to the model's 16 kHz with
:class:`sdk.decimator.Decimator` (a FIR low-pass as matrix products) instead of soxr HQ,
for speed and latency (benchmarks/step_gemm.py's resampler table). This measures what that
does to what the model hears and says:

* **filter**: for factors 2, 3, 6, the response on the output's axis: largest |gain| up
  to 7 kHz, gain at 7.5 and 8 kHz, largest gain from 8.8 kHz (what folds onto 0-7.2 kHz);
* **speech**: the shipped 16 kHz sample brought to 48 kHz by soxr VHQ (band-limited), and
  the same with noise at 8.5-20 kHz following its loudness (what a 48 kHz microphone adds
  above the model's band). MFCCs (sdk.mfcc, the bundle's spec) and the shipped
  generator's keypoints (canonical units, seed 0) through the decimator vs through soxr HQ;
  as scales: soxr vs the native 16 kHz audio, and ``x[::3]`` (no filter: the fault);
* **chunking**: the largest difference between one call and random / 1-sample chunks.

Writes ``DIR/resampler_quality.json`` and ``.md`` (default benchmarks/results/step_gemm).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine_info, write_json_and_markdown

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "step_gemm"
BUNDLE = ROOT / "sdk" / "data" / "default_bundle"
SPEECH = ROOT / "sdk" / "data" / "samples" / "speech_en.flac"
MODEL_RATE = 16000


def speech_at_48k(with_hf: bool) -> tuple[np.ndarray, np.ndarray]:
    """The shipped 16 kHz speech sample, float32 (n,), and it at 48 kHz (3 n,) through soxr
    VHQ; ``with_hf``: plus noise at 8.5-20 kHz scaled by the speech's loudness envelope
    (30 Hz low-passed |analytic signal|), 0.5 x, seed 0."""
    import soxr
    from scipy import signal

    from sdk.audio import load_audio

    speech = load_audio(SPEECH, target_rate=MODEL_RATE)
    x48 = soxr.resample(speech, MODEL_RATE, 48000, quality="VHQ").astype(np.float64)
    if with_hf:
        rng = np.random.default_rng(0)
        band = signal.butter(8, [8500, 20000], "bandpass", fs=48000, output="sos")
        smooth = signal.butter(2, 30, fs=48000, output="sos")
        loudness = signal.sosfilt(smooth, np.abs(signal.hilbert(x48)))
        x48 = x48 + 0.5 * signal.sosfilt(band, rng.standard_normal(x48.size)) * loudness
    return speech, x48.astype(np.float32)


def filter_rows() -> list[dict[str, Any]]:
    from scipy import signal

    from sdk.decimator import decimation_filter

    rows = []
    for factor in (2, 3, 6):
        taps = decimation_filter(factor)
        freqs, response = signal.freqz(taps, worN=1 << 15, fs=factor * MODEL_RATE)
        gain = 20 * np.log10(np.abs(response) + 1e-300)
        rows.append({"factor": factor, "input_hz": factor * MODEL_RATE, "taps": int(taps.size),
                     "passband_max_abs_db": float(np.abs(gain[freqs <= 7000]).max()),
                     "gain_7500_db": float(gain[np.argmin(np.abs(freqs - 7500))]),
                     "gain_8000_db": float(gain[np.argmin(np.abs(freqs - 8000))]),
                     "stopband_max_db": float(gain[freqs >= 8800].max())})
    return rows


def _decimate(x48: np.ndarray, cuts: Sequence[int] = ()) -> np.ndarray:
    from sdk.decimator import Decimator

    decimator = Decimator(3, 1)
    parts = [decimator.process(c[None]) for c in np.split(x48, list(cuts))]
    return np.concatenate([*parts, decimator.flush()], axis=1)[0]


def speech_rows() -> dict[str, Any]:
    """``{"speech": one row per audio (band-limited, with noise), "int8_tolerances": the
    bundle's}``: each row the differences from soxr HQ of the decimator, the native audio
    and ``x[::3]``."""
    import soxr

    from sdk.audio import resample
    from sdk.features import DEFAULT_FEATURES
    from sdk.mfcc import MfccMatrices, mfcc_offline
    from sdk.runners.select import BackendConfig
    from sdk.streaming import GeneratorConfig, StreamingGenerator

    matrices = MfccMatrices.default()
    rows = []
    config = GeneratorConfig(BUNDLE, BackendConfig("onnxruntime-cpu"))
    with StreamingGenerator(config) as gen:
        norm = gen.manifest.normalization
        for with_hf in (False, True):
            speech, x48 = speech_at_48k(with_hf)
            audio = {"decimator": resample(x48, 48000, MODEL_RATE),  # the SDK's 48 kHz path
                     "soxr": soxr.resample(x48, 48000, MODEL_RATE, quality="HQ"),
                     "native": speech, "no filter": np.ascontiguousarray(x48[::3])}
            mfcc = {k: mfcc_offline(v, DEFAULT_FEATURES, matrices) for k, v in audio.items()}
            kp = {k: norm.pixels_to_canonical(gen.generate(v, MODEL_RATE, seed=0).keypoints)
                  .astype(np.float64) for k, v in audio.items()}
            row: dict[str, Any] = {"audio": "speech + 8.5-20 kHz noise" if with_hf
                                   else "speech, band-limited",
                                   "mfcc_range": float(np.ptp(mfcc["soxr"]))}
            for name in ("decimator", "native", "no filter"):
                m = np.abs(mfcc[name] - mfcc["soxr"])
                k = np.abs(kp[name] - kp["soxr"])
                row[name] = {"mfcc_max": float(m.max()), "mfcc_mean": float(m.mean()),
                             "keypoints_max": float(k.max()), "keypoints_mean": float(k.mean())}
            rows.append(row)
        tolerances = next(r for r in gen.manifest.step_models if r.precision == "int8").tolerances
    return {"speech": rows, "int8_tolerances": dict(tolerances)}


def chunking() -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(48000)).astype(np.float32)
    whole = _decimate(x)
    ragged = _decimate(x, np.sort(rng.integers(0, x.size, 200)).tolist())
    ones = _decimate(x[:6000], list(range(1, 6000)))
    return {"random_cuts_max_abs": float(np.abs(ragged - whole).max()),
            "one_sample_max_abs": float(np.abs(ones - _decimate(x[:6000])).max()),
            "input_std": 0.3}


def measure() -> dict[str, Any]:
    return {"machine": machine_info(), "filter": filter_rows(), **speech_rows(),
            "chunking": chunking()}


def _f(value: float, fmt: str = ".3g") -> str:
    return format(value, fmt)


def markdown(result: dict[str, Any]) -> str:
    from benchmarks.report import _table

    tol = result["int8_tolerances"]
    labels = {"decimator": "sdk.decimator", "native": "native 16 kHz audio (scale)",
              "no filter": "x[::3], no filter (the fault)"}
    c = result["chunking"]
    return "\n".join([
        "# The integer-ratio decimator against soxr HQ", "",
        "`python -m benchmarks.resampler_quality`; what `sdk.decimator` (48, 32, 96 kHz -> "
        "16 kHz) changes against soxr HQ, which the SDK used before.", "",
        "## Filter (gain on the 16 kHz output's axis)", "",
        *_table(["factor", "input Hz", "taps", "max abs dB to 7 kHz", "dB at 7.5 kHz",
                 "dB at 8 kHz", "max dB from 8.8 kHz"],
                [[r["factor"], r["input_hz"], r["taps"], _f(r["passband_max_abs_db"]),
                  _f(r["gain_7500_db"], ".1f"), _f(r["gain_8000_db"], ".1f"),
                  _f(r["stopband_max_db"], ".1f")] for r in result["filter"]]),
        "## Speech at 48 kHz: differences from soxr HQ", "",
        f"MFCC (range {_f(result['speech'][0]['mfcc_range'], '.0f')}) and the shipped "
        f"generator's keypoints (canonical units; validate's int8 tolerances: max "
        f"{tol['keypoints_max_abs']}, mean {tol['keypoints_mean_abs']}).", "",
        *_table(["audio", "path", "MFCC max", "MFCC mean", "keypoints max", "keypoints mean"],
                [[r["audio"], labels[name], *(_f(r[name][k]) for k in (
                    "mfcc_max", "mfcc_mean", "keypoints_max", "keypoints_mean"))]
                 for r in result["speech"] for name in labels]),
        "## Chunking", "",
        f"Largest difference from one call (samples of std {c['input_std']}): random "
        f"cuts {_f(c['random_cuts_max_abs'])}, 1-sample chunks "
        f"{_f(c['one_sample_max_abs'])}.", ""])


def passage(result: dict[str, Any]) -> str:
    """The docs' sentence on the decimator's quality (benchmarks.doc_passages region
    ``resampler_quality``)."""
    f48 = next(r for r in result["filter"] if r["factor"] == 3)
    clean, noisy = result["speech"]
    tol = result["int8_tolerances"]
    return (f"At 48 kHz its filter has {f48['taps']} taps: within "
            f"{_f(f48['passband_max_abs_db'], '.1g')} dB to 7 kHz, "
            f"{_f(f48['gain_8000_db'], '.1f')} dB at 8 kHz, at most "
            f"{_f(f48['stopband_max_db'], '.1f')} dB from 8.8 kHz. On the "
            f"shipped speech sample at 48 kHz its MFCCs differ from soxr HQ's by at most "
            f"{_f(clean['decimator']['mfcc_max'], '.2f')} (range "
            f"{_f(clean['mfcc_range'], '.0f')}) and the generator's keypoints by "
            f"{_f(clean['decimator']['keypoints_max'], '.2g')} canonical units at most "
            f"(soxr's own differ from the native 16 kHz audio's by "
            f"{_f(clean['native']['keypoints_max'], '.2g')}); with noise at 8.5-20 kHz added, "
            f"{_f(noisy['decimator']['keypoints_max'], '.2g')} (mean "
            f"{_f(noisy['decimator']['keypoints_mean'], '.1g')}), inside the tolerances validate "
            f"gives the int8 model ({tol['keypoints_max_abs']} / {tol['keypoints_mean_abs']}), "
            f"where keeping every third sample unfiltered is "
            f"{_f(noisy['no filter']['keypoints_max'], '.3g')} / "
            f"{_f(noisy['no filter']['keypoints_mean'], '.2g')} off "
            f"([resampler_quality.md](../benchmarks/results/step_gemm/resampler_quality.md)).")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    for path in write_json_and_markdown(args.out, "resampler_quality", measure(), markdown):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
