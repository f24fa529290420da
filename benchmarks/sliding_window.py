"""Stateful streaming vs sliding-window re-inference (issue 9, part 1), same model, same run.

**Stateful** (ours): ``generator.onnx`` exported by the project's path
(:func:`export.onnx_export.export_generator`), one step of one frame per output frame,
carrying the (B, S) state.

**Sliding window** (the peers' way: re-run the model on recent audio for every new output,
as Audio2Face-3D's regression model and overlapping-window outpainting do): for every new
output frame, run the *same* generator with no state over the last ``W`` feature frames
and keep the output at the window's end. In our model the lookahead is an output delay,
so the window's last output *is* pose frame ``t - L`` — the frame at the lookahead
position. ``W`` is the model's receptive field (:func:`receptive_field`, from its layers),
so the window sees everything the stateful model's output depends on and the two agree
up to float rounding (checked, <= 1e-4; frames before ``W - 1`` use the shorter window
that exists, which is also exact). The baseline is an ONNX model exported from the
stateless computation (``step`` from the zero state, which is what ``forward`` runs) over
a window, with dynamic batch and frames, run by the same ONNX Runtime build.

Measured for each lookahead (0, 2, 4, 8 frames; fresh untrained generators of the default
config with that lookahead): FLOPs per output frame (``torch.utils.flop_counter``:
convolutions and matmuls, 2 per multiply-add), time per output frame at 1, 16 and 64
streams per model call (the two ways timed alternately, so both see the same machine
load), per-step p50/p99, and streams per core in real time (one intra-op thread:
``frame period / time per stream-frame`` at each way's most efficient batch).

    python -m benchmarks.sliding_window [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.bundle import default_generator, speech_features
from benchmarks.common import TimingSummary
from sdk.features import DEFAULT_FEATURES
from sdk.noise import frame_noise
from train.models.generator import SalientPostureGenerator

LOOKAHEADS = (0, 2, 4, 8)
BATCHES = (1, 16, 64)  # streams per model call
EQUAL_TOLERANCE = 1e-4
FRAME_PERIOD_S = 1.0 / DEFAULT_FEATURES.fps
METHOD = ("fresh untrained generators of the default config (train/configs/generator.yaml) "
          "with each lookahead; "
          "stateful: generator.onnx (export_generator), 1 frame per step with the (B, S) state; "
          "sliding window: the same generator exported stateless over the last W = receptive "
          "field frames, re-run for every output frame, last output kept; both ONNX Runtime "
          "CPU, 1 intra-op thread")


def receptive_field(model: SalientPostureGenerator) -> int:
    """Input frames the output at input index t depends on (t - W + 1 .. t), from the layers.

    Paths: features -> body encoder -> latent -> body decoder -> pose; features -> face
    encoder, joined with the latent, -> face decoder -> pose; the saliency head reads the
    body encoder only. A stack's field is ``1 + (kernel - 1) * sum(dilations)``; stacked
    fields add minus one. 1x1 convolutions (projections, heads) add nothing.
    """
    body = model.body_encoder.receptive_field
    field = body + model.body_decoder.receptive_field - 1
    if model.face_encoder is not None and model.face_decoder is not None:
        face_input = max(model.face_encoder.receptive_field, body)
        field = max(field, face_input + model.face_decoder.receptive_field - 1)
    return field


class WindowGenerator(nn.Module):
    """The stateless baseline: the generator from a zero state over a window, last frame.

    forward(features (B, W, F) raw, noise (B, W, N)) -> poses (B, J, 2) standardised and
    saliency (B,) of input index ``W - 1`` (pose frame ``t - L`` for a window ending at t).
    """

    def __init__(self, generator: SalientPostureGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, features: torch.Tensor, noise: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        zero = self.generator.init_state(features.shape[0])
        poses, saliency, _ = self.generator.step(features, noise, zero)
        return poses[:, -1], saliency[:, -1]


def export_window_model(generator: SalientPostureGenerator, path: Path, window: int) -> None:
    """Export :class:`WindowGenerator` to ONNX (inputs features, noise; dynamic batch, frames)."""
    cfg = generator.config
    batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=1)
    example = (torch.randn(2, window, cfg.feature_dim), torch.randn(2, window, cfg.noise_dim))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            WindowGenerator(generator).eval(), example, dynamo=True,
            input_names=["features", "noise"], output_names=["poses", "saliency"],
            dynamic_shapes={"features": {0: batch, 1: frames}, "noise": {0: batch, 1: frames}},
            opset_version=18, verbose=False)
    if program is None:
        raise RuntimeError(f"{path}: torch.onnx.export returned no program")
    program.save(str(path))


def flops_per_frame(generator: SalientPostureGenerator, window: int) -> dict[str, int]:
    """FLOPs of one output frame, stateful (1-frame step) and sliding window (W frames)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = generator.config
    counts = {}
    with torch.no_grad():
        for name, frames in (("stateful", 1), ("sliding_window", window)):
            feats = torch.randn(1, frames, cfg.feature_dim)
            noise = torch.randn(1, frames, cfg.noise_dim)
            state = generator.init_state(1) if name == "sliding_window" \
                else torch.randn(1, generator.state_size)
            counter = FlopCounterMode(display=False)
            with counter:
                generator.step(feats, noise, state)
            counts[name] = int(counter.get_total_flops())
    return counts


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # per-core numbers
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_same_frames(stateful: Any, window_model: Any, features: np.ndarray,
                      noise: np.ndarray, state_size: int, window: int) -> float:
    """Max |stateful - sliding| over poses and saliency of every frame of one stream.

    features (T, F) and noise (T, N) float32; the stateful model steps one frame at a time.
    """
    state = np.zeros((1, state_size), np.float32)
    worst = 0.0
    for t in range(len(features)):
        poses, saliency, state = stateful.run(None, {
            "features": features[None, t:t + 1], "noise": noise[None, t:t + 1], "state": state})
        first = max(0, t - window + 1)
        w_poses, w_saliency = window_model.run(None, {
            "features": features[None, first:t + 1], "noise": noise[None, first:t + 1]})
        worst = max(worst, float(np.abs(poses[0, 0] - w_poses[0]).max()),
                    float(np.abs(saliency[0, 0] - w_saliency[0]).max()))
    return worst


def compare_lookahead(lookahead: int, work_dir: Path, batches: tuple[int, ...],
                      repeats: int) -> dict[str, Any]:
    """Both ways for a fresh default-config generator with ``lookahead`` frames."""
    from export.onnx_export import export_generator

    generator = default_generator(lookahead)
    window = receptive_field(generator)
    export_generator(generator, work_dir / f"stateful-L{lookahead}.onnx")
    export_window_model(generator, work_dir / f"window-L{lookahead}.onnx", window)
    stateful = _session(work_dir / f"stateful-L{lookahead}.onnx")
    sliding = _session(work_dir / f"window-L{lookahead}.onnx")
    cfg, size = generator.config, generator.state_size
    features = speech_features(lookahead)[: 3 * window]
    noise = frame_noise(0, 0, len(features), cfg.noise_dim)
    max_diff = check_same_frames(stateful, sliding, features, noise, size, window)

    rng = np.random.default_rng(lookahead)
    results: dict[str, Any] = {"stateful": {"batches": {}}, "sliding_window": {"batches": {}}}
    for b in batches:
        feats = features[rng.integers(0, len(features) - window, b)[:, None]
                         + np.arange(window)]  # (b, W, F) windows of real features
        noises = np.broadcast_to(noise[:window], (b, window, cfg.noise_dim)).copy()
        state = [np.zeros((b, size), np.float32)]
        last_feats = np.ascontiguousarray(feats[:, -1:])  # (b, 1, F): the new frame
        last_noise = np.ascontiguousarray(noises[:, -1:])

        def stateful_step(feats: np.ndarray = last_feats, noises: np.ndarray = last_noise,
                          state: list[np.ndarray] = state) -> None:
            state[0] = stateful.run(None, {"features": feats, "noise": noises,
                                           "state": state[0]})[2]

        def sliding_step(feats: np.ndarray = feats, noises: np.ndarray = noises) -> None:
            sliding.run(None, {"features": feats, "noise": noises})

        times = _interleaved({"stateful": stateful_step, "sliding_window": sliding_step},
                             repeats)
        for name, seconds in times.items():
            summary = TimingSummary.of(seconds)
            results[name]["batches"][str(b)] = {"step_ms": summary.to_dict(),
                                                "ms_per_frame": summary.p50_ms / b}
    for entry in results.values():
        best = min(entry["batches"], key=lambda b: entry["batches"][b]["ms_per_frame"])
        entry["best_batch"] = int(best)
        entry["best_ms_per_frame"] = entry["batches"][best]["ms_per_frame"]
        entry["streams_per_core_real_time"] = FRAME_PERIOD_S * 1e3 / entry["best_ms_per_frame"]
    flops = flops_per_frame(generator, window)
    for name, count in flops.items():
        results[name]["flops_per_frame"] = count
    s, w = results["stateful"], results["sliding_window"]
    return {
        "lookahead_frames": lookahead, "window_frames": window,
        "window_ms": window * FRAME_PERIOD_S * 1e3, "batches": list(batches),
        "state_size": size, "state_bytes_per_frame": 2 * 4 * size,  # read + written
        "max_abs_difference": max_diff, "same_frames": max_diff <= EQUAL_TOLERANCE,
        **results,
        "ratio": {"flops": w["flops_per_frame"] / s["flops_per_frame"],
                  "time_best_batch": w["best_ms_per_frame"] / s["best_ms_per_frame"],
                  **{f"time_batch{b}": w["batches"][str(b)]["ms_per_frame"]
                     / s["batches"][str(b)]["ms_per_frame"] for b in batches}},
    }


def _interleaved(calls: dict[str, Any], repeats: int, warmup: int = 3) -> dict[str, np.ndarray]:
    """Time each call ``repeats`` times, alternating between them, so that both see the same
    machine load (other processes share the cores). Returns seconds per call."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            begin = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - begin)
    return {name: np.asarray(t) for name, t in times.items()}


def run_comparison(lookaheads: tuple[int, ...] = LOOKAHEADS,
                   batches: tuple[int, ...] = BATCHES, repeats: int = 50) -> dict[str, Any]:
    """:func:`compare_lookahead` for every lookahead; ONNX files in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="gesturert-sliding-") as tmp:
        rows = [compare_lookahead(lookahead, Path(tmp), batches, repeats)
                for lookahead in lookaheads]
    return {"method": METHOD, "threads": 1, "goal": "stateful >= 10x less compute per frame",
            "lookaheads": rows}


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.sliding_window``: run, then write JSON, Markdown and a plot."""
    from benchmarks.report import default_out_dir, write_sliding_window_report

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="lookahead 2 only, fewer repeats")
    parser.add_argument("--out", type=Path, default=None, help="output directory "
                        "(default benchmarks/results/<machine-id>/)")
    args = parser.parse_args(argv)
    result = run_comparison((2,), (1, 16), repeats=10) if args.quick else run_comparison()
    out = args.out or default_out_dir()
    for path in write_sliding_window_report(result, out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
